"""Datasets (official layouts, ``folder``, ``synthetic``) behind a registry; class splits as data; the protocol's
transforms; a decoded-image cache. ``get_dataset(name, data_root)`` is the entry point."""

from benchmark.data.dataset import ImageDataset
from benchmark.data.registry import DATASETS, get_dataset
from benchmark.data.splits import Fold, Splits, check_split_hash, make_splits

__all__ = ["DATASETS", "Fold", "ImageDataset", "Splits", "check_split_hash", "get_dataset", "make_splits"]
