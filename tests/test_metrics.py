"""FID / KID, the FID Inception features, SSIM and the LPIPS metric helpers."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from gis.metrics import fid as fid_module
from gis.metrics import (
    fid_features,
    frechet_distance,
    frechet_distance_from_stats,
    inception,
    kid,
    lpips_distance,
    opposite_ssim,
    pairwise_lpips,
    pairwise_ssim_diversity,
    ssim,
    variant_distances,
)


def _exact_samples(mu: np.ndarray, cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n samples whose sample mean and (unbiased) sample covariance are exactly mu and cov."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(mu)))
    z -= z.mean(0)
    white = np.linalg.cholesky(np.cov(z, rowvar=False))
    z = z @ np.linalg.inv(white).T
    return mu + z @ np.linalg.cholesky(cov).T


# ------------------------------------------------------------------------------------- FID


@pytest.mark.parametrize("n,d", [(200, 16), (30, 64)])  # the second one is singular (n < d)
def test_fid_of_identical_features_is_zero(n, d):
    f = np.random.default_rng(0).normal(size=(n, d))
    assert abs(frechet_distance(f, f)) < 1e-4
    assert abs(frechet_distance(f, f, method="eigh")) < 1e-4


def test_fid_gaussian_closed_form():
    d = 6
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    a, b = rng.uniform(0.2, 2.0, d), rng.uniform(0.2, 2.0, d)
    cov1, cov2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T  # commuting covariances
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # FID(N(mu1, Q A Q'), N(mu2, Q B Q')) = |mu1 - mu2|^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    expected = float(((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum())
    assert frechet_distance_from_stats(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)
    f1, f2 = _exact_samples(mu1, cov1, 50, 2), _exact_samples(mu2, cov2, 80, 3)
    assert frechet_distance(f1, f2) == pytest.approx(expected, rel=1e-8)
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance_from_stats([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(5.0)


def test_fid_methods_agree_on_non_commuting_covariances():
    rng = np.random.default_rng(4)
    f1, f2 = rng.normal(size=(120, 20)), rng.normal(size=(150, 20)) @ rng.normal(size=(20, 20))
    assert frechet_distance(f1, f2) == pytest.approx(frechet_distance(f1, f2, method="eigh"),
                                                     rel=1e-8)


# ------------------------------------------------------------------------------------- KID


def test_kid_estimator_matches_double_loop():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(5, 3)), rng.normal(size=(5, 3)) + 0.5

    def k(a, b):
        return (a @ b / 3 + 1) ** 3

    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(5), 2)) / 20
    xy = sum(k(a, b) for a in x for b in y) / 25
    # one subset of all samples: the order drawn does not change the estimate
    assert kid(x, y, subsets=1, subset_size=5) == (pytest.approx(xx + yy - 2 * xy), 0.0)


def test_kid_agrees_with_torchmetrics():
    import warnings

    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(8)
    f1, f2 = rng.normal(size=(40, 16)), rng.normal(size=(40, 16)) + 0.3
    with warnings.catch_warnings():  # its note that features are kept in memory
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1,
                                         subset_size=40)
    metric.update(torch.from_numpy(f1), real=True)
    metric.update(torch.from_numpy(f2), real=False)
    want_mean, want_std = metric.compute()  # it permutes the rows: sums differ in the last bit
    assert kid(f1, f2, subsets=1, subset_size=40) == (pytest.approx(float(want_mean), rel=1e-12),
                                                     float(want_std))


def test_kid_is_unbiased_where_the_plain_estimate_is_not():
    rng = np.random.default_rng(6)
    f1, f2 = rng.normal(size=(3000, 8)), rng.normal(size=(3000, 8))  # same distribution
    subsets, m = 200, 40
    mean, std = kid(f1, f2, subsets=subsets, subset_size=m, seed=0)
    stderr = std / math.sqrt(subsets)
    assert abs(mean) < 4 * stderr
    # the biased (V-statistic) estimate on the same kind of subsets is clearly positive
    x, y = f1[:m], f2[:m]
    kxx, kyy, kxy = ((x @ x.T / 8 + 1) ** 3, (y @ y.T / 8 + 1) ** 3, (x @ y.T / 8 + 1) ** 3)
    biased = kxx.mean() + kyy.mean() - 2 * kxy.mean()
    assert biased > 10 * stderr
    # a shifted distribution is detected; the estimate is reproducible with its seed
    shifted = kid(f1, f2 + 0.5, subsets=20, subset_size=m, seed=0)
    assert shifted[0] > 10 * shifted[1] / math.sqrt(20)
    assert kid(f1, f2, subsets=20, subset_size=m, seed=3) == kid(f1, f2, subsets=20,
                                                                  subset_size=m, seed=3)


def test_fid_from_images_reports_counts(monkeypatch):
    rng = np.random.default_rng(7)
    feats = {5: rng.normal(size=(5, 4)), 7: rng.normal(size=(7, 4)) + 1.0}
    monkeypatch.setattr(inception, "fid_features", lambda images, **kw: feats[len(images)])
    out = fid_module.fid_from_images(torch.zeros(5, 3, 8, 8), torch.zeros(7, 3, 8, 8),
                                     kid_subsets=3)
    assert set(out) == {"fid", "kid_mean", "kid_std", "n_real", "n_fake"}
    assert (out["n_real"], out["n_fake"]) == (5, 7)
    assert out["fid"] == pytest.approx(frechet_distance(feats[5], feats[7]))
    assert out["kid_mean"] == pytest.approx(kid(feats[5], feats[7], subsets=3)[0])


# ------------------------------------------------------------------------------- Inception


def test_inception_input_range_and_resize():
    x = torch.zeros(1, 3, 299, 299)
    x[..., :10] = 1.0
    y = inception.prepare_images(x)
    assert y.min().item() == -1.0 and y.max().item() == 127 / 128  # TF: (p - 128) / 128
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        inception.prepare_images(x * 2 - 1)


def test_tf_resize_is_tf1_legacy_bilinear():
    src = torch.arange(4 * 5, dtype=torch.float64).reshape(1, 1, 4, 5)
    out = inception._resize_tf(src, 7)
    # TF1 resize_bilinear (half_pixel_centers=False): source coordinate = i * in / out
    a = src[0, 0].numpy()

    def interp(i, j):
        y, x = i * 4 / 7, j * 5 / 7
        y0, x0 = int(y), int(x)
        y1, x1 = min(y0 + 1, 3), min(x0 + 1, 4)
        fy, fx = y - y0, x - x0
        top = a[y0, x0] * (1 - fx) + a[y0, x1] * fx
        bottom = a[y1, x0] * (1 - fx) + a[y1, x1] * fx
        return top * (1 - fy) + bottom * fy

    want = np.array([[interp(i, j) for j in range(7)] for i in range(7)])
    np.testing.assert_allclose(out[0, 0].numpy(), want, atol=1e-9)


def test_inception_features_of_two_tiny_images():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=g)
    f = fid_features(images, batch_size=2)
    assert f.shape == (2, 2048) and f.dtype == np.float64
    assert np.isfinite(f).all() and (f >= 0).all()  # average-pooled ReLU outputs
    assert not np.allclose(f[0], f[1])


# ------------------------------------------------------------------------------------ SSIM


def _pair(seed: int = 0, n: int = 3, side: int = 24):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, side, side, generator=g)
    y = (x + 0.15 * torch.randn(n, 3, side, side, generator=g)).clamp(0, 1)
    return x, y


def test_ssim_data_range_is_applied_to_the_real_range():
    x, y = _pair()
    unit = ssim(x, y, 1.0)
    torch.testing.assert_close(ssim(2 * x - 1, 2 * y - 1, (-1.0, 1.0)), unit)
    torch.testing.assert_close(ssim(255 * x, 255 * y, 255.0), unit, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(ssim(x, x, 1.0), torch.ones(3))
    # the authors' bug: data_range 1.0 on [-1, 1] data; refused rather than computed
    with pytest.raises(ValueError, match="data_range"):
        ssim(2 * x - 1, 2 * y - 1, 1.0)
    # a too-large range inflates SSIM: the setting matters
    assert (ssim(x, y, 4.0) > unit).all()


def test_ssim_is_torchmetrics_ssim():
    from torchmetrics.functional.image import structural_similarity_index_measure

    x, y = _pair(1)
    want = structural_similarity_index_measure(x, y, gaussian_kernel=True, sigma=1.5,
                                               kernel_size=11, reduction="none", data_range=1.0)
    torch.testing.assert_close(ssim(x, y, 1.0), want, rtol=0, atol=0)
    # [-1, 1] images are mapped to [0, 1] first (torchmetrics' (low, high) only clamps)
    torch.testing.assert_close(ssim(2 * x - 1, 2 * y - 1, (-1.0, 1.0)), want)


def test_opposite_ssim_and_pairwise_diversity():
    x, _ = _pair(2, n=3)
    base = x[:1]
    opp = opposite_ssim(base, x, 1.0)
    assert opp.shape == (3,) and opp[0].item() == pytest.approx(0.0, abs=1e-6)
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = np.mean([1 - ssim(x[i:i + 1], x[j:j + 1], 1.0).item() for i, j in pairs])
    assert pairwise_ssim_diversity(x, 1.0) == pytest.approx(want, rel=1e-5)


# ----------------------------------------------------------------------------------- LPIPS


def test_lpips_metric_ranges_and_pairs():
    x, y = _pair(3, n=3, side=32)
    d01 = lpips_distance(x, y, value_range=(0.0, 1.0))
    torch.testing.assert_close(lpips_distance(2 * x - 1, 2 * y - 1), d01)
    assert d01.shape == (3,) and (d01 > 0).all()
    pairs = [(0, 1), (0, 2), (1, 2)]
    want = np.mean([lpips_distance(x[i:i + 1], x[j:j + 1], value_range=(0.0, 1.0)).item()
                    for i, j in pairs])
    assert pairwise_lpips(x, value_range=(0.0, 1.0)) == pytest.approx(want, rel=1e-5)


def test_variant_distances_against_lpips_by_hand():
    x, y = _pair(4, n=4, side=32)
    variants = torch.cat([x[:3], x[1:2]])  # variant 3 is a copy of variant 1
    base, item = y[:1], y[1:2]
    d = variant_distances(variants, base, item)
    want_base = lpips_distance(variants, base, value_range=(0.0, 1.0))
    assert d["to_base"] == pytest.approx(want_base.tolist(), rel=1e-5)
    assert d["to_item"] == pytest.approx(
        lpips_distance(variants, item, value_range=(0.0, 1.0)).tolist(), rel=1e-5)
    assert d["base_to_item"] == pytest.approx(
        lpips_distance(base, item, value_range=(0.0, 1.0)).item(), rel=1e-5)
    # the copies are each other's nearest variant, at distance 0
    assert d["nearest_variant_index"][1] == 3 and d["nearest_variant_index"][3] == 1
    assert d["nearest_variant"][1] == d["nearest_variant"][3] == pytest.approx(0.0, abs=1e-6)
    for i in (0, 2):
        others = [j for j in range(4) if j != i]
        dist = [lpips_distance(variants[i:i + 1], variants[j:j + 1],
                               value_range=(0.0, 1.0)).item() for j in others]
        assert d["nearest_variant"][i] == pytest.approx(min(dist), rel=1e-5)
        assert d["nearest_variant_index"][i] == others[int(np.argmin(dist))]
    assert d["mean_pairwise"] == pytest.approx(pairwise_lpips(variants, value_range=(0.0, 1.0)),
                                               rel=1e-5)
    assert "to_item" not in variant_distances(variants, base)
    with pytest.raises(ValueError, match="at least 2"):
        variant_distances(variants[:1], base)


def test_lpips_of_images_below_alexnets_minimum_side_is_upsampled():
    x, y = _pair(5, n=2, side=16)  # AlexNet alone has no pixels left at 16 px
    small = lpips_distance(x, y, value_range=(0.0, 1.0))
    up = torch.nn.functional.interpolate
    big = lpips_distance(up(x, size=(32, 32), mode="bilinear", align_corners=False),
                         up(y, size=(32, 32), mode="bilinear", align_corners=False),
                         value_range=(0.0, 1.0))
    torch.testing.assert_close(small, big)
