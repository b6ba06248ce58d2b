"""Fused operators of the GIS loop, compiled in gis._C, with pure-PyTorch references.

    clip_shift_normalize(z, k, eps, mode)        normalise(z + clamp(k, -eps, eps))
    preference_score(phi, users, agg, ...)       each image's score aggregated over users
    preference_rank(phi, users, catalogue, ...)  each image's rank in each user's catalogue

Implementation: ``impl="native"`` (gis._C; an error when it is missing), ``"reference"``
(gis.ops.reference) or ``None``: the environment variable ``GIS_OPS`` (``native``,
``reference``, ``auto``) and otherwise native where it is built for the tensors' device, else
the reference after one ``GisOpsWarning``. Nothing is compiled at import time; build with
``pip install --no-build-isolation -e .`` or ``python setup.py build_ext --inplace``.
"""

from __future__ import annotations

import os
import warnings

import torch

from ..errors import GisUsageError
from . import reference
from .reference import AGGS, MODES, STD_FLOOR

__all__ = [
    "AGGS",
    "MODES",
    "STD_FLOOR",
    "GisOpsWarning",
    "NativeOpsUnavailableError",
    "clip_shift_normalize",
    "implementation",
    "native_available",
    "preference_rank",
    "preference_score",
    "reference",
]

IMPLS = ("native", "reference")


class GisOpsWarning(UserWarning):
    """The compiled operators are unavailable; the pure-PyTorch reference is used instead."""


class NativeOpsUnavailableError(GisUsageError):
    """impl="native" (or GIS_OPS=native) was asked for, but gis._C is not built for it."""


_native: bool | None = None  # None: not tried yet
_native_error = ""
_warned = False


_ops = None  # torch.ops.gis once loaded
_with_cuda = False


def _load_native() -> bool:
    global _native, _native_error, _ops, _with_cuda
    if _native is None:
        try:
            from .. import _C  # importing registers torch.ops.gis.*
            from . import _registration  # noqa: F401  (autograd and fake kernels)
        except ImportError as exc:  # not built, or built against another torch
            _native, _native_error = False, f"{type(exc).__name__}: {exc}"
        else:
            _native, _ops, _with_cuda = True, torch.ops.gis, bool(getattr(_C, "WITH_CUDA", 0))
    return _native


def native_available(device: str | torch.device | None = None) -> bool:
    """Whether gis._C is importable and, given a device, has kernels for that device type."""
    if not _load_native():
        return False
    if device is None:
        return True
    kind = torch.device(device).type
    return kind == "cpu" or (kind == "cuda" and _with_cuda)


def _fallback_reason(device: torch.device) -> str:
    if not _load_native():
        return f"gis._C is not importable ({_native_error})"
    return f"gis._C was built without kernels for {device.type} tensors"


def _use_native(impl: str | None, device: torch.device) -> bool:
    """Resolve impl (None -> GIS_OPS -> auto) for tensors on `device`."""
    global _warned
    source = "impl"
    if impl is None:
        impl, source = os.environ.get("GIS_OPS") or "auto", "GIS_OPS"
    if (
        _native
        and impl != "reference"
        and (device.type == "cpu" or (_with_cuda and device.type == "cuda"))
    ):
        if impl in IMPLS or impl == "auto":
            return True  # the common case, decided without further look-ups
    impl = impl.strip().lower()
    if impl not in (*IMPLS, "auto"):
        raise GisUsageError(f"{source} must be 'native', 'reference' or 'auto', got {impl!r}")
    if impl == "reference":
        return False
    if native_available(device):
        return True
    if impl == "native":
        raise NativeOpsUnavailableError(
            f"{source}='native' but {_fallback_reason(device)}; build it with "
            "`pip install --no-build-isolation -e .`"
        )
    if not _warned:
        _warned = True
        warnings.warn(
            f"gis.ops: {_fallback_reason(device)}; using the pure-PyTorch reference "
            "(slower, more memory). Build with `pip install --no-build-isolation -e .`.",
            GisOpsWarning,
            stacklevel=3,
        )
    return False


def implementation(device: str | torch.device = "cpu") -> dict:
    """Which implementation the ops run with ``impl=None`` on tensors on ``device`` (the rule
    every engine call follows: ``GIS_OPS``, else native where built, else the reference), as
    recorded in result.json ``provenance.ops``: ``{"implementation": "native" | "reference",
    "selected_by": "auto" | "GIS_OPS=<value>", "compiled": gis._C importable,
    "compiled_cuda": built with CUDA kernels, "fallback_reason": why not native (None when
    native)}``. Raises GisUsageError for a bad ``GIS_OPS`` and NativeOpsUnavailableError for
    ``GIS_OPS=native`` without gis._C, as the ops themselves do."""
    dev = torch.device(device)
    env = os.environ.get("GIS_OPS")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GisOpsWarning)  # the run itself already warned
        native = _use_native(None, dev)
    return {"implementation": "native" if native else "reference",
            "selected_by": f"GIS_OPS={env}" if env else "auto",
            "compiled": _load_native(), "compiled_cuda": bool(_native and _with_cuda),
            "fallback_reason": None if native else (
                f"GIS_OPS={env}" if (env or "").strip().lower() == "reference"
                else _fallback_reason(dev))}


