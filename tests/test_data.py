"""gis.data: the readers, the split, the default item, ground truth and `gis data` (the
fashion-colors plugin's own dataset is tested in tests/test_fashion_colors.py)."""

from __future__ import annotations

import csv
import dataclasses
import io
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from gis_fashion_colors import DEFAULT_ITEM_ID
from PIL import Image

from gis.data import (
    Dataset,
    DataWarning,
    default_item_id,
    dvbpr_split,
    load_dataset,
    load_npz,
    oracle_auc,
    read_dvbpr,
    read_folder,
    sampled_auc,
    save_dataset,
    with_resolution,
    write_dvbpr,
)
from gis.errors import GisUsageError, MissingAssetError, UntrustedFileError
from gis.interfaces import GroundTruth


def _cli(*args):
    from gis.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


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


# ------------------------------------------------------------------------------ ground truth


class BrightnessTruth(GroundTruth):
    """A toy ground truth: user row r values an image's mean brightness (r + 1) times."""

    def utility(self, images, users, categories, *, value_range=(-1.0, 1.0)):
        lo, hi = value_range
        bright = ((images - lo) / (hi - lo)).mean(dim=(1, 2, 3)).double().numpy()
        return (np.asarray(users)[:, None] + 1.0) * bright[None]

    def category_classifier(self, *, device="cpu"):
        raise MissingAssetError("no classifier in this toy truth")


def test_ground_truth_capability_default_item_and_resolution():
    ds = _tiny_dataset(n_items=40, n_users=6)
    assert not ds.has_ground_truth
    with pytest.raises(GisUsageError, match="offers no ground truth"):
        ds.ground_truth  # noqa: B018
    with pytest.raises(GisUsageError, match="no ground truth"):
        oracle_auc(ds)
    known = dataclasses.replace(ds, ground_truth_factory=BrightnessTruth)
    truth = known.ground_truth
    assert known.has_ground_truth and truth is known.ground_truth and truth.dataset is known
    u = truth.item_utility(np.array([0, 2]), np.arange(5))  # default: from the images
    assert u.shape == (2, 5)
    np.testing.assert_allclose(u[1], 3 * u[0])
    assert 0.0 <= oracle_auc(known, num_negatives=10) <= 1.0
    # a resized copy gets its own truth and loses the assets made for the native resolution
    known.meta.update(asset="model.bin", native_resolution_keys=["asset"])
    small = with_resolution(known, 16)
    assert "asset" not in small.meta and "asset" in known.meta
    assert small.ground_truth.dataset is small
    # the default item: the dataset's meta when it names a known item, else the first item
    assert default_item_id(known) == "item0"
    known.meta["default_item"] = "item7"
    assert default_item_id(known) == "item7"
    known.meta["default_item"] = "gone"
    assert default_item_id(known) == "item0"


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
    assert "skipped 1 image(s)" in messages and "cannot be decoded" in messages
    assert "broken.png" in messages
    assert ("dropped 1 interaction(s) naming item ids that match no image file" in messages
            and "e.g. 'ghost'; image ids look like '1', '2', '3'" in messages)
    assert "dropped 1 interaction(s) naming images that cannot be decoded" in messages
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
    assert "(20 items of fashion-colors, labelled id and category)" in r.output
    with Image.open(out) as im:
        assert im.size[0] > 64
    r = _cli("data", "show", "--out", str(out), "--n", "8", "--heldout", "--by", "color")
    assert r.exit_code == 0, r.output


def test_cli_convert_and_errors(tmp_path, dvbpr_file):
    r = _cli("data", "info", str(dvbpr_file))
    assert r.exit_code == 2 and "--trust" in r.output and "Traceback" not in r.output
    conv = tmp_path / "conv.npz"
    with pytest.warns(DataWarning):
        r = _cli("data", "convert", str(dvbpr_file), "--trust", "--out", str(conv))
    assert r.exit_code == 0, r.output
    assert load_dataset(conv).num_items == 4
    # an existing file is never replaced silently (it may be the user's only copy), and the
    # file must be named so that --data recognises it
    before = conv.read_bytes()
    r = _cli("data", "convert", str(dvbpr_file), "--trust", "--out", str(conv))
    assert r.exit_code == 2 and "exists: pass --overwrite" in r.output
    assert conv.read_bytes() == before
    r = _cli("data", "convert", str(dvbpr_file), "--trust", "--out", str(tmp_path / "c.txt"))
    assert r.exit_code == 2 and "end in .npz" in r.output and "c.npz" in r.output
    assert not (tmp_path / "c.txt").exists()
    with pytest.warns(DataWarning):
        r = _cli("data", "convert", str(dvbpr_file), "--trust", "--out", str(conv),
                 "--overwrite")
    assert r.exit_code == 0, r.output
    r = _cli("data", "info", "no-such-dataset")
    assert r.exit_code == 2 and "unknown dataset" in r.output
