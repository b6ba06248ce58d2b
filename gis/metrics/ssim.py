"""SSIM with an explicit pixel range: torchmetrics' SSIM (Gaussian window 11, sigma 1.5).

The SSIM itself is torchmetrics' ``structural_similarity_index_measure`` (reflect padding, the
mean over the whole image; Wang et al. 2004 constants). What gis adds is only what torchmetrics
cannot do:

* a pixel range that is stated, never guessed, and mapped to [0, 1]: SSIM is not invariant to
  a shift of the pixel values (its luminance term assumes non-negative intensities), so
  ``data_range=(-1.0, 1.0)`` maps [-1, 1] images to [0, 1] first. torchmetrics' own
  ``data_range=(low, high)`` only clamps and uses ``high - low``, which scores [-1, 1] images
  differently; and a numeric ``data_range`` with negative pixels (the authors' notebook used
  1.0 on [-1, 1] data, a bug; docs/RESULTS.md, Definitions) is refused here, not computed;
* one base image against many (``y`` with batch 1), the paper's opposite SSIM and the
  diversity among variants (mean pairwise 1 - SSIM).
"""

from __future__ import annotations

import torch

KERNEL_SIZE = 11
SIGMA = 1.5

DataRange = float | tuple[float, float]


def _to_unit(x: torch.Tensor, data_range: DataRange) -> tuple[torch.Tensor, float]:
    if isinstance(data_range, tuple):
        lo, hi = (float(v) for v in data_range)
        if not hi > lo:
            raise ValueError(f"data_range must be (low, high) with high > low (got {data_range})")
        return ((x - lo) / (hi - lo)).clamp(0, 1), 1.0
    if not data_range > 0:
        raise ValueError(f"data_range must be > 0 (got {data_range})")
    if float(x.min()) < -1e-6 * data_range:
        raise ValueError("negative pixel values with a numeric data_range (pixels in [0, L]); "
                         "pass the pixel range instead, e.g. data_range=(-1.0, 1.0)")
    return x, float(data_range)


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: DataRange) -> torch.Tensor:
    """Per-image SSIM (B,) in [-1, 1] (1 = identical) of x, y (B, C, H, W), H and W >= 11;
    y may have B = 1 (compared with every image of x).

    ``data_range``: a number L for pixels in [0, L] (1.0 for [0, 1] images, 255 for uint8
    values), or the pixel range (low, high), e.g. (-1.0, 1.0), which is mapped to [0, 1].
    Computed in float32 by torchmetrics (module docstring). Raises ValueError for a bad range,
    negative pixels with a numeric range, mismatched shapes or images under 11 px.
    """
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, _ = _to_unit(x, data_range)
    y, data_range = _to_unit(y, data_range)
    if x.ndim == 3:
        x = x[None]
    if y.ndim == 3:
        y = y[None]
    if y.shape[0] == 1 and x.shape[0] > 1:
        y = y.expand_as(x)
    if x.shape != y.shape:
        raise ValueError(f"image shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")
    if min(x.shape[-2:]) < KERNEL_SIZE:
        raise ValueError(f"SSIM needs images of at least {KERNEL_SIZE} px (got {x.shape[-2:]})")
    return structural_similarity_index_measure(
        x.float(), y.float().contiguous(), gaussian_kernel=True, sigma=SIGMA,
        kernel_size=KERNEL_SIZE, reduction="none", data_range=data_range)


def opposite_ssim(base: torch.Tensor, variants: torch.Tensor,
                  data_range: DataRange) -> torch.Tensor:
    """The paper's "opposite SSIM": 1 - SSIM(base, variant) per variant (n,), in [0, 2];
    larger means the variant departs more from the base image (1, C, H, W)."""
    return 1.0 - ssim(variants, base, data_range)


def pairwise_ssim_diversity(variants: torch.Tensor, data_range: DataRange) -> float:
    """Diversity among the variants (n, C, H, W): mean of 1 - SSIM over all unordered pairs
    (n >= 2, else ValueError)."""
    n = variants.shape[0]
    if n < 2:
        raise ValueError(f"pairwise diversity needs at least 2 images (got {n})")
    i, j = torch.triu_indices(n, n, offset=1)
    return float((1.0 - ssim(variants[i], variants[j], data_range)).mean())