def clip_shift_normalize(
    z: torch.Tensor, k: torch.Tensor, eps: float, mode: str = "vector", *, impl: str | None = None
) -> torch.Tensor:
    """normalise(z + clamp(k, -eps, eps)) -> (n, d), differentiable in z and k.

    z: (d,), (1, d) (broadcast over the rows of k) or (n, d); k: (n, d); float32/float64.
    mode "vector": each row to mean 0, std 1; "batch": one mean/std over the whole n x d
    batch (the authors' code). std: N - 1 divisor, floored at STD_FLOOR (see reference).
    The gradient of k is zero where the clamp saturates (|k| > eps).
    """
    if mode not in MODES:
        raise GisUsageError(f"mode must be 'vector' or 'batch', got {mode!r}")
    if not eps >= 0:
        raise GisUsageError(f"eps must be >= 0, got {eps}")
    if z.dim() == 1:
        z = z.unsqueeze(0)
    if not _use_native(impl, k.device):
        return reference.clip_shift_normalize(z, k, eps, mode)
    return _ops.clip_shift_normalize.default(z, k, float(eps), MODES[mode])


def _check_pref(agg: str, temperature: float, thresholds: torch.Tensor | None, tile: int | None):
    if agg not in AGGS:
        raise GisUsageError(f"agg must be one of {', '.join(AGGS)}, got {agg!r}")
    if agg in ("softmin", "coverage") and not (0 < temperature < float("inf")):
        raise GisUsageError(f"{agg} needs a finite temperature > 0, got {temperature}")
    if agg == "coverage" and thresholds is None:
        raise GisUsageError("coverage needs per-user thresholds (U,)")
    if tile is not None and tile < 1:
        raise GisUsageError(f"tile must be >= 1 (or None for the default), got {tile}")


def preference_score(
    phi: torch.Tensor,
    users: torch.Tensor,
    agg: str = "mean",
    *,
    temperature: float = 1.0,
    thresholds: torch.Tensor | None = None,
    tile: int | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Each image's score theta_u . phi_b aggregated over the users u -> (B,), phi's dtype.

    phi: (B, K) float32/float64 image embeddings (differentiable); users: (U, K) user vectors
    (no gradient) in phi's dtype or a narrower float (bfloat16/float16 are upcast tile by
    tile; float64 users with float32 phi are cast to float32 first, as the reference does);
    agg: "mean", "min", "softmin" (-T log mean_u exp(-s_u/T): min as T -> 0, mean as
    T -> inf) or "coverage" (mean_u sigmoid((s_u - thresholds_u) / T), thresholds (U,) = each
    user's K-th best catalogue score). The native kernels stream the users `tile` at a time
    (None: a per-backend default) and never hold the B x U score matrix; with a gradient
    wanted they return score and d score / d phi from one pass over the users.
    """
    _check_pref(agg, temperature, thresholds, tile)
    if users.dtype == torch.float64 and phi.dtype != torch.float64:
        users = users.to(phi.dtype)  # what the reference computes with, too
    if not _use_native(impl, phi.device):
        return reference.preference_score(
            phi, users, agg, temperature=temperature, thresholds=thresholds
        )
    args = (phi, users, AGGS[agg], float(temperature), thresholds, int(tile or 0))
    if torch.is_grad_enabled() and phi.requires_grad:
        return _ops.preference_score_with_grad.default(*args)[0]
    return _ops.preference_score.default(*args)


def preference_rank(
    phi: torch.Tensor,
    users: torch.Tensor,
    catalogue_scores: torch.Tensor,
    *,
    presorted: bool = False,
    tile: int | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """rank[b, u] = how many catalogue items user u scores strictly above image b -> (B, U) int64.

    catalogue_scores: (U, N) each user's scores of the N catalogue items (compared in phi's
    dtype); sorted ascending along N when presorted=True (otherwise sorted here). Rank 0:
    the image would top user u's list; ties count in the image's favour.
    """
    _check_pref("mean", 1.0, None, tile)
    catalogue_scores = catalogue_scores.to(phi.dtype)
    if not presorted:
        catalogue_scores = catalogue_scores.sort(dim=1).values
    if not _use_native(impl, phi.device):
        return reference.preference_rank(phi, users, catalogue_scores)
    return _ops.preference_rank.default(phi, users, catalogue_scores, int(tile or 0))
