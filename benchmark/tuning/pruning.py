"""Pruning a trial across folds, with Optuna's own pruners; fold 0's validation epochs are reported, not judged.

One step axis carries both (Optuna keeps one per trial). Fold 0's validation at epoch e reports at step e the best
validation MAP@R of fold 0 so far (it converges to the fold's result, as Optuna's pruners expect of intermediate
values); after k folds the running mean of their results is reported at step ``k * fold_step``, where ``fold_step``
exceeds every epoch a fold can train (``2 * max_epochs + 1``: a scale schedule's extra phase at most doubles a fold).
Values at one step are therefore compared like for like across trials: fold 0 after e epochs, or the mean of the
first k folds.

Pruners (``--pruner``; the name and its settings are recorded on the study: resuming under other rules is refused),
each judging from the end of fold 1 on:

- ``successive_halving`` (recommended): Optuna's SuccessiveHalvingPruner, one fold as its minimum resource and
  reduction factor 3: rungs after fold 1 and after fold 3, where a trial goes on only while it ranks in the top third
  of every trial that reached the rung (pruned ones included). It needs no start-up trials: the first trial at a
  rung passes, and while few have reached it a trial must be the best so far (Optuna's rule);
- ``hyperband``: Optuna's HyperbandPruner over the same folds (brackets starting after fold 1 or fold 3);
- ``median`` / ``percentile``: Optuna's MedianPruner / PercentilePruner(75) after every fold, once
  :data:`PRUNER_STARTUP_TRIALS` trials are complete (they compare with complete trials only).

Why not inside fold 0 (the replay of ``benchmark perf``: real per-epoch curves of 64 configurations per loss, 20
seeds of 50-trial studies, synthetic set v2): fold 0's early validations rank configurations like their results on
pair losses but not on proxy and softmax losses. Spearman correlation of fold 0's best by its warm-up epoch
(patience + 1) with the configuration's result: multi_similarity 0.53, contrastive 0.62, proxy_anchor -0.09; fold 0's
result: 0.70, 0.79, 0.72. Successive halving with a rung at fold 0's warm-up epoch spent 0.47 / 0.33 of the unpruned
compute to reach the unpruned best on the pair losses, but lost that best on 19 of 20 seeds on proxy_anchor and on 5
of 20 on cosface. Judged from fold 1 on: 0.56 / 0.49 / 0.57 / 0.57 (multi_similarity / contrastive / proxy_anchor /
cosface), the best at equal compute within its fold noise on 20 / 20 / 20 / 19 seeds; a second multi_similarity
pool (another draw of 64) 0.50, 20 of 20. The earlier rule, Optuna's
PercentilePruner(75) inside fold 0 after 3 complete trials, then successive halving: 0.57 / 0.41 / 0.60 / 0.53 with
the best lost on 3 seeds of proxy_anchor and of cosface. Also tried, from fold 1: reduction factor 4 (a rung after
fold 1 only) 0.55 / 0.46 / 0.52 / 0.53, a rung after every fold 0.51 / 0.45 / 0.55 (best lost on 3 proxy_anchor
seeds) / 0.52; Hyperband 0.65-0.77 on every pool (Optuna draws its brackets from the study's name); the median
rule 0.71 / 0.54 / 0.71 / 0.73.

Why half the compute is out of reach of fold-level pruning on these pools (contrastive and cosface retrained on
2026-12-01, where successive halving itself measured 0.47 and 0.58): successive halving told each
configuration's true result after every fold (perfect ranking, no fold noise) still needs 0.55 / 0.54 / 0.56 / 0.49
(multi_similarity / proxy_anchor / cosface / contrastive), and reduction factor 4, a rung after every fold or both,
told the same, 0.54-0.56 / 0.50-0.54 / 0.50-0.52 / 0.43-0.47: a pruned trial costs at least one fold, and a trial that
is the best so far at a rung, as most early ones are, runs to its end. A clairvoyant that stopped every trial after
its first fold but one that reaches spends 0.32 / 0.31 / 0.31 / 0.28. Harsher rungs on the real curves (reduction
factor 8 or 16, after fold 1 or after every fold) still needed 0.53-0.57 on multi_similarity and lost the best on 3 to
12 of 20 seeds on cosface (up to 6 on proxy_anchor). Gentler rules inside fold 0 (stop only the
bottom 10 % or 25 % at epoch 2, 3 or 4, then successive halving) swung between 0.49 and 1.01 on proxy_anchor and lost
its best on up to 5 of 20 seeds.

A pruned trial keeps its intermediate values, which TPE (the sampler ``--sampler auto`` picks with a pruner) uses
when it models good and bad regions.
"""

from __future__ import annotations

import optuna

from benchmark.errors import UserError
from benchmark.tuning.samplers import PRUNERS

# Complete trials before the median and percentile rules judge (they compare with complete trials only). Optuna's
# default is 5: in a 50-trial study 5 unpruned trials are 10 % of the budget.
PRUNER_STARTUP_TRIALS = 3
# --pruner percentile: a trial stops when it is below this percentile of the complete trials at the same step.
PERCENTILE = 75.0
# Successive halving and Hyperband keep the top 1/REDUCTION_FACTOR at each rung.
REDUCTION_FACTOR = 3


def fold_step(max_epochs: int) -> int:
    """The step after one fold: beyond any epoch of fold 0 (normal phase plus a scale schedule's extra phase)."""
    return 2 * max_epochs + 1


def pruner_settings(name: str, max_epochs: int, num_folds: int) -> dict:
    """Everything pruner ``name`` judges by: recorded on the study (user attribute ``pruner_settings``) and in
    ``benchmark perf``'s figures, and the only input :func:`make_pruner` builds from."""
    if name not in PRUNERS:
        raise UserError(f"unknown pruner {name!r}; expected one of: {', '.join(PRUNERS)}")
    if name == "none":
        return {"pruner": name}
    settings = {"pruner": name, "judged_from_fold": 1, "fold_step": fold_step(max_epochs), "num_folds": num_folds}
    if name == "median":
        return {**settings, "startup_trials": PRUNER_STARTUP_TRIALS}
    if name == "percentile":
        return {**settings, "startup_trials": PRUNER_STARTUP_TRIALS, "percentile": PERCENTILE}
    return {**settings, "reduction_factor": REDUCTION_FACTOR}


def make_pruner(name: str, max_epochs: int, num_folds: int) -> optuna.pruners.BasePruner:
    settings = pruner_settings(name, max_epochs, num_folds)
    if name == "none":
        return optuna.pruners.NopPruner()
    step = settings["fold_step"]
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=settings["startup_trials"], n_warmup_steps=step)
    if name == "percentile":
        return optuna.pruners.PercentilePruner(settings["percentile"], n_startup_trials=settings["startup_trials"],
                                               n_warmup_steps=step)
    eta = settings["reduction_factor"]
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=step, reduction_factor=eta)
    return optuna.pruners.HyperbandPruner(min_resource=step, max_resource=step * num_folds, reduction_factor=eta)


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
        """A validation of fold 0 at ``epoch`` (> 0) scored ``value``: reported (the trial's learning curve, for TPE
        and the dashboard); no pruner judges before fold 1 is done."""
        self._best = max(self._best, value)
        self.trial.report(self._best, step=epoch)

    def folds_done(self, values: list[float]) -> None:
        """``values``: the results of the folds done so far (any order)."""
        self.trial.report(sum(values) / len(values), step=len(values) * self.step)
        if len(values) < self.num_folds and self.trial.should_prune():
            raise optuna.TrialPruned()
