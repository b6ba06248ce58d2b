"""Frechet Inception Distance and Kernel Inception Distance (float64 throughout).

Below about 2,048 samples (the feature dimension) the covariance matrices are singular and
FID is biased upwards and unstable: always report the sample counts, and read KID (unbiased,
with its standard deviation over subsets) for small sets (docs/RESULTS.md, Definitions).
"""

from __future__ import annotations

import numpy as np


def _as_features(feat) -> np.ndarray:
    f = np.asarray(feat, dtype=np.float64)
    if f.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {f.shape}")
    return f


def feature_stats(feat) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), float64."""
    f = _as_features(feat)
    if f.shape[0] < 2:
        raise ValueError(f"need at least 2 samples for a covariance (got {f.shape[0]})")
    return f.mean(0), np.cov(f, rowvar=False)


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) = tr((S1^(1/2) S2 S1^(1/2))^(1/2)) via two symmetric eigensolves."""
    w, v = np.linalg.eigh(s1)
    root = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root @ s2 @ root
    e = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(e, 0, None)).sum())


def frechet_distance_from_stats(mu1, sigma1, mu2, sigma2, *, eps: float = 1e-6,
                                method: str = "sqrtm") -> float:
    """||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), in float64.

    ``method="sqrtm"``: scipy's ``linalg.sqrtm`` of S1 S2, as the reference FID code; when the
    root is not finite (singular product) both covariances get ``eps`` added to their
    diagonals, and the imaginary part that rounding leaves in the root of a (near-)singular
    product is dropped. ``method="eigh"``: the same trace from two symmetric eigensolves
    (real by construction, several times faster at D = 2048; agrees to about 1e-12).
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"mismatched statistics: {mu1.shape}, {s1.shape}, {mu2.shape}, {s2.shape}")
    diff = mu1 - mu2
    if method == "eigh":
        tr_covmean = _trace_sqrt_product_eigh(s1, s2)
    elif method == "sqrtm":
        from scipy import linalg

        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * eps
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
        tr_covmean = float(np.trace(covmean).real)
    else:
        raise ValueError(f"method must be 'sqrtm' or 'eigh' (got {method!r})")
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean)


def frechet_distance(feat1, feat2, *, method: str = "sqrtm") -> float:
    """FID between two feature sets (N1, D) and (N2, D) (see ``frechet_distance_from_stats``)."""
    mu1, s1 = feature_stats(feat1)
    mu2, s2 = feature_stats(feat2)
    return frechet_distance_from_stats(mu1, s1, mu2, s2, method=method)


def kid(feat1, feat2, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): (mean, std) over ``subsets`` random
    subsets of ``min(subset_size, N1, N2)`` samples of each feature set (N1, D), (N2, D), of
    the unbiased MMD^2 with the cubic polynomial kernel k(a, b) = (a.b / D + 1)^3. It can be
    slightly negative; std is the population std over subsets (as torchmetrics).

    Each subset's MMD^2 is torchmetrics' ``poly_mmd`` (the estimator of its
    ``KernelInceptionDistance``), in float64. gis draws the subsets itself, without
    replacement from ``numpy.random.default_rng(seed)``: torchmetrics draws them from the
    global torch RNG, which a library must not touch, and needs ``subset_size`` <= N. With a
    single subset of all samples the result equals torchmetrics' exactly. Raises ValueError
    for mismatched dimensions, ``subsets`` < 1 or fewer than 2 samples in a set.
    """
    import torch
    from torchmetrics.image.kid import poly_mmd

    f1, f2 = _as_features(feat1), _as_features(feat2)
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(f"feature dimensions differ: {f1.shape[1]} vs {f2.shape[1]}")
    if subsets < 1:
        raise ValueError(f"subsets must be >= 1 (got {subsets})")
    m = min(subset_size, f1.shape[0], f2.shape[0])
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set (got {f1.shape[0]}, "
                         f"{f2.shape[0]})")
    rng = np.random.default_rng(seed)
    t1, t2 = torch.from_numpy(f1), torch.from_numpy(f2)
    values = np.empty(subsets)
    for i in range(subsets):
        x = t1[rng.choice(f1.shape[0], m, replace=False)]
        y = t2[rng.choice(f2.shape[0], m, replace=False)]
        values[i] = float(poly_mmd(x, y))
    return float(values.mean()), float(values.std())


def fid_from_images(real01, fake01, *, batch_size: int = 50, device="cpu",
                    kid_subsets: int = 100, kid_subset_size: int = 1000, seed: int = 0,
                    progress: bool = False, resize: str = "tf", method: str = "sqrtm") -> dict:
    """FID and KID between two image sets (N, 3, H, W) in [0, 1] (tensors or numpy arrays).

    Returns ``{"fid", "kid_mean", "kid_std", "n_real", "n_fake"}``. FID from fewer than 2,048
    images per set is not comparable to published values (see the module docstring).
    """
    from .inception import fid_features

    f_real = fid_features(real01, batch_size=batch_size, device=device, progress=progress,
                          resize=resize)
    f_fake = fid_features(fake01, batch_size=batch_size, device=device, progress=progress,
                          resize=resize)
    kid_mean, kid_std = kid(f_real, f_fake, subsets=kid_subsets, subset_size=kid_subset_size,
                            seed=seed)
    return {
        "fid": frechet_distance(f_real, f_fake, method=method),
        "kid_mean": kid_mean,
        "kid_std": kid_std,
        "n_real": int(f_real.shape[0]),
        "n_fake": int(f_fake.shape[0]),
    }
