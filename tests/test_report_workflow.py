"""Report sections of the researcher's workflow: retrieval examples (thumbnails within a budget, correct/incorrect
marked) and compute (cost per loss, best validation MAP@R against cumulative compute). Built from hand-made frames:
no training here (tests/test_loss_plugins.py checks them on a real report)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from benchmark.report import retrieval
from benchmark.report.compute import budget_curves, run_costs, study_cost
from benchmark.report.retrieval import best_configurations, retrieval_section

KEY = "separated_128/mean_average_precision_at_r/mean"


def _image(path, seed):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(path)
    return str(path)


@pytest.fixture
def frames(tmp_path):
    board = pd.DataFrame([
        {"dataset": "synthetic", "protocol": "quick", "loss": "a", "test_study": "s-a", KEY: 0.2},
        {"dataset": "synthetic", "protocol": "quick", "loss": "b", "test_study": "s-b", KEY: 0.3},
        {"dataset": "synthetic", "protocol": "quick", "loss": "c", "test_study": "s-c", KEY: 0.9},  # no examples
    ])
    rows = []
    for study in ("s-a", "s-b"):
        for reproduction in (1, 0):
            for position in range(3):
                rows.append({"study_name": study, "reproduction": reproduction, "position": position,
                             "query_path": _image(tmp_path / f"q{position}.png", position), "query_label": position,
                             "neighbours": [{"path": _image(tmp_path / f"n{position}{k}.png", 10 + k),
                                             "label": position if k < 2 else 99, "similarity": 0.9 - k / 10}
                                            for k in range(5)]})
    return board, pd.DataFrame(rows)


def test_the_best_configuration_with_examples_and_its_first_reproduction(frames):
    board, examples = frames
    [(row, queries)] = best_configurations(board, examples)
    assert row["loss"] == "b"  # c scores higher but has no examples stored
    assert set(queries["reproduction"]) == {0} and list(queries["position"]) == [0, 1, 2]


def test_thumbnails_marked_and_embedded(frames):
    board, examples = frames
    html = retrieval_section(board, examples)
    assert html.count('<td class="hit">') == 3 * 2 and html.count('<td class="miss">') == 3 * 3
    assert html.count('src="data:image/jpeg;base64,') == 3 * 6
    assert "http" not in html  # nothing fetched: the report stays one offline file


def test_budget_leaves_out_queries_and_says_so(frames, monkeypatch):
    board, examples = frames
    one_row = sum(len(part.split('"', 1)[0]) for part in retrieval_section(board, examples).split('src="')[1:7])
    monkeypatch.setattr(retrieval, "BUDGET_BYTES", int(one_row * 1.5))
    html = retrieval_section(board, examples)
    assert html.count("<tr><td>") == 1 and "2 more queries left out" in html
    assert sum(len(part.split('"', 1)[0]) for part in html.split('src="')[1:]) <= one_row * 1.5


def test_missing_images_are_named_not_fatal(frames, tmp_path):
    board, examples = frames
    for path in tmp_path.glob("n0*.png"):
        path.unlink()
    html = retrieval_section(board, examples)
    assert html.count(">not found<") == 5 and "image(s) not found" in html


def test_no_examples_is_one_sentence():
    assert "No retrieval examples stored" in retrieval_section(pd.DataFrame(), pd.DataFrame())


def _compute_rows():
    def run(run_id, kind, study, loss, objective, finished, folds, whole):
        rows = [{"run_id": run_id, "fold": f, "wall_seconds": s, "device": "cuda:0 (H200)", "device_seconds": s - 1,
                 "kind": kind, "study_name": study, "dataset": "d", "loss": loss, "protocol": "p",
                 "trial_number": None, "reproduction": None, "objective": objective,
                 "finished_at": pd.Timestamp(finished, unit="s", tz="UTC")} for f, s in enumerate(folds)]
        if whole is not None:
            rows.append({**rows[0], "fold": -1, "wall_seconds": whole, "device_seconds": sum(folds) - len(folds)})
        return rows

    return pd.DataFrame([
        *run(1, "trial", "d-a-p", "a", 0.2, 10, [5, 5], 12),
        *run(2, "trial", "d-a-p", "a", 0.1, 20, [5, 5], 11),
        *run(3, "trial", "d-a-p", "a", math.nan, 30, [4], None),  # killed after one fold: its folds count
        *run(4, "trial", "d-b-p", "b", 0.3, 15, [30, 30], 61),
        *run(5, "test", "d-a-p", "a", None, 40, [5, 5], 13),
    ])


def test_run_costs_and_cost_per_loss():
    costs = run_costs(_compute_rows()).set_index("run_id")
    assert costs.loc[1, "wall_seconds"] == 12 and costs.loc[3, "wall_seconds"] == 4
    assert costs.loc[3, "device_seconds"] == 3
    a = study_cost(costs.reset_index(), "d-a-p", "d-a-p")
    assert (a["tune_seconds"], a["test_seconds"], a["compute_seconds"]) == (27, 13, 40)
    assert a["devices"] == "cuda:0 (H200)" and a["device_seconds"] == 8 + 8 + 3 + 8


def test_best_validation_against_cumulative_compute():
    curves = budget_curves(run_costs(_compute_rows()), "d", "p")
    minutes, best = curves["a"]
    assert np.allclose(minutes, [12 / 60, 23 / 60]) and best == [0.2, 0.2]  # the killed trial scored nothing
    assert curves["b"] == ([61 / 60], [0.3])
