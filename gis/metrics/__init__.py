"""Evaluation metrics: FID / KID (FID Inception asset), LPIPS distances, SSIM.

Every function states the pixel range it expects; see REFERENCE.md §4 for the pitfalls.
"""

from __future__ import annotations

from .fid import (
    feature_stats,
    fid_from_images,
    frechet_distance,
    frechet_distance_from_stats,
    kid,
)
from .inception import fid_features, load_inception
from .lpips_metric import lpips_distance, pairwise_lpips
from .ssim import opposite_ssim, pairwise_ssim_diversity, ssim

__all__ = [
    "feature_stats",
    "fid_features",
    "fid_from_images",
    "frechet_distance",
    "frechet_distance_from_stats",
    "kid",
    "load_inception",
    "lpips_distance",
    "opposite_ssim",
    "pairwise_lpips",
    "pairwise_ssim_diversity",
    "ssim",
]
