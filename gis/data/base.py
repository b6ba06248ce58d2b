"""The one dataset structure every reader returns and every trainer/method consumes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from ..interfaces import GroundTruth


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
    tastes:          hidden per-user tastes (simulated data only), optional; read by the
                     dataset's ground truth, never by methods.
    meta:            name, source, seed, how it was built. Keys gis reads: ``name``,
                     ``path``, ``default_item`` (the item ``gis shift`` modifies when none is
                     named), ``color_names`` (names of ``attributes["color"]``) and
                     ``native_resolution_keys`` (meta keys naming assets made for the native
                     resolution, e.g. a classifier file; ``with_resolution`` drops them).
    ground_truth_factory: ``Dataset -> gis.interfaces.GroundTruth`` when the dataset knows its
                     users' true utility and its images' categories (simulated data), else
                     None; see ``ground_truth``. Not saved by ``save_dataset``.

    Optional held-out items (never in any interaction; real images for FID and inversion
    checks), all aligned with ``heldout_images``:

    heldout_images:      uint8 array (H_n, H, W, 3) or None.
    heldout_categories:  int64 array (H_n,) or None.
    heldout_item_ids:    list of str (default: "heldout-0"...).
    heldout_attributes:  same keys as ``attributes``, for the held-out items.
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
    heldout_images: np.ndarray | None = None
    heldout_categories: np.ndarray | None = None
    heldout_item_ids: list[str] = field(default_factory=list)
    heldout_attributes: dict[str, np.ndarray] = field(default_factory=dict)
    ground_truth_factory: Callable[[Dataset], GroundTruth] | None = None

    def __post_init__(self) -> None:
        if not self.item_ids:
            self.item_ids = [str(i) for i in range(len(self.images))]
        if self.heldout_images is not None and not self.heldout_item_ids:
            self.heldout_item_ids = [f"heldout-{i}" for i in range(len(self.heldout_images))]

    @property
    def num_items(self) -> int:
        return len(self.images)

    @property
    def num_users(self) -> int:
        return len(self.user_ids)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_heldout(self) -> int:
        return 0 if self.heldout_images is None else len(self.heldout_images)

    @property
    def has_ground_truth(self) -> bool:
        """Whether the dataset offers a ``GroundTruth`` (true utility, image categories)."""
        return self.ground_truth_factory is not None

    @property
    def ground_truth(self) -> GroundTruth:
        """The dataset's ``gis.interfaces.GroundTruth``, built once per dataset object.

        Raises ``GisUsageError`` when the dataset offers none (``has_ground_truth``).
        """
        truth = self.__dict__.get("_ground_truth")
        if truth is None:
            if self.ground_truth_factory is None:
                from ..errors import GisUsageError

                raise GisUsageError(
                    f"dataset {self.meta.get('name', '?')!r} offers no ground truth (true "
                    "utility of images, their categories): only datasets whose plugin "
                    "provides one can be evaluated (docs/PLUGINS.md)")
            truth = self.ground_truth_factory(self)
            self.__dict__["_ground_truth"] = truth
        return truth

    def find_item(self, item_id: str) -> tuple[str, int]:
        """(``"catalogue"`` or ``"heldout"``, index) of an external item id, matched as
        ``gis.data.inputs.IdIndex`` matches (Unicode NFC, lost leading zeros, case); a
        catalogue item wins over a held-out one of the same id.

        Raises ``GisUsageError`` naming a few valid ids when it is unknown.
        """
        from .inputs import IdIndex

        cache = self.__dict__.get("_item_lookup")
        if cache is None or cache[0] != (len(self.item_ids), len(self.heldout_item_ids)):
            cache = ((len(self.item_ids), len(self.heldout_item_ids)),
                     IdIndex(self.item_ids, what="item ids"),
                     IdIndex(self.heldout_item_ids, what="held-out item ids"))
            self.__dict__["_item_lookup"] = cache
        _, catalogue, heldout = cache
        for fallback in (False, True):  # an exact match anywhere first
            for where, index in (("catalogue", catalogue), ("heldout", heldout)):
                k = index.get(item_id, fallback=fallback)
                if k is not None:
                    return where, k
        from ..errors import GisUsageError

        examples = ", ".join([*self.item_ids[:2], *self.heldout_item_ids[:2]])
        from .inputs import normalize_id

        skipped = self.meta.get("skipped_image_reasons") or {}
        why = skipped.get(normalize_id(item_id)) if isinstance(skipped, dict) else None
        if why is not None:
            raise GisUsageError(f"item {normalize_id(item_id)!r} is not in dataset "
                                f"{self.meta.get('name', '?')!r}: its image was skipped when "
                                f"the folder was read ({why}): replace the image")
        raise GisUsageError(
            f"unknown item id {str(item_id)!r} in dataset {self.meta.get('name', '?')!r} "
            f"({self.num_items} catalogue + {self.num_heldout} held-out items, "
            f"e.g. {examples})"
        )

    def item_array(self, item_id: str) -> np.ndarray:
        """uint8 (H, W, 3) image of a catalogue or held-out item, by external id."""
        where, idx = self.find_item(item_id)
        return (self.images if where == "catalogue" else self.heldout_images)[idx]

    def item_image(self, item_id: str, *, value_range=(-1.0, 1.0)) -> torch.Tensor:
        """Image of a catalogue or held-out item as float (1, 3, H, W) in ``value_range``
        (the same layout as ``gis.images.load_image``)."""
        arr = self.item_array(item_id)
        x = torch.from_numpy(np.ascontiguousarray(arr[None])).permute(0, 3, 1, 2).float() / 255.0
        lo, hi = value_range
        return x * (hi - lo) + lo

    def heldout_tensor(self, idx=None, *, value_range=(-1.0, 1.0)) -> torch.Tensor:
        """Held-out images as float (n, 3, H, W) in ``value_range``."""
        if self.heldout_images is None:
            from ..errors import GisUsageError

            raise GisUsageError(f"dataset {self.meta.get('name', '?')!r} has no held-out items")
        arr = self.heldout_images if idx is None else self.heldout_images[idx]
        x = torch.from_numpy(np.ascontiguousarray(arr)).permute(0, 3, 1, 2).float() / 255.0
        lo, hi = value_range
        return x * (hi - lo) + lo

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
