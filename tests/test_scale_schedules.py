"""Softmax-scale schedules (constant, linear/switch/quadratic after training, AdaCos) and proxy diagnostics."""

from __future__ import annotations

import json
import math

import pytest
import torch

from benchmark.evaluation.proxy_diagnostics import HISTOGRAM_BINS, proxy_cosine_summary
from benchmark.losses import build_loss
from benchmark.search_space import load_search_space
from benchmark.training.scale_schedules import adacos_fixed_scale, build_schedule
from _tiny import TINY_PROTOCOL, run_benchmark
from test_training import make_experiment, train_fold


def _bundle(loss="proxy_anchor", num_classes=100, **params):
    values = {**load_search_space(loss, "synthetic").defaults(), **params}
    return build_loss(loss, values, num_classes, 8), values


def test_adacos_fixed_is_650_for_100_classes():
    bundle, params = _bundle(scale_schedule="adacos_fixed")
    assert bundle.get_scale() == 32.0
    build_schedule(params, bundle).start(bundle, 100)
    assert round(bundle.get_scale(), 2) == 6.50
    assert adacos_fixed_scale(100) == pytest.approx(math.sqrt(2) * math.log(99))
    with pytest.raises(ValueError):
        adacos_fixed_scale(2)


@pytest.mark.parametrize("name, expected", [
    ("linear", [25.0, 18.0, 11.0, 4.0]),
    ("switch", [4.0, 4.0, 4.0, 4.0]),
    ("quadratic", [4 + 28 * 0.75 ** 2, 4 + 28 * 0.5 ** 2, 4 + 28 * 0.25 ** 2, 4.0]),  # convex, fast at first
])
def test_decay_schedules_move_from_the_trained_scale_to_the_end_value(name, expected):
    bundle, params = _bundle(scale_schedule=name, scale_end=4.0)
    schedule = build_schedule(params, bundle)
    schedule.start(bundle, 100)
    assert schedule.extra_epochs(4) == 4
    assert [schedule.extra_scale(k, 4) for k in range(1, 5)] == pytest.approx(expected)


def test_constant_adds_no_phase_and_inverse_scales_are_set_as_1_over_temperature():
    bundle, params = _bundle()
    assert build_schedule(params, bundle).extra_epochs(10) == 0
    softmax, params = _bundle("normalized_softmax", scale_schedule="adacos_fixed")
    build_schedule(params, softmax).start(softmax, 100)
    assert softmax.loss.temperature == pytest.approx(1 / adacos_fixed_scale(100))


def test_adacos_dynamic_follows_the_formula_on_known_cosines():
    bundle, params = _bundle(num_classes=4, scale_schedule="adacos_dynamic")
    schedule = build_schedule(params, bundle)
    schedule.start(bundle, 4)
    s0 = bundle.get_scale()
    assert s0 == pytest.approx(math.sqrt(2) * math.log(3))
    with torch.no_grad():
        bundle.loss.proxies.copy_(torch.eye(4, 8))  # orthonormal proxies: cosines are the embeddings' coordinates
    angle = 0.5  # every sample at 0.5 rad from its own proxy, orthogonal to the others
    embeddings = torch.zeros(4, 8)
    embeddings[torch.arange(4), torch.arange(4)] = math.cos(angle)
    embeddings[:, 4] = math.sin(angle)
    labels = torch.arange(4)
    schedule.observe(bundle, embeddings, labels)
    schedule.end_epoch(bundle)
    b_avg = 3 * math.exp(s0 * 0.0)  # three other classes at cosine 0
    assert bundle.get_scale() == pytest.approx(math.log(b_avg) / math.cos(angle), rel=1e-5)


def test_schedules_need_what_they_use():
    circle, params = _bundle("circle", scale_schedule="linear")
    assert build_schedule(params, circle).extra_epochs(3) == 3
    with pytest.raises(ValueError, match="proxies"):
        build_schedule({"scale_schedule": "adacos_dynamic"}, circle)
    contrastive, _ = _bundle("contrastive")
    with pytest.raises(ValueError, match="softmax scale"):
        build_schedule({"scale_schedule": "linear", "scale_end": 4.0}, contrastive)


def test_proxy_cosine_summary_counts_pairs_of_different_classes_only():
    orthogonal = proxy_cosine_summary(torch.eye(4, 6).reshape(4, 1, 6))
    assert orthogonal["pairs"] == 6 and orthogonal["mean"] == pytest.approx(0) and orthogonal["variance"] == 0
    assert sum(orthogonal["histogram"]) == 6 and len(orthogonal["histogram"]) == HISTOGRAM_BINS
    # Two classes x 2 centres: the same-class pairs (cosine 1 here) are left out, leaving the 4 cross pairs.
    centres = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[0.0, 1.0], [-1.0, 0.0]]])
    summary = proxy_cosine_summary(centres)
    assert summary["pairs"] == 4
    assert summary["mean"] == pytest.approx((0 + -1 + 0 + -1) / 4)
    assert summary["min"] == pytest.approx(-1) and summary["max"] == pytest.approx(0)


