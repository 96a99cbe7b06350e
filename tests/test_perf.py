"""Smoke test of `benchmark perf`: every section runs and the JSON carries every ratio and target (no timing
assertions: the figures at these sizes mean nothing)."""

from __future__ import annotations

import json
import os

from _tiny import run_benchmark


def test_perf_tiny_writes_every_ratio_and_target(tmp_path):
    out = tmp_path / "out" / "perf.json"
    result = run_benchmark(["-q", "perf", "--tiny", "--json", str(out)], dict(os.environ), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "written to" in result.stdout
    data = json.loads(out.read_text())
    assert data["settings"]["name"] == "tiny" and data["machine"]["cpu_count"] >= 1
    for size in data["evaluation"]["sizes"].values():
        for key in ("ours_over_knn", "ours_over_pml", "pml_peak_over_ours_peak", "max_abs_metric_diff"):
            assert size[key] >= 0
        assert size["max_abs_metric_diff"] < 1e-6  # our metrics equal PML's at any size
        assert set(size["ours"]["metrics"]) == {"precision_at_1", "r_precision", "mean_average_precision_at_r"}
    assert data["training_loop"]["trainer_over_bare"] > 0
    assert data["image_pipeline"]["cached_over_uncached"] > 0
    assert data["pruning"]["pruned_over_unpruned_folds_total"] > 0
    assert set(data["targets"]) == {
        "evaluation_time_over_bare_knn", "evaluation_time_over_pml", "evaluation_max_abs_diff_vs_pml",
        "evaluation_pml_peak_over_ours", "training_loop_over_bare", "image_pipeline_cached_over_uncached",
        "pruning_folds_to_reach_over_unpruned",
    }
    assert all(isinstance(t["met"], bool) for t in data["targets"].values())
    assert not list(out.parent.glob("*.tmp"))  # written atomically, nothing left behind


def test_perf_rejects_an_unknown_section(tmp_path):
    result = run_benchmark(["perf", "--tiny", "--only", "evaluation,nope"], dict(os.environ), tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: --only") and "pruning" in result.stderr
