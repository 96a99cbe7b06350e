"""benchmark sweep: a grid study (exact total, resume, a failed point re-run) and its report figures."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import optuna
import pytest
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState

from _tiny import TINY_PROTOCOL, run_benchmark
from benchmark.cli import build_parser, main
from benchmark.report.collect import StudyData
from benchmark.report.sweeps import line_figure, sweeps_section
from benchmark.results import load_runs
from benchmark.search_space import load_search_space
from benchmark.tuning.sweep import SWEEP_ATTR, Grid, Sweep, parse_grid, sweep_table

GRID = ["--grid", "alpha=8,4", "--grid", "margin=0,0.2"]
POINTS = {(4.0, 0.0), (4.0, 0.2), (8.0, 0.0), (8.0, 0.2)}
# Student's t quantile t(0.975, df=3), from a printed t table: the 95 % interval of 4 folds is mean ± T3 * sem.
T3 = 3.182446


def sweep_args(*extra):
    return ["-q", "sweep", "--loss", "proxy_anchor", "--dataset", "synthetic", *TINY_PROTOCOL, *extra]


def figures_in(html: str) -> list[dict]:
    """The figures the report embeds (html.py's _Figures: one JSON payload per figure div)."""
    return [json.loads(f) for f in re.findall(r'DOMContentLoaded",function\(\)\{var f=(\{.*?\});Plotly\.newPlot\("figure-',
                                              html, re.S)]


def test_sweep_trains_each_grid_point_once_and_reports_a_heatmap(tiny_env, tmp_path, monkeypatch, capsys):
    first = run_benchmark(sweep_args(*GRID), tiny_env, tmp_path)
    assert first.returncode == 0, first.stderr
    url = f"sqlite:///{tmp_path}/results/benchmark.db"
    (name,) = [s.study_name for s in optuna.get_all_study_summaries(url)]
    assert name.startswith("synthetic-proxy_anchor-quick-sweep-alpha-margin-")
    study = optuna.load_study(study_name=name, storage=url)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert {(t.params["alpha"], t.params["margin"]) for t in trials} == POINTS
    assert all(set(t.params) == {"alpha", "margin"} for t in trials)
    assert study.user_attrs[SWEEP_ATTR] == {"grid": {"alpha": [4.0, 8.0], "margin": [0.0, 0.2]}, "fixed": {}}
    assert len({t.user_attrs["seed"] for t in trials}) == 1  # common random numbers across grid points
    for trial in trials:
        folds = trial.user_attrs["folds"]
        assert sorted(folds) == ["0", "1", "2", "3"]
        assert trial.value == pytest.approx(np.mean([f["mean_average_precision_at_r"] for f in folds.values()]))
    # The terminal table: one line per point with its mean validation MAP@R.
    for trial in trials:
        assert re.search(rf"^\s*{trial.params['alpha']:g}\.0\s+{trial.params['margin']:g}\S*\s+{trial.number}\s+4\s+"
                         rf"{trial.value:.4f}\s", first.stdout, re.M), first.stdout
    runs = load_runs(url)
    assert sorted(runs[runs["study_name"] == name]["trial_number"]) == [0, 1, 2, 3]

    # The rerun and the report in this process: they train nothing, and a process start costs seconds.
    monkeypatch.chdir(tmp_path)
    assert main(sweep_args(*GRID[2:], *GRID[:2])) == 0  # the same grid, flags in another order
    assert "already finished: 4/4" in capsys.readouterr().out
    assert len(optuna.load_study(study_name=name, storage=url).get_trials()) == 4

    assert main(["-q", "report", "--out", str(tmp_path / "report.html")]) == 0
    html = (tmp_path / "report.html").read_text()
    assert "<h2>Sweeps</h2>" in html and f'id="sweep-{name}"' in html
    assert f'id="study-{name}"' not in html and "No studies or test results yet." in html  # not on the leaderboard
    (heatmap,) = [f for f in figures_in(html) if f["layout"]["title"]["text"] == f"Sweep {name}: mean validation MAP@R"]
    cells = heatmap["data"][0]
    assert cells["type"] == "heatmap" and cells["y"] == ["4", "8"] and cells["x"] == ["0", "0.2"]
    expected = {(t.params["alpha"], t.params["margin"]): f"{t.value:.4f}" for t in trials}
    assert cells["text"] == [[expected[(a, m)] for m in (0.0, 0.2)] for a in (4.0, 8.0)]
    (reference,) = [f for f in figures_in(html) if "thesis Table 4.2" in f["layout"]["title"]["text"]]
    assert reference["data"][0]["y"] == ["4", "8", "16", "32", "64"]
    assert "Softmax 関数を用いた" in html and "test Recall@1" in html
    capsys.readouterr()
    assert main(["report", "--format", "md"]) == 2  # the tables are the leaderboard's, which has no rows
    assert "sweeps are shown in the HTML report only" in capsys.readouterr().err


def test_a_point_whose_trial_failed_is_trained_on_resume(tiny_env, tmp_path, monkeypatch):
    """A crash leaves a FAILED trial that the GridSampler counts as visited; the rerun must still train that point
    (and not a second copy of another)."""
    import benchmark.tuning.study as study_module

    args = build_parser().parse_args(sweep_args("--grid", "alpha=4,8")[1:])
    from benchmark.cli._common import experiment_from_args

    url = f"sqlite:///{tmp_path}/sweep.db"
    real_run_folds = study_module.run_folds

    def crash(*a, **k):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(study_module, "run_folds", crash)
    experiment = experiment_from_args(args)
    grid = parse_grid(experiment.search_space, args.grid, {})
    searched = experiment.search_space
    with pytest.raises(RuntimeError, match="simulated crash"):
        Sweep(experiment, url, url, grid=grid, seed=0).run()
    assert experiment.search_space is searched  # the sweep worked on its own copy
    monkeypatch.setattr(study_module, "run_folds", real_run_folds)

    sweep = Sweep(experiment_from_args(args), url, url, grid=grid, seed=0)
    (failed,) = sweep.tuner.study.get_trials(states=(TrialState.FAIL,))
    sweep.run()
    complete = sweep.tuner.study.get_trials(states=(TrialState.COMPLETE,))
    assert sorted(t.params["alpha"] for t in complete) == [4.0, 8.0]
    # Without the re-queue the GridSampler would first take the other point, then repeat one at random.
    assert complete[0].params == failed.params


@pytest.mark.parametrize(("extra", "message"), [
    (["--grid", "beta=1,2"], "--grid beta: unknown parameter for loss proxy_anchor"),
    (["--grid", "alpha=-1,2"], "alpha=-1 is outside the loss's domain (0, inf)"),
    (["--grid", "margin=0,x"], "margin='x' is not a number"),
    (["--grid", "alpha="], "--grid alpha='': expected one or more comma-separated values"),
    (["--grid", "alpha=,"], "--grid alpha=',': expected one or more comma-separated values"),
    (["--grid", "alpha=4,8", "--param", "alpha=16"], "alpha is given both as --grid and as --param"),
    (["--grid", "alpha=4", "--grid", "alpha=8"], "--grid alpha is given twice"),
    ([], "give at least one --grid"),
])
def test_bad_grid_is_one_line_exit_2(extra, message, tiny_env, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(sweep_args(*extra)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "results").exists()  # nothing written


def test_the_same_grid_written_differently_is_the_same_study():
    space = load_search_space("proxy_anchor", "synthetic")
    a = parse_grid(space, ["margin=0.1,0", "alpha=8,4,4.0"], {})
    b = parse_grid(space, ["alpha=4,8", "margin=0,0.1"], {})
    assert a == b and a.values == {"alpha": (4.0, 8.0), "margin": (0.0, 0.1)} and a.size == 4
    assert a.study_name("d", "l", "p") == b.study_name("d", "l", "p")
    assert parse_grid(space, ["alpha=4,16", "margin=0,0.1"], {}).study_name("d", "l", "p") != a.study_name("d", "l", "p")
    fixed = parse_grid(space, ["alpha=4,8", "margin=0,0.1"], {"loss_lr": "0.01"})
    assert fixed.fixed == {"loss_lr": 0.01} and fixed.study_name("d", "l", "p") != a.study_name("d", "l", "p")


def _one_parameter_sweep(folds_by_la: dict[float, list[float]]) -> optuna.Study:
    """An in-memory soft_triple sweep over la = 10, 20, 30 whose trials carry the given per-fold MAP@R, spelt
    ``map_at_r`` as studies written before the metric table were: they still read."""
    study = optuna.create_study(direction="maximize")
    study.set_user_attr(SWEEP_ATTR, Grid({"la": (10.0, 20.0, 30.0)}, {}).to_attr())
    for la, values in folds_by_la.items():
        folds = {str(i): {"map_at_r": v, "precision_at_1": v + 0.1} for i, v in enumerate(values)}
        study.add_trial(optuna.trial.create_trial(
            params={"la": la}, distributions={"la": CategoricalDistribution([10.0, 20.0, 30.0])},
            value=float(np.mean(values)), user_attrs={"folds": folds}))
    return study


def test_one_parameter_line_has_t_intervals_over_the_folds():
    # la=30 is not trained yet: no point, no bar.
    study = _one_parameter_sweep({10.0: [0.1, 0.2, 0.3, 0.4], 20.0: [0.5, 0.5, 0.5, 0.5]})
    figure = line_figure(sweep_table(study), "la")
    mapr, p1 = figure.data
    assert (mapr.name, p1.name) == ("MAP@R", "P@1")
    assert list(mapr.x) == [10.0, 20.0, 30.0]
    assert mapr.y[0] == pytest.approx(0.25) and mapr.y[1] == pytest.approx(0.5) and mapr.y[2] is None
    half = T3 * np.std([0.1, 0.2, 0.3, 0.4], ddof=1) / math.sqrt(4)
    assert mapr.error_y.array[0] == pytest.approx(half, rel=1e-5)
    assert mapr.error_y.arrayminus[0] == pytest.approx(half, rel=1e-5)
    assert mapr.error_y.array[1] == 0.0 and mapr.error_y.array[2] is None  # identical folds: zero width
    assert p1.y[0] == pytest.approx(0.35)


def test_one_parameter_soft_triple_sweep_is_shown_beside_table_4_1():
    study = _one_parameter_sweep({10.0: [0.1, 0.2], 20.0: [0.3, 0.4], 30.0: [0.2, 0.2]})
    data = StudyData(name="cub200-soft_triple-mlrc-sweep-la-x</script>", dataset="cub200", loss="soft_triple",
                     protocol="mlrc", study=study, attrs=dict(study.user_attrs), finished=3, total=3,
                     best_value=0.35, best_params={"la": 20.0})
    embedded = []
    html = sweeps_section([data], lambda figure, title: embedded.append((title, figure)) or f"[{title}]")
    assert [title for title, _ in embedded] == [
        "Sweep cub200-soft_triple-mlrc-sweep-la-x</script>: validation metrics vs la",
        "Reference, shape only: thesis Table 4.1, SoftTriple at constant scales la, CUB200 and Cars196"]
    reference = embedded[1][1]
    assert [t.name for t in reference.data] == ["cub200", "cars196"]
    assert list(reference.data[0].x) == [1, 3, 6.5, 10, 15, 20, 30] and reference.data[0].y[5] == 0.5351
    outside = re.sub(r"\[[^\]]*\]", "", html)  # the HTML around the (fake) embedded figures
    assert "x&lt;/script&gt;" in outside and "</script>" not in outside
    assert "<td>20</td><td>1</td><td>2</td><td>0.3500 ± " in html  # the grid table: la, trial, folds, MAP@R
