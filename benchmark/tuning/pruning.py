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
Percentile and median rules judge only after :data:`PRUNER_STARTUP_TRIALS` complete trials; successive halving and
Hyperband across folds judge from the second trial on (Optuna's: a trial passes a rung by ranking among the trials
that reached it). A pruned trial keeps its intermediate values, which TPE (the sampler ``--sampler auto`` picks
with a pruner) uses when it models good and bad regions.

On the harder synthetic set v2 the perf pool (multi_similarity) gives successive halving 0.57 (hyperband 0.71,
median 0.69); start-up trials 1 / 2 / 3: 0.50 / 0.55 / 0.57, percentile 50 0.53, reduction factor 2 0.56, folds
alone 0.56 -- the target (0.5) is missed there. The figures below are from synthetic set v1.

The settings are the replay's choice (``benchmark perf``: median compute to reach the unpruned best over 20 seeds of
50-trial studies, 3 start-up trials) on four pools of 64 distinct configurations: multi_similarity and contrastive
at the perf suite's trial size, then both cut to 4 steps of 16 images (trials that barely learn):

    pool                   successive halving   Hyperband   fold 0 alone   folds alone
    multi_similarity       0.44                 0.53-0.56   0.60           0.50
    contrastive            0.75                 0.93        1.00           0.75
    contrastive, cut       0.57                 0.80        0.73           0.59
    multi_similarity, cut  0.59                 0.81        0.85           0.59

Warm-up (1, 2 or patience + 1 epochs) and the fold-0 percentile (50, 66, 75) moved it by 0.04 at most, so the
cautious values stay (fewer good trials stopped by one slow start); reduction factor 2 or 3 alike, 4 worse on the
last pool (0.77). Hyperband's figures vary between runs (Optuna draws its brackets from the study's random name).
Where the ratio stays high no setting helped: on the contrastive pool 11 configurations are within
the best's fold noise, the unpruned study meets one by its 4th trial in the median seed, and only start-up trials and
that trial itself come before it. Every setting above kept the best at equal compute within noise on 20 of 20 seeds.
"""

from __future__ import annotations

import optuna

from benchmark.errors import UserError
from benchmark.tuning.samplers import PRUNERS

# Complete trials before any pruning inside fold 0. Optuna's default is 5: in a 50-trial study 5 unpruned trials are
# 10 % of the budget, and more of the compute spent before the best is found. The replay (pools as in the docstring)
# for 5 / 3 / 2 / 1: multi_similarity 0.49 / 0.44 / 0.40 / 0.34; contrastive 0.75 / 0.75 / 0.75 / 0.76; cut
# contrastive 0.59 / 0.57 / 0.54 / 0.56; cut multi_similarity 0.59 / 0.59 / 0.61 / 0.80. Fewer than 3 gained on two
# pools and lost on another (and, made more eager still, lost the best on up to 4 seeds in 20): 3 stays.
PRUNER_STARTUP_TRIALS = 3
# A trial stops when it is below this percentile of the complete trials at the same step (inside fold 0; at every
# step for --pruner percentile).
PERCENTILE = 75.0
REDUCTION_FACTOR = 3


def fold_step(max_epochs: int) -> int:
    """The step after one fold: beyond any epoch of fold 0 (normal phase plus a scale schedule's extra phase)."""
    return 2 * max_epochs + 1


def pruner_settings(name: str, max_epochs: int, num_folds: int, patience: int) -> dict:
    """Everything pruner ``name`` judges by: recorded on the study (user attribute ``pruner_settings``) and in
    ``benchmark perf``'s figures, and the only input :func:`make_pruner` builds from."""
    if name not in PRUNERS:
        raise UserError(f"unknown pruner {name!r}; expected one of: {', '.join(PRUNERS)}")
    if name == "none":
        return {"pruner": name}
    settings = {"pruner": name, "startup_trials": PRUNER_STARTUP_TRIALS, "warmup_epochs": patience + 1}
    if name == "median":
        return settings
    settings["percentile"] = PERCENTILE
    if name == "percentile":
        return settings
    return {**settings, "fold_step": fold_step(max_epochs), "num_folds": num_folds,
            "reduction_factor": REDUCTION_FACTOR}


def make_pruner(name: str, max_epochs: int, num_folds: int, patience: int) -> optuna.pruners.BasePruner:
    settings = pruner_settings(name, max_epochs, num_folds, patience)
    if name == "none":
        return optuna.pruners.NopPruner()
    startup, warmup = settings["startup_trials"], settings["warmup_epochs"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=warmup)
    per_epoch = optuna.pruners.PercentilePruner(settings["percentile"], n_startup_trials=startup,
                                                n_warmup_steps=warmup)
    if name == "percentile":
        return per_epoch
    step, eta = settings["fold_step"], settings["reduction_factor"]
    if name == "successive_halving":
        across = optuna.pruners.SuccessiveHalvingPruner(min_resource=step, reduction_factor=eta)
    else:
        across = optuna.pruners.HyperbandPruner(min_resource=step, max_resource=step * settings["num_folds"],
                                                reduction_factor=eta)
    return _EpochsThenFolds(per_epoch, across, step)


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
