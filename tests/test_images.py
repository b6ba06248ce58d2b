"""gis.images: safe loading of user-supplied images, saving and grids."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from gis.errors import BadImageError
from gis.images import (
    MAX_FIT_ASPECT,
    MAX_PIXELS,
    MAX_SOURCE_PIXELS,
    MIN_FIT_SIDE,
    decode_image,
    load_image,
    make_grid,
    make_grid_png,
    save_image,
    to_uint8,
)


def _save(img: Image.Image, path, **kw):
    img.save(path, **kw)
    return path


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR width/height of a PNG (and its CRC): a tiny file claiming a huge image."""
    assert data[12:16] == b"IHDR"
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return data[:16] + bytes(ihdr) + crc + data[33:]


def _unit(x: torch.Tensor) -> np.ndarray:
    """(1, 3, s, s) in [-1, 1] -> (s, s, 3) uint8."""
    return to_uint8(x)[0]


def test_rgb_load_shape_range_and_white_padding(tmp_path):
    arr = np.zeros((10, 20, 3), np.uint8)
    arr[..., 0] = 255  # red, twice as wide as tall
    path = _save(Image.fromarray(arr), tmp_path / "wide.png")
    x = load_image(path, size=16)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    img = _unit(x)
    assert (img[0] == 255).all() and (img[-1] == 255).all()  # padded rows are white
    assert tuple(img[8, 8]) == (255, 0, 0)
    y = load_image(path, size=16, value_range=(0, 1))
    torch.testing.assert_close(y, (x + 1) / 2)


def _mode_image(mode: str) -> Image.Image:
    g = np.linspace(0, 1, 8 * 8).reshape(8, 8)
    if mode == "L":
        return Image.fromarray((g * 255).astype(np.uint8))
    if mode == "1":
        return Image.fromarray((g * 255).astype(np.uint8)).convert("1")
    if mode == "LA":
        return Image.merge("LA", [Image.fromarray((g * 255).astype(np.uint8)),
                                  Image.new("L", (8, 8), 255)])
    if mode == "I;16":
        return Image.fromarray((g * 65535).astype(np.uint16))
    if mode == "I":
        return Image.fromarray((g * 65535).astype(np.int32))
    if mode == "F":
        return Image.fromarray(g.astype(np.float32))
    if mode == "P":
        return Image.fromarray((g * 255).astype(np.uint8)).convert("RGB").quantize(16)
    if mode == "CMYK":
        return Image.new("CMYK", (8, 8), (255, 0, 0, 0))
    if mode == "RGBA":
        return Image.new("RGBA", (8, 8), (0, 0, 255, 255))
    raise AssertionError(mode)


@pytest.mark.parametrize("mode,suffix", [
    ("L", ".png"), ("1", ".png"), ("LA", ".png"), ("I;16", ".png"), ("I", ".tif"),
    ("F", ".tif"), ("P", ".png"), ("CMYK", ".jpg"), ("RGBA", ".png"),
])
def test_modes_convert_to_rgb(tmp_path, mode, suffix):
    img = _mode_image(mode)
    assert img.mode == mode
    path = _save(img, tmp_path / f"img{suffix}")
    x = load_image(path, size=8)
    assert x.shape == (1, 3, 8, 8) and torch.isfinite(x).all()
    out = _unit(x)
    if mode in ("L", "I;16", "I", "F", "LA"):
        # greyscale of any depth: black at the first pixel, white at the last, grey channels
        assert out[0, 0].max() <= 8 and out[-1, -1].min() >= 247
        assert (out[..., 0] == out[..., 1]).all()
    if mode == "CMYK":
        r, g, b = out[4, 4].astype(int)
        assert r < 40 and g > 200 and b > 200  # cyan
    if mode == "RGBA":
        assert tuple(out[4, 4]) == (0, 0, 255)


def test_transparency_composited_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[:2, :, :] = (200, 0, 0, 255)   # top half opaque red
    rgba[2:, :, :] = (0, 200, 0, 0)     # bottom half fully transparent green
    path = _save(Image.fromarray(rgba), tmp_path / "alpha.png")
    out = decode_image(path)
    assert tuple(out[0, 0]) == (200, 0, 0)
    assert tuple(out[3, 3]) == (255, 255, 255)
    p = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), mode="P")
    p.putpalette([10, 20, 30, 40, 50, 60])
    p.info["transparency"] = 0
    path = _save(p, tmp_path / "p_transparent.png")
    out = decode_image(path)
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[0, 1]) == (40, 50, 60)


def test_missing_path_and_directory(tmp_path):
    with pytest.raises(BadImageError, match="image not found"):
        load_image(tmp_path / "nope.png", size=8)
    with pytest.raises(BadImageError, match="not a file"):
        load_image(tmp_path, size=8)


