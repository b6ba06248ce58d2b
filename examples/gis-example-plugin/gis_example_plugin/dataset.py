"""An example dataset with ground truth: ``example-swatches`` (see docs/PLUGINS.md).

Items are colour swatches: a 10x10 square of one colour on a white 16x16 image. Each item's
colour has one dominant channel, which is its category (``reddish``, ``greenish``,
``bluish``). The five users (``user0`` .. ``user4``, the example recommender's users) have a
hidden taste: a weight per colour channel. Their true utility of any image -- a generated one
included -- is ``taste[u] . mean_rgb(image)`` (mean colour in [0, 1]); each user interacted with
the five catalogue items they like most. The category of any image is read from its pixels by
``DominantChannel``. Everything is generated in memory, deterministically from ``seed``.
"""

from __future__ import annotations

import numpy as np
import torch

from gis.data import Dataset, dvbpr_split
from gis.errors import GisUsageError
from gis.interfaces import GroundTruth

CATEGORY_NAMES = ["reddish", "greenish", "bluish"]
SIZE = 16


def _mean_rgb(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    """Mean colour (N, 3) in [0, 1] of images (N, 3, H, W) in ``value_range``."""
    lo, hi = value_range
    return ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1).mean(dim=(2, 3))


class DominantChannel:
    """Category reader (gis's ``CategoryClassifier``): the dominant colour channel, softly."""

    label = "example DominantChannel"
    num_classes = len(CATEGORY_NAMES)
    category_names = CATEGORY_NAMES

    def predict_proba(self, images: torch.Tensor,
                      value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
        """(N, 3) probabilities: softmax of 20 x the mean colour of images (N, 3, H, W)."""
        return (20.0 * _mean_rgb(images, value_range)).softmax(dim=1)


class SwatchTruth(GroundTruth):
    """Ground truth of ``example-swatches``: users' hidden channel weights, dominant channel."""

    def utility(self, images, users, categories, *, value_range=(-1.0, 1.0)):
        """(U', N) float64: ``tastes["channel"][users] @ mean_rgb(images).T``."""
        rgb = _mean_rgb(images, value_range).double().numpy()
        return self.dataset.tastes["channel"][np.asarray(users, dtype=np.int64)] @ rgb.T

    def category_classifier(self, *, device="cpu"):
        return DominantChannel()


def _swatches(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 images (n, 16, 16, 3), categories (n,)): balanced over the three categories."""
    cats = np.arange(n) % len(CATEGORY_NAMES)
    colours = rng.integers(0, 120, (n, 3))
    colours[np.arange(n), cats] = rng.integers(170, 256, n)
    images = np.full((n, SIZE, SIZE, 3), 255, np.uint8)
    images[:, 3:13, 3:13] = colours[:, None, None, :]
    return images, cats.astype(np.int64)


def load_swatches(*, path=None, trust: bool = False, seed: int = 0, items: int = 24,
                  heldout: int = 12) -> Dataset:
    """The ``example-swatches`` ``Dataset`` (``items`` catalogue and ``heldout`` held-out
    swatches, 5 users), with ground truth (``SwatchTruth``). It has no files: ``path`` must be
    None; ``trust`` is accepted for the uniform factory signature."""
    if path is not None:
        raise GisUsageError("example-swatches is generated in memory; it takes no path")
    if items < 15:
        raise GisUsageError(f"example-swatches needs at least 15 items, got {items}")
    rng = np.random.default_rng(seed)
    images, cats = _swatches(items, rng)
    held_images, held_cats = _swatches(heldout, rng)
    users = [f"user{k}" for k in range(5)]
    tastes = {"channel": rng.normal(size=(len(users), 3))}
    truth = tastes["channel"] @ (images.reshape(items, -1, 3).mean(1) / 255.0).T  # (U, N)
    liked = np.argsort(-truth, axis=1)[:, :5]  # each user's five favourite items
    train, val, test = dvbpr_split(np.repeat(np.arange(len(users)), 5), liked.ravel(),
                                   len(users), seed=seed)
    return Dataset(
        images=images, categories=cats, category_names=list(CATEGORY_NAMES), user_ids=users,
        train=train, val=val, test=test, item_ids=[f"swatch{k:02d}" for k in range(items)],
        tastes=tastes, heldout_images=held_images, heldout_categories=held_cats,
        meta={"name": "example-swatches", "seed": seed, "default_item": "swatch00"},
        ground_truth_factory=SwatchTruth,
    )
