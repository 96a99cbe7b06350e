"""Pruning inside fold 0 at validation epochs, then across folds; the pruner as a recorded study setting."""

from __future__ import annotations

import optuna
import pytest
import torch
from optuna.trial import TrialState

from _tiny import synthetic_config
from benchmark.config import protocol_for
from benchmark.errors import UserError
from benchmark.search_space import load_search_space
from benchmark.training.experiment import Experiment
from benchmark.tuning.pruning import (PRUNER_STARTUP_TRIALS, REDUCTION_FACTOR, PruningReporter, fold_step,
                                      make_pruner, pruner_settings)
from benchmark.tuning.study import Tuner

MAX_EPOCHS, FOLDS = 6, 4
GOOD_FOLD0 = [0.3, 0.4, 0.5]
HOPELESS_FOLD0 = [0.05, 0.06, 0.07]


def _study(pruner: str) -> optuna.Study:
    # A fixed name: Hyperband draws each trial's bracket from it.
    return optuna.create_study(study_name="pruning-test", direction="maximize",
                               pruner=make_pruner(pruner, MAX_EPOCHS, FOLDS))


def _replay(study, fold0: list[float], folds: list[float]) -> tuple[TrialState, int]:
    """One trial: fold 0's validations at epochs 2, 4, 6, then the folds' results. (state, epochs trained)."""
    trial = study.ask()
    reporter = PruningReporter(trial, MAX_EPOCHS, FOLDS)
    epochs = 0
    try:
        for epoch, value in zip((2, 4, 6), fold0):
            epochs = epoch
            reporter.fold0_epoch(epoch, value)
        for k in range(1, FOLDS + 1):
            reporter.folds_done(folds[:k])
            epochs += MAX_EPOCHS if k < FOLDS else 0
    except optuna.TrialPruned:
        study.tell(trial, state=TrialState.PRUNED)
        return TrialState.PRUNED, epochs
    study.tell(trial, sum(folds) / FOLDS)
    return TrialState.COMPLETE, epochs


@pytest.mark.parametrize("pruner", ["successive_halving", "median", "percentile"])
def test_a_hopeless_trial_trains_fold_0_and_is_pruned_when_fold_1_is_done(pruner):
    study = _study(pruner)
    for i in range(PRUNER_STARTUP_TRIALS):
        assert _replay(study, GOOD_FOLD0, [0.5 + i / 100] * FOLDS)[0] == TrialState.COMPLETE
    state, epochs = _replay(study, HOPELESS_FOLD0, [0.07] * FOLDS)
    # Fold 0's early validations are not judged (on proxy losses they rank configurations unlike their results):
    # the whole of fold 0, then stopped before fold 2.
    assert state == TrialState.PRUNED and epochs == MAX_EPOCHS
    pruned = study.trials[-1]
    assert pruned.intermediate_values == {2: 0.05, 4: 0.06, 6: 0.07, fold_step(MAX_EPOCHS): 0.07}  # kept: TPE learns


def test_successive_halving_needs_no_start_up_trials_but_never_prunes_the_first_at_a_rung():
    study = _study("successive_halving")
    # Nothing to rank against: the first trial runs every fold however poor.
    assert _replay(study, HOPELESS_FOLD0, [0.07] * FOLDS) == (TrialState.COMPLETE, 3 * MAX_EPOCHS + 6)
    # The second is judged after its first fold: ahead of the first, it goes on; behind both, the third stops.
    assert _replay(study, GOOD_FOLD0, [0.5] * FOLDS)[0] == TrialState.COMPLETE
    assert _replay(study, HOPELESS_FOLD0, [0.07] * FOLDS) == (TrialState.PRUNED, MAX_EPOCHS)


def test_successive_halving_prunes_across_folds_by_rank():
    study = _study("successive_halving")
    for i in range(3):
        _replay(study, GOOD_FOLD0, [0.5 + i / 100] * FOLDS)
    # Fine inside fold 0 (equal to the others) but the worst after fold 1: its rung keeps the top third only.
    state, epochs = _replay(study, GOOD_FOLD0, [0.45] * FOLDS)
    assert state == TrialState.PRUNED and epochs == MAX_EPOCHS
    assert max(study.trials[-1].intermediate_values) == fold_step(MAX_EPOCHS)
    # Among the best after fold 1, the worst after 3 folds: stopped at the second rung (REDUCTION_FACTOR folds).
    for i in range(6):
        _replay(study, GOOD_FOLD0, [0.6 + i / 100] * FOLDS)
    state, epochs = _replay(study, GOOD_FOLD0, [0.7, 0.4, 0.4, 0.4])
    assert state == TrialState.PRUNED and epochs == REDUCTION_FACTOR * MAX_EPOCHS


