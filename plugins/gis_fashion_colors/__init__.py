"""Built-in gis plugin: the embedded default dataset ``fashion-colors``, with ground truth.

Coloured Fashion-MNIST product photos (32x32 RGB) with simulated users whose hidden tastes
over category and colour are known (``simulation`` documents the simulation and
``true_utility``). The shipped ``fashion_colors.npz`` holds 6,000 catalogue items (train
split, balanced per class), 2,000 held-out items (test split) and 3,000 users; it is rebuilt,
bit for bit, by ``python scripts/build_fashion_colors.py`` (or ``gis data build --source
/usr/share/datasets/fashion-mnist --out plugins/gis_fashion_colors/fashion_colors.npz``).
``gis data build --full`` writes the 70,000-image version; load it with
``get_dataset("fashion-colors", path=...)`` or ``--data PATH``.

The dataset offers gis's ``GroundTruth`` interface (``truth.FashionColorsTruth``): the users'
true utility of any image, and the category of any image read by the dataset's domain
classifier (``classifier``; shipped as ``weights/domain-classifier.safetensors``, trained by
``gis train classifier --data fashion-colors --out DIR``; see docs/MODELS.md). ``load`` names
the classifier in ``meta["domain_classifier"]`` when the file is there and the images are at
the resolution it was trained at (32 px). The plugin adds ``gis data build`` and
``gis train classifier`` to the command line.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from gis.hookspecs import hookimpl

from .simulation import (
    CATEGORY_NAMES,
    COLOR_NAMES,
    DEFAULT_ITEM_ID,
    FORMAT,
    PALETTE,
    measure_color,
    true_utility,
)
from .truth import FashionColorsTruth

#: the compact archive shipped with this plugin
DATA_FILE = Path(__file__).with_name("fashion_colors.npz")
#: the domain classifier shipped with this plugin, and the resolution it was trained at
CLASSIFIER_FILE = Path(__file__).parent / "weights" / "domain-classifier.safetensors"
CLASSIFIER_RESOLUTION = 32
_cache: dict = {}  # (path, mtime, size) -> Dataset of the last file loaded

__all__ = ["CATEGORY_NAMES", "CLASSIFIER_FILE", "CLASSIFIER_RESOLUTION", "COLOR_NAMES",
           "DATA_FILE", "DEFAULT_ITEM_ID", "FashionColorsTruth", "PALETTE", "load",
           "measure_color", "true_utility"]


def load(*, path=None, trust: bool = False, resolution: int | None = None):
    """The fashion-colors ``Dataset`` (the shipped subset, or the build at ``path``), with
    ground truth (``FashionColorsTruth``) and ``DEFAULT_ITEM_ID`` as its default item.

    ``trust`` is accepted for the uniform factory signature: the file holds no pickle.
    Raises ``MissingAssetError`` (naming ``gis data build``) when the file is absent and
    ``GisUsageError`` when it is not a fashion-colors archive.
    """
    from gis.data.loading import with_resolution
    from gis.data.store import open_npz
    from gis.errors import GisUsageError, MissingAssetError

    from .simulation import from_compact

    file = Path(path) if path is not None else DATA_FILE
    if not file.is_file():
        raise MissingAssetError(
            f"fashion-colors data file not found: {file}; rebuild it with "
            "`gis data build --source /usr/share/datasets/fashion-mnist --out "
            f"{file}` (apt-get install dataset-fashion-mnist)"
        )
    stat = file.stat()
    key = (str(file.resolve()), stat.st_mtime_ns, stat.st_size)
    ds = _cache.get(key)
    if ds is None:
        arrays = open_npz(file)
        fmt = str(arrays["format"]) if "format" in arrays else None
        if fmt is None or not fmt.startswith("gis-fashion-colors/"):
            raise GisUsageError(f"{file} is not a fashion-colors dataset file")
        if fmt != FORMAT:
            raise GisUsageError(f"{file}: unsupported fashion-colors version {fmt!r}")
        ds = from_compact(arrays, path=str(file))
        _cache.clear()
        _cache[key] = ds
    # a shallow copy: rebinding fields is private to the caller, the arrays are shared
    # (rendering takes a second or two; copy an array before modifying it in place)
    out = with_resolution(dataclasses.replace(ds, meta=dict(ds.meta)), resolution)
    if out.resolution == CLASSIFIER_RESOLUTION and CLASSIFIER_FILE.is_file():
        out.meta["domain_classifier"] = str(CLASSIFIER_FILE)
        # the classifier only fits 32 px images: gis.data.with_resolution drops it
        out.meta["native_resolution_keys"] = ["domain_classifier"]
    return out


@hookimpl
def register_datasets(register):
    # "default" also names it in ``gis.data.load_dataset`` (DEFAULT_DATASET)
    register(
        "fashion-colors",
        load,
        description="coloured Fashion-MNIST product photos (32 px) with 3,000 simulated users "
        "(embedded default)",
    )


@hookimpl
def register_commands(cli):
    # `gis data build` and `gis train classifier` (gis_fashion_colors/cli.py)
    from .cli import add_commands

    add_commands(cli)
