"""README "How to extend": what one entry in a table does on its own (the files to touch stay few)."""

from __future__ import annotations

from dataclasses import replace

from _report_helpers import add_study, sqlite_url
from benchmark.cli import main
from benchmark.evaluation.registry import METRICS, Metric
from benchmark.results import ResultsStore, load_epoch_curves, load_fold_results


def test_a_metric_added_to_the_table_is_stored_at_validation_and_shown_in_every_report_format(
        tmp_path, monkeypatch, capsys):
    url = sqlite_url(tmp_path / "r.db")
    reproductions = {"precision_at_1": [0.5, 0.6], "r_precision": [0.3, 0.4],
                     "mean_average_precision_at_r": [0.2, 0.3], "fake_at_1": [0.7, 0.9]}
    add_study(url, "cub200", "contrastive", [{"margin": 0.1}], [0.3], test_values=reproductions)
    assert main(["report", "--storage", url, "--format", "md"]) == 0
    assert "Fake@1" not in capsys.readouterr().out

    # The one entry (plus, in a real metric, its computation in evaluation/metrics.py).
    monkeypatch.setitem(METRICS, "fake_at_1", Metric("fake_at_1", "Fake@1", higher_is_better=True, neighbours="1"))
    for form, column in (("md", "separated-128 Fake@1"), ("latex", "separated-128 Fake@1"),
                         ("csv", "separated_128/fake_at_1/mean")):
        assert main(["report", "--storage", url, "--format", form]) == 0
        out = capsys.readouterr().out
        assert column in out and "0.8" in out, form
    html = tmp_path / "index.html"
    assert main(["report", "--storage", url, "--out", str(html)]) == 0
    assert "concatenated-512 Fake@1" in html.read_text(encoding="utf-8")

    with ResultsStore(url) as store:
        run = store.start_run("run", "s", "cub200", "contrastive", "quick", {}, {}, 0, "h", {})
        store.record_fold(run, 0, "ok", 1, 1, 1.0, {"fake_at_1": 0.4})
        store.record_epochs(run, 0, [{"epoch": 1, "loss": 0.5, "val_fake_at_1": 0.4}])
    assert load_fold_results(url).query("kind == 'run'")["val_fake_at_1"].tolist() == [0.4]
    assert load_epoch_curves(url).query("kind == 'run'")["val_fake_at_1"].tolist() == [0.4]


def test_per_dataset_facts_are_read_from_the_dataset_spec(monkeypatch):
    from benchmark.data.registry import DATASETS
    from benchmark.report import collect
    from benchmark.training.experiment import Experiment

    from benchmark.cli._common import protocol_from_args

    assert collect.REFERENCE_DATASETS == ("cub200", "cars196", "sop")
    monkeypatch.setitem(DATASETS, "sop", replace(DATASETS["sop"], recall_at=(1, 5), mlrc_validation=(3, 7)))
    experiment = Experiment.__new__(Experiment)
    experiment.dataset_name = "sop"
    assert experiment.recall_at == (1, 5)
    sop = protocol_from_args("mlrc", "sop", {})
    assert (sop.save_interval, sop.patience) == (3, 7)
    unregistered = protocol_from_args("mlrc", "not_registered", {})  # MLRC's default schedule
    assert (unregistered.save_interval, unregistered.patience) == (2, 9)
