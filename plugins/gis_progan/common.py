"""Helpers shared by the GAN plugins (``gis_progan``, ``gis_dvbpr_gan``): trusted pickle
loading, safetensors generator files, on-device uint8 datasets and sample grids.

Nothing here needs Pillow: sample grids fall back to a small built-in PNG writer, so the
trainers run on machines with only torch, numpy, safetensors and tqdm.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import struct
import types
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gis.errors import CheckpointError, GisUsageError, MissingAssetError, UntrustedFileError

SAFE_SUFFIXES = (".safetensors",)
#: modules whose classes a trusted checkpoint may instantiate; any other class is replaced by
#: an inert attribute holder (e.g. pytorch_GAN_zoo's ``models.utils.config.BaseConfig``)
_ALLOWED_MODULES = ("torch", "collections", "numpy", "builtins", "_codecs", "copyreg",
                    "__builtin__", "copy_reg")


# ----------------------------------------------------------------------------- pickle files


class PickledObject:
    """Stand-in for a class that a trusted checkpoint names but gis does not import."""

    _gis_class = "?"

    def __init__(self, *args: Any, **kwargs: Any):
        self._gis_args = args

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self._gis_state = state

    def __repr__(self) -> str:
        return f"<pickled {self._gis_class}>"


class _LenientUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        root = module.split(".", 1)[0]
        if root in _ALLOWED_MODULES:
            return super().find_class(module, name)
        return type(name, (PickledObject,), {"_gis_class": f"{module}.{name}"})


_lenient_pickle = types.ModuleType("gis_lenient_pickle")
_lenient_pickle.Unpickler = _LenientUnpickler  # type: ignore[attr-defined]
_lenient_pickle.load = lambda f, **kw: _LenientUnpickler(f, **kw).load()  # type: ignore


def load_trusted_pickle(path: str | os.PathLike, *, trust: bool, what: str) -> Any:
    """``torch.load`` a pickle-based checkpoint, only when the user trusts the file.

    Classes outside torch/numpy/the standard containers are not imported: they come back as
    inert :class:`PickledObject` instances holding their attributes.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not trust:
        raise UntrustedFileError(
            f"{path} is a pickle-based {what} checkpoint: loading it can run arbitrary code. "
            "Pass trust=True (--trust on the command line) only for files you trust, or "
            "convert it to a .safetensors file"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=False,
                          pickle_module=_lenient_pickle)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a checkpoint error
        raise CheckpointError(f"cannot read {path} as a torch checkpoint: {exc}") from None


def strip_prefix(state: Mapping[str, torch.Tensor], prefix: str = "module.") -> dict:
    """Drop a DataParallel ``module.`` prefix when every key carries it."""
    keys = list(state)
    if keys and all(k.startswith(prefix) for k in keys):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def config_get(config: Any, key: str, default: Any = None) -> Any:
    """Read ``key`` from a dict or an attribute holder."""
    if isinstance(config, Mapping):
        return config.get(key, default)
    return getattr(config, key, default)


# ----------------------------------------------------------------------------- safetensors


def save_generator_file(path: str | os.PathLike, tensors: Mapping[str, torch.Tensor],
                        meta: Mapping[str, Any], *, dtype: torch.dtype | None = None,
                        card: Mapping[str, Any] | None = None) -> Path:
    """Write a generator to ``path`` (.safetensors: tensors + JSON meta in the header, no
    pickle), optionally casting floating tensors to ``dtype`` (float16 halves the size), and
    the model ``card`` as JSON beside it (``path`` with suffix ``.json``)."""
    from gis.training import save_checkpoint, write_json

    out = {}
    for k, v in tensors.items():
        v = v.detach()
        out[k] = v.to(dtype) if dtype is not None and v.is_floating_point() else v
    path = save_checkpoint(path, out, meta)
    if card is not None:
        write_json(Path(path).with_suffix(".json"), dict(card))
    return Path(path)


def load_generator_file(path: str | os.PathLike, *, kind: str,
                        accepted: tuple[str, ...]) -> tuple[dict[str, torch.Tensor], dict]:
    """Read a gis .safetensors generator file; raise CheckpointError when its ``format`` is not
    one of ``accepted``."""
    from gis.training import load_checkpoint

    tensors, meta = load_checkpoint(path)
    fmt = meta.get("format")
    if fmt not in accepted:
        raise CheckpointError(
            f"{path} is not a {kind} checkpoint (format {fmt!r}; expected one of "
            f"{', '.join(accepted)})"
        )
    return {k: v.float() if v.is_floating_point() else v for k, v in tensors.items()}, meta


