"""``load_dataset``: one entry point for every dataset spec the command line accepts."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import GisUsageError
from .base import Dataset

#: the dataset used when none is named: the documented CLI default (a built-in plugin ships it)
DEFAULT_DATASET = "fashion-colors"


def resize_images(images: np.ndarray, size: int, *, batch: int = 2048) -> np.ndarray:
    """uint8 (N, H, W, 3) -> uint8 (N, size, size, 3); bicubic, antialiased when shrinking.
    Non-square images are resized to a square (use ``gis.images.fit_square`` to pad first)."""
    if images.shape[1] == size and images.shape[2] == size:
        return images
    out = np.empty((len(images), size, size, 3), dtype=np.uint8)
    for a in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[a:a + batch])).permute(0, 3, 1, 2)
        y = torch.nn.functional.interpolate(x.float(), size=(size, size), mode="bicubic",
                                            align_corners=False, antialias=True)
        out[a:a + batch] = y.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return out


def with_resolution(ds: Dataset, size: int | None) -> Dataset:
    """A copy of ``ds`` whose (catalogue and held-out) images are ``size`` x ``size``; the
    meta keys listed in ``meta["native_resolution_keys"]`` are dropped."""
    if size is None or size == ds.resolution:
        return ds
    if size < 8:
        raise GisUsageError(f"resolution must be at least 8 pixels, got {size}")
    held = None if ds.heldout_images is None else resize_images(ds.heldout_images, size)
    meta = dict(ds.meta, resolution=size, native_resolution=ds.resolution)
    # assets made for the native resolution (named by the dataset) no longer fit the images
    for key in ds.meta.get("native_resolution_keys", ()):
        meta.pop(key, None)
    return dataclasses.replace(ds, images=resize_images(ds.images, size), heldout_images=held,
                               meta=meta)


def _looks_like_path(spec: str) -> bool:
    return (os.sep in spec or "/" in spec or spec.startswith(".")
            or Path(spec).suffix.lower() in (".npz", ".npy"))


def load_dataset(spec: str | os.PathLike | None = None, *, trust: bool = False,
                 resolution: int | None = None, **options) -> Dataset:
    """Load a dataset from a registered name or a path.

    ``spec``: a dataset name registered by a plugin (``gis datasets`` lists them; None or
    ``"default"`` mean ``DEFAULT_DATASET``), or a path: a directory (``folder`` reader), a
    ``.npy`` file (DVBPR's pickled format; needs ``trust=True``), or a ``.npz`` file (gis's
    own formats, no pickle).
    ``resolution`` resizes the images (external images are decoded straight at that size;
    default 64 for them). Other ``options`` go to the reader (e.g. ``seed`` for ``folder``).
    """
    from .. import plugins

    spec = DEFAULT_DATASET if spec is None or spec == "default" else spec
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if path.exists():
        if path.is_dir():
            from .folder import read_folder

            return read_folder(path, resolution=resolution, trust=trust, **options)
        suffix = path.suffix.lower()
        if suffix == ".npy":
            from .dvbpr import read_dvbpr

            return read_dvbpr(path, trust=trust, resolution=resolution, **options)
        if suffix == ".npz":
            from .store import load_npz

            if options:
                raise GisUsageError(
                f"unexpected options for a .npz dataset: {', '.join(sorted(options))}"
            )
            return with_resolution(load_npz(path), resolution)
        raise GisUsageError(
            f"cannot tell the format of {path}: expected a folder, a DVBPR .npy or a gis .npz"
        )
    if not _looks_like_path(text) and text in plugins.datasets:
        ds = plugins.get_dataset(text, trust=trust, **options)
        return with_resolution(ds, resolution)
    if _looks_like_path(text):
        raise GisUsageError(f"dataset path not found: {text}")
    names = plugins.datasets.names()
    raise GisUsageError(
        f"unknown dataset {text!r}: not a file or folder, and not a registered dataset "
        f"({', '.join(names) or 'none registered'})"
    )
