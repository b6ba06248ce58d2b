"""Evaluation metrics: FID / KID (FID Inception asset), LPIPS distances, SSIM, Inception Score.

The Inception Score here is the standard definition; without torchvision's ImageNet
Inception-v3 weights in the torch hub cache, ``is_classifier`` gives the dataset's domain
classifier, and the result is a *domain IS* in [1, num_classes], not comparable to ImageNet IS.

Every function states the pixel range it expects; docs/RESULTS.md (Definitions) gives the
settings every reported number uses.
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
from .inception_score import ISClassifier, inception_score, is_classifier
from .lpips_metric import lpips_distance, pairwise_lpips, variant_distances
from .ssim import opposite_ssim, pairwise_ssim_diversity, ssim

__all__ = [
    "ISClassifier",
    "feature_stats",
    "fid_features",
    "fid_from_images",
    "frechet_distance",
    "frechet_distance_from_stats",
    "inception_score",
    "is_classifier",
    "kid",
    "load_inception",
    "lpips_distance",
    "opposite_ssim",
    "pairwise_lpips",
    "pairwise_ssim_diversity",
    "ssim",
    "variant_distances",
]
