"""Settings of the method: the paper's defaults, and the authors' code as a named recipe.

Both objectives are weighted sums of registered loss terms (``losses``: name -> weight; weight 0
switches a term off); a recipe is a set of term weights plus the loop's other settings
(docs/METHOD.md).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import numpy as np

from ..errors import GisUsageError
from ..ops import AGGS
from .objective import check_weights, merge_weights

#: the paper's inversion objective: LPIPS(VGG) + MSE, 1:1 (docs/METHOD.md)
PAPER_INVERT_LOSSES = {"lpips": 1.0, "mse": 1.0}
#: options of those terms: LPIPS with the VGG trunk, compared at 32 x 32
PAPER_INVERT_OPTIONS = {"lpips": {"net": "vgg", "resolution": 32}}
#: the paper's shifting objective: CE + MAE - preference (docs/METHOD.md)
PAPER_SHIFT_LOSSES = {"shift_ce": 1.0, "shift_mae": 1.0, "preference": 1.0}
#: the seller recipe (issue 14; `gis shift`'s default): the paper's objective plus realism (the
#: generator's own score), identity (LPIPS to the base image), silhouette (1 - soft IoU of the
#: foreground masks) and distinct (hinge on the variants' pairwise LPIPS); weights from small
#: measurements (docs/ENGINE.md, "The seller recipe")
SELLER_SHIFT_LOSSES = {**PAPER_SHIFT_LOSSES, "realism": 1.0, "identity": 1.0,
                       "silhouette": 3.0, "distinct": 1.0}
#: the seller recipe's term options: realism only where the generator offers one (else 0);
#: distinct pushes each variant from its nearest neighbour (docs/ENGINE.md, "Distinct variants")
SELLER_SHIFT_OPTIONS = {"realism": {"if_offered": True}, "distinct": {"reduction": "nearest"}}
#: learning-rate schedules of both loops: "constant" (the paper) or "cosine" (annealed from
#: ``lr`` to 0 over the steps, torch.optim.lr_scheduler.CosineAnnealingLR)
LR_SCHEDULES = ("constant", "cosine")
#: arithmetic of the loops' forward passes: "float32" (the paper), "bfloat16" (torch.autocast:
#: convolutions and matrix products in bfloat16, reductions, the optimiser and every result
#: in float32; docs/ENGINE.md, "Speed"), or "auto": bfloat16 where the device computes it
#: natively (gis.engine.common.native_bfloat16), else float32; results record which ran
PRECISIONS = ("float32", "bfloat16", "auto")


@dataclass(frozen=True)
class InvertSettings:
    """Inversion: z* = argmin_z sum_i w_i term_i(G(z), item), z renormalised after each step.

    ``losses``: term name -> weight (default LPIPS(VGG) + MSE); ``loss_options``: term name ->
    options its factory receives.
    """

    steps: int = 200
    lr: float = 0.01
    restarts: int = 2  # independent starts optimised in one batch; the best is kept
    # 0: the starts are random latents; N > 0: the `restarts` of N random latents that the
    # objective scores closest to the item (gis.engine.invert._closest_starts)
    init_samples: int = 0
    seed: int = 0
    lr_schedule: str = "constant"
    precision: str = "float32"
    losses: dict[str, float] = field(default_factory=lambda: dict(PAPER_INVERT_LOSSES))
    loss_options: dict[str, dict] = field(
        default_factory=lambda: {k: dict(v) for k, v in PAPER_INVERT_OPTIONS.items()})

    def validate(self) -> None:
        _positive_int("inversion steps", self.steps)
        _positive_int("inversion restarts", self.restarts)
        _check_seed("the inversion seed", self.seed)
        if not (_is_int(self.init_samples) and self.init_samples >= 0):
            raise GisUsageError(f"inversion init samples must be an integer >= 0, got "
                                f"{self.init_samples!r}")
        if 0 < self.init_samples < self.restarts:
            raise GisUsageError(f"inversion init samples ({self.init_samples}) must be at "
                                f"least the restarts ({self.restarts}), or 0 for random starts")
        _positive("inversion lr", self.lr)
        _check_loop(self.lr_schedule, self.precision)
        check_weights(self.losses, "inversion")
        if not any(w > 0 for w in self.losses.values()):
            raise GisUsageError("the inversion needs a loss term of weight > 0 (e.g. mse=1)")
        _check_options(self.loss_options)


#: the most variants one run makes: a seller reviews a handful (the paper: 6 to 8), and the
#: pairwise terms' memory grows with n^2 (n = 200 peaks at 2.5 GB, n = 1,000 exhausts 24 GB)
MAX_N = 64


@dataclass(frozen=True)
class ShiftSettings:
    """Shifting: L = sum_i w_i term_i (default CE + MAE - preference), over n bounded shifts.

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
    losses: dict[str, float] = field(default_factory=lambda: dict(PAPER_SHIFT_LOSSES))
    loss_options: dict[str, dict] = field(default_factory=dict)
    aggregation: str = "mean"
    temperature: float = 1.0  # softmin / coverage temperature, in score units
    top_k: int = 10  # coverage: share of users for whom the variant enters their top-K
    normalize: str = "vector"
    parametrization: str = "direct"
    permute: bool = False  # feed the variants to the predictor in a random order each step
    seed: int = 0
    recipe: str = "paper"
    lr_schedule: str = "constant"
    precision: str = "float32"

    def validate(self) -> None:
        if not _is_int(self.n) or not 2 <= self.n <= MAX_N:
            raise GisUsageError(f"n must be an integer from 2 (distinct variants need two) to "
                                f"{MAX_N} (memory grows with n squared), got {self.n!r}")
        _check_seed("the shifting seed", self.seed)
        if not (_is_real(self.eps) and 0 < self.eps < math.inf):
            raise GisUsageError(f"eps must be a finite number > 0 (got {self.eps!r}); the "
                                "paper uses 0.4")
        _positive_int("shifting steps", self.steps)
        _positive("shifting lr", self.lr)
        _positive("predictor_lr", self.predictor_lr)
        _check_loop(self.lr_schedule, self.precision)
        check_weights(self.losses, "shifting")
        _check_options(self.loss_options)
        if self.aggregation not in AGGS:
            raise GisUsageError(f"unknown aggregation {self.aggregation!r}; choose one of "
                                f"{', '.join(AGGS)}")
        _positive("temperature", self.temperature)
        _positive_int("top_k", self.top_k)
        if self.normalize not in ("vector", "batch"):
            raise GisUsageError("normalize must be 'vector' or 'batch'")
        if self.parametrization not in ("direct", "scaled"):
            raise GisUsageError("parametrization must be 'direct' or 'scaled'")


