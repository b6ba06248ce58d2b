"""Inputs written by other tools (gis.data.inputs and its users) and large camera photos.

Each kind of real bug report is a test: UTF-8/UTF-16 byte-order marks, CRLF, ';' separators,
Windows-1252, ids that lost their leading zeros, NFD file names against NFC text, interactions
of which none survives, every image format --item accepts in a folder, a 45 MP JPEG loaded
with bounded memory, and the decompression-bomb guard that stays.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import unicodedata
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageDraw

from gis.data import DataWarning, read_dvbpr, read_folder, write_dvbpr
from gis.data.inputs import IdIndex, normalize_id, read_id_list, read_table, read_text
from gis.engine.targets import read_user_file, resolve_targets
from gis.errors import BadImageError, GisUsageError, UnknownUserError
from gis.images import MAX_PIXELS, image_suffixes, load_image, open_image
from gis.interfaces import Recommender

NFC, NFD = "café", unicodedata.normalize("NFD", "café")
COLORS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (250, 200, 0)]


def _cli(*args):
    from gis.cli import cli

    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _shop(root: Path, stems: list[str], csv_bytes: bytes, fmt: str = "PNG") -> Path:
    (root / "images").mkdir(parents=True)
    for stem, color in zip(stems, COLORS, strict=False):
        Image.new("RGB", (10, 10), color).save(root / "images" / f"{stem}.{fmt.lower()}", fmt)
    (root / "interactions.csv").write_bytes(csv_bytes)
    return root


def _excel_csv(rows, header=("user_id", "item_id"), sep=",") -> bytes:
    """What Excel's 'CSV UTF-8' writes: a byte-order mark, CRLF line ends."""
    lines = [sep.join(header)] + [sep.join(map(str, r)) for r in rows]
    return "\ufeff".encode() + "\r\n".join(lines).encode() + b"\r\n"


ROWS = [("u1", 0), ("u1", 1), ("u1", 2), ("u2", 1), ("u2", 3), ("u2", 0), ("u3", 2)]


# ------------------------------------------------------------------------------ text and ids


def test_excel_csv_bom_crlf_and_lost_leading_zeros(tmp_path):
    shop = _shop(tmp_path / "shop", ["0000", "0001", "0002", "0003"], _excel_csv(ROWS))
    ds = read_folder(shop, resolution=8)
    assert ds.item_ids == ["0000", "0001", "0002", "0003"]
    assert ds.user_ids == ["u1", "u2", "u3"]  # no BOM glued to the first header or id
    kept = len(ds.train) + (ds.val >= 0).sum() + (ds.test >= 0).sum()
    assert kept == len(ROWS) and ds.meta["dropped_interactions"] == 0
    assert tuple(ds.item_array("3")[4, 4]) == COLORS[3]  # --item-id 3 finds 0003 too
    assert ds.find_item("0002") == ("catalogue", 2)


def test_nfd_file_names_match_nfc_text(tmp_path):
    stems = [NFD, unicodedata.normalize("NFD", "jupe-rosé"), "robe"]
    rows = [("ana", NFC), ("ana", "jupe-rosé"), ("ana", "robe"), ("bo", NFC), ("bo", "robe")]
    shop = _shop(tmp_path / "shop", stems, _excel_csv(rows))
    ds = read_folder(shop, resolution=8)
    assert NFC in ds.item_ids and "jupe-rosé" in ds.item_ids  # ids are NFC
    assert ds.meta["dropped_interactions"] == 0 and ds.num_users == 2
    assert ds.find_item(NFD) == ds.find_item(NFC)
    # the same name twice, NFC and NFD, is one item with two images: an error naming both
    Image.new("RGB", (4, 4)).save(shop / "images" / f"{NFC}.jpg")
    with pytest.raises(GisUsageError, match="two images for item 'café'"):
        read_folder(shop, resolution=8)


def test_no_surviving_interaction_is_an_error_with_both_sides(tmp_path):
    rows = [("u1", "a"), ("u1", "b"), ("u2", "c")]
    shop = _shop(tmp_path / "shop", ["0000", "0001"], _excel_csv(rows))
    with pytest.raises(GisUsageError) as err:
        read_folder(shop, resolution=8)
    msg = str(err.value)
    assert "no interaction" in msg and "3 interaction(s) naming item ids that match no image" in msg
    assert "e.g. 'a', 'b', 'c'; image ids look like '0000', '0001'" in msg
    r = _cli("data", "info", str(shop))
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert "match no image file" in r.output and "users:" not in r.output
    (shop / "interactions.csv").write_bytes(_excel_csv([]))  # a header and nothing else
    with pytest.raises(GisUsageError, match="names no interactions"):
        read_folder(shop, resolution=8)


