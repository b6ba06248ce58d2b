"""AUC of held-out items, as DVBPR reports it, and a popularity baseline.

Per user u with held-out item i: AUC_u = fraction of negatives j with s(u, i) > s(u, j) (ties
count one half), where negatives are items u never interacted with (train, validation and test
items excluded). Reported: the mean over users with a held-out item, against 100 sampled
negatives per user (Kang et al.) and against all negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

ScoreFn = Callable[[torch.Tensor], torch.Tensor]  # user rows (B,) long -> scores (B, N)


def auc_from_scores(pos: torch.Tensor, neg: torch.Tensor,
                    valid: torch.Tensor | None = None) -> torch.Tensor:
    """Per-row AUC: pos (B,), neg (B, n), valid (B, n) bool (False: not a negative) -> (B,)."""
    gt = (pos[:, None] > neg).to(torch.float64)
    eq = (pos[:, None] == neg).to(torch.float64)
    hit = gt + 0.5 * eq
    if valid is None:
        return hit.mean(1)
    v = valid.to(torch.float64)
    return (hit * v).sum(1) / v.sum(1).clamp_min(1)


def user_positives(num_users: int, train: np.ndarray,
                   heldout: Sequence[np.ndarray] = ()) -> list[np.ndarray]:
    """Every known positive item of each user: training items plus held-out ones (-1 ignored)."""
    rows = [train[:, 0]]
    cols = [train[:, 1]]
    for h in heldout:
        keep = h >= 0
        rows.append(np.nonzero(keep)[0])
        cols.append(h[keep])
    r = np.concatenate(rows).astype(np.int64)
    c = np.concatenate(cols).astype(np.int64)
    order = np.lexsort((c, r))
    r, c = r[order], c[order]
    bounds = np.searchsorted(r, np.arange(num_users + 1))
    return [np.unique(c[bounds[u]:bounds[u + 1]]) for u in range(num_users)]


def _positive_keys(positives: list[np.ndarray], num_items: int) -> np.ndarray:
    keys = [u * num_items + p for u, p in enumerate(positives) if len(p)]
    return np.sort(np.concatenate(keys)) if keys else np.zeros(0, np.int64)


def sample_negatives(users: np.ndarray, positives: list[np.ndarray], num_items: int, n: int,
                     rng: np.random.Generator) -> np.ndarray:
    """(len(users), n) item indices drawn uniformly (with replacement) among each user's
    non-positive items."""
    users = np.asarray(users, dtype=np.int64)
    keys = _positive_keys(positives, num_items)
    out = rng.integers(0, num_items, size=(len(users), n), dtype=np.int64)
    for _ in range(1000):
        bad = np.isin(users[:, None] * num_items + out, keys)
        if not bad.any():
            return out
        out[bad] = rng.integers(0, num_items, size=int(bad.sum()), dtype=np.int64)
    raise RuntimeError("could not sample negatives: some users interacted with almost every item")


class AUCEvaluator:
    """Fixed evaluation protocol for one split: the users with a held-out item, their sampled
    negatives (drawn once, from ``seed``) and their positives to exclude."""

    def __init__(self, heldout: np.ndarray, positives: list[np.ndarray], num_items: int, *,
                 num_negatives: int = 100, seed: int = 0):
        heldout = np.asarray(heldout, dtype=np.int64)
        self.users = np.nonzero(heldout >= 0)[0]
        self.items = heldout[self.users]
        self.positives = positives
        self.num_items = num_items
        rng = np.random.default_rng(seed)
        self.negatives = sample_negatives(self.users, positives, num_items, num_negatives, rng)

    def __call__(self, score_fn: ScoreFn, *, full: bool = True, chunk: int = 256,
                 device: torch.device | str = "cpu") -> dict[str, float]:
        """``{"auc": sampled-negatives AUC, "auc_all": all-negatives AUC, "users": n}``."""
        if len(self.users) == 0:
            return {"auc": float("nan"), "auc_all": float("nan"), "users": 0}
        sampled, full_auc = [], []
        for s in range(0, len(self.users), chunk):
            users = self.users[s:s + chunk]
            rows = torch.as_tensor(users, device=device)
            scores = score_fn(rows).double()                            # (B, N)
            pos_items = torch.as_tensor(self.items[s:s + chunk], device=scores.device)
            pos = scores.gather(1, pos_items[:, None])[:, 0]            # (B,)
            neg_idx = torch.as_tensor(self.negatives[s:s + chunk], device=scores.device)
            sampled.append(auc_from_scores(pos, scores.gather(1, neg_idx)))
            if full:
                valid = torch.ones_like(scores, dtype=torch.bool)
                r = np.concatenate([np.full(len(self.positives[u]), b)
                                    for b, u in enumerate(users)])
                c = np.concatenate([self.positives[u] for u in users])
                valid[torch.as_tensor(r, device=scores.device),
                      torch.as_tensor(c, device=scores.device)] = False
                full_auc.append(auc_from_scores(pos, scores, valid))
        out = {"auc": float(torch.cat(sampled).mean()), "users": int(len(self.users))}
        out["auc_all"] = float(torch.cat(full_auc).mean()) if full else float("nan")
        return out


def popularity_scores(train: np.ndarray, num_items: int) -> torch.Tensor:
    """Training-interaction counts per item, (N,) float: the non-personalised baseline."""
    return torch.as_tensor(np.bincount(train[:, 1], minlength=num_items), dtype=torch.float32)


def popularity_auc(evaluator: AUCEvaluator, train: np.ndarray) -> dict[str, float]:
    pop = popularity_scores(train, evaluator.num_items)
    return evaluator(lambda rows: pop[None].expand(len(rows), -1))
