"""gis.data: the embedded fashion-colors dataset, the readers, the split and `gis data`."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import gis
from gis.data import (
    DEFAULT_ITEM_ID,
    Dataset,
    DataWarning,
    default_item_id,
    dvbpr_split,
    load_dataset,
    load_npz,
    popularity_auc,
    read_dvbpr,
    read_folder,
    sampled_auc,
    save_dataset,
    write_dvbpr,
)
from gis.data import fashion_colors as fc
from gis.data.split import activity
from gis.errors import GisUsageError, MissingAssetError, UntrustedFileError

SHIPPED = Path(fc.__file__).parents[2] / "plugins" / "gis_fashion_colors" / "fashion_colors.npz"


@pytest.fixture(scope="module")
def default_ds() -> Dataset:
    return load_dataset()


def _cli(*args):
    from gis.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# ------------------------------------------------------------------------------ fashion-colors


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
    oracle = fc.oracle_auc(default_ds, seed=1)
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
    assert fc.oracle_auc(ds) > popularity_auc(ds)


def test_read_idx_errors(tmp_path):
    bad = tmp_path / "x.gz"
    with gzip.open(bad, "wb") as f:
        f.write(bytes([0, 0, 8, 1, 0, 0, 0, 10, 1, 2]))
    with pytest.raises(GisUsageError, match="truncated"):
        fc.read_idx(bad)
    with pytest.raises(MissingAssetError, match="dataset-fashion-mnist"):
        fc.read_fashion_mnist(tmp_path)


@pytest.mark.skipif(not Path(fc.DEFAULT_SOURCE).is_dir(), reason="dataset-fashion-mnist absent")
def test_shipped_file_is_reproducible():
    """The committed archive equals a fresh build from the Debian package (seed 0)."""
    fresh = fc.build_arrays(fc.DEFAULT_SOURCE, seed=fc.DEFAULT_SEED, **fc.SUBSET)
    with np.load(SHIPPED, allow_pickle=False) as z:
        for key in fresh:
            if key != "meta":
                assert np.array_equal(z[key], fresh[key]), key


# ------------------------------------------------------------------------------ gis npz format


def _tiny_dataset(n_items=12, n_users=5, size=8, heldout=True) -> Dataset:
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(n_users), 4)
    items = rng.integers(0, n_items, len(users))
    train, val, test = dvbpr_split(users, items, n_users, seed=0)
    return Dataset(
        images=rng.integers(0, 256, (n_items, size, size, 3), dtype=np.uint8),
        categories=np.arange(n_items) % 3, category_names=["a", "b", "c"],
        user_ids=[f"user{k}" for k in range(n_users)], train=train, val=val, test=test,
        item_ids=[f"item{k}" for k in range(n_items)],
        attributes={"color": np.arange(n_items) % 2}, tastes={"w": rng.random(n_users)},
        meta={"name": "tiny", "seed": np.int64(3)},
        heldout_images=rng.integers(0, 256, (3, size, size, 3), dtype=np.uint8) if heldout
        else None,
        heldout_categories=np.array([0, 1, 2]) if heldout else None,
        heldout_attributes={"color": np.array([0, 1, 0])} if heldout else {},
    )


@pytest.mark.parametrize("heldout", [True, False])
def test_npz_roundtrip(tmp_path, heldout):
    ds = _tiny_dataset(heldout=heldout)
    path = save_dataset(ds, tmp_path / "tiny.npz")
    back = load_dataset(path)
    for f in ("images", "categories", "train", "val", "test"):
        assert np.array_equal(getattr(back, f), getattr(ds, f))
    assert back.item_ids == ds.item_ids and back.user_ids == ds.user_ids
    assert back.category_names == ["a", "b", "c"] and back.meta["seed"] == 3
    assert np.array_equal(back.attributes["color"], ds.attributes["color"])
    assert np.allclose(back.tastes["w"], ds.tastes["w"])
    assert default_item_id(back) == "item0"
    if heldout:
        assert back.heldout_item_ids == ["heldout-0", "heldout-1", "heldout-2"]
        assert np.array_equal(back.heldout_images, ds.heldout_images)
        assert back.item_image("heldout-2").shape == (1, 3, 8, 8)
    else:
        assert back.heldout_images is None and back.num_heldout == 0
    assert load_dataset(path, resolution=16).images.shape == (12, 16, 16, 3)


def test_npz_refuses_pickles_and_junk(tmp_path):
    evil = tmp_path / "evil.npz"
    np.savez(evil, format=np.array("gis-dataset/1"), images=np.array([{"a": 1}], dtype=object))
    with pytest.raises(GisUsageError, match="pickled objects"):
        load_npz(evil)
    junk = tmp_path / "junk.npz"
    junk.write_text("hello")
    with pytest.raises(GisUsageError, match="not a gis dataset"):
        load_dataset(junk)
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(GisUsageError, match="not a gis dataset"):
        load_dataset(other)


# ------------------------------------------------------------------------------ split and AUC


def test_dvbpr_split_rules():
    users = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
    items = np.array([1, 2, 3, 3, 4, 5, 6, 7, 8, 9])  # user 0 has a duplicate
    ts = np.array([1, 2, 3, 4, 1, 2, 10, 40, 30, 20])
    train, val, test = dvbpr_split(users, items, 4, seed=0)
    assert val[1] == test[1] == -1 and val[3] == test[3] == -1  # < 3 items / no items
    assert set(train[train[:, 0] == 1, 1]) == {4, 5}
    assert len(train[train[:, 0] == 0]) == 1  # 3 distinct items -> 1 train
    assert {val[0], test[0]} < {1, 2, 3}
    t_train, t_val, t_test = dvbpr_split(users, items, 4, seed=0, timestamps=ts)
    assert t_test[2] == 7 and t_val[2] == 8 and t_test[0] == 3 and t_val[0] == 2
    again = dvbpr_split(users, items, 4, seed=0)
    assert all(np.array_equal(x, y) for x, y in zip(again, (train, val, test), strict=True))


def test_sampled_auc_extremes():
    ds = _tiny_dataset(n_items=40, n_users=6)
    target = np.zeros(ds.num_items)

    def perfect(rows, items):
        s = np.zeros(items.shape)
        s[:, 0] = 1.0
        return s

    assert sampled_auc(ds, perfect, num_negatives=10) == 1.0
    assert sampled_auc(ds, lambda r, it: target[it], num_negatives=10) == 0.5


# ------------------------------------------------------------------------------ folder reader


def _img_bytes(color, fmt="PNG", size=(12, 8)):
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


@pytest.fixture
def shop(tmp_path) -> Path:
    root = tmp_path / "shop"
    (root / "images").mkdir(parents=True)
    colors = {"1": (255, 0, 0), "2": (0, 255, 0), "3": (0, 0, 255), "10": (9, 9, 9),
              "boot": (200, 100, 0)}
    for stem, col in colors.items():
        fmt = "JPEG" if stem == "3" else "PNG"
        (root / "images" / f"{stem}.{fmt.lower()}").write_bytes(_img_bytes(col, fmt))
    (root / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (root / "images" / "readme.txt").write_text("not an item")
    rows = [("alice", "1", 1), ("alice", "2", 2), ("alice", "3", 3), ("alice", "boot", 4),
            ("alice", "1", 5),  # duplicate
            ("bob", "2", 1), ("bob", "10", 2),  # only 2 items: train-only
            ("carol", "1", 1), ("carol", "broken", 2), ("carol", "ghost", 3),
            ("carol", "3", 4), ("carol", "10", 5)]
    with open(root / "interactions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["user_id", "item_id", "timestamp"])
        w.writerows(rows)
    with open(root / "items.csv", "w", newline="") as f:
        f.write("item_id,category\n1,shirt\n2,shirt\n3,shoe\nboot,shoe\n")
    return root


def test_folder_reader(shop):
    with pytest.warns(DataWarning) as record:
        ds = read_folder(shop, resolution=16, seed=1)
    messages = " | ".join(str(w.message) for w in record)
    assert "1 broken image" in messages and "dropped 2 interaction" in messages
    assert ds.item_ids == ["1", "2", "3", "10", "boot"]  # natural order, broken skipped
    assert ds.images.shape == (5, 16, 16, 3)
    assert ds.category_names == ["shirt", "shoe", "unknown"]
    assert [ds.category_names[c] for c in ds.categories] == ["shirt", "shirt", "shoe",
                                                             "unknown", "shoe"]
    assert ds.user_ids == ["alice", "bob", "carol"]
    bob = ds.user_ids.index("bob")
    assert ds.val[bob] == -1 and ds.test[bob] == -1
    assert len(ds.train) + (ds.val >= 0).sum() + (ds.test >= 0).sum() == 4 + 2 + 3
    img = ds.item_array("1")
    assert tuple(img[8, 8]) == (255, 0, 0) and tuple(img[0, 0]) == (255, 255, 255)
    with pytest.warns(DataWarning):
        timed = read_folder(shop, resolution=16, split="time")
    alice = timed.user_ids.index("alice")
    assert timed.item_ids[timed.test[alice]] == "1" and timed.item_ids[timed.val[alice]] == "boot"
    with pytest.warns(DataWarning):
        again = load_dataset(shop, resolution=16, seed=1)
    assert np.array_equal(again.train, ds.train) and np.array_equal(again.test, ds.test)


def test_folder_reader_errors(tmp_path, shop):
    with pytest.raises(GisUsageError, match="not found"):
        read_folder(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GisUsageError, match="no images"):
        read_folder(tmp_path / "empty")
    (shop / "interactions.csv").write_text("user,item\na,1\n")
    with pytest.raises(GisUsageError, match="user_id"):
        read_folder(shop)
    (shop / "interactions.csv").unlink()
    with pytest.raises(GisUsageError, match="interactions file not found"):
        read_folder(shop)


# ------------------------------------------------------------------------------ DVBPR reader


@pytest.fixture
def dvbpr_file(tmp_path) -> Path:
    """A tiny AmazonFashion6ImgPartitioned.npy with DVBPR's exact structure."""
    def onehot(k):
        c = np.zeros(6, dtype=np.float64)
        c[k] = 1
        return c

    items = {
        0: {b"imgs": _img_bytes((255, 0, 0), "JPEG", (40, 60)), b"c": onehot(2)},
        1: {b"imgs": _img_bytes((0, 255, 0), "JPEG"), b"c": onehot(5)},
        2: {b"imgs": b"\xff\xd8\xff broken jpeg", b"c": onehot(1)},
        3: {b"imgs": _img_bytes((0, 0, 255), "PNG"), b"c": onehot(0)},
        4: {b"imgs": _img_bytes((10, 10, 10), "JPEG"), b"c": onehot(3)},
    }
    pid = [{b"productid": k} for k in range(5)]
    user_train = {0: [pid[0], pid[1]], 1: [pid[2], pid[3], pid[4]], 2: [pid[1]]}
    user_val = {0: [pid[3]], 1: [pid[0]], 2: [pid[2]]}
    user_test = {0: [pid[4]], 1: [pid[1]], 2: [pid[3]]}
    return write_dvbpr(tmp_path / "AmazonFashion6ImgPartitioned.npy", user_train, user_val,
                       user_test, items, 3, 5)


