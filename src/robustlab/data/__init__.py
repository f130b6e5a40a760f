"""Datasets by name, as uint8 tensors in memory; augmentation and batch order on tensors.

``load("cifar10", "train", val_size=5000)`` finds (or downloads and checks) the official files
and returns an :class:`ImageData`; ``float_images()`` gives N×C×H×W in [0, 1]. See docs/data.md.
"""

from .imagedata import ImageData
from .load import SPLITS, fetch, load, val_carve, verify
from .registry import get_spec, list_datasets
from .spec import DatasetSpec, FileSpec

__all__ = ["DatasetSpec", "FileSpec", "ImageData", "SPLITS", "fetch", "get_spec",
           "list_datasets", "load", "val_carve", "verify"]
