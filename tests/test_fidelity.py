"""Fidelity to MLRC's own code (powerful-benchmarker ``metric-learning`` branch + pytorch-metric-learning): each
test pins one row of docs/FIDELITY.md."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import protocol_for
from benchmark.data.registry import mlrc_validation
from benchmark.search_space import load_search_space
from benchmark.training.fold import FoldTrainer, fold_data
from _training_helpers import make_experiment, train_fold


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

    experiment = make_experiment(tiny_data_root, loss="proxy_anchor", max_epochs=1, patience=1, num_folds=1)
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

    assert protocol_for("mlrc").batchnorm == "frozen_stats"
    torch.manual_seed(0)
    model = build_model(protocol_for("quick", batchnorm="frozen_stats"), weights="none").train()
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

    assert protocol_for("mlrc").precision == "fp32"
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


# -- 4. everything that changes numbers is part of a study's identity -----------------------------------------
def test_weights_and_precision_make_separate_studies_and_rows(tiny_env, tiny_data_root, tmp_path):
    import optuna

    from benchmark.errors import UserError
    from benchmark.models import build_trunk
    from benchmark.report.collect import collect, leaderboard
    from benchmark.report.tables import NOT_COMPARABLE_NOTE, to_markdown
    from benchmark.tuning.study import Tuner

    weights = tmp_path / "trunk.pt"
    torch.manual_seed(1)
    torch.save(build_trunk("small_cnn", "none").state_dict(), weights)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    runs = [{"weights": "none"}, {"weights": str(weights)}, {"weights": "none", "precision": "bf16"}]
    for settings in runs:
        experiment = make_experiment(tiny_data_root, loss="contrastive", max_epochs=1, patience=1, num_folds=1,
                                     iterations_per_epoch=1, **settings)
        Tuner(experiment, url, url, total_trials=1, sampler="random", pruner="none", seed=0).run()

    storage = optuna.storages.RDBStorage(url)
    names = sorted(s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False))
    sha = __import__("hashlib").sha256(weights.read_bytes()).hexdigest()
    assert names == ["synthetic-contrastive-quick", "synthetic-contrastive-quick+bf16",
                     f"synthetic-contrastive-quick+weights_{sha[:12]}"]
    identity = optuna.load_study(study_name=names[2], storage=storage).user_attrs["identity"]
    assert identity["weights"] == f"sha256:{sha}" and identity["precision"] == "fp32"
    data = collect(url, url)
    board = leaderboard(data)
    assert sorted(board["protocol"]) == ["quick", "quick+bf16", f"quick+weights_{sha[:12]}"]
    markdown = to_markdown(board)
    assert markdown.count(NOT_COMPARABLE_NOTE) == 1
    assert markdown.index(NOT_COMPARABLE_NOTE) > markdown.index("(quick+bf16)")

    # The search space is checked on resume, not only stored.
    experiment = make_experiment(tiny_data_root, loss="contrastive", max_epochs=1, patience=1, num_folds=1,
                                 iterations_per_epoch=1)
    experiment.search_space = experiment.search_space.with_overrides({"neg_margin": "0.1:0.2"})
    with pytest.raises(UserError, match="search_space"):
        Tuner(experiment, url, url, total_trials=2, sampler="random", pruner="none", seed=0)


# -- 7. the objective ignores the untrained model; a non-finite loss is scored as powerful-benchmarker did ------
def test_objective_ignores_the_untrained_model(tiny_env, tiny_data_root, monkeypatch):
    """IGNORE_ALL_UNTRAINED: the fold's score is its best TRAINED validation even below the untrained model, while
    the checkpoint (PML's "best0") and early stopping still count the untrained model."""
    scripted_validation(monkeypatch, [0.5, 0.2, 0.3])  # epochs 0, 2, 4
    experiment = make_experiment(tiny_data_root, iterations_per_epoch=1, max_epochs=4, save_interval=2, patience=9)
    _, _, result = train_fold(experiment)
    assert (result.best_epoch, result.best_metrics["mean_average_precision_at_r"]) == (4, 0.3)
    assert result.checkpoint_epoch == 0 and result.untrained_metrics["mean_average_precision_at_r"] == 0.5


def test_nonfinite_loss_scores_the_trial_zero_and_stays_visible(tiny_env, tiny_data_root, tmp_path, monkeypatch):
    import optuna

    from benchmark.losses import LossBundle
    from benchmark.report.collect import collect, leaderboard
    from benchmark.results import load_runs
    from benchmark.tuning.study import Tuner

    original = LossBundle.compute
    monkeypatch.setattr(LossBundle, "compute", lambda self, e, y: original(self, e, y) * float("nan"))
    experiment = make_experiment(tiny_data_root, loss="contrastive", iterations_per_epoch=1, max_epochs=2)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    Tuner(experiment, url, url, total_trials=1, sampler="random", pruner="none", seed=0).run()
    trial = optuna.load_study(study_name="synthetic-contrastive-quick", storage=url).trials[0]
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.value == 0.0
    assert trial.user_attrs["nonfinite_loss_fold"] == 0 and list(trial.user_attrs["folds"]) == ["0"]  # 1 fold only
    assert trial.user_attrs["folds"]["0"]["status"] == "nonfinite_loss"
    assert load_runs(url)["objective"].tolist() == [0.0]
    assert leaderboard(collect(url, url))["nonfinite_trials"].tolist() == [1]


# -- 8. Margin / class --------------------------------------------------------------------------------------
def test_margin_per_class_learns_one_beta_per_class_without_weight_decay():
    from benchmark.losses import build_loss

    space = load_search_space("margin_per_class", "synthetic")
    bundle = build_loss("margin_per_class", space.defaults(), num_classes=15, embedding_size=8)
    assert bundle.loss.beta.shape == (15,) and bundle.loss.beta.requires_grad
    optimizer = bundle.make_optimizer(weight_decay=1e-4, momentum=0.9)
    assert optimizer.param_groups[0]["weight_decay"] == 0.0
    # MLRC's optima (powerful-benchmarker docs/papers/mlrc.md, "Margin / class" row) and ranges.
    optima = {"cub200": (2.65e-4, 0.0779, 0.9796), "cars196": (4.76e-5, 0.0776, 0.9598),
              "sop": (7.10e-5, 0.0518, 0.8424), "cub200_batch256": (1.32e-2, -0.0204, 0.1097)}
    for dataset, (loss_lr, margin, beta) in optima.items():
        space = load_search_space("margin_per_class", dataset)
        assert space.defaults() == {"loss_lr": loss_lr, "margin": margin, "beta": beta}
        assert (space.params["margin"].low, space.params["margin"].high) == (-0.2, 2.0)
        assert (space.params["loss_lr"].low, space.params["loss_lr"].high, space.params["loss_lr"].log) == (1e-6, 1, True)


def test_margin_per_class_trains_from_the_command_line(tiny_env, capsys):
    import json

    from benchmark.cli import main

    code = main(["-q", "run", "--loss", "margin_per_class", "--dataset", "synthetic", "--protocol", "quick",
                 "--set", "iterations_per_epoch=2", "--set", "max_epochs=2", "--device", "cpu", "--folds", "1",
                 "--json"])
    assert code == 0
    shown = json.loads(capsys.readouterr().out)
    assert [fold["status"] for fold in shown["folds"]] == ["ok"]


# -- 9. CUB200 with batch 256 -------------------------------------------------------------------------------
def test_cub200_batch256_preset_has_its_own_ranges_and_optima():
    from benchmark.config import search_space_section

    protocol = protocol_for("mlrc_batch256", classification_loss=True)
    assert (protocol.batch_size, protocol.m_per_class, protocol.save_interval, protocol.patience) == (256, 4, 2, 9)
    assert protocol.lr == 1e-6 and protocol.batchnorm == "frozen_stats" and protocol.precision == "fp32"
    section = search_space_section("mlrc_batch256", "cub200")
    # docs/papers/mlrc_plots/cub_*_large_batch*.html ranges, docs/papers/mlrc.md "CUB200 with Batch 256" optima
    arcface = load_search_space("arcface", section)
    assert arcface.params["scale"].high == 100.0 and arcface.defaults()["scale"] == 78.86
    assert load_search_space("ntxent", section).params["temperature"].low == 0.01
    assert load_search_space("multi_similarity_miner", section).params["alpha"].low == 1e-5
    assert load_search_space("soft_triple", section).params["gamma"].low == 1e-5
    assert load_search_space("fastap", section).defaults()["num_bins"] == 86
    assert load_search_space("multi_similarity", section).params["alpha"].low == 0.01  # not CUB-32's 0.001


# -- 10. m per class of the classification-based losses -----------------------------------------------------
def test_classification_losses_draw_one_image_per_class_in_mlrc(tiny_env):
    """powerful-benchmarker configs/config_loss_and_miners/with_classification_based_loss.yaml: MPerClassSampler
    m = 1; the embedding losses keep default.yaml's m = 4."""
    import argparse

    from benchmark.cli import _common
    from benchmark.losses import is_classification_loss
    from benchmark.search_space import available_losses

    classification = {"proxy_nca", "normalized_softmax", "cosface", "arcface", "soft_triple", "proxy_anchor"}
    assert {loss for loss in available_losses() if is_classification_loss(loss)} == classification
    assert protocol_for("mlrc", classification_loss=True).m_per_class == 1
    assert protocol_for("mlrc").m_per_class == 4
    assert protocol_for("quick", classification_loss=True).m_per_class == 4
    for loss, m in (("proxy_nca", 1), ("margin_per_class", 4), ("contrastive", 4)):
        assert _common.protocol_from_args("mlrc", "cub200", {}, loss=loss).m_per_class == m
    parser = argparse.ArgumentParser()
    _common.add_experiment_args(parser)
    args = parser.parse_args(["--loss", "arcface", "--dataset", "synthetic", "--weights", "none", "--device", "cpu"])
    assert _common.experiment_from_args(args).protocol.m_per_class == 1


# -- 3. one scale convention: the effective cosine scale ----------------------------------------------------
def test_every_scale_convention_is_stated_in_the_search_space_and_matches_the_loss():
    from benchmark.losses import build_loss
    from benchmark.search_space import available_losses

    for loss in available_losses():
        space = load_search_space(loss, "synthetic")
        bundle = build_loss(loss, space.defaults(), num_classes=6, embedding_size=8)
        if bundle.scale_convention is None:
            assert space.cosine_scale is None, loss
            continue
        stated = space.cosine_scale
        assert stated is not None, f"{loss} has a scale but its search space states no cosine_scale"
        assert bundle.scale_convention == (stated["parameter"], stated["factor"], stated["inverse"]), loss


def test_proxy_nca_effective_cosine_scale_is_twice_softmax_scale():
    """PML's ProxyNCA = cross-entropy over logits 2 softmax_scale cos(e, p); AdaCos and the recorded scale act on
    that effective scale."""
    from benchmark.losses import build_loss
    from benchmark.training.scale_schedules import adacos_fixed_scale, build_schedule

    torch.manual_seed(0)
    params = {"loss_lr": 1e-3, "softmax_scale": 3.0}
    bundle = build_loss("proxy_nca", params, num_classes=5, embedding_size=8)
    embeddings, labels = torch.randn(10, 8), torch.arange(10) % 5
    cosines = torch.nn.functional.normalize(embeddings, dim=1) @ torch.nn.functional.normalize(
        bundle.loss.proxies, dim=1).t()
    expected = torch.nn.functional.cross_entropy(2 * 3.0 * cosines, labels)
    assert bundle.compute(embeddings, labels).item() == pytest.approx(expected.item(), rel=1e-5)
    assert bundle.get_scale() == 6.0

    schedule = build_schedule({"scale_schedule": "adacos_fixed"}, bundle)
    schedule.start(bundle, 75)
    assert bundle.get_scale() == pytest.approx(adacos_fixed_scale(75))
    assert bundle.loss.softmax_scale == pytest.approx(adacos_fixed_scale(75) / 2)


# -- 12. AdaCos' C and s are stored and shown with each result ----------------------------------------------
def test_adacos_classes_and_scale_are_stored_and_shown(tiny_env, tiny_data_root, tmp_path):
    import math

    from benchmark.report.collect import collect, leaderboard
    from benchmark.report.tables import to_markdown
    from benchmark.results import load_runs
    from benchmark.tuning.test_phase import run_test

    experiment = make_experiment(tiny_data_root, loss="proxy_anchor", iterations_per_epoch=1, max_epochs=2,
                                 num_folds=4)
    url = f"sqlite:///{tmp_path / 'bench.db'}"
    fixed = experiment.search_space.coerce({"scale_schedule": "adacos_fixed"})
    summary = run_test(experiment, url, url, reproductions=1, seed=0, fixed=fixed)
    assert summary.attrs["params"]["scale_schedule"] == "adacos_fixed"
    classes = [len(f.train) for f in experiment.splits.folds]  # 15 per fold on the tiny data
    stored = load_runs(url)["config"].iloc[0]["adacos"]
    assert [(f["classes"], round(f["scale"], 6)) for f in stored] == [
        (c, round(math.sqrt(2) * math.log(c - 1), 6)) for c in classes]
    board = leaderboard(collect(url, url))
    text = f"C={classes[0]} s={math.sqrt(2) * math.log(classes[0] - 1):.3f}"
    assert board["adacos"].tolist() == [text]
    assert f"(AdaCos {text})" in to_markdown(board)


# -- 13. tie order as PML's L2 faiss index -------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_ties_are_ordered_as_pml_orders_them(seed):
    """Duplicate embeddings with different labels tie exactly; an inner-product index ordered them differently
    from PML's IndexFlatL2 (P@1 0.117 against 0.35 on seed 2)."""
    from _evaluation_helpers import PML_METRICS, pml_metrics

    from benchmark.evaluation.knn import l2_normalize
    from benchmark.evaluation.metrics import retrieval_metrics

    rng = np.random.default_rng(seed)
    points = l2_normalize(rng.normal(size=(6, 4)))
    embeddings = points[rng.integers(0, 6, size=60)]
    labels = rng.integers(0, 5, size=60)
    ours, pml = retrieval_metrics(embeddings, labels), pml_metrics(embeddings, labels)
    for name in PML_METRICS:
        assert ours[name] == pytest.approx(pml[name], abs=1e-9), name


# -- MLRC's published test results beside the rows of mlrc studies -------------------------------------------
def test_mlrc_published_test_results_are_shown_beside_mlrc_rows():
    import math

    import pandas as pd

    from benchmark.report.collect import ReportData, leaderboard
    from benchmark.report.tables import best_rows, to_markdown

    def summary_rows(protocol, value):
        return [{"study_name": f"cub200-contrastive-{protocol}", "dataset": "cub200", "loss": "contrastive",
                 "protocol": protocol, "mode": mode, "metric": metric, "mean": value, "ci_low": value - 0.01,
                 "ci_high": value + 0.01, "n": 3}
                for mode in ("separated_128", "concatenated_512")
                for metric in ("precision_at_1", "r_precision", "mean_average_precision_at_r")]

    summary = pd.DataFrame(summary_rows("mlrc", 0.2) + summary_rows("mlrc+bf16", 0.3) + summary_rows("quick", 0.1))
    # The reproductions behind the mlrc row: the best is chosen among them (paired test), never among published rows.
    reproductions = pd.DataFrame([
        {"study_name": "cub200-contrastive-mlrc", "dataset": "cub200", "loss": "contrastive", "protocol": "mlrc",
         "mode": mode, "metric": metric, "reproduction": i, "value": value}
        for mode in ("separated_128", "concatenated_512")
        for metric in ("precision_at_1", "r_precision", "mean_average_precision_at_r")
        for i, value in enumerate((0.19, 0.2, 0.21))])
    data = ReportData("s", "r", [], summary, pd.DataFrame(), pd.DataFrame(), test_values=reproductions)
    board = leaderboard(data)
    published = board[board["published"].astype(bool)]
    assert set(published["protocol"]) == {"mlrc"}  # not beside mlrc+bf16 or quick rows
    assert len(published) == 15  # 14 losses and the untrained trunk, CUB200
    row = published[published["loss"] == "contrastive (MLRC published)"].iloc[0]
    assert math.isclose(row["concatenated_512/mean_average_precision_at_r/mean"], 0.2653)
    assert math.isclose(row["separated_128/precision_at_1/mean"], 0.5973)
    mlrc = board[board["protocol"] == "mlrc"].reset_index(drop=True)
    ours = mlrc.index[mlrc["loss"] == "contrastive"][0]
    assert best_rows(mlrc, "separated_128", "precision_at_1") == {ours}  # published rows are never "best"
    markdown = to_markdown(board)
    assert "| contrastive (MLRC published) | - | - | 0.5973 |" in markdown  # no trials, no n of ours


# -- the rest of the preset: powerful-benchmarker's configs, value by value --------------------------------
@pytest.mark.parametrize("dataset, interval, patience", [("cub200", 2, 9), ("cars196", 5, 14), ("sop", 20, 39)])
def test_mlrc_preset_is_powerful_benchmarkers_config(dataset, interval, patience):
    """configs/config_general/{default,with_cars196,with_sop}.yaml, config_optimizers/default.yaml,
    config_models/default.yaml, config_transforms/default.yaml, config_loss_and_miners/default.yaml."""
    from benchmark.config import default_weights

    p = protocol_for("mlrc", validation=mlrc_validation(dataset))
    assert (p.trunk, default_weights("mlrc"), p.embedding_size) == ("bninception", "imagenet", 128)
    assert (p.batch_size, p.m_per_class, p.iterations_per_epoch, p.max_epochs) == (32, 4, 100, 1000)
    assert (p.lr, p.weight_decay, p.momentum) == (1e-6, 1e-4, 0.9)
    assert (p.save_interval, p.patience) == (interval, patience)
    assert (p.resize, p.crop, p.rrc_scale, p.hflip) == (256, 227, (0.16, 1.0), 0.5)
    assert p.rrc_ratio == pytest.approx((0.75, 1.33), abs=0.004)
    assert (p.batchnorm, p.precision, p.batch_sampler, p.num_folds) == ("frozen_stats", "fp32", "m_per_class", 4)
