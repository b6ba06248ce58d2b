"""``log.jsonl`` of a training run: one JSON line of mean losses every ``every`` steps.

Lines fall on the multiples of ``every`` (steps counted over the whole run), and the losses
of the steps since the last line travel in the checkpoint (:meth:`LossLog.state`), so a run
resumed from a checkpoint writes the lines an uninterrupted run writes. On resume the lines
of steps after the checkpoint (logged by a session killed before its next checkpoint) and a
line cut by the kill are dropped (:meth:`LossLog.trim`).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["LossLog"]


class LossLog:
    """The loss log of one session. ``every``: steps per line (0: no log)."""

    def __init__(self, path: str | os.PathLike, every: int):
        self.path = Path(path)
        self.every = int(every)
        self.names: list[str] = []
        self.pending: list[torch.Tensor] = []  # one (n_losses,) float32 row per step

    def add(self, losses: dict[str, torch.Tensor]) -> None:
        """Record one step's losses (0-d tensors, left on their device until a line is due)."""
        self.names = list(losses)
        self.pending.append(torch.stack([v.detach().float() for v in losses.values()]))

    def due(self, step: int) -> bool:
        """Whether a line is written after ``step`` (the run's step count)."""
        return bool(self.every) and step % self.every == 0 and bool(self.pending)

    def means(self) -> dict[str, float]:
        """The mean of each loss over the steps since the last line; starts the next line."""
        values = torch.stack(self.pending).mean(0).tolist()
        self.pending.clear()
        return dict(zip(self.names, values, strict=True))

    def peek(self) -> dict[str, float]:
        """The mean of each loss over the steps not yet logged, leaving them pending (a
        session's closing summary when it ended before its first line); {} when none."""
        if not self.pending:
            return {}
        return dict(zip(self.names, torch.stack(self.pending).mean(0).tolist(), strict=True))

    @staticmethod
    def finite(means: dict[str, float]) -> bool:
        return all(math.isfinite(v) for v in means.values())

    def write(self, entry: dict[str, Any]) -> None:
        """Append ``entry`` as one line."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry) + "\n")

    # ------------------------------------------------------------------ across sessions
    def state(self) -> dict[str, Any]:
        """The losses not yet logged, for the checkpoint's meta (float32 values are exact in
        JSON)."""
        return {"names": self.names, "values": [row.tolist() for row in self.pending]}

    def load(self, state: dict[str, Any] | None, device: torch.device) -> None:
        """Continue from :meth:`state` of a checkpoint (None: nothing pending)."""
        if not state:
            return
        self.names = list(state.get("names", []))
        self.pending = [torch.tensor(row, dtype=torch.float32, device=device)
                        for row in state.get("values", [])]

    def trim(self, step: int) -> None:
        """Keep only the whole lines of steps up to ``step``, where this session starts."""
        if not self.path.exists():
            return
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines(keepends=True)
        kept = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if line.endswith("\n") and isinstance(entry, dict) and entry.get("step", 0) <= step:
                kept.append(line)
        if len(kept) != len(lines):
            from ..io import write_text

            write_text(self.path, "".join(kept))
