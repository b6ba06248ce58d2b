"""The ``folder`` reader: a folder of item images plus CSV files of interactions.

Layout::

    shop/
      images/            item images (or directly in shop/); the item id is the file stem
        12345.jpg
        sneaker-red.png
      interactions.csv   header user_id,item_id[,timestamp]; one row per interaction
      items.csv          optional: header item_id,category

Images are decoded safely (``gis.images``; every format ``--item`` accepts), fitted and padded
with white to ``resolution``. Text is read as other tools write it (``gis.data.inputs``: byte-order
marks, CRLF, ``;`` or tab separators), and ids match file stems after Unicode NFC normalisation,
by numeric value when a spreadsheet dropped their leading zeros ("7" = "0007"), and ignoring
case. Images that cannot be decoded are skipped with one warning that counts them and says
why; interactions naming such images, or ids that match no image file, are dropped with one
warning each that shows examples of both sides; when no interaction is left the dataset is an
error. Duplicate interactions count once. The split is DVBPR's (``gis.data.split.dvbpr_split``):
per user with >= 3 items one validation and one test item, at random (``seed``) or the most
recent ones (``split="time"``, needs timestamps); other users stay train-only (val = test = -1).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..errors import BadImageError, GisUsageError
from ..images import decode_image, image_suffixes
from .base import Dataset
from .inputs import DataWarning, IdIndex, examples, mismatch, normalize_id, read_table
from .split import dvbpr_split

DEFAULT_RESOLUTION = 64
UNKNOWN_CATEGORY = "unknown"

__all__ = ["DEFAULT_RESOLUTION", "DataWarning", "read_folder"]


def _natural_key(s: str):
    return (0, int(s), s) if s.isascii() and s.isdigit() else (1, 0, s)


def _image_files(image_dir: Path) -> dict[str, Path]:
    """{item id: file}: the NFC file stems of the pictures in ``image_dir``."""
    suffixes = image_suffixes()
    files: dict[str, Path] = {}
    for f in sorted(image_dir.iterdir()):
        if f.is_file() and f.suffix.lower() in suffixes and not f.name.startswith("."):
            stem = normalize_id(f.stem)
            if stem in files:
                raise GisUsageError(
                    f"two images for item {stem!r}: {files[stem].name} and {f.name}: keep "
                    "one (or rename the other: the file stem is the item id)"
                )
            files[stem] = f
    if not files:
        raise GisUsageError(
            f"no images in {image_dir} (formats: {', '.join(sorted(suffixes))})"
        )
    return files


def _decode_all(files: dict[str, Path], ids: list[str], size: int, image_dir: Path):
    """uint8 (K, size, size, 3) images of the decodable ``ids`` and those ids, warning once
    for the others with the first reasons."""
    images = np.empty((len(ids), size, size, 3), dtype=np.uint8)
    kept: list[str] = []
    broken: list[tuple[str, str, str]] = []  # (file name, why, item id)
    for stem in ids:
        try:
            images[len(kept)] = decode_image(files[stem], size=size)
        except BadImageError as exc:
            broken.append((files[stem].name, str(exc).replace(str(files[stem]), files[stem].name),
                           stem))
            continue
        kept.append(stem)
    if broken:
        shown = "; ".join(why for _, why, _ in broken[:2])
        warnings.warn(f"skipped {len(broken)} image(s) in {image_dir} that cannot be decoded "
                      f"({shown}{'; ...' if len(broken) > 2 else ''})", DataWarning,
                      stacklevel=3)
    if not kept:
        raise GisUsageError(f"none of the {len(ids)} images in {image_dir} could be read")
    return images[: len(kept)], kept, broken


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
    files = _image_files(image_dir)
    inter_path = Path(interactions) if interactions else root / "interactions.csv"
    if not inter_path.is_file():
        raise GisUsageError(
            f"interactions file not found: {inter_path} (CSV with header user_id,item_id"
            "[,timestamp])"
        )
    rows = read_table(inter_path, ("user_id", "item_id"), what="interactions file")
    if not rows:
        raise GisUsageError(f"{inter_path} names no interactions (only a header): add one row "
                            "user_id,item_id per interaction")
    has_ts = "timestamp" in rows[0][1]
    if split == "time" and not has_ts:
        raise GisUsageError(f"split='time' needs a timestamp column in {inter_path}")
    items_path = Path(items) if items else root / "items.csv"
    if items and not items_path.is_file():
        raise GisUsageError(f"items file not found: {items_path}")

    ids = sorted(files, key=_natural_key)
    images, kept, skipped = _decode_all(files, ids, size, image_dir)
    broken = [name for name, _, _ in skipped]
    index, on_disk = IdIndex(kept), IdIndex(ids)

    cat_of: dict[int, str] = {}
    if items_path.is_file():
        stray, blank_rows = [], []
        for _, r in read_table(items_path, ("item_id", "category"), what="items file"):
            k = index.get(r["item_id"])
            if k is not None:
                cat_of[k] = r["category"] or UNKNOWN_CATEGORY
                if not r["category"]:
                    blank_rows.append(kept[k])
            elif r["item_id"] not in on_disk:
                stray.append(r["item_id"])
        if stray:
            warnings.warn(f"{items_path}: {len(stray)} item id(s) match no image file in "
                          f"{image_dir}, their categories are unused "
                          f"({mismatch(stray, kept, 'image ids')})", DataWarning, stacklevel=2)
        blank = sorted(set(blank_rows), key=_natural_key)  # not a category named "unknown"
        missing = [kept[k] for k in range(len(kept)) if k not in cat_of]
        if missing or blank:
            parts = ([f"{len(missing)} image(s) have no row (e.g. {', '.join(missing[:3])})"]
                     if missing else []) + ([f"{len(blank)} row(s) have an empty category "
                                             f"(e.g. {', '.join(blank[:3])})"] if blank else [])
            warnings.warn(f"{items_path}: {' and '.join(parts)}; those items get category "
                          f"{UNKNOWN_CATEGORY!r}, which the category check treats as a "
                          "category of its own: add their rows", DataWarning, stacklevel=2)
    names = sorted({cat_of.get(k, UNKNOWN_CATEGORY) for k in range(len(kept))})
    cat_index = {c: k for k, c in enumerate(names)}
    categories = np.array([cat_index[cat_of.get(k, UNKNOWN_CATEGORY)] for k in range(len(kept))],
                          dtype=np.int64)

    # interactions
    uname, its, ts = [], [], []
    no_file: list[str] = []
    undecodable = 0
    for line, r in rows:
        if not r["user_id"] or not r["item_id"]:
            raise GisUsageError(f"{inter_path}:{line}: empty user_id or item_id")
        k = index.get(r["item_id"])
        if k is None:
            if r["item_id"] in on_disk:
                undecodable += 1
            else:
                no_file.append(r["item_id"])
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
    why = []
    if no_file:
        why.append(f"{len(no_file)} interaction(s) naming item ids that match no image file in "
                   f"{image_dir} ({mismatch(no_file, kept, 'image ids')})")
    if undecodable:
        why.append(f"{undecodable} interaction(s) naming images that cannot be decoded "
                   f"({examples(broken)})")
    if not uname:
        raise GisUsageError(f"no interaction in {inter_path} is left: {'; '.join(why)}; make "
                            "the item_id column name the image files (their names without "
                            "extension)")
    for reason in why:
        warnings.warn(f"dropped {reason}", DataWarning, stacklevel=2)
    user_names = sorted(set(uname), key=_natural_key)
    urow = {u: k for k, u in enumerate(user_names)}
    us = [urow[u] for u in uname]
    train, val, test = dvbpr_split(
        np.array(us, dtype=np.int64), np.array(its, dtype=np.int64), len(user_names),
        seed=seed, timestamps=np.array(ts) if split == "time" else None,
    )
    meta = {"name": root.name, "source": str(root), "reader": "folder", "seed": seed,
            "split": split, "resolution": size, "skipped_images": len(broken),
            # why each skipped image's item is not in the catalogue (an unknown-item error
            # names it); the first 1000
            "skipped_image_reasons": {stem: why for _, why, stem in skipped[:1000]},
            "dropped_interactions": len(no_file) + undecodable}
    return Dataset(images=images, categories=categories, category_names=names,
                   user_ids=user_names, train=train, val=val, test=test, item_ids=kept,
                   meta=meta)
