"""Evaluation: the paper's protocols on the embedded world, metrics and truth checks."""
