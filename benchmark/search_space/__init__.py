"""Hyperparameter search spaces: one YAML file per loss in ``search_spaces/``, validated once when loaded.

A file holds ``source`` (where the ranges come from), ``params`` (name -> type, range, log scale, default,
domain, unit, description), ``dataset_overrides`` (ranges that differ per dataset) and ``defaults_by_dataset``
(the values a plain ``benchmark run`` uses on that dataset, e.g. MLRC's optima). Two intervals matter per
parameter: the search range ``[low, high]`` that Optuna samples from, and the ``domain`` where the loss is defined
at all. ``coerce`` accepts any value inside the domain, so ``run`` may try values the search never would.

This package: ``model`` (the ``SearchSpace`` and its parameters), ``files`` (reading and validating a YAML file) and
here, where the files are found.

The files live in the repository's top-level ``search_spaces/``, which a wheel carries as ``benchmark/search_spaces/``;
a caller may name another folder of per-loss files (the CLI's ``$BENCHMARK_SEARCH_SPACES``).
"""

from __future__ import annotations

from pathlib import Path

from benchmark.errors import UserError, did_you_mean
from benchmark.search_space.files import SCHEDULE_FILE, SpaceFile
from benchmark.search_space.model import (MAX_INT, TYPES, Domain, ParamSpec, SearchSpace, check_same_code,
                                          format_params)

__all__ = ["MAX_INT", "SCHEDULE_FILE", "TYPES", "Domain", "ParamSpec", "SearchSpace", "available_losses",
           "check_same_code", "format_params", "load_search_space", "load_search_space_file", "shipped_directory"]


def shipped_directory() -> Path:
    """The search spaces shipped with the package: ``benchmark/search_spaces/`` in an installed wheel (the build maps
    the repository's top-level folder there), ``search_spaces/`` next to the ``benchmark`` package in a source
    checkout."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "search_spaces"
    return installed if installed.is_dir() else package.parent / "search_spaces"


def available_losses(directory: Path | None = None) -> tuple[str, ...]:
    """The loss names that have a search-space file in ``directory`` (default: the shipped ones), sorted."""
    directory = Path(directory) if directory is not None else shipped_directory()
    if not directory.is_dir():
        raise UserError(f"search-space folder {directory} does not exist; expected a folder of <loss>.yaml files")
    return tuple(sorted(p.stem for p in directory.glob("*.yaml")))

def load_search_space(loss: str, dataset: str, directory: Path | None = None) -> SearchSpace:
    """The search space of built-in loss ``loss`` (its file in ``directory``, default: the shipped ones) with
    ``dataset``'s overrides and defaults applied; ``benchmark.losses.spaces.load_loss_space`` also finds plugin
    losses'."""
    directory = Path(directory) if directory is not None else shipped_directory()
    path = directory / f"{loss}.yaml"
    if not path.is_file():
        names = ", ".join(available_losses(directory)) or f"(no .yaml files in {directory})"
        raise UserError(f"unknown loss {loss!r}{did_you_mean(loss, available_losses(directory))}; expected one of: "
                        f"{names} (or load yours with --loss-module FILE)")
    return SpaceFile(path, shipped_directory()).resolve(dataset)


def load_search_space_file(path: Path, dataset: str = "") -> SearchSpace:
    """A search-space file outside the per-loss folder (e.g. ``batch_samplers/<name>.yaml``), validated the same
    way; ``dataset`` picks its overrides and defaults, ``""`` the file's generic ones."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"search-space file {path} does not exist")
    return SpaceFile(path, shipped_directory()).resolve(dataset)
