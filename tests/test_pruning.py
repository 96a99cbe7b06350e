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
from benchmark.tuning.pruning import (PERCENTILE, PRUNER_STARTUP_TRIALS, REDUCTION_FACTOR, PruningReporter,
                                      fold_step, make_pruner, pruner_settings)
from benchmark.tuning.study import Tuner

MAX_EPOCHS, FOLDS, PATIENCE = 6, 4, 3


def _study(pruner: str) -> optuna.Study:
    return optuna.create_study(direction="maximize", pruner=make_pruner(pruner, MAX_EPOCHS, FOLDS, PATIENCE))


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


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband"])
def test_a_hopeless_trial_is_pruned_inside_fold_0(pruner):
    study = _study(pruner)
    for i in range(PRUNER_STARTUP_TRIALS):
        assert _replay(study, [0.3, 0.4, 0.5], [0.5 + i / 100] * FOLDS)[0] == TrialState.COMPLETE
    state, epochs = _replay(study, [0.05, 0.06, 0.07], [0.07] * FOLDS)
    # Not at epoch 2 (within patience + 1 = 4 epochs every fold may still take off), then at fold 0's next
    # validation, not after a whole fold.
    assert state == TrialState.PRUNED and epochs == 4
    pruned = study.trials[-1]
    assert pruned.intermediate_values == {2: 0.05, 4: 0.06}  # kept: TPE learns from it


def test_successive_halving_prunes_across_folds_by_rank():
    study = _study("successive_halving")
    for i in range(PRUNER_STARTUP_TRIALS):
        _replay(study, [0.3, 0.4, 0.5], [0.5 + i / 100] * FOLDS)
    # Fine inside fold 0 (equal to the others) but the worst after fold 1: its rung keeps the top third only.
    state, epochs = _replay(study, [0.3, 0.4, 0.5], [0.45] * FOLDS)
    assert state == TrialState.PRUNED and epochs == MAX_EPOCHS
    assert max(study.trials[-1].intermediate_values) == fold_step(MAX_EPOCHS)


def test_reported_values_converge_to_the_trial_value():
    study = _study("none")
    state, _ = _replay(study, [0.3, 0.2, 0.4], [0.4, 0.5, 0.6, 0.7])
    values = study.trials[0].intermediate_values
    assert state == TrialState.COMPLETE
    assert [values[e] for e in (2, 4, 6)] == [0.3, 0.3, 0.4]  # fold 0's best so far
    assert values[4 * fold_step(MAX_EPOCHS)] == pytest.approx(study.trials[0].value)
    assert fold_step(MAX_EPOCHS) > 2 * MAX_EPOCHS  # beyond any epoch, extra scale-schedule phase included


@pytest.mark.parametrize("pruner", ["median", "successive_halving", "hyperband"])
def test_no_trial_is_judged_before_the_recorded_start_up_trials(pruner):
    settings = pruner_settings(pruner, MAX_EPOCHS, FOLDS, PATIENCE)
    assert settings["startup_trials"] == PRUNER_STARTUP_TRIALS and settings["warmup_epochs"] == PATIENCE + 1
    study = _study(pruner)
    for i in range(settings["startup_trials"] - 1):
        _replay(study, [0.3, 0.4, 0.5], [0.5 + i / 100] * FOLDS)
    # One complete trial short of the start-up: the hopeless trial is not judged inside fold 0.
    state, epochs = _replay(study, [0.05, 0.06, 0.07], [0.07] * FOLDS)
    assert epochs >= MAX_EPOCHS


def test_unknown_pruner_is_a_user_error():
    with pytest.raises(UserError, match="unknown pruner"):
        make_pruner("nope", MAX_EPOCHS, FOLDS, PATIENCE)


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
    # The rules behind the name, as the study was first run with them (protocol: max_epochs 2, 2 folds, patience 2).
    assert tuner.study.user_attrs["pruner_settings"] == {
        "pruner": "successive_halving", "startup_trials": PRUNER_STARTUP_TRIALS, "warmup_epochs": 3,
        "percentile": PERCENTILE, "fold_step": step, "num_folds": 2, "reduction_factor": REDUCTION_FACTOR}
    with pytest.raises(UserError, match="--pruner successive_halving, not median"):
        Tuner(experiment, url, url, total_trials=2, sampler="random", pruner="median", seed=0)
