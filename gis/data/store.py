"""gis's own dataset files: compressed ``.npz`` archives that never hold pickled objects.

Layouts share the ``.npz`` suffix and are told apart by their ``format`` entry:

``gis-dataset/1`` (``save_dataset``): any ``Dataset`` as rendered arrays --
    ``images``, ``categories``, ``category_names``, ``user_ids``, ``item_ids``, ``train``,
    ``val``, ``test``, ``attr__<key>``, ``taste__<key>``, optional ``heldout_images``,
    ``heldout_categories``, ``heldout_item_ids``, ``heldout_attr__<key>``, and ``meta``
    (a JSON string). Strings are stored as fixed-width unicode arrays.
a dataset plugin's own layout: any other ``format``, with a ``meta`` JSON string whose
    ``name`` is a registered dataset; that dataset's factory reads the file
    (``factory(path=...)``), e.g. the compact sources a plugin's build command writes.

All are read with ``np.load(..., allow_pickle=False)`` (``open_npz``): loading one cannot run
code.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ..errors import GisUsageError
from ..io import JSONEncoder, atomic_path
from .base import Dataset

FORMAT = "gis-dataset/1"


def _str_array(values) -> np.ndarray:
    values = [str(v) for v in values]
    return np.array(values, dtype=str) if values else np.zeros(0, dtype="<U1")


def save_dataset(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` to ``path`` in the ``gis-dataset/1`` layout (compressed npz)."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {
        "format": np.array(FORMAT),
        "meta": np.array(json.dumps(ds.meta, cls=JSONEncoder)),
        "images": np.asarray(ds.images, dtype=np.uint8),
        "categories": np.asarray(ds.categories, dtype=np.int64),
        "category_names": _str_array(ds.category_names),
        "user_ids": _str_array(ds.user_ids),
        "item_ids": _str_array(ds.item_ids),
        "train": np.asarray(ds.train, dtype=np.int64).reshape(-1, 2),
        "val": np.asarray(ds.val, dtype=np.int64),
        "test": np.asarray(ds.test, dtype=np.int64),
    }
    for prefix, table in (("attr__", ds.attributes), ("taste__", ds.tastes),
                          ("heldout_attr__", ds.heldout_attributes)):
        for key, value in table.items():
            arr = np.asarray(value)
            if arr.dtype == object:
                raise GisUsageError(f"{prefix}{key}: object arrays cannot be saved")
            arrays[prefix + key] = arr
    if ds.heldout_images is not None:
        arrays["heldout_images"] = np.asarray(ds.heldout_images, dtype=np.uint8)
        arrays["heldout_categories"] = np.asarray(ds.heldout_categories, dtype=np.int64)
        arrays["heldout_item_ids"] = _str_array(ds.heldout_item_ids)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:  # numpy could append ".npz"
        np.savez_compressed(f, **arrays)
    return path


def open_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file, read without pickle (``GisUsageError`` for a missing
    file, one that is not a zip archive, or one that holds pickled objects)."""
    path = Path(path)
    if not path.is_file():
        raise GisUsageError(f"dataset file not found: {path}")
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic != b"PK\x03\x04":  # np.load would try to unpickle anything that is not a zip
        raise GisUsageError(f"{path} is not a gis dataset file (.npz, a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise GisUsageError(
                f"{path} holds pickled objects, which gis dataset files never do; refusing it"
            ) from None
        raise GisUsageError(f"cannot read dataset file {path}: {exc}") from None
    except (OSError, zipfile.BadZipFile, EOFError) as exc:
        raise GisUsageError(f"{path} is not a gis dataset file (.npz): {exc}") from None


def load_npz(path: str | Path) -> Dataset:
    """Read either gis ``.npz`` layout (see the module docstring) into a ``Dataset``."""
    path = Path(path)
    z = open_npz(path)
    fmt = str(z["format"]) if "format" in z else None
    if fmt is not None and fmt != FORMAT:
        owner = _registered_owner(z)
        if owner is not None:
            from ..plugins import get_dataset

            return get_dataset(owner, path=path)
    if fmt != FORMAT:
        raise GisUsageError(
            f"{path} is not a gis dataset file (format {fmt!r}; expected {FORMAT!r})"
        )
    required = ("images", "categories", "category_names", "user_ids", "train", "val", "test")
    missing = [k for k in required if k not in z]
    if missing:
        raise GisUsageError(f"{path}: missing arrays {', '.join(missing)}")
    meta = json.loads(str(z["meta"])) if "meta" in z else {}
    meta.setdefault("path", str(path))

    def table(prefix: str) -> dict[str, np.ndarray]:
        return {k[len(prefix):]: z[k] for k in z if k.startswith(prefix)}

    has_heldout = "heldout_images" in z
    ds = Dataset(
        images=z["images"], categories=z["categories"].astype(np.int64),
        category_names=[str(s) for s in z["category_names"]],
        user_ids=[str(s) for s in z["user_ids"]],
        train=z["train"].astype(np.int64).reshape(-1, 2), val=z["val"].astype(np.int64),
        test=z["test"].astype(np.int64),
        item_ids=[str(s) for s in z.get("item_ids", [])],
        attributes=table("attr__"), tastes=table("taste__"), meta=meta,
        heldout_images=z["heldout_images"] if has_heldout else None,
        heldout_categories=z["heldout_categories"].astype(np.int64) if has_heldout else None,
        heldout_item_ids=[str(s) for s in z["heldout_item_ids"]] if has_heldout else [],
        heldout_attributes=table("heldout_attr__"),
    )
    check_dataset(ds)
    return ds


def _registered_owner(z: dict[str, np.ndarray]) -> str | None:
    """The registered dataset named by the file's ``meta`` (a plugin's own layout), if any."""
    from .. import plugins

    try:
        name = json.loads(str(z["meta"])).get("name") if "meta" in z else None
    except (json.JSONDecodeError, AttributeError):
        return None
    return name if isinstance(name, str) and name in plugins.datasets else None


def check_dataset(ds: Dataset) -> None:
    """Raise GisUsageError when the arrays of ``ds`` are inconsistent."""
    name = ds.meta.get("name", "dataset")
    n, u = ds.num_items, ds.num_users

    def bad(msg: str):
        raise GisUsageError(f"{name}: {msg}")

    if ds.images.ndim != 4 or ds.images.shape[-1] != 3 or ds.images.dtype != np.uint8:
        bad(f"images must be uint8 (N, H, W, 3), got {ds.images.dtype} {ds.images.shape}")
    if len(ds.categories) != n or len(ds.item_ids) != n:
        bad("categories / item_ids do not match the number of images")
    if n and (ds.categories.min() < 0 or ds.categories.max() >= len(ds.category_names)):
        bad("category index out of range")
    if ds.train.ndim != 2 or ds.train.shape[1] != 2:
        bad("train must be (M, 2)")
    if len(ds.train) and (ds.train[:, 0].min() < 0 or ds.train[:, 0].max() >= u
                          or ds.train[:, 1].min() < 0 or ds.train[:, 1].max() >= n):
        bad("train interaction out of range")
    for split in ("val", "test"):
        arr = getattr(ds, split)
        if len(arr) != u or (len(arr) and (arr.min() < -1 or arr.max() >= n)):
            bad(f"{split} must hold one item index (or -1) per user")
    if ds.heldout_images is not None and (
            ds.heldout_categories is None or len(ds.heldout_categories) != len(ds.heldout_images)):
        bad("heldout_categories do not match heldout_images")
