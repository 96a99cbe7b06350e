"""Pruning a trial: inside fold 0 at its validation epochs, then across folds.

One step axis carries both (Optuna keeps one per trial). Fold 0's validation at epoch e reports at step e the best
validation MAP@R of fold 0 so far (it converges to the fold's result, as Optuna's pruners expect of intermediate
values); after k folds the running mean of their results is reported at step ``k * fold_step``, where ``fold_step``
exceeds every epoch a fold can train (``2 * max_epochs + 1``: a scale schedule's extra phase at most doubles a fold).
Values at one step are therefore compared like for like across trials: fold 0 after e epochs, or the mean of the
first k folds.

Pruners (``--pruner``, recorded on the study: a rerun with another pruner is refused):

- ``successive_halving`` (recommended): inside fold 0, Optuna's PercentilePruner(75) (a trial in the bottom quarter
  of the complete trials at that epoch stops), then Optuna's SuccessiveHalvingPruner over folds (rungs after fold 1
  and fold 3, reduction factor 3);
- ``hyperband``: the same inside fold 0, then Optuna's HyperbandPruner over folds (1 to all folds);
- ``median`` / ``percentile``: Optuna's MedianPruner / PercentilePruner(75) at every step.

Inside fold 0 no trial is judged before epoch ``patience + 1``: early stopping gives every fold that long to improve,
and the replay in ``benchmark perf`` showed why pruning needs it too -- the best configurations there started
slowest (first validations at the untrained model's level), and judging from epoch 1 pruned them every time.
All judge after :data:`PRUNER_STARTUP_TRIALS` complete trials. A pruned trial keeps its intermediate values, which
TPE (the sampler ``--sampler auto`` picks with a pruner) uses when it models good and bad regions.
"""

from __future__ import annotations

import optuna

from benchmark.errors import UserError
from benchmark.tuning.samplers import PRUNERS

# Complete trials before any pruning. Optuna's default is 5; in a 50-trial study those 5 unpruned trials alone are
# 10 % of the budget, and the replay in `benchmark perf` reaches the unpruned best with less compute with 3.
PRUNER_STARTUP_TRIALS = 3
REDUCTION_FACTOR = 3


def fold_step(max_epochs: int) -> int:
    """The step after one fold: beyond any epoch of fold 0 (normal phase plus a scale schedule's extra phase)."""
    return 2 * max_epochs + 1


def make_pruner(name: str, max_epochs: int, num_folds: int, patience: int) -> optuna.pruners.BasePruner:
    warmup = patience + 1
    per_epoch = optuna.pruners.PercentilePruner(75.0, n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=warmup)
    step = fold_step(max_epochs)
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=warmup)
    if name == "percentile":
        return per_epoch
    if name == "successive_halving":
        across = optuna.pruners.SuccessiveHalvingPruner(min_resource=step, reduction_factor=REDUCTION_FACTOR)
        return _EpochsThenFolds(per_epoch, across, step)
    if name == "hyperband":
        across = optuna.pruners.HyperbandPruner(min_resource=step, max_resource=step * num_folds,
                                                reduction_factor=REDUCTION_FACTOR)
        return _EpochsThenFolds(per_epoch, across, step)
    raise UserError(f"unknown pruner {name!r}; expected one of: {', '.join(PRUNERS)}")


class _EpochsThenFolds(optuna.pruners.BasePruner):
    """Optuna's pruners have no notion of two kinds of step: this hands fold 0's epoch steps to one pruner and the
    fold steps to another (whose resource unit is then one fold)."""

    def __init__(self, per_epoch: optuna.pruners.BasePruner, across_folds: optuna.pruners.BasePruner, step: int):
        self.per_epoch, self.across_folds, self.step = per_epoch, across_folds, step

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        last = trial.last_step
        if last is None:
            return False
        return (self.per_epoch if last < self.step else self.across_folds).prune(study, trial)


class PruningReporter:
    """What a trial reports to its pruner while it trains; raises ``optuna.TrialPruned`` when told to stop.

    Shared by the tuner and the pruning replay of ``benchmark perf``, so both report exactly the same steps.
    """

    def __init__(self, trial: optuna.Trial, max_epochs: int, num_folds: int):
        self.trial = trial
        self.step = fold_step(max_epochs)
        self.num_folds = num_folds
        self._best = float("-inf")

    def fold0_epoch(self, epoch: int, value: float) -> None:
        """A validation of fold 0 at ``epoch`` (> 0) scored ``value``."""
        self._best = max(self._best, value)
        self.trial.report(self._best, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned()

    def folds_done(self, values: list[float]) -> None:
        """``values``: the results of the folds done so far (any order)."""
        self.trial.report(sum(values) / len(values), step=len(values) * self.step)
        if len(values) < self.num_folds and self.trial.should_prune():
            raise optuna.TrialPruned()
