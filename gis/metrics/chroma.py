"""Colour speckle of an image: its relative chroma total variation.

Colour speckle (neighbouring pixels of different hues) is the commonest artefact of the
shipped ProGAN's samples and of variants that a recommender rewards for it (docs/ENGINE.md).
``chroma_variation`` measures it from pixels alone; the ``chroma_tv`` loss term
(gis_losses) penalises what a variant adds over its base image.
"""

from __future__ import annotations

import torch

#: RGB -> (Cb, Cr) rows of ITU-R BT.601 (YCbCr), for images in [0, 1]
_BT601_CHROMA = ((-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))


def chroma_variation(images01: torch.Tensor, eps: float = 0.01, *,
                     detach_scale: bool = False) -> torch.Tensor:
    """Relative chroma total variation of images (N, 3, H, W) in [0, 1], (N,) >= 0.

    The anisotropic total variation (Rudin, Osher & Fatemi 1992) of the BT.601 chroma planes
    (Cb, Cr): the mean over both planes and over vertically neighbouring pixel pairs of
    |c_p - c_q|, plus the same over horizontal pairs, divided by the mean over both planes
    and all pixels of |c|, plus ``eps``. The ratio barely changes
    (by less than 0.05 with eps = 0.01) when a uniformly tinted product is recoloured more or
    less saturated (both grow with the saturation: for one tint it is about the silhouette's
    perimeter over its area), but it
    rises with colour speckle, which adds chroma steps between neighbours and little mean
    chroma. ``eps`` (chroma units, 0..0.5) keeps grey products from dividing by ~0.
    ``detach_scale``: no gradient through the denominator (a loss then lowers the ratio only
    by smoothing the chroma, never by adding colour to the image)."""
    w = images01.new_tensor(_BT601_CHROMA)                              # (2, 3)
    c = torch.einsum("kc,nchw->nkhw", w, images01)
    tv = (c[..., 1:, :] - c[..., :-1, :]).abs().mean((1, 2, 3)) + \
        (c[..., :, 1:] - c[..., :, :-1]).abs().mean((1, 2, 3))
    scale = c.abs().mean((1, 2, 3)) + eps
    return tv / (scale.detach() if detach_scale else scale)