#: the seller recipe's loops (issue 17: the same objective in fewer, cheaper steps; chosen by
#: measurement, docs/ENGINE.md "Speed"): shifting ...
SELLER_LOOP = dict(steps=150, lr=0.02, lr_schedule="cosine", precision="auto")
#: ... and the inversion before it (fewer steps cost inversion quality: the paper's 200 stay),
#: started from the 2 of 256 random latents closest to the item (docs/ENGINE.md, "Inversion")
SELLER_INVERT = dict(steps=200, lr=0.01, lr_schedule="constant", precision="auto",
                     init_samples=256)

#: Named recipes, each a set of term weights plus the loop's settings: "paper" follows the
#: article's text, "official-code" the authors' scripts (docs/METHOD.md, "The authors' code"),
#: "seller" adds realism, identity, silhouette and distinct to "paper" (docs/ENGINE.md).
RECIPES: dict[str, dict] = {
    "paper": dict(losses=PAPER_SHIFT_LOSSES),
    "official-code": dict(n=6, eps=0.5,
                          losses={"shift_ce": 0.1, "shift_mae": 1.0, "preference": 1.0},
                          normalize="batch", parametrization="scaled", permute=True),
    "seller": dict(losses=SELLER_SHIFT_LOSSES, loss_options=SELLER_SHIFT_OPTIONS,
                   **SELLER_LOOP, invert=SELLER_INVERT),
}


def shift_settings(recipe: str = "paper", **overrides) -> ShiftSettings:
    """Settings of ``recipe`` with ``overrides`` (None values are ignored) applied on top.

    ``losses`` is merged into the recipe's weights: a new name joins, weight 0 drops a term.
    """
    if recipe not in RECIPES:
        raise GisUsageError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    values = dict(RECIPES[recipe])
    values.pop("invert", None)  # the recipe's inversion: invert_settings(recipe)
    overrides = {k: v for k, v in overrides.items() if v is not None}
    losses = merge_weights(values.pop("losses"), overrides.pop("losses", None))
    options = {k: dict(v) for k, v in values.pop("loss_options", {}).items()}
    for name, opts in (overrides.pop("loss_options", None) or {}).items():
        options[name] = {**options.get(name, {}), **opts} if isinstance(opts, dict) else opts
    values.update(overrides)
    values["loss_options"] = options
    _check_known(ShiftSettings, values, "shift")
    s = ShiftSettings(recipe=recipe, losses=losses, **values)
    s.validate()
    return s


def invert_settings(recipe: str = "paper", **overrides) -> InvertSettings:
    """The inversion settings of ``recipe`` (the paper's, with the recipe's ``invert`` entry on
    top) with ``overrides`` (None values are ignored) applied; ``losses`` is merged into the
    paper's weights as in ``shift_settings``."""
    if recipe not in RECIPES:
        raise GisUsageError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    overrides = {**RECIPES[recipe].get("invert", {}),
                 **{k: v for k, v in overrides.items() if v is not None}}
    losses = merge_weights(PAPER_INVERT_LOSSES, overrides.pop("losses", None))
    _check_known(InvertSettings, overrides, "inversion")
    s = InvertSettings(losses=losses, **overrides)
    s.validate()
    return s


def _check_known(cls, values: dict, what: str) -> None:
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise GisUsageError(f"unknown {what} setting(s): {', '.join(sorted(unknown))}")


def _check_options(options) -> None:
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise GisUsageError("loss_options must map loss names to dicts of factory options, "
                            "e.g. {'lpips': {'net': 'vgg'}}")


def _check_loop(schedule: str, precision: str) -> None:
    if schedule not in LR_SCHEDULES:
        raise GisUsageError(f"unknown lr_schedule {schedule!r}; choose one of "
                            f"{', '.join(LR_SCHEDULES)}")
    if precision not in PRECISIONS:
        raise GisUsageError(f"unknown precision {precision!r}; choose one of "
                            f"{', '.join(PRECISIONS)}")


def _positive(name: str, value: float) -> None:
    if not (_is_real(value) and 0 < value < math.inf):
        raise GisUsageError(f"{name} must be a finite number > 0 (got {value!r})")


def _is_real(value) -> bool:
    """Whether ``value`` is a real number (not a bool)."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _is_int(value) -> bool:
    """Whether ``value`` is an integer (Python's or numpy's; a bool is not, though Python
    counts it as one)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _positive_int(name: str, value: int) -> None:
    if not _is_int(value) or value <= 0:
        raise GisUsageError(f"{name} must be a positive integer (got {value!r})")


def _check_seed(name: str, value) -> None:
    if not _is_int(value):
        raise GisUsageError(f"{name} must be an integer (got {value!r})")
