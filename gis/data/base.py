"""The one dataset structure every reader returns and every trainer/method consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Dataset:
    """Items, users and implicit feedback.

    images:          uint8 array (N, H, W, 3), RGB.
    categories:      int64 array (N,), index into ``category_names``.
    category_names:  list of str.
    user_ids:        list of str, external ids; user u is row u everywhere below.
    train:           int64 array (M, 2) of (user row, item index) training interactions.
    val, test:       int64 arrays (U,) of one held-out item per user (-1 when none).
    item_ids:        list of str, external item ids (default: "0".."N-1").
    attributes:      per-item ground-truth attributes (e.g. {"color": (N,3) float}), optional.
    tastes:          hidden per-user tastes (simulated data only; ground truth), optional.
    meta:            name, source, seed, how it was built.
    """

    images: np.ndarray
    categories: np.ndarray
    category_names: list[str]
    user_ids: list[str]
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    item_ids: list[str] = field(default_factory=list)
    attributes: dict[str, np.ndarray] = field(default_factory=dict)
    tastes: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.item_ids:
            self.item_ids = [str(i) for i in range(len(self.images))]

    @property
    def num_items(self) -> int:
        return len(self.images)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    def image_tensor(self, idx=None, *, value_range=(-1.0, 1.0)) -> torch.Tensor:
        """Images as float (n, 3, H, W) in ``value_range``."""
        arr = self.images if idx is None else self.images[idx]
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
        lo, hi = value_range
        return x * (hi - lo) + lo

    def user_items(self) -> list[np.ndarray]:
        """Training items of each user (list of int arrays)."""
        order = np.argsort(self.train[:, 0], kind="stable")
        tr = self.train[order]
        bounds = np.searchsorted(tr[:, 0], np.arange(self.num_users + 1))
        return [tr[bounds[u]:bounds[u + 1], 1] for u in range(self.num_users)]