def test_hyperband_spends_less_on_a_hopeless_trial_than_on_a_whole_trial():
    study = _study("hyperband")
    for i in range(12):  # trials in every bracket
        _replay(study, GOOD_FOLD0, [0.5 + i / 100] * FOLDS)
    # Hyperband's bracket (drawn by Optuna) decides at which rung it is judged: after fold 1 or fold 3.
    for _ in range(6):
        state, epochs = _replay(study, HOPELESS_FOLD0, [0.07] * FOLDS)
        assert state == TrialState.PRUNED and epochs in (MAX_EPOCHS, 3 * MAX_EPOCHS)


def test_reported_values_converge_to_the_trial_value():
    study = _study("none")
    state, _ = _replay(study, [0.3, 0.2, 0.4], [0.4, 0.5, 0.6, 0.7])
    values = study.trials[0].intermediate_values
    assert state == TrialState.COMPLETE
    assert [values[e] for e in (2, 4, 6)] == [0.3, 0.3, 0.4]  # fold 0's best so far
    assert values[4 * fold_step(MAX_EPOCHS)] == pytest.approx(study.trials[0].value)
    assert fold_step(MAX_EPOCHS) > 2 * MAX_EPOCHS  # beyond any epoch, extra scale-schedule phase included


@pytest.mark.parametrize("pruner", ["median", "percentile"])
def test_no_trial_is_judged_before_the_recorded_start_up_trials(pruner):
    settings = pruner_settings(pruner, MAX_EPOCHS, FOLDS)
    assert settings["startup_trials"] == PRUNER_STARTUP_TRIALS
    study = _study(pruner)
    for i in range(settings["startup_trials"] - 1):
        _replay(study, GOOD_FOLD0, [0.5 + i / 100] * FOLDS)
    # One complete trial short of the start-up: the hopeless trial runs every fold.
    assert _replay(study, HOPELESS_FOLD0, [0.07] * FOLDS) == (TrialState.COMPLETE, 3 * MAX_EPOCHS + 6)


def test_unknown_pruner_is_a_user_error():
    with pytest.raises(UserError, match="unknown pruner"):
        make_pruner("nope", MAX_EPOCHS, FOLDS)


def _experiment(data_root, **settings):
    protocol = protocol_for("quick", iterations_per_epoch=1, max_epochs=2, patience=2,
                            save_interval=1, num_folds=2, **settings)
    return Experiment.create(
        dataset_name="synthetic", loss_name="multi_similarity", protocol=protocol,
        search_space=load_search_space("multi_similarity", "synthetic"), data_root=data_root,
        device=torch.device("cpu"), weights="none", num_workers=0, synthetic=synthetic_config())


def test_tuner_reports_fold_0_epochs_and_folds_and_records_its_pruner(tiny_env, tiny_data_root, tmp_path):
    experiment = _experiment(tiny_data_root)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    tuner = Tuner(experiment, url, url, total_trials=1, sampler="random", pruner="successive_halving", seed=0)
    tuner.run()
    trial = tuner.study.get_trials(deepcopy=False)[0]
    step = fold_step(2)
    assert trial.state == TrialState.COMPLETE
    assert sorted(trial.intermediate_values) == [1, 2, step, 2 * step]  # fold 0's validations, then each fold
    assert trial.intermediate_values[2 * step] == pytest.approx(trial.value)
    assert tuner.study.user_attrs["pruner"] == "successive_halving"
    # The rules behind the name, as the study was first run with them (protocol: max_epochs 2, 2 folds).
    assert tuner.study.user_attrs["pruner_settings"] == {
        "pruner": "successive_halving", "judged_from_fold": 1, "fold_step": step, "num_folds": 2,
        "reduction_factor": REDUCTION_FACTOR}
    with pytest.raises(UserError, match="--pruner successive_halving, not median"):
        Tuner(experiment, url, url, total_trials=2, sampler="random", pruner="median", seed=0)
    # A study begun by a version with other rules (here: the earlier one, judging inside fold 0 after 3 start-up
    # trials) is not resumed under these.
    earlier = {k: v for k, v in tuner.study.user_attrs["pruner_settings"].items() if k != "judged_from_fold"}
    tuner.study.set_user_attr("pruner_settings", {**earlier, "startup_trials": 3, "warmup_epochs": 3})
    with pytest.raises(UserError, match="pruned by other rules .*judged_from_fold None -> 1, startup_trials 3 -> None"):
        Tuner(experiment, url, url, total_trials=2, sampler="random", pruner="successive_halving", seed=0)
