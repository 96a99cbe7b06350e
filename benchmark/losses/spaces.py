"""The search space of any loss: a built-in's file in ``search_spaces/``, or the file a plugin loss ships.

Here rather than in ``benchmark.search_space``, which sits below the losses and knows nothing of plugins.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from benchmark.losses.plugins import find_plugin
from benchmark.search_space import SearchSpace, load_search_space, load_search_space_file, shipped_directory


def load_loss_space(loss: str, dataset: str, directory: Path | None = None) -> SearchSpace:
    """``loss``'s search space with ``dataset``'s overrides and defaults, from ``directory`` (default: the shipped
    files) or, for a plugin loss, the file it ships; a plugin's carries its code's sha256."""
    directory = directory if directory is not None else shipped_directory()
    if not (directory / f"{loss}.yaml").is_file():
        plugin = find_plugin(loss)
        if plugin is not None:
            return replace(load_search_space_file(plugin.search_space, dataset), code_sha256=plugin.source_sha256)
    return load_search_space(loss, dataset, directory)  # a built-in, or the unknown-loss error listing them
