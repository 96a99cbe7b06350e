"""Smoke test of `benchmark perf`: every section runs and the JSON carries every ratio and target (no timing
assertions: the figures at these sizes mean nothing)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from _tiny import run_benchmark
from benchmark.perf.pruning import (clairvoyant_compute, compare, load_stored, perfectly_ranked, reach, replay,
                                    replay_seed)
from benchmark.perf.suite import PRESETS, targets
from benchmark.tuning.pruning import PRUNER_STARTUP_TRIALS


def test_perf_tiny_writes_every_ratio_and_target(tmp_path):
    out = tmp_path / "out" / "perf.json"
    result = run_benchmark(["-q", "perf", "--tiny", "--json", str(out)], dict(os.environ), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "written to" in result.stdout
    data = json.loads(out.read_text())
    assert data["settings"]["name"] == "tiny" and data["machine"]["cpu_count"] >= 1
    if not data["machine"]["cuda"]:
        assert "no GPU result" in data["gpu"]  # said in the file, not only in the README
    for size in data["evaluation"]["sizes"].values():
        for key in ("ours_over_knn", "ours_over_pml", "pml_peak_over_ours_peak", "max_abs_metric_diff"):
            assert size[key] >= 0
        assert size["max_abs_metric_diff"] < 1e-6  # our metrics equal PML's at any size
        assert set(size["ours"]["metrics"]) == {"precision_at_1", "r_precision", "mean_average_precision_at_r"}
    assert data["cli_startup"]["help_seconds"] > 0 and data["cli_startup"]["heavy_modules_loaded"] == []
    validation = data["validation"]
    assert validation["speedup"] > 0 and validation["max_abs_metric_diff"] == 0  # same values, fewer neighbours
    assert validation["k_before"] > 0
    assert data["training_loop"]["trainer_over_bare"] > 0
    fold = data["fold_throughput"]
    assert fold["trainer_over_bare_throughput"] > 0 and fold["validations"] == 2  # epoch 0 and epoch 2, both sides
    assert all(0 <= v <= 1 for side in fold["best_val_map_at_r"].values() for v in side)
    assert data["image_pipeline"]["cached_over_plain"] > 0 and data["image_pipeline"]["images_per_second"]["plain"] > 0
    pruning = data["pruning"]
    assert pruning["trials_per_study"] == data["settings"]["pruning_trials"]
    assert set(pruning["per_loss"]) == {"multi_similarity", "proxy_anchor"}  # a pair loss and a proxy loss
    for entry in pruning["per_loss"].values():
        assert len(entry["per_seed"]) == 2
        for seed in entry["per_seed"]:  # the per-seed detail that explains a ratio
            assert seed["unpruned_compute_to_reach"] >= 1 and seed["target"] <= seed["unpruned_best"]
            assert set(seed["pruners"]) == {"successive_halving", "median", "hyperband"}
        assert len(entry["pool"]) == data["settings"]["pruning_pool"] >= pruning["trials_per_study"]
        signal = entry["pool_signal"]
        assert 1 <= signal["configurations_within_fold_noise_of_the_best"] <= len(entry["pool"])
        assert signal["best_result"] >= signal["median_result"] and 0 <= signal["median_first_validation"] <= 1
        assert set(entry["bounds"]) == {"successive_halving_perfectly_ranked", "clairvoyant"}
        for seed in entry["per_seed"]:  # no pruner that judges from the first fold's end on spends less
            reached = [e["compute_over_unpruned_to_reach"] for e in seed["pruners"].values()]
            assert all(seed["clairvoyant_compute_over_unpruned_to_reach"] <= r for r in reached if r is not None)
    assert pruning["pruner_settings"]["median"]["startup_trials"] == PRUNER_STARTUP_TRIALS
    assert load_stored(out)["entry"] == pruning  # really trained pools can be replayed (--pools)
    for name, headline in pruning["summary"].items():  # each pruner scored by the loss it serves worst
        per_loss = {loss: e["summary"][name] for loss, e in pruning["per_loss"].items()}
        worst = per_loss[headline["worst_loss"]]["median_compute_over_unpruned_to_reach"]
        assert headline["median_compute_over_unpruned_to_reach"] == worst
        assert all(e["median_compute_over_unpruned_to_reach"] <= worst for e in per_loss.values())
        assert headline["seeds_best_at_equal_compute_within_noise"] == min(
            e["seeds_best_at_equal_compute_within_noise"] for e in per_loss.values())
    low, high = pruning["summary"]["successive_halving"]["quartiles_compute_over_unpruned_to_reach"]
    assert low <= pruning["summary"]["successive_halving"]["median_compute_over_unpruned_to_reach"] <= high
    assert pruning["summary"]["successive_halving"]["median_compute_of_trials_over_unpruned"] <= 1
    assert set(data["targets"]) == {
        "cli_help_seconds", "evaluation_time_over_bare_knn", "evaluation_time_over_pml", "evaluation_max_abs_diff_vs_pml",
        "evaluation_pml_peak_over_ours", "validation_speedup_sop_size", "training_loop_over_bare",
        "fold_throughput_over_bare", "image_pipeline_cached_over_plain",
        "pruning_compute_to_reach_over_unpruned",
    }
    assert all(isinstance(t["met"], bool) for t in data["targets"].values())
    assert not list(out.parent.glob("*.tmp"))  # written atomically, nothing left behind


def test_perf_rejects_an_unknown_section(tmp_path):
    result = run_benchmark(["perf", "--tiny", "--only", "evaluation,nope"], dict(os.environ), tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --only") and "pruning" in result.stderr


def test_reach_counts_compute_up_to_the_first_complete_trial_at_the_target():
    rows = [{"cost": 4, "value": 0.10}, {"cost": 1, "value": None}, {"cost": 4, "value": 0.20},
            {"cost": 4, "value": 0.30}]
    assert reach(rows, 0.19) == (9, 3)  # the pruned trial's compute counts, its missing value does not reach
    assert reach(rows, 0.05) == (4, 1)
    assert reach(rows, 0.31) == (None, None)


def _flat_configs(values: list[float]) -> list[dict]:
    """Configurations with flat curves: each fold scores its value at every one of 6 epochs, validated each epoch."""
    return [{"folds": [{"validations": [[e, v] for e in range(1, 7)], "epochs": 6, "best": v}] * 4} for v in values]


def test_replay_spends_less_with_a_pruner_and_keeps_the_best():
    # 40 distinct configurations: the first 10 ascending to the best (0.09), the rest hopeless (0.01).
    configs = _flat_configs([i / 100 for i in range(10)] + [0.01] * 30)
    result = replay_seed(configs, list(range(40)), trials=30, max_epochs=6)
    assert result["unpruned_best"] == 0.09 and result["unpruned_compute"] == 30 * 24
    assert result["unpruned_compute_to_reach"] == 10 * 24  # the best configuration is the 10th trial
    for pruner in ("successive_halving", "median", "hyperband"):
        e = result["pruners"][pruner]
        assert e["compute_of_first_trials_over_unpruned"] < 1 and e["best_at_equal_compute"] == 0.09
        assert e["compute_to_reach"] == 10 * 24  # ascending order: nothing before the best is worth pruning
    for pruner in ("successive_halving", "median"):
        # Each hopeless trial stopped after fold 1: the 30 cost less than the unpruned 20 after the best. (Hyperband
        # judges some brackets only after fold 3, which ones drawn from the study's name.)
        assert result["pruners"][pruner]["pool_used_up_before_equal_compute"]


def test_the_replay_gives_the_same_figures_when_rerun():
    # Hyperband draws brackets from the study's name: fixed per seed, so a rerun repeats every figure.
    configs = _flat_configs([i / 100 for i in range(10)] + [0.01] * 30)
    runs = [replay_seed(configs, list(range(40)), trials=30, max_epochs=6, seed=3) for _ in range(8)]
    assert all(run == runs[0] for run in runs)  # with a random name Hyperband's figures differed in ~1 run of 4


def test_the_clairvoyant_bound_stops_every_trial_but_one_reaching_after_its_first_fold():
    configs = _flat_configs([0.1, 0.3, 0.2, 0.3])  # 6 epochs a fold, 24 a trial
    assert clairvoyant_compute(configs, [0, 1, 2, 3], target=0.25) == 6 + 24  # trial 0's first fold, trial 1 whole
    assert clairvoyant_compute(configs, [0, 2, 1], target=0.25) == 6 + 6 + 24
    assert clairvoyant_compute(configs, [0, 2], target=0.25) is None
    configs.append({"folds": [{"validations": [[1, 0.3]], "epochs": 1, "best": 0.3}] * 4})  # 1 epoch a fold
    assert clairvoyant_compute(configs, [1, 4], target=0.25) == 6 + 4  # a later, shorter trial can be cheaper


def test_a_perfectly_ranked_replay_keeps_a_configuration_its_first_fold_misranks():
    # Configuration 1 does badly on fold 0 but best overall: successive halving stops it after fold 1, the same
    # pruner told each configuration's result does not. Both studies aim at the real target.
    configs = [{"folds": [{"validations": [[e, 0.2] for e in range(1, 7)], "epochs": 6, "best": 0.2}] * 4},
               {"folds": [{"validations": [[e, v] for e in range(1, 7)], "epochs": 6, "best": v}
                          for v in (0.1, 0.9, 0.9, 0.9)]}]
    real = replay_seed(configs, [0, 1], trials=2, max_epochs=6, pruners=("successive_halving",))
    perfect = replay_seed(configs, [0, 1], trials=2, max_epochs=6, pruners=("successive_halving",),
                          judged=perfectly_ranked(configs))
    assert real["target"] == perfect["target"] == pytest.approx(0.7 - 0.2)  # best less its fold noise
    assert real["pruners"]["successive_halving"]["compute_to_reach"] is None
    assert perfect["pruners"]["successive_halving"]["compute_to_reach"] == 48


def test_a_study_never_repeats_a_configuration():
    configs = _flat_configs([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="repeats a configuration"):
        replay_seed(configs, [0, 1, 0], trials=3, max_epochs=6)
    # The pool must fill a study with distinct configurations: refused before anything trains.
    with pytest.raises(ValueError, match="cannot fill a 50-trial study"):
        compare(Path("unused"), "24x4", pool=49, trials=50, seeds=(0,), overrides={})


def _stored_result(path: Path) -> dict:
    """A `benchmark perf` result at ``path`` whose pruning entry replayed two flat-curve pools; returns the entry."""
    pools = {"multi_similarity": _flat_configs([i / 100 for i in range(10)] + [0.01] * 30),
             "proxy_anchor": _flat_configs([0.05] * 20 + [i / 100 for i in range(20)])}
    entry = replay(pools, trials=30, seeds=(0, 1, 2), max_epochs=6, described={
        "dataset": "synthetic test", "pool_configurations": 40, "protocol": {"max_epochs": 6}})
    path.write_text(json.dumps({"machine": {"cpu": "test"}, "pruning": entry}))
    return json.loads(json.dumps(entry))


def test_perf_replays_stored_pools_with_their_trials_and_seeds_without_training(tmp_path, capsys):
    from benchmark.cli import main

    stored, out = tmp_path / "stored.json", tmp_path / "replayed.json"
    entry = _stored_result(stored)
    assert main(["-q", "perf", "--tiny", "--only", "pruning", "--pools", str(stored), "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    replayed = data["pruning"]
    assert replayed.pop("pools_from") == {"file": str(stored), "sha256": hashlib.sha256(stored.read_bytes()).hexdigest(),
                                          "trained_on": {"cpu": "test"}}
    replayed.pop("wall_seconds")
    # The stored figures again, exactly: the stored 30 trials and 3 seeds, not the tiny preset's 3 and 2.
    assert replayed == entry and replayed["trials_per_study"] == 30
    assert data["targets"]["pruning_compute_to_reach_over_unpruned"]["measured"] == (
        entry["summary"]["successive_halving"]["median_compute_over_unpruned_to_reach"])
    assert f"stored in {stored}, replayed: nothing trained" in capsys.readouterr().out


def _spoil_trials(entry: dict) -> None:
    entry["trials_per_study"] = 41  # more than the pool's 40 configurations


def _spoil_curve(entry: dict) -> None:
    entry["per_loss"]["proxy_anchor"]["pool"][3]["folds"][0]["validations"][1][0] = "2"


def _spoil_seeds(entry: dict) -> None:
    entry["seeds"] = [0, 1.5]


@pytest.mark.parametrize("content", [None, "{not json", '{"pruning": {"per_loss": {}}}', _spoil_trials,
                                     _spoil_curve, _spoil_seeds])
def test_perf_refuses_pools_it_cannot_replay_in_one_line(tmp_path, content):
    path, out = tmp_path / "stored.json", tmp_path / "out.json"
    if callable(content):
        _stored_result(path)
        data = json.loads(path.read_text())
        content(data["pruning"])
        path.write_text(json.dumps(data))
    elif content is not None:
        path.write_text(content)
    result = run_benchmark(["perf", "--tiny", "--only", "pruning", "--pools", str(path), "--json", str(out)],
                           dict(os.environ), tmp_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: --pools {path}: ") and len(result.stderr.splitlines()) == 1
    assert not out.exists()


def test_perf_pools_need_the_pruning_section(tmp_path):
    path = tmp_path / "stored.json"
    _stored_result(path)
    result = run_benchmark(["perf", "--tiny", "--only", "cli_startup", "--pools", str(path)], dict(os.environ), tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: --pools is for the pruning section")


@pytest.mark.parametrize("measured, perfectly_ranked, says", [
    (0.6, 0.55, "better ranking would not meet it"),
    (0.6, 0.45, "its ranking after a fold is what falls short"),
])
def test_a_missed_pruning_target_says_whether_ranking_or_folds_fall_short(tmp_path, measured, perfectly_ranked, says):
    entry = _stored_result(tmp_path / "stored.json")
    headline = entry["summary"]["successive_halving"]
    headline["median_compute_over_unpruned_to_reach"] = measured
    entry["per_loss"][headline["worst_loss"]]["bounds"]["successive_halving_perfectly_ranked"][
        "median_compute_over_unpruned_to_reach"] = perfectly_ranked
    target = targets({"pruning": entry})["pruning_compute_to_reach_over_unpruned"]
    assert not target["met"] and says in target["why"]
    assert target["bound_successive_halving_perfectly_ranked"] == perfectly_ranked


def test_quick_and_full_measure_pruning_as_stated_50_trial_studies_over_at_least_5_seeds():
    for preset in (PRESETS["quick"], PRESETS["full"]):
        assert preset.pruning_trials == 50 and len(preset.pruning_seeds) >= 5
        assert preset.pruning_pool >= preset.pruning_trials  # distinct configurations, as in a real study


def test_gpu_check_runs_its_code_path_on_the_cpu_at_tiny_sizes(tmp_path, capsys):
    from benchmark.cli import main

    out = tmp_path / "perf-gpu.json"
    assert main(["-q", "perf", "--gpu", "--tiny", "--device", "cpu", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["gpu_result_produced"] is False and "not a GPU result" in data["note"]
    assert set(data["training"]) == {"fp32", "bf16"}
    for precision, r in data["training"].items():
        assert r["precision"] == precision and r["trunk"] == "bninception" and r["batchnorm"] == "frozen_stats"
        assert r["trainer_steps_per_second"] > 0 and r["bare_steps_per_second"] > 0 and r["trainer_over_bare_time"] > 0
    assert data["evaluation"]["seconds"]["cpu"] > 0 and data["evaluation"]["faiss_gpu_available"] is False
    assert "not a GPU result" in capsys.readouterr().out


def test_gpu_check_at_mlrc_sizes_needs_a_gpu(tmp_path, capsys):
    from benchmark.cli import main

    assert main(["perf", "--gpu", "--device", "cpu", "--json", str(tmp_path / "x.json")]) == 2
    assert "add --tiny" in capsys.readouterr().err and not (tmp_path / "x.json").exists()
