"""gis: GAN Inversion & Shifting -- design feedback for sellers from a visual recommender."""

from __future__ import annotations

__version__ = "0.1.0"

from .errors import GisError, GisRuntimeError, GisUsageError  # noqa: E402
from .hookspecs import hookimpl  # noqa: E402
from .interfaces import (  # noqa: E402
    CategoryClassifier,
    Generator,
    GroundTruth,
    LossContext,
    LossTerm,
    ModelCard,
    Recommender,
)
from .plugins import (  # noqa: E402
    get_dataset,
    get_generator,
    get_loss,
    get_recommender,
    register_plugin,
    unregister_plugin,
)

__all__ = [
    "GisError",
    "GisRuntimeError",
    "GisUsageError",
    "CategoryClassifier",
    "Generator",
    "GroundTruth",
    "LossContext",
    "LossTerm",
    "ModelCard",
    "Recommender",
    "__version__",
    "get_dataset",
    "get_generator",
    "get_loss",
    "get_recommender",
    "hookimpl",
    "register_plugin",
    "unregister_plugin",
]


def __getattr__(name):  # the engine imports torch-heavy modules; load it on first use
    if name in {"invert", "shift", "InversionResult", "ShiftResult"}:
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)
