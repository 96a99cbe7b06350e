"""The 4 folds of one hyperparameter configuration: the unit a tuning trial and a test reproduction train."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from benchmark.data.splits import Splits
from benchmark.evaluation.registry import OBJECTIVE
from benchmark.training.fold import FoldResult, FoldTrainer, fold_data
from benchmark.training.progress import Bar
from benchmark.training.seeding import derive_seed

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FoldRun:
    """A dataset's images and its splits: what ``run_folds`` draws each fold from."""

    paths: list
    labels: np.ndarray
    splits: Splits


def run_folds(
    trainer: FoldTrainer,
    data: FoldRun,
    seed: int,
    folds: Iterable[int] | None = None,
    on_fold_done: Callable[[FoldResult], None] | None = None,
) -> list[FoldResult]:
    """Train the given folds (default: all) one after another; fold k is seeded with ``derive_seed(seed, k)``.

    ``on_fold_done`` sees each result as soon as it exists (to store it, or to let a pruner stop the trial by
    raising).
    """
    folds = list(range(len(data.splits.folds)) if folds is None else folds)
    results = []
    with Bar("folds", len(folds), "folds") as bar:
        for position, fold in enumerate(folds, start=1):
            logger.info("fold %d (%d of %d this run)", fold + 1, position, len(folds))
            result = trainer.train(fold_data(data.paths, data.labels, data.splits, fold), derive_seed(seed, fold))
            results.append(result)
            bar.update(val_mapr=f"{result.best_metrics['mean_average_precision_at_r']:.4f}")
            if on_fold_done is not None:
                on_fold_done(result)
    return results


def mean_validation_map_at_r(results: list[FoldResult]) -> float:
    return float(np.mean([r.best_metrics[OBJECTIVE] for r in results]))