def test_some_unmatched_ids_warn_with_examples_of_both_sides(tmp_path):
    shop = _shop(tmp_path / "shop", ["0000", "0001", "0002"],
                 _excel_csv([*ROWS[:3], ("u2", "sku-9"), ("u2", "0")]))
    with pytest.warns(DataWarning, match=r"dropped 1 interaction\(s\) naming item ids that "
                      r"match no image file .*e\.g\. 'sku-9'; image ids look like '0000'"):
        ds = read_folder(shop, resolution=8)
    assert ds.meta["dropped_interactions"] == 1 and ds.num_users == 2


def test_semicolon_utf16_and_windows_1252_tables(tmp_path):
    p = tmp_path / "t.csv"
    p.write_bytes(b"User ID;Item-ID\r\nx;0007\r\n;\r\ny;8\r\n")
    assert read_table(p, ("user_id", "item_id")) == [(2, {"user_id": "x", "item_id": "0007"}),
                                                      (4, {"user_id": "y", "item_id": "8"})]
    p.write_bytes("user_id\titem_id\r\nx\t" .encode("utf-16") + f"{NFD}\r\n".encode("utf-16-le"))
    assert read_table(p, ("user_id", "item_id")) == [(2, {"user_id": "x", "item_id": NFC})]
    p.write_bytes("user_id,item_id\ncaf\xe9,1\n".encode("cp1252"))  # Excel's plain 'CSV'
    with pytest.warns(DataWarning, match="not UTF-8 .*Windows-1252"):
        assert read_table(p, ("user_id", "item_id"))[0][1]["user_id"] == NFC
    p.write_bytes(b"user_id,item_id\n\x00\x01\x02")
    with pytest.raises(GisUsageError, match="not text"):
        read_text(p)
    p.write_bytes(b"\xef\xbb\xbfuser,item\r\n1,2\r\n")
    with pytest.raises(GisUsageError, match=r"missing column\(s\) user_id, item_id.*found: "
                       r"user, item"):
        read_table(p, ("user_id", "item_id"))


def test_users_file_and_tolerant_user_ids(tmp_path):
    f = tmp_path / "users.csv"
    f.write_bytes(b"\xef\xbb\xbfUser_ID,score\r\n# a comment\r\n007,1\r\n\r\nCaf\xc3\xa9,2\r\n"
                  + f"{NFD},3\r\n".encode())
    assert read_user_file(f) == ["007", "Café", NFC]
    assert read_id_list(f, what="ids") == ["User_ID", "007", "Café", NFC]  # no header names
    # a quote left open is an error naming the line (strict CSV), in a table as in a list
    open_quote = tmp_path / "open.csv"
    open_quote.write_text('user_id,item_id\nu1,i1\n"u2,i2\nu3,i3\n')
    for read in (lambda: read_id_list(open_quote, what="ids"),
                 lambda: read_table(open_quote, ("user_id", "item_id"))):
        with pytest.raises(GisUsageError, match=r"open.csv, line 4: unexpected end of data "
                                                r"\(a quote left open\?\)"):
            read()

    class Users(Recommender):
        user_ids = ["7", NFC, "u0001"]

    rec = Users()
    rows = resolve_targets(rec, users_file=f)  # 007 -> "7"; Café -> café (case); NFD -> NFC
    assert rows.tolist() == [0, 1]
    assert resolve_targets(rec, users=[" U0001", "7.0"]).tolist() == [2, 0]
    with pytest.raises(UnknownUserError, match="unknown user id 'nobody'"):
        resolve_targets(rec, users=["nobody"])


def test_id_index_rules():
    index = IdIndex(["1", "01", "0010", "Boot", NFD + "\ufeff", " x "])
    assert index.ids[4] == NFC and index.ids[5] == "x"
    assert index.get("1") == 0 and index.get("01") == 1  # exact spellings first
    assert index.get("001") is None  # two ids have the value 1: no guess
    assert index.get("10") == 2 and index.get("10.0") == 2 and index.get("1e1") is None
    assert index.get("boot") == 3 and index.get("BOOT", fallback=False) is None
    assert index.get(NFC) == 4 and "\u200bx" in index and "y" not in index
    assert normalize_id("\ufeff\u00a0café\u200b ") == NFC
    with pytest.raises(GisUsageError, match="same after Unicode normalisation"):
        IdIndex([NFC, NFD], what="item ids")


