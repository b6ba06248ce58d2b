"""Networks that gis trains itself (no pretrained weights needed)."""

from __future__ import annotations

from .shift_predictor import ShiftPredictor

__all__ = ["ShiftPredictor"]
