"""The domain classifier's augmentation: category-preserving random changes, blind to colour."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

#: ``augment`` settings used by ``train_domain_classifier``
DEFAULT_AUG: dict[str, Any] = {"max_shift": 2, "p_blur": 0.15, "p_noise": 0.15}


def _grey_axis_rotation(theta: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations of RGB space about the grey axis (1, 1, 1): a hue rotation that
    keeps white white and greys grey."""
    k = torch.full((3,), 1.0 / math.sqrt(3.0), dtype=theta.dtype)
    kx = torch.tensor([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]],
                      dtype=theta.dtype)
    kk = torch.outer(k, k)
    c, s = theta.cos()[:, None, None], theta.sin()[:, None, None]
    return c * torch.eye(3, dtype=theta.dtype) + s * kx + (1 - c) * kk


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 2) -> torch.Tensor:
    """Per-image separable gaussian blur of (B, C, H, W) with std ``sigma`` (B,)."""
    b, c, h, w = x.shape
    t = torch.arange(-radius, radius + 1, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / sigma[:, None].clamp_min(1e-3)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    return y.reshape(b, c, h, w)


def augment(x: torch.Tensor, generator: torch.Generator, *, max_shift: int = 2,
            p_blur: float = 0.3, p_noise: float = 0.3) -> torch.Tensor:
    """Category-preserving random changes of a batch (B, 3, H, W) in [0, 1] (CPU).

    Geometry: shifts of up to ``max_shift`` pixels (edge pixels repeated) and horizontal
    flips. Colour, which says nothing about the category: a random channel permutation, a
    hue rotation about the grey axis, saturation x U(0.4, 1.6), greyscale with p = 0.15.
    GAN-like degradations: gaussian blur (probability ``p_blur``, sigma U(0.3, 1.2)) and
    gaussian noise (probability ``p_noise``, std U(0, 0.06)). All randomness comes from
    ``generator``.
    """
    g = generator
    b, c, h, w = x.shape

    def u(*shape, lo=0.0, hi=1.0):
        return torch.rand(*shape, generator=g) * (hi - lo) + lo

    # shifts and flips
    if max_shift > 0:
        p = max_shift
        padded = F.pad(x, (p, p, p, p), mode="replicate")
        dx = torch.randint(0, 2 * p + 1, (b,), generator=g)
        dy = torch.randint(0, 2 * p + 1, (b,), generator=g)
        rows = (dy[:, None] + torch.arange(h)[None])  # (B, H)
        cols = (dx[:, None] + torch.arange(w)[None])  # (B, W)
        idx_r = rows[:, None, :, None].expand(b, c, h, w + 2 * p)
        x = padded.gather(2, idx_r)
        idx_c = cols[:, None, None, :].expand(b, c, h, w)
        x = x.gather(3, idx_c)
    flip = u(b) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)

    # colour: permutation, hue rotation, saturation, greyscale
    perm = torch.argsort(u(b, 3), dim=1)
    x = x.gather(1, perm[:, :, None, None].expand(b, c, h, w))
    rot = _grey_axis_rotation(u(b, lo=-math.pi, hi=math.pi))
    x = torch.einsum("bij,bjhw->bihw", rot, x)
    grey = x.mean(1, keepdim=True)
    sat = u(b, lo=0.4, hi=1.6)
    sat = torch.where(u(b) < 0.15, torch.zeros_like(sat), sat)
    x = grey + sat[:, None, None, None] * (x - grey)
    x = x.clamp(0.0, 1.0)

    # degradations
    blur = u(b) < p_blur
    if bool(blur.any()):
        sigma = u(int(blur.sum()), lo=0.3, hi=1.2)
        x = x.clone()
        x[blur] = _gaussian_blur(x[blur], sigma)
    noisy = (u(b) < p_noise).float() * u(b, lo=0.0, hi=0.06)
    x = x + noisy[:, None, None, None] * torch.randn(x.shape, generator=g)
    return x.clamp(0.0, 1.0)
