"""Settings of the method, with the paper's defaults and the authors' code as a named recipe."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import GisUsageError

AGGREGATIONS = ("mean", "min", "softmin", "coverage")


@dataclass(frozen=True)
class InvertSettings:
    """Inversion: z* = argmin LPIPS(X, G(z)) + MSE(X, G(z)), z renormalised after each step."""

    steps: int = 200
    lr: float = 0.01
    lpips_weight: float = 1.0
    mse_weight: float = 1.0
    lpips_net: str = "vgg"  # the authors' choice for the loss; AlexNet is kept for the metric
    restarts: int = 2  # independent starts optimised in one batch; the best is kept
    loss_resolution: int = 32  # side at which LPIPS compares (upsampled if the G is smaller)
    seed: int = 0

    def validate(self) -> None:
        _positive_int("steps", self.steps)
        _positive_int("restarts", self.restarts)
        _positive("lr", self.lr)
        if self.lpips_weight < 0 or self.mse_weight < 0:
            raise GisUsageError("inversion loss weights must be >= 0")
        if self.lpips_weight == 0 and self.mse_weight == 0:
            raise GisUsageError("inversion needs lpips_weight > 0 or mse_weight > 0")


@dataclass(frozen=True)
class ShiftSettings:
    """Shifting: L = w_ce CE + w_mae MAE - w_pref pref (+ w_id LPIPS(base, variant)).

    ``normalize``: "vector" renormalises each z + k to mean 0 / std 1 (the paper's text);
    "batch" uses one scalar mean/std over the n x d batch (the authors' code).
    ``parametrization``: "direct" optimises k itself, clamped to [-eps, eps] (the paper);
    "scaled" optimises p with k = clamp(eps * p) (the authors' code).
    """

    n: int = 8
    eps: float = 0.4
    steps: int = 300
    lr: float = 0.01
    predictor_lr: float = 0.01
    ce_weight: float = 1.0
    mae_weight: float = 1.0
    pref_weight: float = 1.0
    identity_weight: float = 0.0
    aggregation: str = "mean"
    temperature: float = 1.0  # softmin / coverage temperature, in score units
    top_k: int = 10  # coverage: share of users for whom the variant enters their top-K
    normalize: str = "vector"
    parametrization: str = "direct"
    permute: bool = False  # feed the variants to the predictor in a random order each step
    seed: int = 0
    recipe: str = "paper"

    def validate(self) -> None:
        if self.n < 2:
            raise GisUsageError(f"n must be >= 2 to make distinct variants (got {self.n})")
        if not self.eps > 0:
            raise GisUsageError(f"eps must be > 0 (got {self.eps}); the paper uses 0.4")
        _positive_int("steps", self.steps)
        _positive("lr", self.lr)
        _positive("predictor_lr", self.predictor_lr)
        for name in ("ce_weight", "mae_weight", "pref_weight", "identity_weight"):
            if getattr(self, name) < 0:
                raise GisUsageError(f"{name} must be >= 0 (0 switches the term off)")
        if self.aggregation not in AGGREGATIONS:
            raise GisUsageError(f"unknown aggregation {self.aggregation!r}; choose one of "
                                f"{', '.join(AGGREGATIONS)}")
        _positive("temperature", self.temperature)
        _positive_int("top_k", self.top_k)
        if self.normalize not in ("vector", "batch"):
            raise GisUsageError("normalize must be 'vector' or 'batch'")
        if self.parametrization not in ("direct", "scaled"):
            raise GisUsageError("parametrization must be 'direct' or 'scaled'")


#: Named recipes: "paper" follows the article's text, "official-code" the authors' scripts
#: (REFERENCE.md §1: n=6, eps=0.5, 0.1 CE, batch-scalar normalisation, eps*p, permutation).
RECIPES: dict[str, dict] = {
    "paper": {},
    "official-code": dict(n=6, eps=0.5, ce_weight=0.1, mae_weight=1.0, pref_weight=1.0,
                          normalize="batch", parametrization="scaled", permute=True),
}


def shift_settings(recipe: str = "paper", **overrides) -> ShiftSettings:
    """Settings of ``recipe`` with ``overrides`` (None values are ignored) applied on top."""
    if recipe not in RECIPES:
        raise GisUsageError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    values = dict(RECIPES[recipe])
    values.update({k: v for k, v in overrides.items() if v is not None})
    known = {f.name for f in dataclasses.fields(ShiftSettings)}
    unknown = set(values) - known
    if unknown:
        raise GisUsageError(f"unknown shift setting(s): {', '.join(sorted(unknown))}")
    s = ShiftSettings(recipe=recipe, **values)
    s.validate()
    return s


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise GisUsageError(f"{name} must be > 0 (got {value})")


def _positive_int(name: str, value: int) -> None:
    if int(value) != value or value <= 0:
        raise GisUsageError(f"{name} must be a positive integer (got {value})")


