"""Silhouettes of product photos: soft foreground masks and their soft IoU.

Used by the ``silhouette`` loss term (gis_losses) and by the variants' identity check
(gis.engine.checks), so the objective and the check read the same shape.
"""

from __future__ import annotations

import torch


def foreground_mask(images: torch.Tensor, threshold: float = 0.1) -> torch.Tensor:
    """Soft foreground masks (B, H, W) in [0, 1) of images (B, C, H, W) in [0, 1].

    A product photo's background is flat: its colour is taken as the per-channel median of
    the image's border pixels (detached), and a pixel at RMS-over-channels distance d from it
    is foreground to the degree d^2 / (d^2 + threshold^2) (0.5 at d = threshold; a smooth
    threshold whose gradient does not vanish on the object, unlike a steep sigmoid).
    ``threshold`` is in [0, 1] pixel units."""
    top, bottom = images[..., 0, :], images[..., -1, :]
    left, right = images[..., 1:-1, 0], images[..., 1:-1, -1]
    border = torch.cat([top, bottom, left, right], dim=-1)  # (B, C, 4R - 4)
    background = border.detach().median(dim=-1).values[..., None, None]
    d2 = (images - background).square().mean(1)
    return d2 / (d2 + threshold ** 2)


def soft_iou(images: torch.Tensor, reference: torch.Tensor,
             threshold: float = 0.1) -> torch.Tensor:
    """Soft IoU (B,) in [0, 1] of each image's foreground mask with ``reference``'s.

    images (B, C, H, W) and reference (1 or B, C, H, W), pixels in [0, 1]. The Tanimoto
    coefficient a.b / (|a|^2 + |b|^2 - a.b) of the soft masks (``foreground_mask``): the
    Jaccard index of binary masks extended to soft ones (the Tanimoto loss of Diakogiannis et
    al., ResUNet-a, ISPRS J. 2020); 1 only for equal masks. Differentiable.
    """
    a = foreground_mask(images, threshold).flatten(1)
    b = foreground_mask(reference, threshold).flatten(1).expand_as(a)
    inter = (a * b).sum(1)
    union = (a * a).sum(1) + (b * b).sum(1) - inter
    return (inter + 1e-6) / (union + 1e-6)
