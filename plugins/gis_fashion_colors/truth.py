"""The ground truth of fashion-colors, behind gis's ``GroundTruth`` interface.

True utility: the simulated users' hidden tastes (``simulation.true_utility``), the colour of
any image measured from its pixels (``simulation.measure_color``) and its category given.
Realism: ``realism.judge`` (speckle, background, garment size; calibrated on real items and
generator samples). Category of images: the domain classifier shipped with this plugin (``classifier``), named in
``dataset.meta["domain_classifier"]`` when the images are at its resolution (32 px).
"""

from __future__ import annotations

import numpy as np
import torch

from gis.interfaces import CategoryClassifier, GroundTruth, RealismVerdict

from .simulation import measure_color, true_utility


class FashionColorsTruth(GroundTruth):
    """Ground truth of a fashion-colors ``Dataset`` (its ``tastes`` and ``attributes``)."""

    def utility(self, images: torch.Tensor, users: np.ndarray, categories: np.ndarray, *,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
        """(U', N) float64: ``true_utility`` of images (N, 3, H, W) in ``value_range`` for user
        rows (U',), colour measured from the pixels, ``categories`` (N,) as given."""
        color = measure_color(images, value_range=value_range)
        rows = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return true_utility(self.dataset.tastes, rows, categories, color)

    def item_utility(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """(U', N) float64 for catalogue items, from their stored category and measured colour
        (``attributes["color_rgb"]``, the same measurement as ``utility`` makes)."""
        ds = self.dataset
        items = np.asarray(items, dtype=np.int64)
        rows = np.atleast_1d(np.asarray(users, dtype=np.int64))
        return true_utility(ds.tastes, rows, ds.categories[items],
                            ds.attributes["color_rgb"][items])

    def realism(self, images: torch.Tensor, *,
                value_range: tuple[float, float] = (-1.0, 1.0)) -> RealismVerdict:
        """Whether images (N, 3, H, W) in ``value_range`` are products of this world: no colour
        speckle, a clean background, a garment-sized shape (``realism.judge``; thresholds and
        their calibration in ``gis_fashion_colors.realism``)."""
        from .realism import judge

        return judge(images, value_range=value_range)

    def category_classifier(self, *, device: str | torch.device = "cpu") -> CategoryClassifier:
        """The dataset's domain classifier (``classifier.load_domain_classifier``); raises
        ``MissingAssetError`` naming ``gis train classifier`` when it is not there."""
        from .classifier import load_domain_classifier

        return load_domain_classifier(self.dataset, device=device)