def test_not_an_image(tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n")
    with pytest.raises(BadImageError, match="not an image") as info:
        load_image(text, size=8)
    assert "\n" not in str(info.value) and str(text) in str(info.value)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(BadImageError):
        load_image(junk, size=8)


def test_corrupt_png_and_truncated_jpeg(tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    trunc = tmp_path / "trunc.jpg"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImageError, match="corrupt or truncated"):
        load_image(trunc, size=16)
    png = bytearray(_png_bytes(img))
    png[60:120] = bytes(60)  # smash part of the IDAT stream
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(bytes(png))
    with pytest.raises(BadImageError):
        load_image(bad, size=16)
    with pytest.raises(BadImageError):
        decode_image(data[:100])


@pytest.mark.parametrize("width,height,limit", [
    (100_000, 100_000, "89.5 MP"),   # over Pillow's decompression-bomb error threshold: the
                                     # advice is still the decoding budget
    (10_000, 9_500, "89.5 MP"),      # 95 MP: a PNG is decoded in full, over the budget
    (65_000, 2_000, "89.5 MP"),
])
def test_huge_dimensions_refused_before_decoding(tmp_path, width, height, limit):
    assert width * height > MAX_PIXELS
    data = _patch_png_size(_png_bytes(Image.new("RGB", (1, 1), (255, 0, 0))), width, height)
    path = tmp_path / "huge.png"
    path.write_bytes(data)
    assert path.stat().st_size < 200
    with pytest.raises(BadImageError, match="too large") as err:
        load_image(path, size=32)
    msg = str(err.value)
    assert "\n" not in msg and limit in msg and "downscale" in msg
    if width * height <= MAX_SOURCE_PIXELS:  # the size to downscale to fits the budget
        side = int(msg.split("at most ")[-1].split(" pixels")[0])
        assert side * side * min(width, height) / max(width, height) <= MAX_PIXELS
        assert (side + 1) ** 2 * min(width, height) / max(width, height) > MAX_PIXELS * 0.999


@pytest.mark.parametrize("width,height,what", [
    (1, 1, "too small"), (7, 3, "too small"), (4000, 20, "too wide"), (20, 200, "too tall"),
])
def test_an_item_image_that_cannot_show_a_product_is_refused(tmp_path, width, height, what):
    """A 1x1 placeholder or a 4000x20 strip would be shifted as a flat square or a line on
    white: refused as an item image, with the fix; dataset readers still decode it."""
    path = _save(Image.new("RGB", (width, height), (200, 30, 30)), tmp_path / "odd.png")
    with pytest.raises(BadImageError, match=what) as err:
        load_image(path, size=32)
    msg = str(err.value)
    assert "\n" not in msg and f"{width}x{height}" in msg and str(path) in msg
    assert ("crop it" in msg) == (what != "too small")
    assert decode_image(path).shape == (height, width, 3)
    # a dataset reader takes it as it is: a catalogue's items do not depend on this rule
    assert decode_image(path, size=32).shape == (32, 32, 3)


def test_the_limits_of_a_fitted_image_are_inclusive(tmp_path):
    side = int(MIN_FIT_SIDE * MAX_FIT_ASPECT)
    for w, h in [(MIN_FIT_SIDE, 1), (side, MIN_FIT_SIDE), (MIN_FIT_SIDE, side)]:
        path = _save(Image.new("RGB", (w, h), (0, 0, 0)), tmp_path / f"{w}x{h}.png")
        assert load_image(path, size=32).shape == (1, 3, 32, 32)


def test_decode_bytes_and_large_image_fit(tmp_path):
    img = Image.new("RGB", (300, 100), (0, 128, 255))
    out = decode_image(_png_bytes(img), size=30)
    assert out.shape == (30, 30, 3) and out.dtype == np.uint8
    assert tuple(out[15, 15]) == (0, 128, 255) and tuple(out[0, 0]) == (255, 255, 255)
    buf = io.BytesIO()
    img.save(buf, format="JPEG")
    assert decode_image(buf.getvalue(), size=30).shape == (30, 30, 3)


def test_save_image_and_grid(tmp_path):
    x = torch.linspace(-1, 1, 3 * 8 * 8).reshape(1, 3, 8, 8)
    p = save_image(x, tmp_path / "one.png")
    back = load_image(p, size=8)
    torch.testing.assert_close(back, x, atol=1 / 127.5, rtol=0)
    batch = torch.rand(5, 3, 8, 8) * 2 - 1
    grid = make_grid(batch, labels=list("abcde"), nrow=3)
    assert grid.size[0] > 3 * 64 and grid.mode == "RGB"  # tiles upscaled for readability
    path = make_grid_png(batch, tmp_path / "sub" / "grid.png", labels=list("abcde"))
    with Image.open(path) as written:
        assert written.size == grid.size
    u8 = (np.random.default_rng(0).random((4, 8, 8, 3)) * 255).astype(np.uint8)
    assert make_grid(u8).size[0] > 0
    assert save_image(batch, tmp_path / "batch.png").exists()
    with pytest.raises(Exception, match="labels"):
        make_grid(batch, labels=["a"])
