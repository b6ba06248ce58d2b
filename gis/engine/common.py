"""Small pieces shared by the optimisation loops."""

from __future__ import annotations

import contextlib
import functools
import math
from pathlib import Path

import torch

from ..errors import NonFiniteLossError


def to_range(x: torch.Tensor, src: tuple[float, float], dst: tuple[float, float]) -> torch.Tensor:
    """Affine map of pixel values from range ``src`` to range ``dst``."""
    if tuple(src) == tuple(dst):
        return x
    (a, b), (c, d) = src, dst
    return (x - a) / (b - a) * (d - c) + c


def check_finite(terms: dict[str, torch.Tensor], where: str, origin=None) -> None:
    """Stop with a message naming the first non-finite loss term (and, with ``origin``, a
    function of the term's name, where it comes from: "plugin 'losses'")."""
    for name, value in terms.items():
        if not torch.isfinite(value.detach()).all():
            source = f" ({origin(name)})" if origin is not None else ""
            raise NonFiniteLossError(
                f"{where} stopped: the {name} term{source} became non-finite (NaN or inf); "
                "lower the learning rate or that term's weight"
            )


@contextlib.contextmanager
def frozen(*modules: torch.nn.Module):
    """Eval mode and no parameter gradients for the duration; restored afterwards."""
    saved = []
    for m in modules:
        saved.append((m, m.training, [p.requires_grad for p in m.parameters()]))
        m.eval()
        for p in m.parameters():
            p.requires_grad_(False)
    try:
        yield
    finally:
        for m, training, flags in saved:
            m.train(training)
            for p, f in zip(m.parameters(), flags, strict=True):
                p.requires_grad_(f)


class _Bar:
    def __init__(self, total: int, desc: str, enabled: bool):
        from ..training import progress

        self.bar = progress(total=total, desc=desc, enabled=enabled)
        self.every = max(1, total // 100)
        self.i = 0

    def update(self, **terms: torch.Tensor | float) -> None:
        self.i += 1
        if not self.bar.disable and (self.i % self.every == 0 or self.i == self.bar.total):
            self.bar.set_postfix({k: f"{float(torch.as_tensor(v).detach()):.4g}"
                                 for k, v in terms.items()}, refresh=False)
            self.bar.update(self.i - self.bar.n)

    def close(self) -> None:
        self.bar.close()


@contextlib.contextmanager
def loss_bar(total: int, desc: str, enabled: bool):
    """A progress bar whose postfix shows every loss term; silent when ``enabled`` is False."""
    bar = _Bar(total, desc, enabled)
    try:
        yield bar
    finally:
        bar.close()


def finite_or_nan(x: float) -> float | None:
    return x if math.isfinite(x) else None


def native_bfloat16(device: torch.device | str) -> bool:
    """Whether ``device`` computes bfloat16 natively: a CUDA device of compute capability 8.0
    or newer (Ampere on), or a CPU with AVX512-BF16 or AMX-BF16 (read from /proc/cpuinfo; False
    where that file is missing). Elsewhere bfloat16 is emulated and slower than float32."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type != "cpu":
        return False
    return _cpu_has_bf16()


@functools.cache
def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a loop runs in: ``precision``, with "auto" resolved for ``device``."""
    if precision != "auto":
        return precision
    return "bfloat16" if native_bfloat16(device) else "float32"


def autocast(device: torch.device | str, precision: str):
    """The loops' forward passes in ``precision``: "bfloat16" is ``torch.autocast`` in bfloat16
    on ``device``'s type (convolutions and matrix products in bfloat16; reductions, losses and
    the optimisers' updates stay float32), "float32" changes nothing."""
    return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16,
                          enabled=precision == "bfloat16")


def lr_scheduler(optimizers: list[torch.optim.Optimizer], schedule: str, steps: int) -> list:
    """Per optimiser, the ``schedule`` over ``steps`` steps ("cosine": lr annealed to 0 by
    ``torch.optim.lr_scheduler.CosineAnnealingLR``; "constant": none)."""
    if schedule == "constant":
        return []
    return [torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=steps) for o in optimizers]
