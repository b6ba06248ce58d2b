"""Datasets: item images + categories + users' implicit feedback, split as DVBPR does.

``load_dataset(spec)`` reads a registered dataset (``fashion-colors``, the embedded default),
a folder of images with interaction CSVs, DVBPR's pickled ``.npy`` (``trust=True`` only) or
gis's own ``.npz``; every reader returns a ``Dataset``.
"""

from ..errors import GisUsageError
from .base import Dataset
from .dvbpr import read_dvbpr, write_dvbpr
from .folder import DataWarning, read_folder
from .loading import DEFAULT_DATASET, load_dataset, resize_images, with_resolution
from .split import activity, dvbpr_split, item_popularity, popularity_auc, sampled_auc
from .store import check_dataset, load_npz, save_dataset

#: Item that ``gis shift`` modifies when no ``--item`` is given: a plain yellow T-shirt/top of
#: the fashion-colors catalogue (Fashion-MNIST train image 12830; it looks the same in every
#: build with seed 0, ``--full`` included). Yellow is the colour the simulated users like
#: least, so a shift has room to help. Get it with
#: ``load_dataset().item_image(DEFAULT_ITEM_ID)`` -> (1, 3, 32, 32) in [-1, 1].
DEFAULT_ITEM_ID = "train-12830"


def default_item_id(dataset: Dataset) -> str:
    """The item to use when none is named: ``DEFAULT_ITEM_ID`` when ``dataset`` has it, else
    ``dataset.meta["default_item"]`` when set, else its first catalogue item."""
    for key in (DEFAULT_ITEM_ID, dataset.meta.get("default_item")):
        if key is not None:
            try:
                dataset.find_item(key)
                return str(key)
            except GisUsageError:
                pass
    if not dataset.item_ids:
        raise GisUsageError(f"dataset {dataset.meta.get('name', '?')!r} has no items")
    return dataset.item_ids[0]

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_ITEM_ID",
    "DataWarning",
    "Dataset",
    "activity",
    "check_dataset",
    "default_item_id",
    "dvbpr_split",
    "item_popularity",
    "load_dataset",
    "load_npz",
    "popularity_auc",
    "read_dvbpr",
    "read_folder",
    "resize_images",
    "sampled_auc",
    "save_dataset",
    "with_resolution",
    "write_dvbpr",
]
