"""Training in gis: one resumable-run skeleton, and the pieces it is made of.

* :mod:`gis.training.run`: :class:`Trainer` (what a plugin implements: the model step, its
  export, a typed ``Config``), :func:`train` and :class:`RunOptions` (the skeleton: run
  folder, format check, warm start, seeding, optimiser/RNG state, time budget, periodic
  atomic saves, weight averages, loss log, progress, sample grids, a stop signal honoured
  at a step boundary). :mod:`gis.training.options` holds :class:`RunOptions`. docs/MODELS.md,
  "Training", shows the command for each model; docs/PLUGINS.md the trainer contract.
* :mod:`gis.training.conditional`: :class:`ConditionalGANTrainer`, the run of a
  class-conditional GAN (G(z, y), D(x, y), a G weight average) that gis's BigGAN and
  dvbpr-gan trainers share.
* :mod:`gis.training.config`: ``setting(default, help)`` fields and how ``gis train``
  reads a ``Config`` dataclass.
* :mod:`gis.training.checkpoint`: ``.safetensors`` checkpoints with JSON meta, optimiser and
  RNG state as tensors, the format check.
* :mod:`gis.training.device`: seeding, threads, the checked device, machine facts for cards.
* :mod:`gis.training.state`: :class:`TrainState`, :class:`Budget`, :class:`WeightAverage`,
  the progress bar.
* :mod:`gis.training.data`: a dataset's uint8 images on the device, float batches from them.

Names are imported on first use (``gis`` starts without torch).
"""

from __future__ import annotations

import importlib
from typing import Any

_HOME = {
    # run skeleton
    "Checkpoint": "run", "Run": "run", "Trainer": "run", "train": "run",
    "ConditionalGANTrainer": "conditional",
    "PeriodicSettings": "options", "RunOptions": "options", "save_reserve_s": "options",
    # settings
    "SettingInfo": "config", "check_ranges": "config", "make_config": "config",
    "setting": "config",
    "settings_of": "config",
    # checkpoints
    "META_KEY": "checkpoint", "check_format": "checkpoint", "flatten": "checkpoint",
    "load_checkpoint": "checkpoint", "load_optimizer_state": "checkpoint",
    "load_rng_state": "checkpoint", "optimizer_state_tensors": "checkpoint",
    "read_checkpoint_meta": "checkpoint", "rng_state_tensors": "checkpoint",
    "save_checkpoint": "checkpoint", "unflatten": "checkpoint",
    # machine
    "command_line": "device", "global_rng_aside": "device", "machine_info": "device", "resolve_device": "device",
    "seed_everything": "device", "set_threads": "device", "training_device": "device",
    # loop bookkeeping
    "Budget": "state", "TrainState": "state", "WeightAverage": "state",
    "ema_update": "state", "progress": "state",
    # images on the device
    "images_to_device": "data", "resize_batch": "data", "training_images": "data",
    "uint8_batch_to_float": "data", "save_class_reals": "data", "dataset_record": "data",
}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'gis.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])