def test_dvbpr_reader(dvbpr_file):
    with pytest.raises(UntrustedFileError, match="--trust"):
        read_dvbpr(dvbpr_file)
    with pytest.raises(UntrustedFileError):
        load_dataset(dvbpr_file)
    with pytest.warns(DataWarning) as record:
        ds = load_dataset(dvbpr_file, trust=True, resolution=24)
    messages = " | ".join(str(w.message) for w in record)
    assert "skipped 1 of 5" in messages and "dropped 2" in messages
    assert ds.item_ids == ["0", "1", "3", "4"] and ds.user_ids == ["0", "1", "2"]
    assert ds.images.shape == (4, 24, 24, 3)
    assert list(ds.categories) == [2, 5, 0, 3] and len(ds.category_names) == 6
    assert tuple(ds.item_array("3")[12, 12]) == (0, 0, 255)
    red = ds.item_array("0")
    assert red[12, 12, 0] > 200 and red[12, 12, 1] < 60 and red[12, 0].min() > 240  # padded
    idx = {k: i for i, k in enumerate(ds.item_ids)}
    assert sorted(map(tuple, ds.train.tolist())) == [(0, idx["0"]), (0, idx["1"]),
                                                     (1, idx["3"]), (1, idx["4"]),
                                                     (2, idx["1"])]
    assert list(ds.val) == [idx["3"], idx["0"], -1] and list(ds.test) == [idx["4"], idx["1"],
                                                                           idx["3"]]