def test_dvbpr_reader_with_no_interaction_left_is_an_error(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (9, 9, 9)).save(buf, "PNG")
    items = {0: {b"imgs": buf.getvalue()}, 1: {b"imgs": b"broken"}}
    pid = {b"productid": 1}  # every interaction names the broken image
    path = write_dvbpr(tmp_path / "d.npy", {0: [pid]}, {0: [pid]}, {0: [pid]}, items, 1, 2)
    with pytest.warns(DataWarning), pytest.raises(GisUsageError, match="no interaction is left"):
        read_dvbpr(path, trust=True, resolution=8)


# ------------------------------------------------------------------------------ image formats


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # Pillow deprecates IM, ...
def test_folder_reader_takes_every_format_item_takes(tmp_path):
    """One image per format Pillow can both write and open here: the folder reader keeps
    exactly the files that load as --item (ids = stems; extensions in any case) and skips
    the others (a format whose decoder is absent here, e.g. EPS without Ghostscript)."""
    Image.init()
    by_format: dict[str, str] = {}
    for ext, fmt in sorted(Image.registered_extensions().items()):
        if ext in image_suffixes() and fmt in Image.SAVE and fmt not in by_format:
            by_format[fmt] = ext
    assert {"JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF", "TGA", "PPM", "ICO"} <= set(by_format)
    root = tmp_path / "shop"
    (root / "images").mkdir(parents=True)
    loads, refused = [], []
    for k, (fmt, ext) in enumerate(sorted(by_format.items())):
        path = root / "images" / f"item{k}{ext.upper() if k % 2 else ext}"
        try:
            Image.new("RGB", (16, 16), (200, 30, 60)).save(path, fmt)
        except (OSError, ValueError, KeyError):  # a mode or codec this format lacks here
            path.unlink(missing_ok=True)
            continue
        try:
            assert load_image(path, size=8).shape == (1, 3, 8, 8)  # what --item does
            loads.append(f"item{k}")
        except BadImageError:
            refused.append(f"item{k}")
    assert len(loads) >= 12
    (root / "interactions.csv").write_text("user_id,item_id\n" + "".join(
        f"u,{stem}\n" for stem in loads))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = read_folder(root, resolution=8)
    assert sorted(ds.item_ids) == sorted(loads) and ds.meta["skipped_images"] == len(refused)
    assert len(ds.train) + (ds.val >= 0).sum() + (ds.test >= 0).sum() == len(loads)
    data_warnings = [w for w in caught if issubclass(w.category, DataWarning)]
    assert len(data_warnings) == (1 if refused else 0)


# ------------------------------------------------------------------------------ large photos


@pytest.fixture(scope="module")
def camera_photo(tmp_path_factory) -> Path:
    """A 45.4 MP baseline JPEG (8256 x 5504, a Nikon D850 frame): white, a red block."""
    path = tmp_path_factory.mktemp("photo") / "camera_45mp.jpg"
    im = Image.new("RGB", (8256, 5504), (245, 245, 245))
    ImageDraw.Draw(im).rectangle((2752, 1100, 5504, 4403), fill=(180, 40, 40))
    im.save(path, quality=85)
    return path


def test_camera_photo_loads_at_reduced_scale(camera_photo, tmp_path):
    img = open_image(camera_photo, draft=256)
    assert img.size == (1032, 688)  # decoded at 1/8 scale: 0.7 MP instead of 45.4 MP
    x = load_image(camera_photo, size=64)
    assert x.shape == (1, 3, 64, 64)
    centre = ((x[0, :, 32, 32] + 1) * 127.5).round().tolist()
    assert centre == pytest.approx([180, 40, 40], abs=6)
    assert ((x[0, :, 2, 32] + 1) * 127.5).min() > 240  # padding and background white
    # and inside a folder dataset: loaded, not "broken"
    shop = _shop(tmp_path / "shop", ["0000", "0001"], _excel_csv([("u", 0), ("u", 1),
                                                                  ("u", 12)]))
    (shop / "images" / "0012.jpg").write_bytes(camera_photo.read_bytes())
    ds = read_folder(shop, resolution=16)
    assert ds.item_ids == ["0000", "0001", "0012"] and ds.meta["skipped_images"] == 0


def test_camera_photo_memory_is_bounded(camera_photo):
    """Peak resident memory added by loading the 45 MP JPEG as --item, in a fresh process
    (a full decode needs 8256 * 5504 * 3 bytes = 136 MB at least)."""
    code = ("import resource, json, sys; import gis.images as g; "
            "r = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            "b = r(); x = g.load_image(sys.argv[1], size=256); "
            "print(json.dumps([b, r(), list(x.shape)]))")
    out = subprocess.run([sys.executable, "-c", code, str(camera_photo)], capture_output=True,
                         text=True, timeout=120, check=True)
    before, after, shape = json.loads(out.stdout.strip().splitlines()[-1])
    assert shape == [1, 3, 256, 256]
    assert (after - before) / 1024 < 48  # MB; measured about 9


