"""Loop bookkeeping shared by trainers: loop position, time/step budgets, progress bars and
the weight average (EMA) of a network."""

from __future__ import annotations

import copy
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..errors import CheckpointError

__all__ = ["Budget", "TrainState", "WeightAverage", "ema_update", "progress"]


@dataclass
class TrainState:
    """Loop position and bookkeeping, stored in a checkpoint's meta under ``"train_state"``.

    ``elapsed_s`` accumulates training time over resumed runs; ``best`` holds the best
    validation metric so far and where it was reached; ``history`` one dict per epoch;
    ``extra`` anything else a trainer must carry across a resume (JSON-serialisable).
    """

    epoch: int = 0
    step: int = 0
    elapsed_s: float = 0.0
    best: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    done: bool = False
    extra: dict[str, Any] = field(default_factory=dict)  # trainer-specific bookkeeping

    def to_meta(self) -> dict[str, Any]:
        return {"train_state": asdict(self)}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> TrainState:
        raw = meta.get("train_state")
        if raw is None:
            raise CheckpointError("checkpoint holds no training state (not a resumable file)")
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in raw.items() if k in known})


class Budget:
    """A wall-clock and/or step limit for one training session.

    ``Budget(minutes=30)`` expires 30 minutes after it is created (or after :meth:`restart`);
    ``Budget(steps=1000)`` after ``tick()`` was called 1000 times; both None: never.
    """

    def __init__(self, minutes: float | None = None, steps: int | None = None):
        self.minutes = minutes
        self.steps = steps
        self.restart()

    def restart(self) -> None:
        self.t0 = time.monotonic()
        self.taken = 0

    def tick(self, n: int = 1) -> None:
        self.taken += n

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.t0

    @property
    def remaining_s(self) -> float:
        if self.minutes is None:
            return float("inf")
        return self.minutes * 60.0 - self.elapsed_s

    def exhausted(self) -> bool:
        if self.steps is not None and self.taken >= self.steps:
            return True
        return self.minutes is not None and self.remaining_s <= 0

    def __repr__(self) -> str:
        return f"Budget(minutes={self.minutes}, steps={self.steps})"


def progress(iterable: Iterable | None = None, *, total: float | None = None, desc: str = "",
             enabled: bool = True, **kwargs: Any):
    """A tqdm progress bar (on stderr); with ``enabled=False`` a silent one with the same
    methods (``set_postfix``, ``update``, ``close``), for library use.

    When stderr is not a terminal (a log file, a CI job, a cluster task) the bar redraws at
    most every 30 s instead of ten times a second, so logs get a few readable lines rather
    than one line of thousands of carriage-return updates; the final state is always written.
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("mininterval", 1.0 if sys.stderr.isatty() else 30.0)
    return tqdm(iterable, total=total, desc=desc, disable=not enabled, dynamic_ncols=True,
                leave=kwargs.pop("leave", False), **kwargs)


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    """``ema <- beta * ema + (1 - beta) * model`` for the parameters; buffers (BatchNorm
    statistics, counters) are copied from ``model``."""
    e = [p for p in ema.parameters()]
    m = [p.detach() for p in model.parameters()]
    torch._foreach_lerp_(e, m, 1.0 - beta)
    for be, bm in zip(ema.buffers(), model.buffers(), strict=True):
        be.copy_(bm)


class WeightAverage:
    """An exponential moving average of a network's weights (as ProGAN's generator, Karras et
    al. 2018), kept beside the network that trains.

    ``module`` is a frozen copy of ``source`` in eval mode. ``update(step)`` after each
    optimiser step of ``source`` moves it by ``1 - beta_t`` towards ``source``, with
    ``beta_t = min(beta, (1 + step) / (10 + step))`` when ``ramp`` (so that a short run is not
    dominated by the initial weights; ``step`` counts from 0 in the run) and ``beta``
    otherwise (e.g. a warm start from weights that are already good).
    """

    def __init__(self, source: nn.Module, beta: float, *, ramp: bool = True):
        self.source = source
        self.beta = float(beta)
        self.ramp = bool(ramp)
        self.module = copy.deepcopy(source).eval().requires_grad_(False)

    def beta_at(self, step: int) -> float:
        if not self.ramp:
            return self.beta
        return min(self.beta, (1.0 + step) / (10.0 + step))

    def update(self, step: int) -> None:
        ema_update(self.module, self.source, self.beta_at(step))

    def reset(self) -> None:
        """Restart the average at the source's current weights (after a warm start)."""
        self.module.load_state_dict(self.source.state_dict())
