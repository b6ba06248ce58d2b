"""Safe image loading and saving for user-supplied item images.

Every failure (missing file, not an image, corrupt or truncated data, absurd dimensions) is
raised as :class:`gis.errors.BadImageError` with a one-line message naming the file.

Loading policy (``load_image``, ``decode_image``):

1. The header is read lazily (``PIL.Image.open``). Images of more than ``MAX_SOURCE_PIXELS``
   pixels (179 MP, Pillow's decompression-bomb error threshold) are refused before any pixel is
   decoded, whatever their format.
2. A JPEG that is resized anyway (``size`` given) is decoded at a reduced scale (``draft``: 1/2,
   1/4 or 1/8, staying at least ``size`` pixels on its longer side), so a 45-60 MP camera photo
   fitted to 1024 pixels or less decodes at 1/8 a side: 0.7-0.9 MP (measured on a 45 MP JPEG:
   0.12 s and +9 MB instead of 0.75 s and +354 MB). The pixels actually decoded must not exceed
   ``MAX_PIXELS`` (89 MP, Pillow's decompression-bomb warning threshold): a larger PNG, TIFF,
   WebP, ... (formats without reduced-scale decoding) is refused with the size to downscale it
   to. The first frame is decoded; EXIF orientation is applied.
3. Modes are converted to RGB: transparency (RGBA, LA, PA, P with a transparent colour) is
   composited onto white; 16-bit and 32-bit greyscale (``I;16*``, ``I``) and float (``F``)
   images are scaled to 8 bits (see ``_to_rgb``); CMYK, YCbCr, LAB, HSV, 1-bit and L go
   through PIL's conversion.
4. An item image (``load_image``: the seller's ``--item``) must depict something a square can
   show: at least ``MIN_FIT_SIDE`` pixels on its longer side (a 1x1 or 4x4 icon holds no
   product) and at most ``MAX_FIT_ASPECT``:1 (a 4000x20 strip fitted into a square is a line
   on white). Anything else is a BadImageError saying to crop or pad it. Dataset readers
   (``decode_image``) take every image as it is, so a catalogue's items and their order do
   not depend on this rule.
5. The image is fitted inside a ``size`` x ``size`` square keeping its aspect ratio (Lanczos)
   and centred on a white canvas, i.e. padded with white to a square (the look of a product
   photo), then scaled to ``[low, high] = value_range``.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps, UnidentifiedImageError

from .errors import BadImageError, GisUsageError

#: most pixels (width * height) decoded for one image, after JPEG reduced-scale decoding:
#: Pillow's decompression-bomb warning threshold (``PIL.Image.MAX_IMAGE_PIXELS``'s default,
#: about 268 MB as RGB), fixed here whatever a program sets Pillow's to
MAX_PIXELS = 89_478_485
#: most pixels an image file may declare, whatever its format: Pillow's decompression-bomb
#: error threshold; a larger file is refused before anything is decoded
MAX_SOURCE_PIXELS = 2 * MAX_PIXELS
#: Pillow formats whose files are not pictures or that Pillow only identifies (no decoder)
_NOT_PICTURES = frozenset({"BUFR", "GRIB", "HDF5", "MPEG", "IPTC"})
#: fewest pixels on an image's longer side for it to be fitted into a square (an item image)
MIN_FIT_SIDE = 8
#: widest aspect ratio (longer side / shorter side) of an image fitted into a square: at 8:1
#: a 32-pixel generator still sees the product 4 pixels across
MAX_FIT_ASPECT = 8.0
#: background used for padding and for compositing transparent images
WHITE = (255, 255, 255)

PathOrBytes = str | os.PathLike | bytes | bytearray | memoryview


def _describe(source: PathOrBytes) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return f"image data ({len(source)} bytes)"
    return str(source)


def image_suffixes() -> frozenset[str]:
    """File name extensions (lower case, with the dot) of every picture format ``open_image``
    decodes: those Pillow registers for a format it opens, including ones a Pillow plugin
    added (pillow-heif's ``.heic``, ...), except data formats Pillow only identifies."""
    Image.init()
    return frozenset(ext.lower() for ext, fmt in Image.registered_extensions().items()
                     if fmt in Image.OPEN and fmt not in _NOT_PICTURES) | {".mpo"}


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.1f} MP"


