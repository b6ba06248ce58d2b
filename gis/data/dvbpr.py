"""Reader (and writer, for tests and exports) of DVBPR's ``AmazonFashion6ImgPartitioned.npy``.

The file is a pickled numpy object array ``[user_train, user_validation, user_test, Item,
usernum, itemnum]`` (Kang et al. 2017): ``user_train[u]`` is a list of dicts with key
``b'productid'`` (int item index), validation and test hold one such dict per user,
``Item[i][b'imgs']`` are encoded image bytes (mostly JPEG, some PNG or broken) and
``Item[i][b'c']`` a 6-way category indicator (category = its argmax). Loading it unpickles
arbitrary objects, i.e. can run code: it is only done with ``trust=True`` (``--trust``).

The file's own split is kept. Broken images are skipped with one warning that counts them;
their items are removed and the interactions with them dropped (a user whose validation or
test item is removed gets -1 there). Users keep their DVBPR row numbers as ids ("0", "1", ...),
items their DVBPR indices.
"""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np

from ..errors import BadImageError, GisUsageError
from ..images import decode_image
from ..io import require_trust
from .base import Dataset
from .folder import DEFAULT_RESOLUTION
from .inputs import DataWarning


def _get(d, key: str, default=None):
    """dict lookup tolerant of bytes keys (py2 pickles read with encoding='bytes')."""
    if not isinstance(d, dict):
        return default
    if key in d:
        return d[key]
    return d.get(key.encode(), default)


def _seq(container, idx):
    """container[idx] for dicts (missing -> None) and sequences (out of range -> None)."""
    if isinstance(container, dict):
        return container.get(idx)
    try:
        return container[idx]
    except (IndexError, KeyError, TypeError):
        return None


def _product(entry) -> int | None:
    if entry is None:
        return None
    if isinstance(entry, int | np.integer):
        return int(entry)
    if isinstance(entry, list | tuple):
        return _product(entry[0]) if len(entry) else None
    pid = _get(entry, "productid")
    return None if pid is None else int(pid)


def read_dvbpr(path: str | Path, *, trust: bool = False, resolution: int | None = None,
               category_names: list[str] | None = None, progress: bool = False) -> Dataset:
    """Read a DVBPR ``.npy`` file (module docstring) with images at ``resolution`` (64)."""
    path = Path(path)
    if not path.is_file():
        raise GisUsageError(f"DVBPR data file not found: {path}")
    require_trust(path, trust=trust, what="DVBPR data file")
    try:
        data = np.load(path, encoding="bytes", allow_pickle=True)
        user_train, user_val, user_test, items, usernum, itemnum = list(data)
        usernum, itemnum = int(usernum), int(itemnum)
    except (OSError, ValueError, TypeError, EOFError, ImportError, AttributeError,
            pickle.UnpicklingError) as exc:
        raise GisUsageError(f"{path} is not a DVBPR data file: {exc}") from None
    size = int(resolution or DEFAULT_RESOLUTION)

    images = np.empty((itemnum, size, size, 3), dtype=np.uint8)
    cats = np.zeros(itemnum, dtype=np.int64)
    good = np.zeros(itemnum, dtype=bool)
    ncat = 0
    n_ok = 0
    it = range(itemnum)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="decoding images", unit="img")
    for i in it:
        item = _seq(items, i)
        raw = _get(item, "imgs")
        c = _get(item, "c")
        if c is not None:
            c = np.asarray(c).ravel()
            ncat = max(ncat, len(c))
            cats[i] = int(np.argmax(c)) if len(c) else 0
        if not isinstance(raw, bytes | bytearray | np.bytes_):
            continue
        try:
            images[n_ok] = decode_image(bytes(raw), size=size)  # kept items packed in order
        except BadImageError:
            continue
        good[i] = True
        n_ok += 1
    broken = int(itemnum - good.sum())
    if broken:
        warnings.warn(f"skipped {broken} of {itemnum} items whose image is missing or broken",
                      DataWarning, stacklevel=2)
    if not good.any():
        raise GisUsageError(f"{path}: none of the {itemnum} item images could be decoded")
    new_index = np.full(itemnum, -1, dtype=np.int64)
    new_index[good] = np.arange(int(good.sum()))

    def remap(pid: int | None) -> int:
        if pid is None or pid < 0 or pid >= itemnum:
            return -1
        return int(new_index[pid])

    train_rows: list[tuple[int, int]] = []
    val = np.full(usernum, -1, dtype=np.int64)
    test = np.full(usernum, -1, dtype=np.int64)
    dropped = 0
    for u in range(usernum):
        for entry in _seq(user_train, u) or []:
            k = remap(_product(entry))
            if k < 0:
                dropped += 1
            else:
                train_rows.append((u, k))
        for split, arr in ((user_val, val), (user_test, test)):
            pid = _product(_seq(split, u))
            arr[u] = remap(pid)
            dropped += pid is not None and arr[u] < 0
    if dropped:
        warnings.warn(f"dropped {dropped} interaction(s) with removed items",
                      DataWarning, stacklevel=2)
    train = np.unique(np.array(train_rows, dtype=np.int64).reshape(-1, 2), axis=0)
    if not len(train) and (val < 0).all() and (test < 0).all():
        raise GisUsageError(f"{path}: no interaction is left ({usernum} users; {dropped} "
                            "interaction(s) name items whose image is missing or broken)")
    ncat = max(ncat, int(cats.max()) + 1, 1)
    names = list(category_names) if category_names else [f"category-{k}" for k in range(ncat)]
    if len(names) < ncat:
        raise GisUsageError(f"{len(names)} category names for {ncat} categories")
    meta = {"name": path.stem, "source": str(path), "reader": "dvbpr", "resolution": size,
            "skipped_images": broken, "dropped_interactions": int(dropped)}
    return Dataset(
        images=images[:n_ok], categories=cats[good], category_names=names,
        user_ids=[str(u) for u in range(usernum)], train=train, val=val, test=test,
        item_ids=[str(i) for i in np.flatnonzero(good)], meta=meta,
    )


def write_dvbpr(path: str | Path, user_train: dict, user_val: dict, user_test: dict,
                items: dict, usernum: int, itemnum: int) -> Path:
    """Write the DVBPR structure as a pickled object array (tests, exports to DVBPR code).

    Arguments are the six entries of the file; dict keys such as ``b'productid'``,
    ``b'imgs'`` and ``b'c'`` are written as given.
    """
    path = Path(path)
    arr = np.empty(6, dtype=object)
    arr[:] = [user_train, user_val, user_test, items, usernum, itemnum]
    with open(path, "wb") as f:
        np.save(f, arr, allow_pickle=True)
    return path
