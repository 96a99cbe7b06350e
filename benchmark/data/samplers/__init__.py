"""Batch samplers for training: PML's m-per-class batches, and fixed class representatives with hard-class mining.
``build_batch_sampler(name, labels, ...)`` is the entry point; ``batch_sampler_space(name)`` its hyperparameters."""

from benchmark.data.samplers.registry import (
    BATCH_SAMPLERS,
    MPerClassBatchSampler,
    ObservingBatchSampler,
    batch_sampler_space,
    build_batch_sampler,
)
from benchmark.data.samplers.representative import RepresentativeBatchSampler

__all__ = [
    "BATCH_SAMPLERS",
    "MPerClassBatchSampler",
    "ObservingBatchSampler",
    "RepresentativeBatchSampler",
    "batch_sampler_space",
    "build_batch_sampler",
]
