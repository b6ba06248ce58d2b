"""DVBPR-style splits, activity statistics and the sampled-AUC protocol."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..errors import GisUsageError
from .base import Dataset

#: users need this many interactions to get a validation and a test item
MIN_INTERACTIONS_FOR_SPLIT = 3


def dvbpr_split(users: np.ndarray, items: np.ndarray, num_users: int, *, seed: int = 0,
                timestamps: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split implicit feedback as DVBPR does: per user one validation and one test item.

    ``users``/``items``: int arrays (M,) of user rows and item indices (duplicates are
    dropped). Users with at least 3 distinct items give one item to validation and one to
    test, chosen at random (``seed``), or the two most recent when ``timestamps`` is given
    (test = latest); users with fewer stay train-only with val = test = -1.

    Returns ``train`` (M', 2) int64 sorted by user, ``val`` (U,), ``test`` (U,).
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    if users.shape != items.shape or users.ndim != 1:
        raise GisUsageError("users and items must be 1-d arrays of the same length")
    if len(users) and (users.min() < 0 or users.max() >= num_users):
        raise GisUsageError(f"user rows must lie in [0, {num_users})")
    ts = None if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    # deduplicate (user, item), keeping the latest timestamp
    order = np.lexsort((ts if ts is not None else np.zeros(len(users)), items, users))
    u, i = users[order], items[order]
    t = ts[order] if ts is not None else None
    last = np.ones(len(u), dtype=bool)
    if len(u) > 1:
        last[:-1] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    u, i = u[last], i[last]
    t = t[last] if t is not None else None

    rng = np.random.default_rng(seed)
    val = np.full(num_users, -1, dtype=np.int64)
    test = np.full(num_users, -1, dtype=np.int64)
    keep = np.ones(len(u), dtype=bool)
    bounds = np.searchsorted(u, np.arange(num_users + 1))
    for row in range(num_users):
        a, b = bounds[row], bounds[row + 1]
        if b - a < MIN_INTERACTIONS_FOR_SPLIT:
            continue
        if t is None:
            pick = a + rng.choice(b - a, size=2, replace=False)
        else:
            recent = a + np.argsort(t[a:b], kind="stable")
            pick = np.array([recent[-1], recent[-2]])
        test[row], val[row] = i[pick[0]], i[pick[1]]
        keep[pick] = False
    train = np.stack([u[keep], i[keep]], axis=1) if len(u) else np.zeros((0, 2), np.int64)
    return train.astype(np.int64), val, test


def activity(ds: Dataset) -> np.ndarray:
    """Number of interactions (train + val + test) of each user, (U,) int64."""
    counts = np.bincount(ds.train[:, 0], minlength=ds.num_users).astype(np.int64)
    return counts + (ds.val >= 0) + (ds.test >= 0)


def item_popularity(ds: Dataset) -> np.ndarray:
    """Number of training interactions of each catalogue item, (N,) int64."""
    return np.bincount(ds.train[:, 1], minlength=ds.num_items).astype(np.int64)


def sample_negatives(ds: Dataset, *, num_negatives: int = 100, seed: int = 0,
                     split: str = "test") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every user with a ``split`` item: (user rows (E,), positives (E,), negatives
    (E, num_negatives)). Negatives are drawn uniformly, with replacement, among the items the
    user never interacted with (train, val or test), as in DVBPR's evaluation."""
    target = {"test": ds.test, "val": ds.val}.get(split)
    if target is None:
        raise GisUsageError(f"split must be 'test' or 'val', got {split!r}")
    rows = np.flatnonzero(target >= 0)
    rng = np.random.default_rng(seed)
    seen = ds.user_items()
    negs = np.empty((len(rows), num_negatives), dtype=np.int64)
    for k, r in enumerate(rows):
        own = set(seen[r].tolist())
        own.update(int(x) for x in (ds.val[r], ds.test[r]) if x >= 0)
        if len(own) >= ds.num_items:
            raise GisUsageError(f"user {ds.user_ids[r]} interacted with every item")
        cand = rng.integers(0, ds.num_items, size=num_negatives * 2 + 8)
        cand = cand[~np.isin(cand, list(own))]
        while len(cand) < num_negatives:
            more = rng.integers(0, ds.num_items, size=num_negatives * 4)
            cand = np.concatenate([cand, more[~np.isin(more, list(own))]])
        negs[k] = cand[:num_negatives]
    return rows, target[rows], negs


def sampled_auc(ds: Dataset, score: Callable[[np.ndarray, np.ndarray], np.ndarray], *,
                num_negatives: int = 100, seed: int = 0, split: str = "test") -> float:
    """Mean per-user AUC of ``score`` ranking each user's held-out item above
    ``num_negatives`` sampled non-interacted items (ties count one half).

    ``score(user_rows (E,), items (E, 1 + num_negatives)) -> (E, 1 + num_negatives)``, column 0
    being the held-out item.
    """
    rows, pos, negs = sample_negatives(ds, num_negatives=num_negatives, seed=seed, split=split)
    if len(rows) == 0:
        raise GisUsageError(f"no user has a {split} item")
    items = np.concatenate([pos[:, None], negs], axis=1)
    s = np.asarray(score(rows, items), dtype=np.float64)
    p = s[:, :1]
    auc = ((p > s[:, 1:]).sum(1) + 0.5 * (p == s[:, 1:]).sum(1)) / num_negatives
    return float(auc.mean())


def popularity_auc(ds: Dataset, **kwargs) -> float:
    """Sampled AUC of the non-personalised, non-visual baseline: training popularity."""
    pop = item_popularity(ds).astype(np.float64)
    return sampled_auc(ds, lambda rows, items: pop[items], **kwargs)


def oracle_auc(ds: Dataset, **kwargs) -> float:
    """Sampled AUC of the ground-truth utility itself (``ds.ground_truth.item_utility``): the
    ceiling a recommender could reach. Raises ``GisUsageError`` when ``ds`` has no ground
    truth (``ds.has_ground_truth``)."""
    truth = ds.ground_truth

    def score(rows, items):
        out = np.empty(items.shape)
        for k, (r, it) in enumerate(zip(rows, items, strict=True)):
            out[k] = truth.item_utility(np.array([int(r)]), it)[0]
        return out

    return sampled_auc(ds, score, **kwargs)