def test_bomb_guard_stays_for_what_cannot_be_drafted(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (1, 2, 3)).save(buf, "JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")

    def claim(width, height) -> Path:  # a tiny JPEG whose header claims width x height
        data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
        path = tmp_path / f"{width}x{height}.jpg"
        path.write_bytes(bytes(data))
        return path

    big = claim(12_000, 9_000)  # 108 MP: over the decoding budget in full, fine at 1/8
    assert 12_000 * 9_000 > MAX_PIXELS
    with pytest.raises(BadImageError, match=r"too large.*downscale it to at most 10\d\d\d "):
        open_image(big)  # no reduced-scale decoding asked for: refused before decoding
    assert open_image(big, draft=256).size == (1500, 1125)  # decoded at 1/8: 1.7 MP
    absurd = claim(60_000, 60_000)  # 3.6 gigapixels: refused whatever the scale
    with pytest.raises(BadImageError, match="too large"):
        open_image(absurd, draft=64)
    assert torch.is_tensor(load_image(claim(16, 16), size=8))
    assert np.isfinite(load_image(claim(16, 16), size=8).numpy()).all()


def test_data_warnings_print_as_one_line_each(tmp_path):
    """A skipped image and a Windows-1252 file: `WARNING: ...` lines, not Python's two-line
    warnings with gis's file, line number and source (a new user's trial)."""
    import warnings

    text = "user_id,item_id\r\nana,0000\r\nana,0001\r\nb\u00f6,0000\r\nb\u00f6,0002\r\n"
    shop = _shop(tmp_path / "shop", ["0000", "0001", "0002"], text.encode("cp1252"))
    (shop / "images" / "0003.png").write_bytes(b"\x89PNG not really")
    # a real process: pytest records warnings instead of printing them
    res = subprocess.run([sys.executable, "-c", "from gis.cli import main; main()", "data",
                          "info", str(shop)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 2 and all(line.startswith("WARNING: ") for line in lines), lines
    assert any("skipped 1 image(s)" in line and "0003.png" in line for line in lines)
    assert any("Windows-1252" in line for line in lines), lines
    with warnings.catch_warnings(record=True) as caught:  # recorders still get them
        warnings.simplefilter("always")
        assert _cli("data", "info", str(shop)).exit_code == 0
    assert sum(issubclass(w.category, DataWarning) for w in caught) == 2


def test_items_without_a_category_row_are_named_in_a_warning(tmp_path):
    """items.csv that misses images or leaves a category empty: those items become
    'unknown', said in one warning with examples (a new user's trial: 37 of 56 silently)."""
    rows = [("ana", "0000"), ("ana", "0001"), ("bo", "0000"), ("bo", "0002")]
    shop = _shop(tmp_path / "shop", ["0000", "0001", "0002"], _excel_csv(rows))
    (shop / "items.csv").write_text("item_id,category\n0000,shirt\n0001,\n")
    with pytest.warns(DataWarning, match=r"1 image\(s\) have no row \(e.g. 0002\) and 1 row\(s\) "
                                         r"have an empty category \(e.g. 0001\); those items get "
                                         r"category 'unknown'"):
        ds = read_folder(shop, resolution=8)
    assert sorted(ds.category_names) == ["shirt", "unknown"]
    (shop / "items.csv").write_text("item_id,category\n0000,shirt\n0001,shoe\n0002,shoe\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # every item has its category: silent
        assert sorted(read_folder(shop, resolution=8).category_names) == ["shirt", "shoe"]


def test_an_item_whose_image_was_skipped_is_named_as_such(tmp_path):
    """`--item-id` of an item whose image could not be decoded: the error says the image was
    skipped and why, not just "unknown item id" (a new user's trial)."""
    rows = [("ana", "0000"), ("ana", "0001"), ("bo", "0000"), ("bo", "0002")]
    shop = _shop(tmp_path / "shop", ["0000", "0001", "0002"], _excel_csv(rows))
    (shop / "images" / "0003.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(DataWarning, match="skipped 1 image"):
        ds = read_folder(shop, resolution=8)
    with pytest.raises(GisUsageError, match=r"item '0003' is not in dataset 'shop': its image "
                                            r"was skipped when the folder was read \(not an "
                                            r"image.*0003.png\): replace the image"):
        ds.find_item(" 0003 ")
    with pytest.raises(GisUsageError, match="unknown item id 'zzz'"):
        ds.find_item("zzz")
