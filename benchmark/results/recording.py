"""Recording one run (``ResultsStore.run`` / ``claim_reproduction``): its folds, its cost, its end."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from benchmark.results.run_extras import WHOLE_RUN

if TYPE_CHECKING:
    from benchmark.results.store import ResultsStore


class FoldOutcome(Protocol):
    """What ``RunRecord.fold`` records of a trained fold (``benchmark.training.fold.FoldResult`` has it)."""

    fold: int
    status: str
    best_epoch: int | None
    epochs_trained: int
    seconds: float
    device_seconds: float | None
    best_metrics: Mapping
    curve: list[dict]
    proxy_diagnostics: list[dict]


class RunRecord:
    """One run being recorded (see ``ResultsStore.run``); as a context manager, a run the block leaves open (an
    exception, an interrupt) is marked failed."""

    def __init__(self, store: ResultsStore, run_id: int, identity: dict, reproduction: int | None = None,
                 seed: int | None = None, device: str = "?"):
        self.store, self.run_id, self._identity = store, run_id, identity
        self.reproduction, self.seed, self.device = reproduction, seed, device
        self.finished = False
        self._started = time.perf_counter()
        self._device_seconds: float | None = None

    def __enter__(self) -> RunRecord:
        return self

    def __exit__(self, *exc_info) -> None:
        if not self.finished:
            self.store.finish_run(self.run_id, "failed")

    def fold(self, result: FoldOutcome) -> None:
        """A fold's outcome, its epoch curve, its proxy diagnostics and what it cost."""
        self.store.record_fold(self.run_id, result.fold, result.status, result.best_epoch, result.epochs_trained,
                               result.seconds, result.best_metrics)
        self.store.record_epochs(self.run_id, result.fold, result.curve)
        self.store.record_proxy_diagnostics(self.run_id, result.fold, result.proxy_diagnostics)
        if result.device_seconds is not None:
            self._device_seconds = (self._device_seconds or 0.0) + result.device_seconds
        self.store.record_compute(self.run_id, [{"fold": result.fold, "wall_seconds": result.seconds,
                                                 "device": self.device, "device_seconds": result.device_seconds}])

    def _record_run_cost(self) -> None:
        # The whole run, from its start to its end: its folds and what happened around them (test evaluation).
        wall = time.perf_counter() - self._started
        self.store.record_compute(self.run_id, [{"fold": WHOLE_RUN, "wall_seconds": wall, "device": self.device,
                                                 "device_seconds": self._device_seconds}])

    def finish(self, status: str, objective: float | None = None) -> None:
        self._record_run_cost()
        self.store.finish_run(self.run_id, status, objective)
        self.finished = True

    def test_metrics(self, reproduction: int, seed: int, metrics: Mapping[str, Mapping]) -> None:
        """A test reproduction's metrics; completes the run in the same transaction."""
        self._record_run_cost()
        self.store.record_test_metrics(self.run_id, **self._identity, reproduction=reproduction, seed=seed,
                                       metrics=metrics)
        self.finished = True
