"""The fashion-colors realism truth: every real item passes, speckle and stains do not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gis_fashion_colors import realism

from gis.data import load_dataset


@pytest.fixture(scope="module")
def ds():
    return load_dataset("fashion-colors")


def test_every_real_item_is_realistic(ds):
    for images in (ds.heldout_tensor(np.arange(ds.num_heldout)),
                   ds.image_tensor(np.arange(ds.num_items))):
        verdict = ds.ground_truth.realism(images)
        assert verdict.realistic.all(), [r for r in verdict.reasons if r][:3]
        assert verdict.measures["chroma_noise"].max() < 1.0  # far below the threshold
        assert verdict.measures["background"].max() == 0.0


def _speckle(x, share, seed=1):
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand(x.shape, generator=g) * 2 - 1                 # random colours
    sel = (torch.rand(x.shape[0], 1, *x.shape[2:], generator=g) < share).float()
    return (x * (1 - sel) + noise * sel).clamp(-1, 1)


def test_synthetic_speckle_is_rejected(ds):
    x = ds.heldout_tensor(np.arange(300))
    verdict = ds.ground_truth.realism(_speckle(x, 0.05))
    assert not verdict.realistic.any()
    assert all(r.startswith("speckle") for r in verdict.reasons)


def test_imperceptible_noise_is_still_a_product(ds):
    x = ds.heldout_tensor(np.arange(300))
    g = torch.Generator().manual_seed(2)
    noisy = (x + 0.03 * torch.randn(x.shape, generator=g)).clamp(-1, 1)  # ~4/255
    assert ds.ground_truth.realism(noisy).realistic.all()


def test_stained_background_and_empty_images_are_rejected(ds):
    x = ds.heldout_tensor(np.arange(4)).clone()
    x[0, :, :2, :] = -0.6                                   # a dark stain across the top margin
    x[1] = 1.0                                              # nothing on it
    verdict = ds.ground_truth.realism(x)
    assert verdict.realistic.tolist() == [False, False, True, True]
    assert "background" in verdict.reasons[0] and "coverage" in verdict.reasons[1]


def test_measures_accept_uint8_and_ranges(ds):
    x = ds.heldout_tensor(np.arange(8))
    a = realism.measures(x)
    b = realism.measures(ds.heldout_images[:8], value_range=None)   # uint8 (N, H, W, 3)
    c = realism.measures((x + 1) / 2, value_range=(0.0, 1.0))
    for key in a:
        np.testing.assert_allclose(a[key], b[key])
        np.testing.assert_allclose(a[key], c[key])
