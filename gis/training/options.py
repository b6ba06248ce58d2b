"""The options of every training session (:class:`RunOptions`) and the periodic settings a
trainer ``Config`` may inherit (:class:`PeriodicSettings`); the skeleton that reads them is
:mod:`gis.training.run`."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from ..errors import GisUsageError
from .config import setting

__all__ = ["RUN_OPTIONS", "PeriodicSettings", "RunOptions", "save_reserve_s"]


@dataclass
class RunOptions:
    """Where one training session writes, on what, and for how long (every trainer's
    options; ``gis train`` adds ``--data`` and ``--trust`` for the dataset)."""

    out: Path = setting(None, "Run folder: checkpoint, exported model + card, samples, log.")
    seed: int = setting(0, "Seed of a new run (a resumed or warm-started run keeps its own).")
    device: str = setting("cpu", "cpu, cuda or cuda:N.")
    resume: bool = setting(False, "Continue the run whose checkpoint is in --out.")
    init_from: str | None = setting(
        None, "Start a new run from another run's weights (a run folder or file).")
    minutes: float | None = setting(
        None, "Wall-clock budget of this session; it ends with a saved, resumable state.")
    max_steps: int | None = setting(
        None, "Stop when the run (all sessions together) has taken this many steps.")
    threads: int | None = setting(
        None, "torch CPU threads (default: GIS_THREADS, else every CPU of this process).")
    progress: bool = setting(True, "the progress bar and the closing summary.")

    def __post_init__(self) -> None:
        if self.out is None:
            raise GisUsageError("a training run needs an output folder (out=, --out)")
        self.out = Path(self.out)
        if self.minutes is not None and not self.minutes > 0:
            raise GisUsageError(f"minutes must be positive, got {self.minutes}")
        if self.max_steps is not None and self.max_steps < 0:
            raise GisUsageError(f"max_steps must be >= 0, got {self.max_steps}")


RUN_OPTIONS = tuple(f.name for f in fields(RunOptions))


@dataclass
class PeriodicSettings:
    """How often a run writes sample grids, checkpoints (with an export) and log lines. A
    trainer ``Config`` that inherits these gets them applied by the skeleton (redeclare a
    field to change its default); otherwise the trainer's own attributes hold."""

    sample_every_s: float = setting(60.0, "Seconds between sample grids.")
    checkpoint_every_s: float = setting(120.0, "Seconds between checkpoints (+ export).")
    log_every: int = setting(20, "Steps per log.jsonl line (mean losses).")


def save_reserve_s(minutes: float | None) -> float:
    """Seconds kept free at the end of a session of ``minutes`` for the final checkpoint and
    export: 4 % of the budget, between 2 and 20 s (0 without a budget)."""
    if minutes is None:
        return 0.0
    return float(min(20.0, max(2.0, 0.04 * minutes * 60.0)))
