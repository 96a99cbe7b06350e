"""The report's Performance section, fed by a `benchmark perf` JSON file."""

from __future__ import annotations

import json

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.report.perf import load_perf, perf_section


def test_section_lists_every_target_with_its_verdict(tmp_path):
    path = tmp_path / "perf.json"
    path.write_text(json.dumps({
        "machine": {"cpu": "<b>cpu</b>", "cpu_count": 2},
        "targets": {
            "training_loop_over_bare": {"target": "<= 1.10", "measured": 1.0061, "met": True},
            "evaluation_time_over_pml": {"target": "<= 0.2", "measured": 0.5986, "met": False},
            "pruning_folds_to_reach_over_unpruned": {"target": "<= 0.6", "measured": None, "met": False},
            "pruning_compute_to_reach_over_unpruned": {"target": "<= 0.5", "measured": 0.59, "met": False,
                                                       "why": "more than half <the unpruned compute>"},
        },
    }))
    html = perf_section(load_perf(path))
    assert "<td>pruning_folds_to_reach_over_unpruned</td><td>&lt;= 0.6</td><td>n/a</td><td>no</td>" in html
    assert "<td>training_loop_over_bare</td><td>&lt;= 1.10</td><td>1.01</td><td>yes</td>" in html
    assert "<td>evaluation_time_over_pml</td><td>&lt;= 0.2</td><td>0.599</td><td>no</td>" in html
    assert "<td>0.59</td><td>no: more than half &lt;the unpruned compute&gt;</td>" in html  # missed, with why
    assert "<b>cpu</b>" not in html and "&lt;b&gt;cpu&lt;/b&gt;" in html


def test_the_committed_perf_file_has_the_shape_the_report_reads():
    perf = load_perf("results/perf.json")
    assert {"evaluation_time_over_bare_knn", "training_loop_over_bare", "image_pipeline_cached_over_plain",
            "validation_speedup_sop_size", "fold_throughput_over_bare",
            "pruning_compute_to_reach_over_unpruned"} <= set(perf["targets"])


@pytest.mark.parametrize("content", ["not json", "[]", '{"targets": 3}'])
def test_a_malformed_perf_file_is_one_line_exit_2(tmp_path, capsys, content):
    path = tmp_path / "perf.json"
    path.write_text(content)
    with pytest.raises(UserError):
        load_perf(path)
    code = main(["report", "--storage", f"sqlite:///{tmp_path}/none.db", "--perf", str(path)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: --perf")
