"""The inversion and shifting objectives as weighted sums of registered loss terms.

A run names its terms and their weights (``InvertSettings.losses``, ``ShiftSettings.losses``,
``--loss NAME=WEIGHT``); each name is a loss of the registry (``register_losses``), built with
its options (``loss_options``) and called with a ``gis.interfaces.LossContext`` at every step
(docs/ENGINE.md, "Loss terms").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch

from ..errors import GisUsageError, PluginContractError
from ..interfaces import LOSS_STAGES, LossContext, LossTerm
from .common import check_finite

#: how error messages name each stage
STAGE_NAMES = {"invert": "inversion", "shift": "shifting"}


def parse_loss_weights(values: Iterable[str], option: str = "--loss") -> dict[str, float]:
    """``["NAME=WEIGHT", ...]`` (the CLI's repeatable ``--loss``) -> {name: weight}.

    Raises GisUsageError for an entry without ``=``, an empty name, or a weight that is not a
    finite number >= 0. Names are checked later, against the registry (``check_weights``).
    """
    out: dict[str, float] = {}
    for text in values:
        name, sep, weight = str(text).partition("=")
        name = name.strip()
        try:
            w = float(weight)
        except ValueError:
            w = math.nan
        if not sep or not name or not (math.isfinite(w) and w >= 0):
            raise GisUsageError(f"{option} takes NAME=WEIGHT with a number WEIGHT >= 0 (0 "
                                f"switches the term off), got {text!r}")
        out[name] = w
    return out


def parse_loss_options(values: Iterable[str], option: str = "--loss-option") -> dict[str, dict]:
    """``["distinct.reduction=nearest", ...]`` (the CLI's repeatable ``--loss-option``) ->
    ``{"distinct": {"reduction": "nearest"}}``; VALUE read as a JSON scalar, else kept as text
    (``gis.cli_options.parse_key_values``).

    Raises GisUsageError for an entry that is not NAME.KEY=VALUE or a key given twice. Names
    and keys are checked later: a name must be a term of the objective, a key an option its
    factory takes."""
    from ..cli_options import parse_key_values

    out: dict[str, dict] = {}
    for text in values:
        name, dot, rest = str(text).partition(".")
        name = name.strip()
        if not dot or not name or "=" in name:
            raise GisUsageError(f"{option} takes NAME.KEY=VALUE (e.g. distinct.reduction="
                                f"nearest), got {text!r}")
        given = parse_key_values([rest], f"{option} {name}.")
        if set(given) & set(out.get(name, {})):
            raise GisUsageError(f"{option} {name}.{next(iter(given))} given twice")
        out.setdefault(name, {}).update(given)
    return out


def merge_weights(base: Mapping[str, float], changes: Mapping[str, float] | None) -> dict:
    """``base`` with ``changes`` applied: new names join at the end, weight 0 drops a term.

    Raises UnknownLossError (a GisUsageError) for a name in ``changes`` that is neither in
    ``base`` nor registered, whatever its weight.
    """
    if changes is not None and not isinstance(changes, Mapping):
        raise GisUsageError(f"losses must map loss names to weights, e.g. {{'identity': 0.3}} "
                            f"(got {type(changes).__name__})")
    from .. import plugins

    for name in changes or {}:
        if name not in base:
            plugins.losses.get(name)  # a misspelt name fails, even with weight 0 (UnknownLossError)
    merged = {**base, **(changes or {})}
    return {k: float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v
            for k, v in merged.items() if v != 0}  # other values fail check_weights


def check_weights(weights: Mapping[str, float], what: str) -> None:
    """Every name a registered loss, every weight a finite number >= 0 (GisUsageError)."""
    from .. import plugins

    if not isinstance(weights, Mapping):
        raise GisUsageError(f"{what} losses must map loss names to weights, e.g. "
                            f"{{'mse': 1.0}} (got {type(weights).__name__})")
    for name, w in weights.items():
        if isinstance(w, bool) or not isinstance(w, numbers.Real) or not math.isfinite(w) \
                or w < 0:
            raise GisUsageError(f"the weight of loss {name!r} must be a number >= 0 (0 switches "
                                f"the term off), got {w!r}")
        plugins.losses.get(name)  # UnknownLossError (a GisUsageError) naming the choices


@dataclass
class Term:
    """One selected term: the name it was selected by, its history key, weight and module."""

    name: str
    key: str
    weight: float
    module: LossTerm


class Objective:
    """L = sum_i w_i v_i over the selected terms, in the order they were given, where v_i is
    the term's value (minus it for a ``maximise`` term).

    Calling it with a ``LossContext`` returns ``(total, values)``: for inversion, per start
    (B,) tensors (a scalar value is broadcast to every start); for shifting, scalars (a
    per-variant value is averaged over the variants). ``values`` maps each term's history key
    to its unweighted value. A non-finite value raises NonFiniteLossError naming the term.
    """

    def __init__(self, stage: str, terms: list[Term]):
        if stage not in LOSS_STAGES:
            raise GisUsageError(f"unknown stage {stage!r}; choose one of {LOSS_STAGES}")
        self.stage, self.terms = stage, terms

    @classmethod
    def build(cls, stage: str, weights: Mapping[str, float],
              options: Mapping[str, Mapping] | None = None, *,
              prebuilt: Mapping[str, LossTerm] | None = None,
              device: torch.device | str | None = None, generator=None,
              recommender=None) -> Objective:
        """Build the terms of weight > 0 from the registry (``get_loss(name, **options)``),
        or take them from ``prebuilt`` (by name), and check that each can join ``stage`` and,
        given the run's ``generator`` (and ``recommender``), work with them
        (``LossTerm.check_models``).

        Raises UnknownLossError for an unregistered name, PluginContractError when a factory
        returns something other than a ``LossTerm``, GisUsageError when a term cannot join
        ``stage``, cannot work with the models, or two terms share a history key."""
        from .. import plugins

        terms: list[Term] = []
        for name, weight in weights.items():
            if weight == 0:
                continue
            module = (prebuilt or {}).get(name)
            if module is None:
                # a factory may draw from the global RNG (e.g. torchvision layers it then
                # overwrites with weights): the caller's RNG state is left as it was
                with torch.random.fork_rng(devices=[]):
                    module = plugins.get_loss(name, **dict((options or {}).get(name) or {}))
            check_term(module, name, stage)
            if generator is not None:
                module.check_models(generator, recommender)
            if device is not None:
                module = module.to(device)
            key = module.key or (plugins.losses.get(name).name if name in plugins.losses
                                 else name)  # an alias records under the registered name
            clash = [t.name for t in terms if t.key == key]
            if clash:
                raise GisUsageError(f"losses {clash[0]!r} and {name!r} both record as {key!r}: "
                                    "select only one of them")
            terms.append(Term(name, key, float(weight), module))
        return cls(stage, terms)

    @property
    def modules(self) -> list[LossTerm]:
        return [t.module for t in self.terms]

    def __call__(self, ctx: LossContext) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        batch = ctx.images.shape[0]
        total: torch.Tensor | None = None
        values: dict[str, torch.Tensor] = {}
        for t in self.terms:
            v = t.module(ctx)
            if not isinstance(v, torch.Tensor) or v.shape not in ((), (batch,)):
                got = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
                raise PluginContractError(
                    f"loss {t.name!r} ({_origin(t)}) returned {got}: a loss term returns a "
                    f"scalar tensor or one value per sample, shape ({batch},)")
            if self.stage == "invert":
                v = v.expand(batch) if v.ndim == 0 else v
            else:
                v = v.mean() if v.ndim == 1 else v
            values[t.key] = v
            part = t.weight * v
            if total is None:
                total = -part if t.module.maximise else part
            else:
                total = total - part if t.module.maximise else total + part
        check_finite({t.name: values[t.key] for t in self.terms}, STAGE_NAMES[self.stage],
                     origin=_origin_of)
        if total is None:  # every term switched off: nothing to optimise
            total = torch.zeros((batch,) if self.stage == "invert" else (),
                                device=ctx.images.device)
        return total, values


def check_term(module, name: str, stage: str) -> None:
    """What the engine needs of a term built for ``stage``: a ``gis.interfaces.LossTerm`` whose
    ``stages`` include it."""
    if not isinstance(module, LossTerm):
        raise PluginContractError(
            f"loss {name!r} ({_origin_of(name)}) built a {type(module).__name__}, not a "
            "gis.interfaces.LossTerm (docs/PLUGINS.md, Losses)")
    if stage not in module.stages:
        raise GisUsageError(
            f"loss {name!r} cannot join the {STAGE_NAMES[stage]} objective: it is made for "
            f"{', '.join(STAGE_NAMES.get(s, s) for s in module.stages) or 'no stage'}")


def _origin(term: Term) -> str:
    return f"{type(term.module).__module__}.{type(term.module).__name__}"


def _origin_of(name: str) -> str:
    from .. import plugins

    try:
        return f"plugin {plugins.losses.get(name).plugin!r}"
    except GisUsageError:
        return "given directly"
