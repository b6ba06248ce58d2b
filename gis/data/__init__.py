"""Datasets: item images + categories + users' implicit feedback, split as DVBPR does."""

from .base import Dataset

__all__ = ["Dataset"]
