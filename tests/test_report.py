"""``benchmark report``: the HTML leaderboard, its escaping, and the Markdown / CSV / LaTeX tables."""

from __future__ import annotations

import io
import re
import stat

import pandas as pd
import plotly.offline
import pytest

from _report_helpers import add_study, sqlite_url, standard_database
from benchmark.cli import main
from benchmark.evaluation.registry import METRICS, MODES
from benchmark.report.html import at_bound
from benchmark.results import ResultsStore

HOSTILE = "</script><script>alert(1)</script>"


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    return standard_database(tmp_path_factory.mktemp("report") / "r.db")


@pytest.fixture(scope="module")
def report(database, tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("html") / "sub" / "index.html"
    assert main(["report", "--storage", database, "--out", str(out)]) == 0
    assert [p.name for p in out.parent.iterdir()] == ["index.html"]  # no temporary file left behind
    assert out.stat().st_mode & stat.S_IRGRP  # readable like any output, not mkstemp's 0600
    return out.read_text(encoding="utf-8")


def _leaderboard_row(html: str, dataset: str, loss: str) -> str:
    table = re.search(rf'<table class="sortable leaderboard" data-dataset="{dataset}">(.*?)</table>', html, re.S)
    assert table, f"no leaderboard for {dataset}"
    row = re.search(rf'<tr data-loss="{re.escape(loss)}">(.*?)</tr>', table.group(1), re.S)
    assert row, f"no row for {loss}"
    return row.group(1)


def test_leaderboard_rows_hold_mean_ci_budget_and_best(report):
    ms = _leaderboard_row(report, "cub200", "multi_similarity")
    # separated-128 P@1 over (0.60, 0.62, 0.61): mean 0.61, 95 % t-interval [0.5852, 0.6348]; the best of its
    # column, and clearly so: contrastive's (0.50, 0.52) is 0.10 lower in both paired reproductions.
    assert '<td class="best" data-sort="0.61">0.6100 [0.5852, 0.6348]</td>' in ms
    assert ">3/50<" in ms  # 3 trials done of MLRC's 50
    contrastive = _leaderboard_row(report, "cub200", "contrastive")
    assert '<td data-sort="0.51">0.5100 [0.3829, 0.6371]</td>' in contrastive  # not tied: not marked
    # R-Precision: contrastive (0.33, 0.35) against (0.30, 0.31) in the two paired reproductions: the best, and
    # 2 pairs cannot tell multi_similarity apart from it (Holm p 0.09): both marked.
    assert re.search(r'<td class="best" data-sort="0\.3[34]\d*">0\.3400 \[0\.2129, 0\.4671\]</td>', contrastive)
    assert re.search(r'<td class="best" data-sort="0\.31\d*">0\.3100 \[', ms)
    assert ">1/50<" in contrastive


def test_reference_columns_name_mlrc_and_its_figures(report, tmp_path):
    # MLRC's BN-Inception figures only beside rows of its own protocol: the quick cub200 rows have none.
    assert "0.4364" not in _leaderboard_row(report, "cub200", "multi_similarity")
    url = sqlite_url(tmp_path / "mlrc.db")
    add_study(url, "cub200", "multi_similarity", [{"alpha": 1.0}], [0.3], {"mean_average_precision_at_r": [0.4, 0.41]},
              protocol="mlrc")
    out = tmp_path / "index.html"
    assert main(["report", "--storage", url, "--out", str(out)]) == 0
    mlrc = out.read_text(encoding="utf-8")
    ms = _leaderboard_row(mlrc, "cub200", "multi_similarity")
    assert ">0.4364<" in ms  # MLRC's best validation MAP@R for multi_similarity on CUB200
    assert "alpha=0.01; beta=50.6; base=0.56" in ms
    assert "A Metric Learning Reality Check" in mlrc
    # synthetic is not an MLRC dataset: no reference columns in its table
    synthetic = re.search(r'data-dataset="synthetic">(.*?)</table>', report, re.S).group(1)
    assert "MLRC" not in synthetic


def test_plotly_embedded_once_and_nothing_fetched(report):
    assert report.count(plotly.offline.get_plotlyjs()[:2000]) == 1
    assert not re.search(r"<script[^>]+src=", report)
    plots = report.count('class="plot"></div>')
    assert plots >= 7  # 2 multi_similarity + 1 contrastive + 2 hostile histories/slices and curves, at least
    assert report.count("Plotly.newPlot(") == plots


def test_database_text_is_escaped(report):
    assert HOSTILE not in report
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in report  # shown as text
    # Exactly our scripts: plotly.js, one per figure, the sorter.
    assert report.count("<script>") == 2 + report.count('class="plot"></div>')
    # No figure's JSON can close its script element or open another.
    figures = re.findall(r'<script>document.addEventListener\("DOMContentLoaded",function\(\)\{var f=(.*?)</script>',
                         report, re.S)
    assert len(figures) == report.count('class="plot"></div>')
    assert any("alert(1)" in f for f in figures)
    assert not any("</" in f or "<script" in f for f in figures)
    assert "&lt;script&gt;x" in report  # the parameter named <script>x in the best-parameter table


def test_per_loss_sections(report):
    # Importances only from 10 completed trials (these studies have 1-3): the report says why they are absent.
    assert "Hyperparameter importances (PedAnovaImportanceEvaluator) are shown from 10 completed trials on: with 1," \
        in report  # contrastive
    assert "Training curves per fold (best trial 2)" in report  # Optuna's trial 1, counted from 1
    assert '"title":{"text":"validation MAP@R"}' in report  # axis label
    # beta = 99.5 in [0.01, 100] sits within 1 % of the upper bound; alpha = 19.9 does not.
    best = "".join(re.findall(r'<table class="best-params">(.*?)</table>', report, re.S))
    assert re.search(r"<td>beta</td><td>99.5</td><td>\[0.01, 100\]</td><td><span class=\"bound\">at the upper", best)
    assert re.search(r"<td>alpha</td><td>19.9</td><td>\[0.001, 100\]</td><td></td>", best)
    # No reproduction of these hand-made results stored examples: the retrieval section says so, and no per-loss
    # note contradicts it.
    assert "No retrieval examples stored" in report and "not part of this report" not in report


def test_best_parameters_show_the_bound_column_only_when_a_parameter_is_flagged(tmp_path):
    url = sqlite_url(tmp_path / "inside.db")
    add_study(url, "cub200", "multi_similarity", [{"alpha": 20.0, "beta": 30.0}], [0.3])
    out = tmp_path / "index.html"
    assert main(["report", "--storage", url, "--out", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    best = "".join(re.findall(r'<table class="best-params">(.*?)</table>', html, re.S))
    assert "<th>search range</th></tr>" in best and "<td></td>" not in best
    assert "Flagged: within" not in html


def test_environment_section(report):
    assert "abc123def" in report and "9232066bb41fa04d" in report
    assert "torch 2.14.1" in report and "split scheme mlrc" in report
    assert "<td>cpu, 2 threads</td>" in report  # a CPU's numbers depend on its thread count


@pytest.mark.parametrize(("value", "low", "high", "log", "expected"), [
    (99.5, 0.01, 100, False, "upper"),
    (0.5, 0.0, 100, False, "lower"),
    (50.0, 0.0, 100, False, None),
    (1.04e-6, 1e-6, 1.0, True, "lower"),  # log scale: within 1 % of the 6 decades
    (1.2e-6, 1e-6, 1.0, True, None),
    ("a", 0, 1, False, None),
])
def test_at_bound(value, low, high, log, expected):
    assert at_bound(value, low, high, log) == expected


def test_markdown(database, capsys):
    assert main(["report", "--storage", database, "--format", "md"]) == 0
    out = capsys.readouterr().out
    assert "### cub200 (quick)" in out
    # n, mean [95 % interval], every loss tied with the best in bold; no MLRC column beside quick rows. A column per
    # metric of the table and mode; "-" for one the database has no values of.
    reproduced = {("separated_128", "precision_at_1"): "**0.6100 [0.5852, 0.6348]**",
                  ("separated_128", "r_precision"): "**0.3100 [0.2852, 0.3348]**",
                  ("separated_128", "mean_average_precision_at_r"): "**0.2100 [0.1852, 0.2348]**",
                  ("concatenated_512", "precision_at_1"): "**0.6200 [0.5952, 0.6448]**",
                  ("concatenated_512", "r_precision"): "**0.3200 [0.2952, 0.3448]**",
                  ("concatenated_512", "mean_average_precision_at_r"): "**0.2200 [0.1952, 0.2448]**"}
    cells = [reproduced.get((mode, metric), "-") for mode in MODES for metric in METRICS]
    assert f"| multi_similarity | 3/50 | 3 | {' | '.join(cells)} | - | 1 |" in out
    assert "| &lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt; | 2/50 | - |" in out
    assert "| contrastive over multi_similarity | 0.0350 | 2 | 0.0903 | not resolved |" in out
    for table in out.split("\n### ")[1:]:
        widths = {line.count("|") for line in table.split("####")[0].splitlines() if line.startswith("|")}
        assert widths == {6 + 2 * len(METRICS)}  # loss, trials, n, a column per mode and metric, untrained, rank
    assert "nan" not in out and "None" not in out


def test_latex_is_a_valid_tabular(database, capsys):
    assert main(["report", "--storage", database, "--format", "latex"]) == 0
    out = capsys.readouterr().out
    # 2 leaderboards and 6 "which differences are real" tables (cub200's two losses, 2 modes x the 3 metrics the
    # database has values of)
    assert out.count(r"\begin{tabular}") == out.count(r"\end{tabular}") == 8
    assert r"multi\_similarity & 3/50 & 3 & \textbf{0.6100 [0.5852, 0.6348]}" in out
    for line in out.split("which differences")[0].splitlines():
        if line.endswith(r"\\"):
            # every row has as many cells as the column spec: loss, trials, n, a column per mode and metric,
            # untrained, rank
            assert line.count(" & ") == 4 + 2 * len(METRICS), line
    assert "_" not in out.replace(r"\_", "")


def test_latex_escapes_specials():
    from benchmark.report.tables import latex_escape

    assert latex_escape("a_b 5% x&y #1 $") == r"a\_b 5\% x\&y \#1 \$"


def test_csv_to_file(database, tmp_path):
    out = tmp_path / "board.csv"
    assert main(["report", "--storage", database, "--format", "csv", "--out", str(out)]) == 0
    board = pd.read_csv(io.StringIO(out.read_text()))
    assert len(board) == 3
    ms = board[board["loss"] == "multi_similarity"].iloc[0]
    assert ms["separated_128/precision_at_1/mean"] == pytest.approx(0.61)
    assert ms["separated_128/precision_at_1/n"] == 3
    assert ms["separated_128/precision_at_1/tied"] and ms["separated_128/mean_average_precision_at_r/rank_low"] == 1
    assert pd.isna(ms["mlrc_best_val_map_at_r"])  # a quick-protocol row: MLRC's BN-Inception figure is not its own


def test_empty_database_is_one_line_exit_2(tmp_path, capsys):
    url = sqlite_url(tmp_path / "empty.db")
    ResultsStore(url).close()
    assert main(["report", "--storage", url, "--out", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no results yet in ") and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()


def test_missing_database_is_exit_2(tmp_path, capsys):
    assert main(["report", "--storage", sqlite_url(tmp_path / "nope.db"), "--format", "md"]) == 2
    assert capsys.readouterr().err.startswith("error: no database at ")


def test_budget_uses_the_study_total_when_recorded(tmp_path, capsys):
    import optuna

    from _report_helpers import add_study

    url = sqlite_url(tmp_path / "t.db")
    name = add_study(url, "sop", "triplet", [{"margin": 0.1}, {"margin": 0.2}], [0.3, 0.4], protocol="mlrc")
    optuna.load_study(study_name=name, storage=url).set_user_attr("total_trials", 8)
    assert main(["report", "--storage", url, "--format", "md"]) == 0
    no_tests = "- | " * (3 + 2 * len(METRICS))  # n, a column per mode and metric, untrained, rank; then MLRC's
    assert f"| triplet | 2/8 | {no_tests}0.3846 |" in capsys.readouterr().out


def test_best_parameter_bounds_are_the_ranges_the_study_searched(tmp_path):
    # As after `tune --space beta=1:50`: the YAML says [0.01, 100], the study searched [1, 50].
    url = sqlite_url(tmp_path / "narrow.db")
    add_study(url, "cub200", "multi_similarity", [{"alpha": 20.0, "beta": 49.9}], [0.3],
              ranges={"alpha": (0.001, 100.0, False), "beta": (1.0, 50.0, False)})
    out = tmp_path / "index.html"
    assert main(["report", "--storage", url, "--out", str(out)]) == 0
    best = "".join(re.findall(r'<table class="best-params">(.*?)</table>', out.read_text(encoding="utf-8"), re.S))
    assert re.search(r"<td>beta</td><td>49.9</td><td>\[1, 50\]</td><td><span class=\"bound\">at the upper", best)


def test_stale_temporary_files_of_a_killed_report_are_removed(database, tmp_path):
    import fcntl

    out = tmp_path / "index.html"
    stale = tmp_path / ".index.html.abc123.tmp"  # what a killed `benchmark report` leaves behind
    stale.write_text("<html>half")
    busy = tmp_path / ".index.html.busy42.tmp"  # another report being written right now: its lock is held
    busy.write_text("<html>")
    with open(busy) as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert main(["report", "--storage", database, "--out", str(out)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".index.html.busy42.tmp", "index.html"]


def test_slice_plot_colours_trials_by_integer_number_from_1():
    import optuna

    from benchmark.report.html import _slice_plot

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: t.suggest_float("lr", 1e-4, 1e-2, log=True) + t.suggest_int("m", 1, 8), n_trials=20)
    figure = _slice_plot(study)
    assert len(figure.data) == 2
    for trace in figure.data:
        assert list(trace.marker.color) == list(range(1, 21))
        assert (trace.marker.cmin, trace.marker.cmax) == (1, 20)
        bar = trace.marker.colorbar
        assert bar.tickformat == "d" and bar.tick0 == 1 and bar.dtick == 3 and bar.title.text == "trial"
