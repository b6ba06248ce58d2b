"""The ``folder`` reader: a folder of item images plus CSV files of interactions.

Layout::

    shop/
      images/            item images (or directly in shop/); the item id is the file stem
        12345.jpg
        sneaker-red.png
      interactions.csv   header user_id,item_id[,timestamp]; one row per interaction
      items.csv          optional: header item_id,category

Images are decoded safely (``gis.images``), fitted and padded with white to ``resolution``.
Broken images are skipped with one warning that counts them; interactions with items that
have no usable image are dropped (counted too). Duplicate interactions count once. The split
is DVBPR's (``gis.data.split.dvbpr_split``): per user with >= 3 items one validation and one
test item, at random (``seed``) or the most recent ones (``split="time"``, needs timestamps);
other users stay train-only (val = test = -1).
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path

import numpy as np

from ..errors import BadImageError, GisUsageError
from ..images import decode_image
from .base import Dataset
from .split import dvbpr_split

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}
DEFAULT_RESOLUTION = 64
UNKNOWN_CATEGORY = "unknown"


class DataWarning(UserWarning):
    """Something in user-supplied data was skipped (broken images, dangling interactions)."""


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            missing = [c for c in required if c not in fields]
            if missing:
                raise GisUsageError(
                    f"{path}: missing column(s) {', '.join(missing)}; the header must name "
                    f"{', '.join(required)} (found: {', '.join(fields) or 'no header'})"
                )
            rows = []
            for row in reader:
                rows.append({(k or "").strip(): (v or "").strip() for k, v in row.items()})
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GisUsageError(f"cannot read {path}: {exc}") from None


def _natural_key(s: str):
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def read_folder(path: str | Path, *, resolution: int | None = None, seed: int = 0,
                interactions: str | Path | None = None, items: str | Path | None = None,
                split: str = "random", trust: bool = False) -> Dataset:
    """Read a folder dataset (module docstring). ``interactions`` / ``items`` override the
    CSV locations; ``trust`` is accepted for a uniform signature (nothing here is pickled)."""
    root = Path(path)
    if not root.is_dir():
        raise GisUsageError(f"dataset folder not found: {root}")
    size = int(resolution or DEFAULT_RESOLUTION)
    if split not in ("random", "time"):
        raise GisUsageError(f"split must be 'random' or 'time', got {split!r}")
    image_dir = root / "images" if (root / "images").is_dir() else root
    files: dict[str, Path] = {}
    for f in sorted(image_dir.iterdir()):
        if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES:
            if f.stem in files:
                raise GisUsageError(
                    f"two images for item {f.stem!r}: {files[f.stem].name} and {f.name}"
                )
            files[f.stem] = f
    if not files:
        raise GisUsageError(
            f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {image_dir}"
        )
    inter_path = Path(interactions) if interactions else root / "interactions.csv"
    if not inter_path.is_file():
        raise GisUsageError(
            f"interactions file not found: {inter_path} (CSV with header user_id,item_id"
            "[,timestamp])"
        )
    rows = _read_csv(inter_path, ("user_id", "item_id"))
    has_ts = bool(rows) and "timestamp" in rows[0]
    if split == "time" and not has_ts:
        raise GisUsageError(f"split='time' needs a timestamp column in {inter_path}")

    item_cat: dict[str, str] = {}
    items_path = Path(items) if items else root / "items.csv"
    if items or items_path.is_file():
        if not items_path.is_file():
            raise GisUsageError(f"items file not found: {items_path}")
        for r in _read_csv(items_path, ("item_id", "category")):
            item_cat[r["item_id"]] = r["category"] or UNKNOWN_CATEGORY

    # decode images (skipping broken ones)
    ids = sorted(files, key=_natural_key)
    images = np.empty((len(ids), size, size, 3), dtype=np.uint8)
    kept: list[str] = []
    broken: list[str] = []
    for stem in ids:
        try:
            images[len(kept)] = decode_image(files[stem], size=size)
        except BadImageError:
            broken.append(files[stem].name)
            continue
        kept.append(stem)
    if broken:
        shown = ", ".join(broken[:3]) + (", ..." if len(broken) > 3 else "")
        warnings.warn(f"skipped {len(broken)} broken image(s) in {image_dir}: {shown}",
                      DataWarning, stacklevel=2)
    if not kept:
        raise GisUsageError(f"none of the {len(ids)} images in {image_dir} could be read")
    images = images[: len(kept)]
    index = {stem: k for k, stem in enumerate(kept)}

    names = sorted({item_cat.get(s, UNKNOWN_CATEGORY) for s in kept})
    cat_index = {c: k for k, c in enumerate(names)}
    categories = np.array([cat_index[item_cat.get(s, UNKNOWN_CATEGORY)] for s in kept],
                          dtype=np.int64)

    # interactions
    uname, its, ts = [], [], []
    dangling = 0
    for line, r in enumerate(rows, start=2):
        if not r["user_id"] or not r["item_id"]:
            raise GisUsageError(f"{inter_path}:{line}: empty user_id or item_id")
        k = index.get(r["item_id"])
        if k is None:
            dangling += 1
            continue
        uname.append(r["user_id"])
        its.append(k)
        if has_ts:
            try:
                ts.append(float(r["timestamp"]))
            except ValueError:
                raise GisUsageError(
                    f"{inter_path}:{line}: timestamp {r['timestamp']!r} is not a number"
                ) from None
    if dangling:
        warnings.warn(f"dropped {dangling} interaction(s) with items that have no usable image",
                      DataWarning, stacklevel=2)
    user_names = sorted(set(uname), key=_natural_key)
    urow = {u: k for k, u in enumerate(user_names)}
    us = [urow[u] for u in uname]
    train, val, test = dvbpr_split(
        np.array(us, dtype=np.int64), np.array(its, dtype=np.int64), len(user_names),
        seed=seed, timestamps=np.array(ts) if split == "time" else None,
    )
    meta = {"name": root.name, "source": str(root), "reader": "folder", "seed": seed,
            "split": split, "resolution": size, "skipped_images": len(broken),
            "dropped_interactions": dangling}
    return Dataset(images=images, categories=categories, category_names=names,
                   user_ids=user_names, train=train, val=val, test=test, item_ids=kept,
                   meta=meta)
