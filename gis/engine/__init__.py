"""The method: inversion, shifting, and the DVBPR design baseline."""

from .invert import InversionResult, invert
from .pipeline import GisRun, run_gis
from .settings import RECIPES, InvertSettings, ShiftSettings, invert_settings, shift_settings
from .shift import ShiftResult, shift

__all__ = ["GisRun", "InversionResult", "InvertSettings", "RECIPES", "ShiftResult",
           "ShiftSettings", "invert", "invert_settings", "run_gis", "shift", "shift_settings"]
