"""Which catalogue category an image's shape belongs to: a k-nearest-neighbour vote of silhouettes.

The variants' category check (gis.engine.checks) asks whether a variant is still the kind of
product the item is (a sandal stays a sandal), without the evaluation's domain classifier,
which stays an independent judge. It reads the catalogue instead: the categories the seller's
catalogue already records, and the silhouettes of its products. An image's category vote is
the share of each category among the ``k`` catalogue products whose soft foreground masks
(``gis.metrics.silhouette.foreground_mask``, at 32 x 32) are nearest in L2: a k-NN
classifier (Cover & Hart, IEEE Trans. Inf. Theory 1967) on shape alone, so a recolouring keeps
its vote. In fashion-colors, where colours are drawn independently of the category, the
vote of a held-out real product is its category in 83 % of cases with k = 5 (2,000 held-out
items; the same vote on the LPIPS AlexNet features of the colour image: 74 %), the usual
confusions of Fashion-MNIST (shirt, T-shirt, pullover, coat) included (docs/ENGINE.md,
"Checks").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .silhouette import foreground_mask

#: side at which silhouettes are compared (Fashion-MNIST's 28 px products fit)
SIDE = 32


def shape_features(images01: torch.Tensor) -> torch.Tensor:
    """Flattened soft foreground masks (B, SIDE * SIDE) in [0, 1) of images (B, 3, H, W) in
    [0, 1], resized to SIDE x SIDE (bilinear, antialiased) first."""
    x = images01.float()
    if tuple(x.shape[-2:]) != (SIDE, SIDE):
        x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False,
                          antialias=True).clamp(0, 1)
    return foreground_mask(x).flatten(1)


@dataclass(frozen=True)
class CategoryReference:
    """The catalogue's silhouettes and categories: what ``vote`` compares an image with.

    ``features`` (N, SIDE * SIDE) float16 masks (``shape_features``); ``categories`` (N,) long
    indices into ``names``; ``k`` the number of neighbours that vote (5).
    """

    features: torch.Tensor
    categories: torch.Tensor
    names: tuple[str, ...]
    k: int = 5

    @classmethod
    def from_images(cls, images: torch.Tensor, categories: Sequence[int] | torch.Tensor,
                    names: Sequence[str], *, value_range: tuple[float, float] = (-1.0, 1.0),
                    k: int = 5, batch_size: int = 2048) -> CategoryReference:
        """From catalogue images (N, 3, H, W) with pixels in ``value_range`` and their category
        indices (N,). Raises ValueError when they disagree in length or k is not in 1..N."""
        cats = torch.as_tensor(categories, dtype=torch.long).flatten()
        if len(cats) != len(images):
            raise ValueError(f"{len(images)} catalogue images but {len(cats)} categories")
        lo, hi = value_range
        batches = (((images[s:s + batch_size].float() - lo) / (hi - lo)).clamp(0, 1)
                   for s in range(0, len(images), batch_size))
        return cls._build(batches, cats, names, k)

    @classmethod
    def from_dataset(cls, dataset, k: int = 5, batch_size: int = 1024) -> CategoryReference:
        """From a ``gis.data.Dataset``'s catalogue (its images and stored categories), read
        ``batch_size`` images at a time (the catalogue's pixels are never all in memory)."""
        n = len(dataset.categories)
        batches = (((dataset.image_tensor(list(range(s, min(s + batch_size, n)))) + 1) / 2)
                   .clamp(0, 1) for s in range(0, n, batch_size))
        return cls._build(batches, torch.as_tensor(dataset.categories, dtype=torch.long),
                          dataset.category_names, k)

    @classmethod
    def _build(cls, batches, cats: torch.Tensor, names: Sequence[str],
               k: int) -> CategoryReference:
        """From batches of catalogue images in [0, 1] (read lazily, after k is checked)."""
        if not 1 <= k <= len(cats):
            raise ValueError(f"the category vote needs 1 <= k <= {len(cats)} products, got {k}")
        feats = torch.cat([shape_features(x).half() for x in batches])
        return cls(feats, cats, tuple(names), int(k))

    @torch.no_grad()
    def _neighbours(self, images01: torch.Tensor) -> torch.Tensor:
        """Categories (B, k) of the k catalogue products nearest each image, nearest first."""
        d = torch.cdist(shape_features(images01.cpu()), self.features.float())
        return self.categories[d.topk(self.k, largest=False).indices]

    def votes(self, images01: torch.Tensor) -> tuple[list[int], torch.Tensor]:
        """``(category(images01), vote(images01))`` from one neighbour search."""
        cats = self._neighbours(images01)
        counts = F.one_hot(cats, len(self.names)).sum(1)
        voted = []
        for row, c in zip(counts, cats, strict=True):
            top = row.max()
            voted.append(int(next(x for x in c.tolist() if row[x] == top)))
        return voted, counts.float() / self.k

    def vote(self, images01: torch.Tensor) -> torch.Tensor:
        """Category shares (B, C) of images (B, 3, H, W) in [0, 1]: the share of each category
        among the ``k`` catalogue products with the nearest silhouettes; rows sum to 1."""
        return self.votes(images01)[1]

    def category(self, images01: torch.Tensor) -> list[int]:
        """The voted category index of each image (B,): the most frequent among the ``k``
        neighbours, ties to the nearest neighbour's category."""
        return self.votes(images01)[0]
