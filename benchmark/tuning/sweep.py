"""``sweep``: train every point of a hyperparameter grid (an Optuna study with a GridSampler).

The grid's parameters become categorical parameters whose choices are the grid values, so the values the
GridSampler hands out reach the loss unchanged (a value may lie outside tune's search range as long as it is inside
the loss's domain); every other parameter is fixed at its default or its ``--param`` value. The study is run by
:class:`~benchmark.tuning.study.Tuner` with the grid size as its exact total, so resume, interrupt re-queue,
dead-worker recovery and the results store behave as in ``tune``. Its name is derived from the grid and the fixed
values: rerunning the same command resumes, a different grid is a different study. The study's user attribute
``sweep`` (grid and fixed values) is how the report tells sweeps from tune studies.
"""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import optuna
from optuna.trial import TrialState

from benchmark.training.seeding import derive_seed
from benchmark.tuning.grid import SWEEP_ATTR, Grid, format_table, parse_grid, sweep_space, sweep_table
from benchmark.tuning.storage import retry_callback
from benchmark.tuning.study import Tuner, TuneSummary

logger = logging.getLogger(__name__)

__all__ = ["SWEEP_ATTR", "Grid", "Sweep", "format_table", "parse_grid", "sweep_space", "sweep_table"]


class Sweep:
    """A grid study run by a Tuner; ``run()`` trains until every grid point has a finished trial."""

    def __init__(self, experiment, storage_url: str, results_url: str, *, grid: Grid, seed: int):
        self.grid = grid
        # A copy: the caller's experiment keeps its own search space.
        experiment = replace(experiment, search_space=sweep_space(experiment.search_space, grid))
        # GridSampler picks among the unvisited points at random; seeding it per process keeps two workers on one
        # sweep from picking the same point.
        sampler = optuna.samplers.GridSampler({n: list(v) for n, v in grid.values.items()},
                                              seed=derive_seed(seed, os.getpid()))
        name = grid.study_name(experiment.dataset_name, experiment.loss_name, experiment.label)
        # Every point trains with the same seed (common random numbers): differences between points are the
        # parameters', not the seeds', and a point's numbers do not depend on the order the sampler visits points.
        self.tuner = Tuner(experiment, storage_url, results_url, total_trials=grid.size, sampler=sampler,
                           pruner="none", seed=seed, name=name, common_seed=True)
        self.tuner.study.set_user_attr(SWEEP_ATTR, grid.to_attr())

    def run(self) -> TuneSummary:
        self._requeue_failed_points()
        return self.tuner.run()

    def _requeue_failed_points(self) -> None:
        """A point whose trial failed without being re-queued (the process crashed) counts as visited for the
        GridSampler, which would then repeat another point instead; re-queue it (up to the retry limit, as tune
        does for dead workers) so every point gets its trial."""
        trials = self.tuner.study.get_trials(deepcopy=False)
        covered = [t.params for t in trials if t.state != TrialState.FAIL]
        for trial in trials:
            # A surplus trial failed before drawing its point: it has no params and is skipped.
            if (trial.state == TrialState.FAIL and set(trial.params) == set(self.grid.values)
                    and trial.params not in covered):
                retry_callback()(self.tuner.study, trial)
                covered.append(trial.params)
                logger.info("grid point %s failed before: re-queued", trial.params)
