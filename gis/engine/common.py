"""Small pieces shared by the optimisation loops."""

from __future__ import annotations

import contextlib
import math

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