def _too_large(what: str, w: int, h: int, limit: int, fmt: str | None, why: str) -> str:
    side = math.floor(max(w, h) * math.sqrt(limit / (w * h)))
    return (f"image too large: {what} is {w}x{h} pixels ({_megapixels(w * h)}); {why} "
            f"{_megapixels(limit)} of a {fmt or 'non-JPEG'} image (Pillow's decompression-bomb "
            f"limit): downscale it to at most {side} pixels on its longer side"
            + ("" if fmt == "JPEG" else ", or save it as JPEG, which gis decodes at reduced "
               "scale"))


def _check_fit(what: str, w: int, h: int) -> None:
    """BadImageError unless a w x h image can be fitted into a square and still show a
    product (``MIN_FIT_SIDE``, ``MAX_FIT_ASPECT``)."""
    if max(w, h) < MIN_FIT_SIDE:
        raise BadImageError(f"image too small: {what} is {w}x{h} pixels; an item image needs "
                            f"at least {MIN_FIT_SIDE} pixels on its longer side (use the "
                            "product photo, not an icon or a placeholder)")
    aspect = max(w, h) / min(w, h)
    if aspect > MAX_FIT_ASPECT:
        side = "wide" if w > h else "tall"
        across = "height" if w > h else "width"
        ratio = f"{aspect:.0f}" if aspect >= 10 else f"{aspect:.1f}"
        raise BadImageError(f"image too {side}: {what} is {w}x{h} pixels ({ratio}:1), "
                            f"fitted into a square it would fill 1/{ratio} of its {across}; "
                            f"crop it to the product, or pad it to at most "
                            f"{MAX_FIT_ASPECT:.0f}:1")


def open_image(source: PathOrBytes, *, draft: int | None = None) -> Image.Image:
    """Open, check and fully decode an image (first frame), returning it in its own mode.

    ``source`` is a path or the encoded bytes. ``draft`` (pixels) lets a JPEG decode at 1/2,
    1/4 or 1/8 scale while its longer side stays at least ``draft`` pixels (module docstring).
    Raises BadImageError for a missing file, data that is not an image, a file declaring more
    than ``MAX_SOURCE_PIXELS``, more than ``MAX_PIXELS`` to decode, or corrupt/truncated data.
    """
    what = _describe(source)
    if isinstance(source, bytes | bytearray | memoryview):
        fp = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise BadImageError(f"image not found: {path}")
        if not path.is_file():
            raise BadImageError(f"not a file: {path}")
        fp = path.open("rb")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) for a header over MAX_PIXELS: gis applies
            # that budget itself to the pixels decoded (after a JPEG's reduced-scale draft)
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                img = Image.open(fp)
            except Image.DecompressionBombError as exc:
                raise BadImageError(f"image too large to load: {what} ({exc}); downscale it "
                                    f"to at most {_megapixels(MAX_PIXELS)}") from None
            except UnidentifiedImageError:
                raise BadImageError(
                    f"not an image, or an unsupported format: {what}"
                ) from None
            except (OSError, SyntaxError, ValueError, EOFError) as exc:
                raise BadImageError(f"cannot read image {what}: {exc}") from None
            w, h = img.size
            if w <= 0 or h <= 0:
                raise BadImageError(f"image has no pixels: {what} ({w}x{h})")
            if w * h > MAX_SOURCE_PIXELS:
                raise BadImageError(_too_large(what, w, h, MAX_SOURCE_PIXELS, img.format,
                                               "gis opens at most"))
            try:
                img.seek(0)
                if draft is not None and img.format in ("JPEG", "MPO"):
                    scale = max(1, draft) / max(w, h)  # keep the longer side >= draft
                    img.draft(img.mode, (max(1, math.ceil(w * scale)),
                                         max(1, math.ceil(h * scale))))
                dw, dh = img.size
                if dw * dh > MAX_PIXELS:
                    raise BadImageError(_too_large(what, w, h, MAX_PIXELS, img.format,
                                                   "gis decodes at most"))
                img.load()
                turned = img.getexif().get(0x0112, 1) in (5, 6, 7, 8)  # EXIF Orientation
                img = ImageOps.exif_transpose(img) or img
                # the file's own size, upright (a JPEG's draft decoded it smaller)
                img.info["source_size"] = (h, w) if turned else (w, h)
            except (OSError, SyntaxError, ValueError, EOFError, IndexError,
                    Image.DecompressionBombError) as exc:
                reason = str(exc) or type(exc).__name__
                raise BadImageError(f"corrupt or truncated image {what}: {reason}") from None
        return img
    finally:
        if fp is not None and not isinstance(fp, io.BytesIO):
            fp.close()


