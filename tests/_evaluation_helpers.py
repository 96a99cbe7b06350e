"""Synthetic embeddings for the evaluation tests, and PML's metrics on them as the reference values."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from benchmark.evaluation.knn import l2_normalize

PML_METRICS = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def labels_with_sizes(rng: np.random.Generator, sizes) -> np.ndarray:
    """Shuffled labels, class i having sizes[i] members; class ids are spread out (not 0..C-1)."""
    labels = np.repeat(np.arange(len(sizes)) * 7 + 3, sizes)
    rng.shuffle(labels)
    return labels


def random_embeddings(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    return l2_normalize(rng.normal(size=(n, dim)))


def clustered_embeddings(rng: np.random.Generator, labels: np.ndarray, dim: int, noise: float) -> np.ndarray:
    """Class centres plus noise: embeddings like a trained model's, where neighbours mostly share the label."""
    centres = rng.normal(size=(labels.max() + 1, dim))
    return l2_normalize(centres[labels] + noise * rng.normal(size=(len(labels), dim)))


def pml_metrics(query, query_labels, reference=None, reference_labels=None) -> dict:
    calculator = AccuracyCalculator(include=PML_METRICS, k="max_bin_count", device=torch.device("cpu"))
    if reference is None:
        return calculator.get_accuracy(query, query_labels)
    return calculator.get_accuracy(query, query_labels, reference, reference_labels, ref_includes_query=False)
