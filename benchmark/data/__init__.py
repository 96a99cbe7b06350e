"""Datasets (official layouts, ``folder``, ``synthetic``) behind a registry; class splits as data; the protocol's
transforms; a decoded-image cache. ``get_dataset(name, data_root)`` is the entry point.

The names below are imported on first use (PEP 562), so that a submodule (e.g. ``splits`` for the CLI's choices)
does not load the registry, PIL and the synthetic generator with it.
"""

import importlib

_EXPORTS = {
    "ImageDataset": "dataset", "DATASETS": "registry", "get_dataset": "registry",
    "Fold": "splits", "Splits": "splits", "check_split_hash": "splits", "make_splits": "splits",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
