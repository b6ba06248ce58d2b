"""Pure-PyTorch references of the gis operators: the test oracle and the fallback.

They follow the definitions literally (whole B x U score matrix, autograd for gradients), so
they are easy to check by eye; the compiled kernels in gis._C compute the same values in
bounded memory. Shapes: z (1, d) or (n, d); k (n, d); phi (B, K); users (U, K);
thresholds (U,); catalogue_sorted (U, N).
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "AGGS",
    "MODES",
    "STD_FLOOR",
    "clip_shift_normalize",
    "preference_rank",
    "preference_score",
]

#: normalise(v) = (v - mean v) / max(std v, STD_FLOOR), std with Bessel's correction (N - 1).
STD_FLOOR = 1e-8
#: clip_shift_normalize modes -> the integer code of the compiled op.
MODES = {"vector": 0, "batch": 1}
#: preference aggregates -> the integer code of the compiled op.
AGGS = {"mean": 0, "min": 1, "softmin": 2, "coverage": 3}


def clip_shift_normalize(
    z: torch.Tensor, k: torch.Tensor, eps: float, mode: str = "vector"
) -> torch.Tensor:
    """normalise(z + clamp(k, -eps, eps)) -> (n, d).

    The clamp compares in k's dtype (eps rounded to it) and is inclusive: entries with
    |k| <= eps pass their gradient, entries beyond it get none. The compiled kernels do the same.

    mode "vector": each row to mean 0, std 1; "batch": one mean/std over all n x d entries
    (the authors' code). std uses the N - 1 divisor (torch.std's default; 1 when N == 1) and
    is floored at STD_FLOOR, so a degenerate group (d == 1, constant rows) maps to zeros.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    if eps < 0:
        raise ValueError(f"eps must be >= 0, got {eps}")
    # The bound in k's dtype: a shift already clamped in place to +-eps in float32 holds
    # float32(eps), which a comparison with the Python (double) eps would call saturated.
    # The clamp is inclusive (torch.clamp's backward passes the gradient at the bound), so a
    # coordinate sitting on the bound keeps its gradient and can move back inside.
    # (torch.clamp with tensor bounds would split the gradient with the bound at a tie.)
    bound = torch.tensor(eps, dtype=k.dtype, device=k.device)
    inside = (k >= -bound) & (k <= bound)
    x = z + torch.where(inside, k, k.detach().clamp(-eps, eps))
    dims = (-1,) if mode == "vector" else tuple(range(x.dim()))
    n = math.prod(x.shape[d] for d in dims)
    xc = x - x.mean(dim=dims, keepdim=True)
    var = (xc * xc).sum(dim=dims, keepdim=True) / max(n - 1, 1)
    # Flooring the variance (not the std) keeps sqrt's gradient finite at var == 0.
    return xc / var.clamp_min(STD_FLOOR * STD_FLOOR).sqrt()


def preference_score(
    phi: torch.Tensor,
    users: torch.Tensor,
    agg: str = "mean",
    *,
    temperature: float = 1.0,
    thresholds: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each image's score aggregated over the users -> (B,), phi's dtype.

    s[b, u] = phi[b] . users[u] (users upcast to phi's dtype; no gradient reaches them), then
      mean      mean_u s
      min       min_u s                           (sub-gradient: the minimising user)
      softmin   -T log mean_u exp(-s / T)         (-> mean as T -> inf, -> min as T -> 0)
      coverage  mean_u sigmoid((s - tau_u) / T)   (a smooth share of users whose top-K the
                                                   image enters; tau_u = thresholds[u])
    """
    if agg not in AGGS:
        raise ValueError(f"agg must be one of {sorted(AGGS)}, got {agg!r}")
    s = phi @ users.detach().to(phi.dtype).T  # (B, U)
    if agg == "mean":
        return s.mean(dim=1)
    if agg == "min":
        return s.min(dim=1).values
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"{agg} needs a finite temperature > 0, got {temperature}")
    if agg == "softmin":
        u = s.shape[1]
        return -temperature * (torch.logsumexp(-s / temperature, dim=1) - math.log(u))
    if thresholds is None:
        raise ValueError("coverage needs per-user thresholds (U,)")
    tau = thresholds.detach().to(phi.dtype)
    return torch.sigmoid((s - tau) / temperature).mean(dim=1)


def preference_rank(
    phi: torch.Tensor, users: torch.Tensor, catalogue_sorted: torch.Tensor
) -> torch.Tensor:
    """rank[b, u] = number of catalogue items user u scores strictly above image b -> (B, U) int64.

    catalogue_sorted (U, N): each user's catalogue scores, sorted ascending. Rank 0 means the
    image would top that user's list; ties count in the image's favour.
    """
    with torch.no_grad():
        s = phi @ users.to(phi.dtype).T  # (B, U)
        n = catalogue_sorted.shape[1]
        # searchsorted(right=True): first position whose score is > s
        pos = torch.searchsorted(catalogue_sorted.contiguous(), s.T.contiguous(), right=True)
        return (n - pos).T.contiguous()
