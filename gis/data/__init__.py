"""Datasets: item images + categories + users' implicit feedback, split as DVBPR does.

``load_dataset(spec)`` reads a registered dataset (``fashion-colors``, the embedded default),
a folder of images with interaction CSVs, DVBPR's pickled ``.npy`` (``trust=True`` only) or
gis's own ``.npz``; every reader returns a ``Dataset``.
"""

from .base import Dataset
from .dvbpr import read_dvbpr, write_dvbpr
from .folder import DataWarning, read_folder
from .loading import DEFAULT_DATASET, load_dataset, resize_images, with_resolution
from .split import activity, dvbpr_split, item_popularity, popularity_auc, sampled_auc
from .store import check_dataset, load_npz, save_dataset

#: Item that ``gis shift`` modifies when no ``--item`` is given: a plain yellow T-shirt/top held
#: out from every interaction in the fashion-colors default dataset (Fashion-MNIST test image
#: 88). Yellow is the colour the simulated users like least, so a shift has room to help.
#: Get it with ``load_dataset().item_image(DEFAULT_ITEM_ID)`` -> (1, 3, 32, 32) in [-1, 1].
DEFAULT_ITEM_ID = "test-00088"

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_ITEM_ID",
    "DataWarning",
    "Dataset",
    "activity",
    "check_dataset",
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
