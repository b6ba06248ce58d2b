"""Datasets: item images + categories + users' implicit feedback, split as DVBPR does.

``load_dataset(spec)`` reads a dataset registered by a plugin (``DEFAULT_DATASET`` when none is
named), a folder of images with interaction CSVs, DVBPR's pickled ``.npy`` (``trust=True``
only) or gis's own ``.npz``; every reader returns a ``Dataset``. A dataset may offer ground
truth (``Dataset.ground_truth``, ``gis.interfaces.GroundTruth``).
"""

from ..errors import GisUsageError
from .base import Dataset
from .dvbpr import read_dvbpr, write_dvbpr
from .folder import DataWarning, read_folder
from .loading import DEFAULT_DATASET, load_dataset, resize_images, with_resolution
from .split import (
    activity,
    dvbpr_split,
    item_popularity,
    oracle_auc,
    popularity_auc,
    sampled_auc,
)
from .store import check_dataset, load_npz, save_dataset


def default_item_id(dataset: Dataset) -> str:
    """The item to use when none is named: ``dataset.meta["default_item"]`` (set by the
    dataset's plugin) when the dataset has it, else its first catalogue item.

    Raises ``GisUsageError`` when the dataset has no catalogue items.
    """
    key = dataset.meta.get("default_item")
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
    "DataWarning",
    "Dataset",
    "activity",
    "check_dataset",
    "default_item_id",
    "dvbpr_split",
    "item_popularity",
    "load_dataset",
    "load_npz",
    "oracle_auc",
    "popularity_auc",
    "read_dvbpr",
    "read_folder",
    "resize_images",
    "sampled_auc",
    "save_dataset",
    "with_resolution",
    "write_dvbpr",
]