def _scale_to_uint8(arr: np.ndarray, float_unit: bool) -> np.ndarray:
    """Greyscale of any depth -> uint8. Policy: values already within 0..255 are kept;
    ``float_unit`` images with values within [0, 1] are multiplied by 255; values within
    0..65535 are divided by 257 (16-bit); anything else is min-max normalised."""
    a = arr.astype(np.float64)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, 0.0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if float_unit and lo >= 0.0 and hi <= 1.0:
        a = a * 255.0
    elif lo >= 0.0 and hi <= 255.0:
        pass
    elif lo >= 0.0 and hi <= 65535.0:
        a = a / 257.0
    else:
        a = (a - lo) / max(hi - lo, 1e-12) * 255.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB, transparency composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        grey = _scale_to_uint8(np.asarray(img), float_unit=(mode == "F"))
        return Image.fromarray(grey).convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode in ("P", "L", "RGB", "1") and "transparency" in img.info
    )
    if has_alpha:
        rgba = img.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, WHITE + (255,))
        canvas.alpha_composite(rgba)
        return canvas.convert("RGB")
    return img.convert("RGB")


def fit_square(img: Image.Image, size: int, *, background=WHITE) -> Image.Image:
    """Fit ``img`` (RGB) inside a size x size square keeping its aspect ratio, centred on
    ``background`` (equivalent to padding to a square, then resizing)."""
    if size <= 0:
        raise GisUsageError(f"image size must be positive, got {size}")
    w, h = img.size
    scale = size / max(w, h)
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.LANCZOS, reducing_gap=3.0)
    if (nw, nh) == (size, size):
        return img
    canvas = Image.new("RGB", (size, size), background)
    canvas.paste(img, ((size - nw) // 2, (size - nh) // 2))
    return canvas


def decode_image(source: PathOrBytes, *, size: int | None = None) -> np.ndarray:
    """Decode a path or encoded bytes to a uint8 RGB array (H, W, 3).

    With ``size`` the image is fitted and padded with white to size x size (module doc).
    """
    rgb = _to_rgb(open_image(source, draft=size))
    if size is not None:
        rgb = fit_square(rgb, size)
    return np.asarray(rgb, dtype=np.uint8).copy()


def uint8_to_tensor(arr: np.ndarray, value_range=(-1.0, 1.0)) -> torch.Tensor:
    """uint8 (H, W, 3) or (N, H, W, 3) -> float (N, 3, H, W) in ``value_range``."""
    a = arr[None] if arr.ndim == 3 else arr
    x = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2).float() / 255.0
    lo, hi = value_range
    return x * (hi - lo) + lo


def load_image(path: str | os.PathLike, *, size: int,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> torch.Tensor:
    """Load a user-supplied item image as a float tensor (1, 3, size, size) in ``value_range``.

    See the module docstring for the checks (an item image must have proportions a square
    can show), mode conversions and the fit-and-pad policy.
    """
    img = open_image(path, draft=size)
    _check_fit(_describe(path), *img.info.get("source_size", img.size))
    rgb = _to_rgb(img)
    return uint8_to_tensor(np.asarray(fit_square(rgb, size), dtype=np.uint8).copy(),
                           value_range)


def to_uint8(images, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """Images as uint8 (N, H, W, 3).

    Accepts a float tensor/array (3, H, W) or (N, 3, H, W) in ``value_range`` (clamped), or a
    uint8 array (H, W, 3) / (N, H, W, 3), returned as is.
    """
    if isinstance(images, np.ndarray) and images.dtype == np.uint8:
        return images[None] if images.ndim == 3 else images
    x = torch.as_tensor(images).detach().float().cpu()
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise GisUsageError(f"expected images (N, 3, H, W), got shape {tuple(x.shape)}")
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    lo, hi = value_range
    x = ((x - lo) / (hi - lo)).clamp(0, 1)
    return (x * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_image(image, path: str | os.PathLike, *,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    """Save one image ((3, H, W) or (1, 3, H, W) float in ``value_range``, or uint8 (H, W, 3))
    to ``path``; the format follows the extension. A batch of several images is saved as a
    grid (``make_grid_png``)."""
    arr = to_uint8(image, value_range)
    path = Path(path)
    if len(arr) != 1:
        return make_grid_png(arr, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[0]).save(path)
    return path


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def make_grid(images, *, labels: Sequence[str] | None = None, nrow: int | None = None,
              value_range: tuple[float, float] = (-1.0, 1.0), tile: int | None = None,
              padding: int = 2, background=WHITE) -> Image.Image:
    """A PIL image laying out ``images`` in a grid, with an optional caption under each tile.

    ``images``: float (N, 3, H, W) in ``value_range`` or uint8 (N, H, W, 3). ``nrow`` is the
    number of tiles per row (default: about sqrt(N)). Tiles are upscaled (nearest) to ``tile``
    pixels, by default to at least 64 so that 32-pixel images stay readable. A label may hold
    several lines (``"\n"``); each is cut to the tile's width.
    """
    arr = to_uint8(images, value_range)
    n, h, w = arr.shape[:3]
    if n == 0:
        raise GisUsageError("no images to lay out")
    if labels is not None and len(labels) != n:
        raise GisUsageError(f"{len(labels)} labels for {n} images")
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncol)
    scale = max(1, math.ceil(64 / max(h, w))) if tile is None else tile / max(h, w)
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    font_px = max(9, min(14, tw // 7))
    font = _font(font_px)
    lines = max((str(t).count("\n") + 1 for t in labels), default=1) if labels else 1
    caption_h = lines * (font_px + 2) + 2 if labels is not None else 0
    cell_w, cell_h = tw + padding, th + caption_h + padding
    grid = Image.new("RGB", (ncol * cell_w + padding, nrows * cell_h + padding), background)
    draw = ImageDraw.Draw(grid)
    for k in range(n):
        r, c = divmod(k, ncol)
        x0, y0 = padding + c * cell_w, padding + r * cell_h
        tile_img = Image.fromarray(arr[k])
        if (tw, th) != (w, h):
            tile_img = tile_img.resize((tw, th), Image.Resampling.NEAREST)
        grid.paste(tile_img, (x0, y0))
        if labels is not None:
            for j, text in enumerate(str(labels[k]).split("\n")):
                while text and draw.textlength(text, font=font) > tw and len(text) > 1:
                    text = text[:-1]
                draw.text((x0, y0 + th + 1 + j * (font_px + 2)), text, fill=(0, 0, 0),
                          font=font)
    return grid


def make_grid_png(images, path: str | os.PathLike, *, labels: Sequence[str] | None = None,
                  nrow: int | None = None, value_range: tuple[float, float] = (-1.0, 1.0),
                  tile: int | None = None) -> Path:
    """Write ``make_grid(...)`` to ``path`` (PNG unless the extension says otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    make_grid(images, labels=labels, nrow=nrow, value_range=value_range, tile=tile).save(path)
    return path
