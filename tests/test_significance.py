"""Differences that are real: tied-with-best marking (paired t-test over common-seed reproductions, Holm), bootstrap
ranks, "did not learn" flagging, in the tables a researcher copies (md/latex/csv)."""

from __future__ import annotations

import math

import pytest

from _report_helpers import add_study, sqlite_url
from benchmark.cli import main
from benchmark.report.significance import holm, paired_pvalue, pairwise, rank_intervals, standings

MAPR = "mean_average_precision_at_r"


def test_holm_matches_the_step_down_definition():
    # sorted p 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04)
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert math.isnan(holm([math.nan, 0.2])[0]) and holm([math.nan, 0.2])[1] == pytest.approx(0.2)


def test_a_tie_marks_both_a_clear_gap_marks_one():
    seeds = {0: 0.0, 1: 0.02, 2: -0.01, 3: 0.015, 4: -0.02}  # what each reproduction's seed does to every loss
    a = {r: 0.30 + s for r, s in seeds.items()}
    tie = {r: 0.30 + s + (0.004 if r % 2 else -0.003) for r, s in seeds.items()}
    gap = {r: 0.20 + s + (0.004 if r % 2 else -0.003) for r, s in seeds.items()}
    tied = standings({"a": a, "b": tie}, eligible={"a", "b"})
    assert tied["a"].tied_with_best and tied["b"].tied_with_best
    clear = standings({"a": a, "c": gap}, eligible={"a", "c"})
    assert clear["a"].tied_with_best and not clear["c"].tied_with_best and clear["c"].pvalue < 0.05
    # Pairing is what resolves it: the same gap between unpaired noisy values would not be.
    assert paired_pvalue(a, gap)[0] < 1e-4
    assert rank_intervals({"a": a, "c": gap})["a"] == (1, 1)


def test_a_loss_that_did_not_learn_is_never_the_best():
    high_but_untrained = {0: 0.5, 1: 0.5, 2: 0.5}
    learned = {0: 0.3, 1: 0.31, 2: 0.29}
    result = standings({"x": high_but_untrained, "y": learned}, eligible={"y"})
    assert result["y"].tied_with_best and not result["x"].tied_with_best


def test_pairwise_says_which_differences_are_real():
    seeds = {0: 0.0, 1: 0.03, 2: -0.02, 3: 0.01}
    diffs = {(d.first, d.second): d for d in pairwise({
        "a": {r: 0.40 + s for r, s in seeds.items()},
        "b": {r: 0.30 + s + 0.002 * (-1) ** r for r, s in seeds.items()},
        "c": {r: 0.30 + s - 0.002 * (-1) ** r for r, s in seeds.items()}})}
    assert diffs[("a", "b")].real and diffs[("a", "c")].real
    assert not next(d for k, d in diffs.items() if set(k) == {"b", "c"}).real


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> str:
    url = sqlite_url(tmp_path_factory.mktemp("sig") / "r.db")
    trials, p = [{"alpha": 1.0}], [0.3]
    base = {"precision_at_1": [0.1] * 3, "r_precision": [0.05] * 3, MAPR: [0.02, 0.021, 0.019]}
    add_study(url, "synthetic", "alpha_loss", trials, p,
              {"precision_at_1": [0.6, 0.62, 0.61], "r_precision": [0.3, 0.32, 0.31], MAPR: [0.20, 0.23, 0.21]},
              untrained=base)
    add_study(url, "synthetic", "beta_loss", trials, p,  # tied with alpha_loss: same seeds, tiny differences
              {"precision_at_1": [0.6, 0.62, 0.61], "r_precision": [0.3, 0.32, 0.31], MAPR: [0.201, 0.228, 0.211]},
              untrained=base)
    add_study(url, "synthetic", "gamma_loss", trials, p,  # did not learn: interval overlaps the untrained value
              {"precision_at_1": [0.1, 0.12, 0.09], "r_precision": [0.05, 0.06, 0.04], MAPR: [0.018, 0.03, 0.02]},
              untrained=base)
    return url


def test_markdown_marks_ties_shows_n_intervals_and_did_not_learn(database, capsys):
    assert main(["report", "--storage", database, "--format", "md"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")
            and line.split("|")[1].strip().endswith("_loss")}
    sep_mapr = 3 + 2  # loss, trials, n, then sep-128 P@1, R-Precision, MAP@R
    cells = {loss: [c.strip() for c in line.split("|")[1:-1]] for loss, line in rows.items()}
    assert cells["alpha_loss"][2] == "3"  # n
    assert cells["alpha_loss"][sep_mapr] == "**0.2133 [0.1754, 0.2513]**"
    assert cells["beta_loss"][sep_mapr].startswith("**0.2133")  # tied with the best: marked too
    assert cells["gamma_loss"][sep_mapr].endswith("did not learn") and "**" not in cells["gamma_loss"][sep_mapr]
    assert "nan" not in out and "None" not in out and "±" not in out
    assert "Which differences are real" in out and "MLRC" not in out.split("### ")[1]  # quick rows: no MLRC column


def test_latex_and_csv_carry_the_same_marks(database, capsys):
    assert main(["report", "--storage", database, "--format", "latex"]) == 0
    latex = capsys.readouterr().out
    assert r"\textbf{0.2133 [0.1754, 0.2513]}" in latex and "did not learn" in latex
    assert main(["report", "--storage", database, "--format", "csv"]) == 0
    csv = capsys.readouterr().out
    header = csv.splitlines()[0].split(",")
    assert "separated_128/mean_average_precision_at_r/tied" in header
    assert "separated_128/mean_average_precision_at_r/learned" in header