def test_proxy_cosine_summary_in_blocks_equals_the_whole_matrix_and_samples_quantiles_beyond_the_limit(monkeypatch):
    from benchmark.evaluation import proxy_diagnostics

    proxies = torch.randn(50, 3, 16, generator=torch.Generator().manual_seed(0))
    flat = torch.nn.functional.normalize(proxies.reshape(150, 16), dim=1).double()
    owner = torch.arange(50).repeat_interleave(3)
    i, j = torch.triu_indices(150, 150, offset=1)
    reference = (flat[i] * flat[j]).sum(1)[owner[i] != owner[j]]
    whole = proxy_cosine_summary(proxies)
    blocks = proxy_cosine_summary(proxies, block_elements=150 * 7)  # 22 blocks of 7 rows
    assert whole["pairs"] == blocks["pairs"] == reference.numel() == 150 * 149 // 2 - 50 * 3
    for summary in (whole, blocks):
        assert summary["mean"] == pytest.approx(float(reference.mean()), abs=1e-6)
        assert summary["variance"] == pytest.approx(float(reference.var(unbiased=False)), rel=1e-5)
        assert summary["min"] == pytest.approx(float(reference.min()), abs=1e-6)
        assert summary["max"] == pytest.approx(float(reference.max()), abs=1e-6)
        exact = torch.quantile(reference, torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64))
        assert list(summary["quantiles"].values()) == pytest.approx(exact.tolist(), abs=1e-6)
    assert blocks["histogram"] == whole["histogram"] and sum(whole["histogram"]) == whole["pairs"]
    # Beyond the limit the quantiles come from a sample (here ~1,000 of 11,025 pairs): close, not exact.
    monkeypatch.setattr(proxy_diagnostics, "QUANTILE_LIMIT", 1000)
    sampled = proxy_cosine_summary(proxies, block_elements=150 * 7)
    assert sampled["mean"] == blocks["mean"] and sampled["histogram"] == blocks["histogram"]
    assert list(sampled["quantiles"].values()) == pytest.approx(list(whole["quantiles"].values()), abs=0.03)
    assert list(sampled["quantiles"].values()) != list(whole["quantiles"].values())


def test_fold_with_linear_schedule_trains_an_extra_phase_and_records_falling_scale(tiny_env, tiny_data_root):
    experiment = make_experiment(tiny_data_root, loss="proxy_anchor", max_epochs=2, patience=2, save_interval=1)
    _, _, result = train_fold(experiment, {"scale_schedule": "linear", "scale_end": "4", "alpha": "32"})
    scales = [row["scale"] for row in result.curve]
    assert [row["epoch"] for row in result.curve] == [0, 1, 2, 3, 4]
    assert scales == pytest.approx([32, 32, 32, 18, 4])
    assert result.epochs_trained == 4
    assert result.curve[-1]["val_mean_average_precision_at_r"] is not None  # the model at the end value is always validated
    assert [d["epoch"] for d in result.proxy_diagnostics] == [0, 1, 2, 3, 4]
    assert all(-1 <= d["mean"] <= 1 and d["pairs"] == 15 * 14 // 2 for d in result.proxy_diagnostics)
    # The untrained proxies are random: spread around 0, unlike trained ones that the loss has moved.
    assert result.proxy_diagnostics[0]["mean"] != result.proxy_diagnostics[-1]["mean"]


def test_fold_without_proxies_records_no_diagnostics(tiny_env, tiny_data_root):
    _, _, result = train_fold(make_experiment(tiny_data_root, loss="multi_similarity"))
    assert result.proxy_diagnostics == []
    assert all(row["scale"] is None for row in result.curve)


def test_run_command_shows_the_scale_falling(tiny_env, tmp_path):
    result = run_benchmark(["run", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL,
                            "--folds", "1", "--param", "scale_schedule=linear", "--param", "scale_end=4", "--json"],
                           tiny_env, tmp_path)
    assert result.returncode == 0, result.stderr
    curve = json.loads(result.stdout)["folds"][0]["curve"]
    scales = [row["scale"] for row in curve]
    assert scales[0] == 32.0 and scales[-1] == 4.0
    assert all(a >= b for a, b in zip(scales, scales[1:])) and len(set(scales)) > 2


@pytest.mark.parametrize("args, message", [
    (["--loss", "circle", "--param", "scale_schedule=adacos_dynamic"], "expected one of constant, linear"),
    (["--loss", "proxy_anchor", "--param", "scale_end=0"], "outside the loss's domain"),
    (["--loss", "contrastive", "--param", "scale_schedule=linear"], "unknown parameter"),
])
def test_bad_schedule_input_is_one_line_exit_2(tiny_env, tmp_path, args, message):
    result = run_benchmark(["run", *args, "--dataset", "synthetic", *TINY_PROTOCOL], tiny_env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
