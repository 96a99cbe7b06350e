"""Testing fixed configurations (`benchmark test --param`, `--batch-sampler`) and comparing them in the report."""

from __future__ import annotations

import math

import optuna
import pytest

from benchmark.report.collect import collect, leaderboard
from benchmark.report.comparisons import comparison_frame
from benchmark.results import load_proxy_diagnostics, load_runs, summarize_test_results
from _tiny import TINY_PROTOCOL, run_benchmark

COMMON = ["--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL, "--reproductions", "2"]


@pytest.fixture(scope="module")
def compared(tiny_data_root, tmp_path_factory):
    """Two scale schedules and the representative batch sampler, each tested with 2 reproductions."""
    import os

    env = {**os.environ, "BENCHMARK_DATA_ROOT": str(tiny_data_root), "BENCHMARK_SYNTHETIC_SIZE": "40x8"}
    cwd = tmp_path_factory.mktemp("compare")
    outputs = []
    for extra in (["--param", "scale_schedule=constant"],
                  ["--param", "scale_schedule=linear", "--param", "scale_end=4"],
                  ["--batch-sampler", "representative", "--param", "scale_schedule=constant"]):
        result = run_benchmark(["test", *COMMON, *extra], env, cwd)
        assert result.returncode == 0, result.stderr
        outputs.append(result)
    return env, cwd, outputs


def test_fixed_configurations_are_stored_under_their_own_names(compared):
    env, cwd, outputs = compared
    url = f"sqlite:///{cwd}/results/benchmark.db"
    summary = summarize_test_results(url)
    names = set(summary["study_name"])
    assert names == {
        "synthetic-proxy_anchor-quick[scale_schedule=constant]",
        "synthetic-proxy_anchor-quick[scale_end=4.0,scale_schedule=linear]",
        "synthetic-proxy_anchor-quick+representative[scale_schedule=constant]",
    }
    assert set(summary["n"]) == {2}
    runs = load_runs(url)
    tests = runs[runs["kind"] == "test"]
    linear = tests[tests["study_name"].str.contains("linear")]
    assert all(p["scale_schedule"] == "linear" and p["scale_end"] == 4.0 and p["alpha"] == 32.0
               for p in linear["params"])
    representative = tests[tests["protocol"] == "quick+representative"]
    assert all({"period", "hard_class_share"} <= set(p) for p in representative["params"])
    assert all(c["protocol"]["batch_sampler"] == "representative" for c in representative["config"])
    # No Optuna study is needed (or created) to test fixed parameters.
    assert optuna.get_all_study_summaries(url) == []


def test_a_rerun_resumes_and_adds_nothing(compared):
    env, cwd, _ = compared
    result = run_benchmark(["test", *COMMON, "--param", "scale_schedule=constant"], env, cwd)
    assert result.returncode == 0, result.stderr
    assert "2 of 2 reproductions already stored" in result.stderr
    assert len(load_runs(f"sqlite:///{cwd}/results/benchmark.db").query("kind == 'test'")) == 6


def test_proxy_diagnostics_are_stored_for_every_validation(compared):
    _, cwd, _ = compared
    diagnostics = load_proxy_diagnostics(f"sqlite:///{cwd}/results/benchmark.db")
    # 3 configurations x 2 reproductions x 4 folds, each validated at epochs 0 and 2 (and 4 for the extra phase).
    per_fold = diagnostics.groupby(["run_id", "fold"])["epoch"].apply(list)
    assert len(per_fold) == 24
    linear = diagnostics[diagnostics["study_name"].str.contains("linear")]
    assert set(linear.groupby(["run_id", "fold"])["epoch"].max()) == {4}
    assert (diagnostics["pairs"] == 15 * 14 // 2).all()
    assert all(sum(s["histogram"]) == 105 for s in diagnostics["summary"])


def test_report_compares_the_configurations_with_their_intervals(compared):
    env, cwd, _ = compared
    url = f"sqlite:///{cwd}/results/benchmark.db"
    frame = comparison_frame(summarize_test_results(url))
    assert set(frame["configuration"]) == {
        "m_per_class batches, scale_schedule=constant",
        "m_per_class batches, scale_end=4.0, scale_schedule=linear",
        "representative batches, scale_schedule=constant",
    }
    board = leaderboard(collect(url, url))
    assert "proxy_anchor [scale_end=4.0,scale_schedule=linear]" in set(board["loss"])
    result = run_benchmark(["report", "--storage", url, "--out", "r.html"], env, cwd)
    assert result.returncode == 0, result.stderr
    html = (cwd / "r.html").read_text()
    assert ">Configurations compared</h2>" in html and ">Proxy diagnostics</h2>" in html
    row = frame[(frame["configuration"].str.contains("linear")) & (frame["mode"] == "separated_128")
                & (frame["metric"] == "mean_average_precision_at_r")].iloc[0]
    assert not math.isnan(row["ci_low"])
    assert f"{row['mean']:.4f} [{row['ci_low']:.4f}, {row['ci_high']:.4f}]" in html


def test_tune_searches_the_batch_samplers_parameters(tiny_env, tmp_path):
    result = run_benchmark(["tune", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL,
                            "--batch-sampler", "representative", "--trials", "1", "--sampler", "random"],
                           tiny_env, tmp_path)
    assert result.returncode == 0, result.stderr
    study = optuna.load_study(study_name="synthetic-proxy_anchor-quick+representative",
                              storage=f"sqlite:///{tmp_path}/results/benchmark.db")
    params = study.best_trial.params
    assert 1 <= params["period"] <= 100 and 0 <= params["hard_class_share"] <= 1


def test_unknown_batch_sampler_is_one_line_exit_2(tiny_env, tmp_path):
    result = run_benchmark(["run", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL,
                            "--batch-sampler", "nope"], tiny_env, tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "unknown batch sampler 'nope'" in result.stderr
