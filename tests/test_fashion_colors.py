"""The fashion-colors plugin: its simulated dataset, its ground truth and `gis data build`
(its domain classifier: tests/test_classifier.py)."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from gis_fashion_colors import DATA_FILE, DEFAULT_ITEM_ID, FashionColorsTruth
from gis_fashion_colors import simulation as fc

import gis
from gis.data import Dataset, default_item_id, load_dataset, oracle_auc, popularity_auc
from gis.data.split import activity
from gis.errors import GisUsageError, MissingAssetError

SHIPPED = DATA_FILE


@pytest.fixture(scope="module")
def default_ds() -> Dataset:
    return load_dataset()


def _cli(*args):
    from gis.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_default_dataset_shape_and_balance(default_ds):
    ds = default_ds
    assert ds.meta["name"] == "fashion-colors"
    assert ds.images.shape == (6000, 32, 32, 3) and ds.images.dtype == np.uint8
    assert ds.heldout_images.shape == (2000, 32, 32, 3)
    assert ds.category_names == fc.CATEGORY_NAMES
    assert (np.bincount(ds.categories) == 600).all()
    assert (np.bincount(ds.heldout_categories) == 200).all()
    assert (np.bincount(ds.attributes["color"], minlength=10) == 600).all()
    assert len(set(ds.item_ids)) == 6000 and not set(ds.item_ids) & set(ds.heldout_item_ids)
    assert ds.num_users == 3000 and ds.user_ids[:2] == ["u0000", "u0001"]
    # white product-photo background, coloured garment
    corners = ds.images[:, [0, 0, -1, -1], [0, -1, 0, -1]]
    assert corners.min() >= 246
    assert ds.attributes["color_rgb"].shape == (6000, 3)


def test_default_dataset_interactions(default_ds):
    ds = default_ds
    act = activity(ds)
    assert act.min() >= 3 and 9 <= np.median(act) <= 15 and 100 <= act.max() <= 300
    assert (ds.val >= 0).all() and (ds.test >= 0).all()
    pairs = set(map(tuple, ds.train.tolist()))
    assert len(pairs) == len(ds.train)
    for u in range(0, ds.num_users, 97):
        assert (u, ds.val[u]) not in pairs and (u, ds.test[u]) not in pairs
        assert ds.val[u] != ds.test[u]


def test_colour_measurement_matches_palette(default_ds):
    ds, t = default_ds, default_ds.tastes
    m = fc.color_memberships(ds.attributes["color_rgb"], t["palette_lab"],
                             float(t["color_bandwidth"]))
    assert (m.argmax(1) == ds.attributes["color"]).mean() > 0.99
    # measuring the rendered images again gives the stored attribute
    np.testing.assert_allclose(fc.measure_color(ds.images[:50]),
                               ds.attributes["color_rgb"][:50], atol=1e-3)
    # float tensors in [-1, 1] (generator outputs) measure the same
    x = ds.image_tensor(np.arange(20))
    np.testing.assert_allclose(fc.measure_color(x), ds.attributes["color_rgb"][:20], atol=1.0)


def test_true_utility(default_ds):
    ds, t = default_ds, default_ds.tastes
    rows = np.arange(10)
    u_rgb = fc.true_utility(t, rows, ds.categories, ds.attributes["color_rgb"])
    u_ids = fc.true_utility(t, rows, ds.categories, ds.attributes["color"])
    assert u_rgb.shape == (10, 6000)
    assert np.corrcoef(u_rgb.ravel(), u_ids.ravel())[0, 1] > 0.99
    single = fc.true_utility(t, 3, ds.categories[:5], ds.attributes["color"][:5])
    np.testing.assert_allclose(single, u_ids[3, :5])
    # a user prefers their favourite colour to the colour they like least, same category
    u = 7
    fav, worst = int(t["favorite_color"][u]), int(np.argmin(t["color"][u]))
    cat = np.array([2, 2])
    good, bad = fc.true_utility(t, u, cat, np.array([fav, worst]))
    assert good > bad
    rgb = fc.PALETTE_RGB[[fav, worst]].astype(float) * 0.9  # a shaded measured colour
    g2, b2 = fc.true_utility(t, u, cat, rgb)
    assert g2 > b2
    with pytest.raises(GisUsageError):
        fc.true_utility(t, u, cat, np.zeros((2, 4)))


def test_learnability_oracle_beats_popularity(default_ds):
    oracle = oracle_auc(default_ds, seed=1)
    pop = popularity_auc(default_ds, seed=1)
    assert oracle >= 0.95
    assert pop <= oracle - 0.25


def test_default_item_and_registry(default_ds):
    x = default_ds.item_image(DEFAULT_ITEM_ID)
    assert x.shape == (1, 3, 32, 32) and x.min() >= -1 and x.max() <= 1
    where, idx = default_ds.find_item(DEFAULT_ITEM_ID)
    assert where == "catalogue" and default_item_id(default_ds) == DEFAULT_ITEM_ID
    assert default_ds.category_names[default_ds.categories[idx]] == "T-shirt/top"
    assert fc.COLOR_NAMES[default_ds.attributes["color"][idx]] == "yellow"
    held = default_ds.heldout_item_ids[5]
    assert default_ds.find_item(held) == ("heldout", 5)
    np.testing.assert_array_equal(default_ds.item_array(held), default_ds.heldout_images[5])
    assert default_ds.item_image(default_ds.item_ids[0], value_range=(0, 1)).min() >= 0
    with pytest.raises(GisUsageError, match="unknown item id"):
        default_ds.item_image("nope")
    ds = gis.get_dataset("fashion-colors", resolution=16)
    assert ds.images.shape[1:] == (16, 16, 3) and ds.heldout_images.shape[1:] == (16, 16, 3)
    assert load_dataset("default").num_items == 6000
    with pytest.raises(MissingAssetError, match="gis data build"):
        gis.get_dataset("fashion-colors", path="/nonexistent/fc.npz")


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def fake_mnist(tmp_path_factory) -> Path:
    """A tiny Fashion-MNIST in the original IDX .gz format: blobs of a class-dependent size."""
    root = tmp_path_factory.mktemp("fmnist")
    rng = np.random.default_rng(0)
    for split, n in (("train", 300), ("t10k", 80)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        imgs = np.zeros((n, 28, 28), np.uint8)
        for k, c in enumerate(labels):
            imgs[k, 4 + c // 2: 24, 6: 22 - c // 3] = rng.integers(120, 255)
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", imgs)
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels)
    return root


def test_build_is_deterministic(fake_mnist):
    kw = dict(items=100, heldout=20, users=40)
    a = fc.build_arrays(fake_mnist, seed=3, **kw)
    b = fc.build_arrays(fake_mnist, seed=3, **kw)
    c = fc.build_arrays(fake_mnist, seed=4, **kw)
    assert a.keys() == b.keys()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["train"], c["train"])
    ds = fc.from_compact(a)
    assert ds.num_items == 100 and ds.num_heldout == 20 and ds.num_users == 40
    # an item looks the same in a bigger build (e.g. --full) with the same seed
    big = fc.from_compact(fc.build_arrays(fake_mnist, seed=3, items=300, heldout=80, users=5))
    for item in (ds.item_ids[7], ds.heldout_item_ids[3]):
        assert np.array_equal(ds.item_array(item), big.item_array(item))
    assert (np.bincount(ds.categories) == 10).all()
    assert oracle_auc(ds) > popularity_auc(ds)


def test_read_idx_errors(tmp_path):
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 10, 1, 2]))
    with pytest.raises(GisUsageError, match="truncated"):
        fc.read_idx(bad)
    with pytest.raises(MissingAssetError, match="dataset-fashion-mnist"):
        fc.read_fashion_mnist(tmp_path)


def test_shipped_file_is_reproducible():
    """The committed archive equals a fresh build from the Debian package (seed 0): images,
    labels, splits and interactions bit for bit; the hidden tastes' floats to 1e-12 (numpy's
    exp/pow kernels are picked by CPU: an AVX-512 and an AVX2 machine differ in the last bits
    of the palette's CIELAB and the colour affinities, measured 2e-15, without changing a
    sampled interaction). Without the package: a skip saying how to install it (a failure with
    GIS_REQUIRE_FASHION_MNIST=1, as in .ci/run)."""
    if not Path(fc.DEFAULT_SOURCE).is_dir():
        msg = (f"Fashion-MNIST comparison needs the Debian package dataset-fashion-mnist (files "
               f"in {fc.DEFAULT_SOURCE}): run `apt-get install dataset-fashion-mnist` (or "
               "`bash scripts/install.sh --test`)")
        if os.environ.get("GIS_REQUIRE_FASHION_MNIST") == "1":
            pytest.fail(msg)
        pytest.skip(msg)
    fresh = fc.build_arrays(fc.DEFAULT_SOURCE, seed=fc.DEFAULT_SEED, **fc.SUBSET)
    with np.load(SHIPPED, allow_pickle=False) as z:
        for key in fresh:
            if key == "meta":
                continue
            if fresh[key].dtype.kind == "f":
                np.testing.assert_allclose(z[key], fresh[key], rtol=1e-12, atol=1e-12,
                                           err_msg=key)
            else:
                assert z[key].dtype == fresh[key].dtype, key
                assert np.array_equal(z[key], fresh[key]), key




def test_cli_build(tmp_path, fake_mnist):
    out = tmp_path / "fc.npz"
    r = _cli("data", "build", "--source", str(fake_mnist), "--out", str(out), "--items", "100",
             "--heldout", "20", "--users", "30", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert out.exists() and json.loads(str(np.load(out)["meta"]))["users"] == 30
    ds = gis.get_dataset("fashion-colors", path=out)
    assert ds.num_items == 100 and ds.num_users == 30
    r = _cli("data", "info", str(out), "--auc")
    assert r.exit_code == 0 and "AUC true utility" in r.output
    r = _cli("data", "build", "--source", str(tmp_path), "--out", str(tmp_path / "y.npz"))
    assert r.exit_code == 2 and "dataset-fashion-mnist" in r.output


def test_ground_truth_interface(default_ds, tmp_path):
    """The dataset offers gis's GroundTruth: the simulation's utility of any image, measured
    from its pixels, and the domain classifier as its category reader."""
    ds = default_ds
    assert ds.has_ground_truth and isinstance(ds.ground_truth, FashionColorsTruth)
    truth, rows, items = ds.ground_truth, np.array([3, 7]), np.arange(12)
    from_items = truth.item_utility(rows, items)
    np.testing.assert_array_equal(from_items, fc.true_utility(
        ds.tastes, rows, ds.categories[items], ds.attributes["color_rgb"][items]))
    x01 = ds.image_tensor(items, value_range=(0, 1))
    from_pixels = truth.utility(x01, rows, ds.categories[items], value_range=(0, 1))
    assert from_pixels.shape == (2, 12)
    np.testing.assert_allclose(from_pixels, from_items, atol=1e-6)
    clf = truth.category_classifier()
    assert clf.label == "gis DomainClassifier" and clf.num_classes == 10
    assert clf.category_names == ds.category_names
    p = clf.predict_proba(x01, value_range=(0, 1))
    assert p.shape == (12, 10) and torch.allclose(p.sum(1), torch.ones(12), atol=1e-5)
    assert ds.meta["default_item"] == DEFAULT_ITEM_ID == default_item_id(ds)
    with pytest.raises(MissingAssetError, match="gis train classifier"):
        load_dataset("fashion-colors", resolution=64).ground_truth.category_classifier()
    other = tmp_path / "other.npz"
    np.savez(other, format=np.array("gis-dataset/1"))
    with pytest.raises(GisUsageError, match="not a fashion-colors dataset file"):
        gis.get_dataset("fashion-colors", path=other)
