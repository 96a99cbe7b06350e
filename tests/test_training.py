"""The fold trainer: learning, reproducibility, checkpoints, a non-finite loss, and class hygiene."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.cli import main
from benchmark.evaluation.embed import compute_embeddings
from benchmark.losses import LossBundle
from benchmark.training.checkpoint import load_checkpoint, save_checkpoint
from benchmark.training.fold import fold_data
from _tiny import TINY_PROTOCOL, generate_synthetic
from _training_helpers import make_experiment, train_fold


def test_folds_never_contain_test_classes(tiny_env, tiny_data_root):
    experiment = make_experiment(tiny_data_root)
    test_classes = set(experiment.splits.test)
    for fold in range(4):
        data = fold_data(experiment.fold_run.paths, experiment.fold_run.labels, experiment.splits, fold)
        val_classes = set(data.val_labels.tolist())
        assert val_classes == set(experiment.splits.folds[fold].val)
        assert not val_classes & test_classes
        # Training labels are remapped to 0..C-1 over exactly the fold's training classes.
        assert sorted(set(data.train_labels.tolist())) == list(range(len(experiment.splits.folds[fold].train)))
        train_paths = {str(p) for p in data.train_paths}
        test_paths = {str(p) for p, y in zip(experiment.fold_run.paths, experiment.fold_run.labels)
                      if y in test_classes}
        assert not train_paths & test_paths


def test_same_seed_same_numbers_on_cpu(tiny_env, tiny_data_root):
    experiment = make_experiment(tiny_data_root)
    _, _, first = train_fold(experiment, seed=5)
    _, _, again = train_fold(experiment, seed=5)
    _, _, other = train_fold(experiment, seed=6)
    losses = [row["loss"] for row in first.curve[1:]]
    assert losses == [row["loss"] for row in again.curve[1:]]
    assert first.best_metrics == again.best_metrics
    for key in first.state["model"]:
        assert torch.equal(first.state["model"][key], again.state["model"][key])
    assert losses != [row["loss"] for row in other.curve[1:]]


def test_checkpoint_reloads_to_identical_embeddings(tiny_env, tiny_data_root, tmp_path):
    experiment = make_experiment(tiny_data_root, loss="proxy_anchor", save_interval=1)
    trainer, data, result = train_fold(experiment, {"loss_lr": "0.001"})
    save_checkpoint(tmp_path / "best.pt", result.state, {"fold": 0})
    loaded = load_checkpoint(tmp_path / "best.pt")
    assert loaded["meta"] == {"fold": 0}
    assert set(loaded["loss"]) == set(result.state["loss"])  # the proxies are saved too
    live, reloaded = trainer.build_model(), trainer.build_model()
    live.load_state_dict(result.state["model"])
    reloaded.load_state_dict(loaded["model"])
    loader = trainer.eval_loader(data.val_paths, data.val_labels)
    expected, _ = compute_embeddings(live, loader, trainer.device)
    actual, _ = compute_embeddings(reloaded, loader, trainer.device)
    np.testing.assert_array_equal(actual, expected)
    # ...and the reloaded checkpoint reproduces the validation recorded at its epoch (the untrained model's epoch 0
    # when no trained epoch beat it).
    recorded = next(r for r in result.curve if r["epoch"] == result.checkpoint_epoch)
    assert trainer.validate(reloaded, loader)["mean_average_precision_at_r"] == \
        recorded["val_mean_average_precision_at_r"]


def test_nonfinite_loss_ends_the_fold_with_a_status(tiny_env, tiny_data_root, monkeypatch):
    original = LossBundle.compute

    def nan_loss(self, embeddings, labels):
        return original(self, embeddings, labels) * float("nan")

    monkeypatch.setattr(LossBundle, "compute", nan_loss)
    experiment = make_experiment(tiny_data_root, max_epochs=5, patience=5)
    _, _, result = train_fold(experiment)
    assert result.status == "nonfinite_loss"
    assert result.epochs_trained == 1
    assert result.best_epoch == 0 and result.best_metrics == result.untrained_metrics
    assert np.isnan(result.curve[-1]["loss"])


def test_curve_records_loss_metrics_learning_rates_and_scale(tiny_env, tiny_data_root):
    experiment = make_experiment(tiny_data_root, loss="proxy_anchor", save_interval=1)
    _, _, result = train_fold(experiment, {"alpha": "24", "loss_lr": "0.002"})
    assert [row["epoch"] for row in result.curve] == [0, 1, 2]
    assert result.curve[0]["loss"] is None and result.curve[1]["loss"] > 0
    assert all(0 <= row["val_mean_average_precision_at_r"] <= 1 for row in result.curve)
    assert result.curve[1]["lrs"] == {"model": 3e-4, "loss": 0.002}  # the quick preset's lr
    assert all(row["scale"] == 24.0 for row in result.curve)


@pytest.fixture(scope="module")
def learnable_data_root(tmp_path_factory):
    """60 classes x 12 images: big enough for a few dozen steps to learn visibly."""
    return generate_synthetic(tmp_path_factory.mktemp("learnable"), "60x12")


@pytest.mark.parametrize("loss, params", [
    ("proxy_anchor", {"loss_lr": "0.001"}),
    ("multi_similarity", {}),
    ("arcface", {"loss_lr": "0.001", "scale": "16", "margin": "10"}),
    ("contrastive", {"pos_margin": "0", "neg_margin": "0.5"}),
])
def test_training_beats_the_untrained_model(learnable_data_root, loss, params):
    experiment = make_experiment(learnable_data_root, loss=loss, size="60x12", iterations_per_epoch=12,
                                 max_epochs=4, save_interval=4, patience=4)
    _, _, result = train_fold(experiment, params)
    untrained = result.untrained_metrics["mean_average_precision_at_r"]
    trained = result.best_metrics["mean_average_precision_at_r"]
    assert result.best_epoch == 4
    assert trained > untrained + 0.05, (untrained, trained)


def test_run_command_prints_every_fold(tiny_env, capsys):
    code = main(["-q", "run", "--loss", "multi_similarity", "--dataset", "synthetic", *TINY_PROTOCOL,
                 "--param", "alpha=3", "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert [f["fold"] for f in out["folds"]] == [1, 2, 3, 4]  # numbered as people count, like --folds
    assert out["params"]["alpha"] == 3.0
    assert out["mean_val_map_at_r"] == pytest.approx(np.mean([f["best"]["mean_average_precision_at_r"]
                                                              for f in out["folds"]]))
    # Per fold: the untrained model is the curve's epoch 0 and "best" the best TRAINED validation (which a few
    # steps may leave below the untrained model: the score never counts the untrained epoch).
    key = "mean_average_precision_at_r"
    for f in out["folds"]:
        validated = [row for row in f["curve"] if row[f"val_{key}"] is not None]
        assert validated[0]["epoch"] == 0 and validated[0][f"val_{key}"] == f["untrained"][key]
        assert f["best"][key] == max(row[f"val_{key}"] for row in validated if row["epoch"] > 0)


@pytest.mark.parametrize("args, message", [
    (["--loss", "nope"], "nope"),
    (["--loss", "multi_similarity", "--param", "alpha=-1"], "alpha"),
    (["--loss", "multi_similarity", "--param", "gamma=1"], "gamma"),
    (["--loss", "multi_similarity", "--set", "max_epochs=zero"], "max_epochs"),
    (["--loss", "multi_similarity", "--folds", "7"], "--folds"),
    (["--loss", "multi_similarity", "--device", "cuda:3"], "cuda"),
])
def test_run_bad_input_is_one_line_exit_2(tiny_env, capsys, args, message):
    if "cuda:3" in args and torch.cuda.device_count() > 3:
        pytest.skip("this machine has a cuda:3")
    code = main(["run", "--dataset", "synthetic", "--protocol", "quick", *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_validation_searches_only_the_neighbours_map_at_r_needs(tiny_env, tiny_data_root, monkeypatch):
    """Validation on SOP used to search k = 1000 for Recall@1000; MAP@R and R-Precision need the largest class
    size minus one (the query itself), and early stopping reads nothing else."""
    import benchmark.evaluation.metrics as metrics_module
    from benchmark.evaluation.metrics import retrieval_metrics

    searched = []
    real = metrics_module.iter_knn
    monkeypatch.setattr(metrics_module, "iter_knn", lambda q, k, *a, **kw: searched.append(k) or real(q, k, *a, **kw))
    experiment = make_experiment(tiny_data_root)
    experiment.dataset_name = "sop"  # SOP's test-phase cut-offs (1, 10, 100, 1000) must not reach validation
    trainer = experiment.trainer(experiment.search_space.defaults())
    data = fold_data(experiment.fold_run.paths, experiment.fold_run.labels, experiment.splits, 0)
    model = trainer.build_model()
    loader = trainer.eval_loader(data.val_paths, data.val_labels)
    metrics = trainer.validate(model, loader)
    assert searched == [int(np.bincount(data.val_labels).max()) - 1]
    assert "recall_at_k" not in metrics or not metrics["recall_at_k"]
    embeddings, labels = compute_embeddings(model, loader, trainer.device)
    full = retrieval_metrics(embeddings, labels, recall_at=experiment.recall_at)  # the old validation
    assert {m: metrics[m] for m in ("precision_at_1", "r_precision", "mean_average_precision_at_r")} == {
        m: full[m] for m in ("precision_at_1", "r_precision", "mean_average_precision_at_r")}
