"""SSIM helpers with an explicit pixel range (Gaussian window 11, sigma 1.5).

SSIM is not invariant to a shift of the pixel values (its luminance term assumes non-negative
intensities), so the range must be stated, never guessed: ``data_range=1.0`` for [0, 1] images,
``data_range=(-1.0, 1.0)`` for [-1, 1] images (mapped to [0, 1] first). The authors' notebook
used 1.0 on [-1, 1] data, a bug (REFERENCE.md §1, §4). torchmetrics computes SSIM when it is
installed; otherwise an equivalent pure-torch implementation (same reflect padding, same
averaging over the whole image) is used.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KERNEL_SIZE = 11
SIGMA = 1.5


def _gaussian_window(size: int, sigma: float, dtype, device) -> torch.Tensor:
    coords = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(coords / sigma) ** 2 / 2)
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim_torch(x: torch.Tensor, y: torch.Tensor, data_range: float) -> torch.Tensor:
    """Per-image SSIM (B,) in plain torch for pixels in [0, data_range] (Wang et al. 2004
    constants; reflect padding and the mean over the whole image, as torchmetrics)."""
    c = x.shape[1]
    dtype = x.dtype if x.dtype == torch.float64 else torch.float32
    pad = (KERNEL_SIZE - 1) // 2
    x = F.pad(x.to(dtype), (pad, pad, pad, pad), mode="reflect")
    y = F.pad(y.to(dtype), (pad, pad, pad, pad), mode="reflect")
    w = _gaussian_window(KERNEL_SIZE, SIGMA, dtype, x.device).expand(c, 1, -1, -1)

    def blur(t):
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    sxx = (blur(x * x) - mu_x**2).clamp(min=0)
    syy = (blur(y * y) - mu_y**2).clamp(min=0)
    sxy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.flatten(1).mean(1)


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


def ssim(x: torch.Tensor, y: torch.Tensor, data_range: DataRange, *,
         impl: str = "auto") -> torch.Tensor:
    """Per-image SSIM (B,) of x, y (B, C, H, W), H and W >= 11; y may have B = 1.

    ``data_range``: a number L for pixels in [0, L] (1.0 for [0, 1] images, 255 for uint8
    values), or the pixel range (low, high), e.g. (-1.0, 1.0), which is mapped to [0, 1].
    ``impl``: "torchmetrics", "torch" or "auto" (torchmetrics when installed).
    """
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
    if impl == "auto":
        try:
            import torchmetrics  # noqa: F401
            impl = "torchmetrics"
        except ImportError:
            impl = "torch"
    if impl == "torch":
        return ssim_torch(x, y, float(data_range))
    if impl != "torchmetrics":
        raise ValueError(f"impl must be 'auto', 'torchmetrics' or 'torch' (got {impl!r})")
    from torchmetrics.functional.image import structural_similarity_index_measure

    return structural_similarity_index_measure(
        x.float(), y.float().contiguous(), gaussian_kernel=True, sigma=SIGMA,
        kernel_size=KERNEL_SIZE, reduction="none", data_range=data_range)


def opposite_ssim(base: torch.Tensor, variants: torch.Tensor, data_range: DataRange, *,
                  impl: str = "auto") -> torch.Tensor:
    """The paper's "opposite SSIM": 1 - SSIM(base, variant) per variant (n,); larger means the
    variant departs more from the base image."""
    return 1.0 - ssim(variants, base, data_range, impl=impl)


def pairwise_ssim_diversity(variants: torch.Tensor, data_range: DataRange, *,
                            impl: str = "auto") -> float:
    """Diversity among the variants: mean of 1 - SSIM over all unordered pairs (n >= 2)."""
    n = variants.shape[0]
    if n < 2:
        raise ValueError(f"pairwise diversity needs at least 2 images (got {n})")
    i, j = torch.triu_indices(n, n, offset=1)
    return float((1.0 - ssim(variants[i], variants[j], data_range, impl=impl)).mean())
