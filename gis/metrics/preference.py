"""Preference metrics of a set of variants, with their exact definitions.

Scores are the recommender's ``theta_u . phi(image)`` aggregated over the target users (the
paper's mean unless stated). Ranks are catalogue ranks, 1 = the user's favourite item:
``rank = 1 + #(catalogue items the user scores strictly higher)``.

- ``top_k_mean``: the paper's "top-3": mean of the k highest variant scores of one run.
- ``preference_shift``: ``top_k_mean - reference``. The authors take the *inverted base*
  G(z*) (or the random G(z)) as the reference; a seller cares about the *real item*. Both are
  reported by the evaluation, labelled.
- ``rank_improvement``: per target user, the reference's rank minus the rank of the user's
  best variant (positive = the user would now see it higher in their ranking).
- ``coverage``: share of target users whose top-K of the catalogue the image enters
  (rank <= K).
"""

from __future__ import annotations

import numpy as np
import torch


def _array(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def top_k_mean(scores, k: int = 3):
    """Mean of the ``k`` largest scores along the last axis: (n,) -> float, (T, n) -> (T,).

    With fewer than ``k`` scores the mean of all of them is returned.
    """
    s = _array(scores)
    if s.shape[-1] == 0:
        raise ValueError("top_k_mean of an empty set of scores")
    if k < 1:
        raise ValueError(f"k must be >= 1 (got {k})")
    best = np.sort(s, axis=-1)[..., -min(k, s.shape[-1]):]
    out = best.mean(axis=-1)
    return float(out) if out.ndim == 0 else out


def preference_shift(scores, reference, k: int = 3):
    """``top_k_mean(scores, k) - reference``; ``reference`` a float or one per row."""
    return top_k_mean(scores, k) - (_array(reference) if np.ndim(reference) else
                                    float(reference))


def rank_improvement(reference_ranks, variant_ranks) -> dict:
    """How far each target user's best variant climbs their catalogue ranking.

    reference_ranks: (U,) ranks of the item (or base); variant_ranks: (n, U).
    Returns ``per_user`` (U,) reference rank - best variant rank, its ``median`` and ``mean``,
    ``share_improved`` (best variant strictly higher), and the median ranks of both.
    """
    ref = _array(reference_ranks)
    var = _array(variant_ranks)
    if var.ndim == 1:
        var = var[None]
    if var.shape[1] != ref.shape[0]:
        raise ValueError(f"{var.shape[1]} users in variant_ranks, {ref.shape[0]} in reference")
    best = var.min(axis=0)
    gain = ref - best
    return {"per_user": gain, "median": float(np.median(gain)), "mean": float(gain.mean()),
            "share_improved": float((gain > 0).mean()),
            "median_reference_rank": float(np.median(ref)),
            "median_best_variant_rank": float(np.median(best))}


def coverage(ranks, top_k: int):
    """Share of users whose top-``top_k`` the image enters: ranks (U,) -> float, (n, U) -> (n,)."""
    r = _array(ranks)
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1 (got {top_k})")
    out = (r <= top_k).mean(axis=-1)
    return float(out) if out.ndim == 0 else out