def test_dvbpr_not_a_dvbpr_file(tmp_path):
    p = tmp_path / "x.npy"
    np.save(p, np.zeros(3))
    with pytest.raises(GisUsageError, match="not a DVBPR"):
        read_dvbpr(p, trust=True)


# ------------------------------------------------------------------------------ load_dataset


def test_load_dataset_errors(tmp_path):
    with pytest.raises(GisUsageError, match="unknown dataset 'nope'.*fashion-colors"):
        load_dataset("nope")
    with pytest.raises(GisUsageError, match="not found"):
        load_dataset(tmp_path / "missing.npz")
    (tmp_path / "x.csv").write_text("a")
    with pytest.raises(GisUsageError, match="cannot tell the format"):
        load_dataset(tmp_path / "x.csv")


# ------------------------------------------------------------------------------ CLI


def test_cli_info_users_show(tmp_path):
    r = _cli("data", "info")
    assert r.exit_code == 0, r.output
    assert "6000 catalogue" in r.output and "median" in r.output and DEFAULT_ITEM_ID in r.output
    r = _cli("data", "users", "--top", "3")
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 4
    out = tmp_path / "grid.png"
    r = _cli("data", "show", "--out", str(out), "--n", "20", "--by", "category")
    assert r.exit_code == 0, r.output
    with Image.open(out) as im:
        assert im.size[0] > 64
    r = _cli("data", "show", "--out", str(out), "--n", "8", "--heldout", "--by", "color")
    assert r.exit_code == 0, r.output