def read_card(path: str | os.PathLike) -> dict[str, Any]:
    card_path = Path(path).with_suffix(".json")
    if card_path.is_file():
        try:
            return json.loads(card_path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
    return {}


def load_state_strict(module: torch.nn.Module, state: Mapping[str, torch.Tensor],
                      source: str) -> None:
    """``load_state_dict(strict=True)`` with a CheckpointError naming the mismatch."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"unexpected {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
        raise CheckpointError(f"{source} does not match the model: " + "; ".join(parts))
    for k, v in state.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise CheckpointError(
                f"{source} does not match the model: {k} has shape {tuple(v.shape)}, the model "
                f"expects {tuple(own[k].shape)}"
            )
    module.load_state_dict(state, strict=True)


def missing_default(plugin: str, weights: Path, command: str) -> MissingAssetError:
    return MissingAssetError(
        f"the {plugin} default weights are not installed ({weights} is missing); train them "
        f"with `{command}` and copy the run's exported .safetensors and .json there, or pass "
        "checkpoint=PATH"
    )


# ----------------------------------------------------------------------------- datasets


def load_training_dataset(spec: str, *, trust: bool = False):
    """``gis.data.load_dataset(spec)`` for the ``python -m ...train`` entry points, also on a
    bare GPU machine without Pillow.

    ``gis.data`` imports ``gis.images``, which imports Pillow at module level, although the
    embedded ``fashion-colors`` dataset and gis ``.npz`` files need no image decoding. When
    Pillow is missing, an inert placeholder ``PIL`` package is registered (any use of it
    raises a clear error), so those datasets still load.
    """
    import sys

    try:
        import PIL  # noqa: F401
    except ImportError:
        if "PIL" not in sys.modules or sys.modules["PIL"] is None:
            sys.modules.pop("PIL", None)
            _install_pil_placeholder()
    from gis.data import load_dataset

    return load_dataset(spec, trust=trust)


class _NoPillow:
    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        raise GisUsageError(f"PIL.{self._name}.{attr}: decoding or drawing images needs "
                            "Pillow (pip install pillow)")

    def __call__(self, *args: Any, **kwargs: Any):
        raise GisUsageError(f"PIL.{self._name}: decoding or drawing images needs Pillow "
                            "(pip install pillow)")


def _install_pil_placeholder() -> None:
    import sys

    pil = types.ModuleType("PIL")
    pil.__gis_placeholder__ = True  # type: ignore[attr-defined]
    for name in ("Image", "ImageDraw", "ImageFont", "ImageOps"):
        sub = types.ModuleType(f"PIL.{name}")
        sub.__getattr__ = _NoPillow(name).__getattr__  # type: ignore[attr-defined]
        setattr(pil, name, sub)
        sys.modules[f"PIL.{name}"] = sub

    class UnidentifiedImageError(OSError):
        pass

    pil.UnidentifiedImageError = UnidentifiedImageError  # type: ignore[attr-defined]
    sys.modules["PIL"] = pil


# ----------------------------------------------------------------------------- data on device


def images_to_device(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 (N, H, W, 3) -> uint8 tensor (N, 3, H, W) on ``device`` (kept as uint8: 4x less
    memory than float; batches are converted on the fly)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise GisUsageError(
            f"expected uint8 images (N, H, W, 3), got {images.dtype} {tuple(images.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).contiguous()
    return t.to(device)


def training_images(images: np.ndarray, resolution: int, device: torch.device) -> torch.Tensor:
    """The dataset's uint8 images (N, H, W, 3) as a uint8 (N, 3, r, r) tensor on ``device``,
    resized once (in chunks) when their side is not ``resolution``."""
    data = images_to_device(images, device)
    if data.shape[-1] != resolution:
        parts = [resize_images(uint8_batch_to_float(data[i:i + 1024]), resolution)
                 for i in range(0, len(data), 1024)]
        data = ((torch.cat(parts) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return data


def uint8_batch_to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [-1, 1]."""
    return x.float().mul_(2.0 / 255.0).sub_(1.0)


def resize_images(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float images to ``size`` (area averaging when shrinking, bilinear when growing)."""
    if x.shape[-1] == size:
        return x
    if x.shape[-1] % size == 0:
        return torch.nn.functional.avg_pool2d(x, x.shape[-1] // size)
    return torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear",
                                           align_corners=False, antialias=True)


# ----------------------------------------------------------------------------- sample grids


def _png_bytes(rgb: np.ndarray) -> bytes:
    """Minimal PNG encoder (8-bit RGB, no filtering)."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + tag + data
                + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def grid_uint8(images: torch.Tensor, *, nrow: int | None = None, scale: int = 2,
               padding: int = 2) -> np.ndarray:
    """Float (N, 3, H, W) in [-1, 1] -> one uint8 (H', W', 3) grid on a white background."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    arr = x.permute(0, 2, 3, 1).numpy()
    if scale > 1:
        arr = arr.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = arr.shape
    ncol = nrow or max(1, math.ceil(math.sqrt(n)))
    nrows = math.ceil(n / ncol)
    grid = np.full((nrows * (h + padding) + padding, ncol * (w + padding) + padding, 3), 255,
                   dtype=np.uint8)
    for k in range(n):
        r, c = divmod(k, ncol)
        y0, x0 = padding + r * (h + padding), padding + c * (w + padding)
        grid[y0:y0 + h, x0:x0 + w] = arr[k]
    return grid


def save_grid_png(images: torch.Tensor, path: str | os.PathLike, *, nrow: int | None = None,
                  scale: int = 2) -> Path:
    """Write a sample grid (float images in [-1, 1]) as PNG, without needing Pillow."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _png_bytes(grid_uint8(images, nrow=nrow, scale=scale))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)
    return path
