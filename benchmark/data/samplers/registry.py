"""Batch samplers by name: how a training epoch's batches are drawn.

Each builder returns an ``ObservingBatchSampler``: what ``DataLoader(batch_sampler=...)`` takes (an iterable of
index lists with ``__len__``), plus ``observe(embeddings)``, which the trainer calls once per consumed batch, in
order, so a sampler can mine from the current embedding space. A sampler's hyperparameters and their search ranges
live in ``search_spaces/batch_samplers/<name>.yaml``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import numpy as np
import torch
from pytorch_metric_learning.samplers import MPerClassSampler
from torch.utils.data import BatchSampler

from benchmark.data.samplers.representative import RepresentativeBatchSampler
from benchmark.errors import UserError
from benchmark.search_space import ParamSpec, load_search_space_file, shipped_directory

SPACE_FOLDER = "batch_samplers"  # under the shipped search-space folder; its top level lists losses only


@runtime_checkable
class ObservingBatchSampler(Protocol):
    def __iter__(self) -> Iterator[list[int]]: ...

    def __len__(self) -> int: ...

    def observe(self, embeddings: torch.Tensor) -> None: ...


class MPerClassBatchSampler(BatchSampler):
    """PML's ``MPerClassSampler`` cut into batches. It draws from numpy's global RNG (``seed_everything`` seeds it)
    and does not look at embeddings."""

    def __init__(self, labels: np.ndarray, batch_size: int, m_per_class: int, iterations: int):
        classes = len(np.unique(labels))
        if m_per_class < 1 or batch_size % m_per_class or batch_size // m_per_class > classes:
            # PML would stop on an assert; say what it needs instead.
            raise UserError(f"batch size {batch_size} with m_per_class {m_per_class}: expected m_per_class to "
                            f"divide the batch size into at most {classes} classes (the training set's)")
        sampler = MPerClassSampler(labels, m=m_per_class, batch_size=batch_size,
                                   length_before_new_iter=iterations * batch_size)
        super().__init__(sampler, batch_size, drop_last=True)

    def observe(self, embeddings: torch.Tensor) -> None:
        """Nothing to learn from embeddings."""


def _m_per_class(labels, *, batch_size, m_per_class, iterations, params, seed) -> ObservingBatchSampler:
    return MPerClassBatchSampler(labels, batch_size, m_per_class, iterations)


def _representative(labels, *, batch_size, m_per_class, iterations, params, seed) -> ObservingBatchSampler:
    return RepresentativeBatchSampler(labels, batch_size, m_per_class, iterations, period=params["period"],
                                      hard_class_share=params["hard_class_share"], seed=seed)


@dataclass(frozen=True)
class BatchSamplerSpec:
    build: Callable[..., ObservingBatchSampler]
    searched: bool  # whether it has hyperparameters, in search_spaces/batch_samplers/<name>.yaml


BATCH_SAMPLERS: dict[str, BatchSamplerSpec] = {
    "m_per_class": BatchSamplerSpec(_m_per_class, searched=False),  # MLRC's: m images of batch_size/m random classes
    "representative": BatchSamplerSpec(_representative, searched=True),
}


def _spec(name: str) -> BatchSamplerSpec:
    if name not in BATCH_SAMPLERS:
        raise UserError(f"unknown batch sampler {name!r}; expected one of: {', '.join(BATCH_SAMPLERS)}")
    return BATCH_SAMPLERS[name]


def batch_sampler_space(name: str) -> dict[str, ParamSpec]:
    """The hyperparameters of batch sampler ``name`` and their search ranges; {} for one without any."""
    if not _spec(name).searched:
        return {}
    return load_search_space_file(shipped_directory() / SPACE_FOLDER / f"{name}.yaml").params


def build_batch_sampler(name: str, labels: np.ndarray, *, batch_size: int, m_per_class: int, iterations: int,
                        params: dict, seed: int) -> ObservingBatchSampler:
    """Batch sampler ``name`` over ``labels`` (one per dataset index): ``iterations`` batches per epoch.

    ``params`` are its hyperparameters, already typed; the ones left out take the search space's defaults.
    """
    spec = _spec(name)
    space = batch_sampler_space(name)
    unknown = sorted(set(params) - set(space))
    if unknown:
        raise UserError(f"unknown parameter(s) {', '.join(unknown)} for batch sampler {name}; "
                        f"valid: {', '.join(space) or '(none)'}")
    values = {key: p.default for key, p in space.items()} | dict(params)
    return spec.build(np.asarray(labels), batch_size=batch_size, m_per_class=m_per_class, iterations=iterations,
                      params=values, seed=seed)