def test_cli_build_convert_and_errors(tmp_path, fake_mnist, dvbpr_file):
    out = tmp_path / "fc.npz"
    r = _cli("data", "build", "--source", str(fake_mnist), "--out", str(out), "--items", "100",
             "--heldout", "20", "--users", "30", "--seed", "1")
    assert r.exit_code == 0, r.output
    assert out.exists() and json.loads(str(np.load(out)["meta"]))["users"] == 30
    ds = gis.get_dataset("fashion-colors", path=out)
    assert ds.num_items == 100 and ds.num_users == 30
    r = _cli("data", "info", str(out), "--auc")
    assert r.exit_code == 0 and "AUC true utility" in r.output
    r = _cli("data", "info", str(dvbpr_file))
    assert r.exit_code == 2 and "--trust" in r.output and "Traceback" not in r.output
    conv = tmp_path / "conv.npz"
    with pytest.warns(DataWarning):
        r = _cli("data", "convert", str(dvbpr_file), "--trust", "--out", str(conv))
    assert r.exit_code == 0, r.output
    assert load_dataset(conv).num_items == 4
    r = _cli("data", "info", "no-such-dataset")
    assert r.exit_code == 2 and "unknown dataset" in r.output
    r = _cli("data", "build", "--source", str(tmp_path), "--out", str(tmp_path / "y.npz"))
    assert r.exit_code == 2 and "dataset-fashion-mnist" in r.output
