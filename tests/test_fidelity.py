"""Fidelity to MLRC's own code (powerful-benchmarker ``metric-learning`` branch + pytorch-metric-learning): each
test pins one row of docs/FIDELITY.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import protocol_for
from benchmark.search_space import load_search_space
from benchmark.training.experiment import Experiment
from benchmark.training.fold import FoldTrainer, fold_data


def make_experiment(data_root, loss="multi_similarity", weights="none", **protocol):
    settings = {"iterations_per_epoch": 2, "max_epochs": 2, "patience": 2, **protocol}
    return Experiment.create(
        dataset_name="synthetic", loss_name=loss, protocol=protocol_for("quick", "synthetic", **settings),
        search_space=load_search_space(loss, "synthetic"), data_root=data_root, device=torch.device("cpu"),
        weights=weights,
    )


def train_fold(experiment, params=None, fold=0, seed=0):
    space = experiment.search_space
    trainer = experiment.trainer({**space.defaults(), **space.coerce(params or {})})
    data = fold_data(experiment.fold_run.paths, experiment.fold_run.labels, experiment.splits, fold)
    return trainer, data, trainer.train(data, seed)


def scripted_validation(monkeypatch, values):
    """Make every validation return the next MAP@R of ``values`` (then the last one again)."""
    calls = []

    def validate(self, model, loader):
        value = values[min(len(calls), len(values) - 1)]
        calls.append(value)
        return {"precision_at_1": value, "r_precision": value, "mean_average_precision_at_r": value,
                "recall_at_k": {1: value}}

    monkeypatch.setattr(FoldTrainer, "validate", validate)
    return calls


# -- 1. early stopping --------------------------------------------------------------------------------------
@pytest.mark.parametrize("interval, patience, values, expected_epochs", [
    # never better than the untrained model: PML stops at the first validation more than `patience` epochs on
    (2, 3, [0.5, 0.1], 4),  # validations at 2 and 4: 4 - 0 > 3 (the old rule stopped at epoch 3, no validation)
    (1, 2, [0.5, 0.1], 3),  # 3 - 0 > 2 (the old rule stopped at 2)
    (5, 14, [0.1, 0.2, 0.1], 20),  # Cars: best at 5, then validations 10, 15, 20: 20 - 5 > 14 -> 3 after the best
])
def test_early_stopping_follows_pml_hook_container(tiny_env, tiny_data_root, monkeypatch, interval, patience,
                                                   values, expected_epochs):
    scripted_validation(monkeypatch, values)
    experiment = make_experiment(tiny_data_root, iterations_per_epoch=1, max_epochs=40, save_interval=interval,
                                 patience=patience)
    _, _, result = train_fold(experiment)
    assert result.epochs_trained == expected_epochs


# -- 11. a query label above every reference label ----------------------------------------------------------
def test_evaluate_query_label_above_every_reference_label(tmp_path, capsys):
    """np.bincount without minlength raised IndexError; such a query has R = 0 and is left out, as PML does."""
    import json

    from benchmark.cli import main
    from benchmark.evaluation.metrics import retrieval_metrics

    rng = np.random.default_rng(0)
    gallery_labels = np.repeat(np.arange(4), 5)
    gallery = rng.normal(size=(20, 8)) + 3 * np.eye(8)[gallery_labels]
    query_labels = np.array([0, 1, 2, 3, 9])  # 9: no gallery item
    query = rng.normal(size=(5, 8)) + 3 * np.eye(8)[np.minimum(query_labels, 7)]
    for name, array in {"q": query, "ql": query_labels, "g": gallery, "gl": gallery_labels}.items():
        np.save(tmp_path / f"{name}.npy", array)
    code = main(["-q", "evaluate", "--embeddings", str(tmp_path / "q.npy"), "--labels", str(tmp_path / "ql.npy"),
                 "--reference-embeddings", str(tmp_path / "g.npy"), "--reference-labels", str(tmp_path / "gl.npy"),
                 "--json"])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    expected = retrieval_metrics(query[:4], query_labels[:4], gallery, gallery_labels)
    assert shown["mean_average_precision_at_r"] == pytest.approx(expected["mean_average_precision_at_r"])


# -- 2. one sampler for every loss --------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", ["cub200", "cars196", "sop"])
def test_auto_sampler_is_the_same_for_every_mlrc_loss(dataset):
    """MLRC tuned every loss with one optimiser (Ax GP); the fixed scale_schedule is not searched and must not
    push the scale-bearing losses to TPE."""
    import optuna

    from benchmark.search_space import available_losses
    from benchmark.tuning.samplers import make_sampler

    kinds = {loss: type(make_sampler("auto", load_search_space(loss, dataset), seed=0)).__name__
             for loss in available_losses()}
    assert set(kinds.values()) == {optuna.samplers.GPSampler.__name__}, kinds


def test_the_sampler_used_is_stored_with_the_study_and_shown(tiny_env, tiny_data_root, tmp_path):
    import optuna

    from benchmark.report.collect import collect, leaderboard
    from benchmark.tuning.study import Tuner

    experiment = make_experiment(tiny_data_root, loss="proxy_anchor", max_epochs=1, patience=1)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    Tuner(experiment, url, url, total_trials=1, sampler="auto", pruner="none", seed=0).run()
    study = optuna.load_study(study_name="synthetic-proxy_anchor-quick", storage=url)
    assert study.user_attrs["samplers"] == ["gp"]
    board = leaderboard(collect(url, url))
    assert board["sampler"].tolist() == ["gp"]


# -- 5. batch norm as MLRC trained it -----------------------------------------------------------------------
def test_mlrc_preset_trains_batchnorm_weights_with_frozen_statistics():
    """PML's freeze_trunk_batchnorm only puts BatchNorm in eval mode: running statistics frozen, affine weights in
    the trunk optimizer (trained, weight-decayed)."""
    from torch import nn

    from benchmark.models import build_model

    assert protocol_for("mlrc", "cub200").batchnorm == "frozen_stats"
    torch.manual_seed(0)
    model = build_model(protocol_for("quick", "cub200", batchnorm="frozen_stats"), weights="none").train()
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    before = [(bn.running_mean.clone(), bn.weight.detach().clone()) for bn in layers]
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert all(id(bn.weight) in trainable and id(bn.bias) in trainable for bn in layers)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    model(torch.rand(8, 3, 32, 32)).pow(2).sum().backward()
    optimizer.step()
    for bn, (mean, weight) in zip(layers, before):
        assert not bn.training and torch.equal(bn.running_mean, mean)
        assert not torch.equal(bn.weight, weight)


# -- 6. precision is a protocol setting ---------------------------------------------------------------------
def test_mlrc_is_fp32_and_autocast_only_when_precision_says_so(tiny_env, tiny_data_root):
    from benchmark.models.precision import autocast, grad_scaler

    assert protocol_for("mlrc", "cub200").precision == "fp32"
    linear = torch.nn.Linear(4, 4)
    with autocast("fp32", torch.device("cuda")):  # no autocast region on CUDA either
        assert not torch.is_autocast_enabled("cuda")
    with autocast("bf16", torch.device("cpu")):
        assert linear(torch.rand(2, 4)).dtype == torch.bfloat16
    assert not grad_scaler("fp32", torch.device("cpu")).is_enabled()
    assert not grad_scaler("bf16", torch.device("cpu")).is_enabled()

    dtypes = []
    experiment = make_experiment(tiny_data_root, precision="bf16", max_epochs=1, save_interval=1)
    trainer = experiment.trainer(experiment.search_space.defaults())
    original = trainer.build_model

    def build_model():
        model = original()
        model.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
        return model

    trainer.build_model = build_model
    data = fold_data(experiment.fold_run.paths, experiment.fold_run.labels, experiment.splits, 0)
    result = trainer.train(data, 0)
    assert result.status == "ok" and set(dtypes) == {torch.bfloat16}
