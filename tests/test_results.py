"""The results database on SQLite: writes, the pandas read API, confidence intervals, concurrency, redaction."""

from __future__ import annotations

import math
import multiprocessing
import re
import sqlite3
import subprocess
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError

from _results_helpers import RUN_IDENTITY, both_modes, sample_metrics, write_concurrently
from benchmark.errors import UserError
from benchmark.results import (
    ResultsStore,
    collect_provenance,
    load_epoch_curves,
    load_fold_results,
    load_runs,
    load_test_results,
    mean_and_ci,
    redact_url,
    summarize_test_results,
)
from benchmark.redaction import redact, redact_secrets
from benchmark.results.provenance import _git_state
from benchmark.results.store import flatten_metrics

PASSWORD = "hunter2-s3cret"


@pytest.fixture
def url(tmp_path) -> str:
    # A nested folder: the store must create it.
    return f"sqlite:///{tmp_path / 'results' / 'benchmark.db'}"


@pytest.fixture
def store(url):
    with ResultsStore(url) as opened:
        yield opened


def _start(store, kind="trial", study="study", **extra) -> int:
    values = dict(params={"margin": 0.2, "lr": np.float32(0.5)}, config={"protocol": {"batch_size": 32}}, seed=7,
                  split_hash="f00d", provenance={"device": "cpu"})
    values.update(extra)
    return store.start_run(kind, study, **RUN_IDENTITY, **values)


def _record_reproduction(store, study, reproduction, base) -> int:
    run_id = _start(store, "test", study, reproduction=reproduction, seed=reproduction)
    store.record_test_metrics(run_id, study, **RUN_IDENTITY, reproduction=reproduction, seed=reproduction,
                              metrics=both_modes(base))
    return run_id


def test_every_write_round_trips_through_the_read_api(store, url):
    store.create_tables()  # idempotent
    run_id = _start(store, trial_number=3)
    store.record_fold(run_id, 0, "ok", 4, 6, 12.5, {"precision_at_1": 0.61, "r_precision": 0.32,
                                                       "mean_average_precision_at_r": 0.21,
                                                       "recall_at_k": {1: 0.61, 2: 0.7}})
    store.record_fold(run_id, 1, "nonfinite_loss", None, 1, 0.5, {})
    store.record_epochs(run_id, 0, [
        {"epoch": 1, "loss": 0.9, "lrs": {"trunk": 1e-6, "loss": np.float64(0.01)}, "scale": 20.0, "seconds": 1.0},
        {"epoch": 2, "loss": float("nan"), "val_precision_at_1": 0.6, "val_r_precision": 0.3,
         "val_mean_average_precision_at_r": 0.2},
    ])
    # Re-recording an epoch and a fold replaces them instead of duplicating.
    store.record_epochs(run_id, 0, [{"epoch": 2, "loss": 0.8, "val_mean_average_precision_at_r": 0.25}])
    store.record_fold(run_id, 0, "ok", 4, 6, 12.5, {"precision_at_1": 0.61, "r_precision": 0.32,
                                                       "mean_average_precision_at_r": 0.22,
                                                       "recall_at_k": {1: 0.61, 2: 0.7}})
    store.finish_run(run_id, "complete", objective=0.22)
    test_run = _record_reproduction(store, "study", reproduction=0, base=0.5)

    runs = load_runs(url)
    assert list(runs["id"]) == [run_id, test_run]
    trial = runs.iloc[0]
    assert (trial["kind"], trial["status"], trial["trial_number"], trial["objective"]) == ("trial", "complete", 3, 0.22)
    assert trial["params"] == {"margin": 0.2, "lr": 0.5}
    assert trial["config"] == {"protocol": {"batch_size": 32}}
    assert trial["finished_at"] >= trial["created_at"]
    assert str(runs["created_at"].dtype) == "datetime64[us, UTC]"
    assert pd.isna(trial["reproduction"])
    assert runs.iloc[1]["reproduction"] == 0 and runs.iloc[1]["status"] == "complete"

    folds = load_fold_results(url)
    assert list(folds["fold"]) == [0, 1]
    assert folds.iloc[0]["val_mean_average_precision_at_r"] == 0.22
    assert (folds.iloc[0]["val_recall_at_1"], folds.iloc[0]["val_recall_at_2"]) == (0.61, 0.7)
    assert folds.iloc[1]["status"] == "nonfinite_loss" and math.isnan(folds.iloc[1]["val_mean_average_precision_at_r"])
    assert pd.isna(folds.iloc[1]["best_epoch"])
    assert set(folds["study_name"]) == {"study"} and set(folds["run_status"]) == {"complete"}

    curves = load_epoch_curves(url)
    assert list(curves["epoch"]) == [1, 2]
    assert curves.iloc[0]["lrs"] == {"trunk": 1e-6, "loss": 0.01}
    assert curves.iloc[0]["scale"] == 20.0
    assert list(curves["train_loss"]) == [0.9, 0.8]
    # The re-recorded epoch 2 replaced all its scores, not only the one given again.
    assert curves.iloc[1]["val_mean_average_precision_at_r"] == 0.25 and math.isnan(curves.iloc[1]["val_precision_at_1"])
    assert math.isnan(curves.iloc[0]["val_mean_average_precision_at_r"])  # epoch 1 was not validated
    assert set(curves["loss"]) == {"contrastive"}

    tests = load_test_results(url)
    assert len(tests) == 2 * 7
    separated = tests[tests["mode"] == "separated_128"].set_index("metric")["value"]
    assert separated.to_dict() == pytest.approx({
        "precision_at_1": 0.5, "r_precision": 0.4, "mean_average_precision_at_r": 0.3,
        "recall_at_1": 0.5, "recall_at_2": 0.55, "recall_at_4": 0.6, "recall_at_8": 0.65,
    })
    assert set(tests["run_id"]) == {test_run} and set(tests["split_hash"]) == {"f00d"}
    assert set(tests["run_status"]) == {"complete"} and set(tests["dataset"]) == {"cub200"}


def test_sqlite_is_wal_with_foreign_keys(store, url):
    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with pytest.raises(IntegrityError):
        store.record_fold(12345, 0, "ok", 1, 1, 1.0, {})


def test_summary_ci_equals_scipy(store, url):
    values = [0.5, 0.56, 0.61, 0.52]
    for reproduction, value in enumerate(values):
        _record_reproduction(store, "study", reproduction, value)
    _record_reproduction(store, "single", 0, 0.4)

    summary = summarize_test_results(url)
    assert len(summary) == 2 * 2 * 7
    row = summary[(summary["study_name"] == "study") & (summary["mode"] == "separated_128")
                  & (summary["metric"] == "precision_at_1")].iloc[0]
    low, high = stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=stats.sem(values))
    assert row["n"] == 4
    assert row["mean"] == pytest.approx(np.mean(values))
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((low, high))
    assert (row["dataset"], row["loss"], row["protocol"]) == ("cub200", "contrastive", "quick")
    single = summary[summary["study_name"] == "single"]
    assert (single["n"] == 1).all() and single["ci_low"].isna().all() and single["ci_high"].isna().all()


def test_mean_and_ci_edge_cases():
    mean, low, high = mean_and_ci([1.0, 2.0, 3.0])
    assert (mean, low, high) == pytest.approx((2.0, *stats.t.interval(0.95, 2, loc=2.0, scale=stats.sem([1, 2, 3]))))
    assert mean_and_ci([0.3, 0.3, 0.3]) == (0.3, 0.3, 0.3)
    assert all(math.isnan(v) for v in mean_and_ci([]))
    assert mean_and_ci([1.0, float("nan"), None, 3.0])[0] == 2.0
    one = mean_and_ci([0.7])
    assert one[0] == 0.7 and math.isnan(one[1]) and math.isnan(one[2])


def test_duplicate_reproduction_is_rejected_and_rewrites_are_idempotent(store, url):
    first = _record_reproduction(store, "study", 0, 0.5)
    assert store.completed_reproductions("study") == {0}

    # The same run writing again (a retried call) replaces its rows.
    store.record_test_metrics(first, "study", **RUN_IDENTITY, reproduction=0, seed=0, metrics=both_modes(0.5))
    assert len(load_test_results(url)) == 14

    # Another run cannot record a reproduction that was completed.
    other = _start(store, "test", reproduction=0)
    with pytest.raises(ValueError, match="already completed"):
        store.record_test_metrics(other, "study", **RUN_IDENTITY, reproduction=0, seed=0, metrics=both_modes(0.9))
    tests = load_test_results(url, complete_only=False)
    assert len(tests) == 14 and tests["run_id"].eq(first).all()
    assert tests[(tests["mode"] == "separated_128") & (tests["metric"] == "precision_at_1")]["value"].item() == 0.5
    assert store.completed_reproductions("study") == {0}


def test_a_crash_while_recording_leaves_no_half_reproduction(store, url):
    def crash_on_test_rows(conn, cursor, statement, *args):
        if statement.startswith("INSERT INTO bm_test_results"):
            raise RuntimeError("simulated crash")

    crashed = _start(store, "test", reproduction=1)
    event.listen(store._engine, "before_cursor_execute", crash_on_test_rows)
    with pytest.raises(RuntimeError, match="simulated crash"):
        store.record_test_metrics(crashed, "study", **RUN_IDENTITY, reproduction=1, seed=1, metrics=both_modes(0.3))
    event.remove(store._engine, "before_cursor_execute", crash_on_test_rows)
    assert store.completed_reproductions("study") == set()
    assert load_test_results(url, complete_only=False).empty
    assert load_runs(url).set_index("id").loc[crashed, "status"] == "running"

    retry = _record_reproduction(store, "study", 1, 0.6)
    assert store.completed_reproductions("study") == {1}
    assert set(load_test_results(url)["run_id"]) == {retry}


def test_invalid_writes_raise(store):
    with pytest.raises(ValueError, match="run kind"):
        _start(store, kind="trail")
    run_id = _start(store)
    with pytest.raises(ValueError, match="final run status"):
        store.finish_run(run_id, "running")
    with pytest.raises(ValueError, match="no run with id"):
        store.finish_run(run_id + 100, "complete")
    with pytest.raises(ValueError, match="unknown validation metric"):
        store.record_fold(run_id, 0, "ok", 1, 1, 1.0, {"map_at_r": 0.1})
    with pytest.raises(ValueError, match="epoch row keys"):
        store.record_epochs(run_id, 0, [{"loss": 0.1}])
    with pytest.raises(ValueError, match="no run with id"):
        store.record_test_metrics(run_id + 100, "s", **RUN_IDENTITY, reproduction=0, seed=0,
                                  metrics={"separated_128": {"precision_at_1": 0.1}})
    with pytest.raises(ValueError, match="mode"):
        store.record_test_metrics(run_id, "s", **RUN_IDENTITY, reproduction=0, seed=0, metrics=sample_metrics(0.5))


def test_flatten_metrics():
    assert flatten_metrics({"recall_at_k": {1: np.float32(0.5), "10": 0.75}, "r_precision": float("inf")}) == {
        "recall_at_1": 0.5, "recall_at_10": 0.75, "r_precision": None}
    with pytest.raises(ValueError, match="given twice"):
        flatten_metrics({"recall_at_k": {1: 0.5}, "recall_at_1": 0.5})
    with pytest.raises(ValueError, match="mapping value"):
        flatten_metrics({"precision": {1: 0.5}})


def test_meta(store):
    assert store.get_meta("split_hash:study") is None
    assert store.setdefault_meta("split_hash:study", "abc") == "abc"
    assert store.setdefault_meta("split_hash:study", "other") == "abc"
    store.set_meta("settings", {"a": [1, 2]})
    store.set_meta("settings", {"a": [3]})
    assert store.get_meta("settings") == {"a": [3]}
    assert store.get_meta("missing", default=5) == 5


def test_two_processes_create_tables_and_write_concurrently(url):
    # This process is the second writer: a spawned child pays seconds of imports, and both must start together.
    context = multiprocessing.get_context("spawn")
    ready, go = context.Event(), context.Event()
    child = context.Process(target=write_concurrently, args=(url, 2, 6, ready, go))
    child.start()
    assert ready.wait(120)
    go.set()
    write_concurrently(url, 1, 6, ready, go)
    child.join(120)
    assert child.exitcode == 0

    with ResultsStore(url) as store:
        assert store.completed_reproductions("concurrent") == {*range(100, 106), *range(200, 206)}
        assert store.get_meta("worker_1") == 6 and store.get_meta("worker_2") == 6
    assert len(load_runs(url)) == 12
    assert len(load_fold_results(url)) == 12
    assert len(load_epoch_curves(url)) == 24
    assert len(load_test_results(url)) == 12 * 2 * 7


def test_results_share_a_database_with_optuna_without_touching_it(tmp_path):
    import optuna

    url = f"sqlite:///{tmp_path / 'benchmark.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="s", storage=url)
    study.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=2)
    # No bm_ tables yet: the read API gives empty frames with their columns.
    assert load_runs(url).empty and "objective" in load_runs(url).columns
    assert summarize_test_results(url).empty and "ci_high" in summarize_test_results(url).columns

    with ResultsStore(url) as store:
        _record_reproduction(store, "s", 0, 0.5)
    names = {row[0] for row in sqlite3.connect(tmp_path / "benchmark.db").execute(
        "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"bm_runs", "bm_fold_results", "bm_epoch_curves", "bm_test_results", "bm_meta"} <= names
    assert "trials" in names and "studies" in names
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 2


def test_passwords_are_never_stored(store, url):
    secret_url = f"postgresql://bench:{PASSWORD}@db.example.org:5432/results"
    _start(store, config={"storage": secret_url, "nested": [{"db_password": PASSWORD}]},
           provenance={**collect_provenance("cpu"), "storage": secret_url})
    runs = load_runs(url)
    assert runs.iloc[0]["config"]["storage"] == "postgresql://bench:***@db.example.org:5432/results"
    assert runs.iloc[0]["config"]["nested"] == [{"db_password": "***"}]
    path = Path(url.removeprefix("sqlite:///"))
    store.close()
    stored = b"".join(p.read_bytes() for p in path.parent.iterdir())
    assert PASSWORD.encode() not in stored


def test_redaction():
    assert redact_url(f"postgresql://u:{PASSWORD}@h:5432/d") == "postgresql://u:***@h:5432/d"
    assert PASSWORD not in redact_url(f"postgresql://u@h/d?password={PASSWORD}")
    assert PASSWORD not in redact_url(f"weird url ://u:{PASSWORD}@h/d")
    assert redact_url("sqlite:///results/benchmark.db") == "sqlite:///results/benchmark.db"
    assert redact_url(f"postgresql:/u:{PASSWORD}@h/d") == "postgresql:/u:***@h/d"
    assert redact_url(f"postgresql://u:{PASSWORD}@h/d?sslpassword={PASSWORD}") == (
        "postgresql://u:***@h/d?sslpassword=***")
    assert redact(f"no test results in postgresql://u:{PASSWORD}@h/db; PGPASSWORD={PASSWORD} host=h "
                  f"password={PASSWORD}") == "no test results in postgresql://u:***@h/db; PGPASSWORD=*** host=h password=***"
    assert redact(f"'postgresql://u:p@ss{PASSWORD}@h/d'") == "'postgresql://u:***@h/d'"
    assert redact(f"x?application_name=password%3D{PASSWORD}") == "x?application_name=password%3D***"
    assert redact("lr=0.1 http://example.org/a:b file:///tmp/x") == "lr=0.1 http://example.org/a:b file:///tmp/x"
    assert redact_secrets({"api_key": "k", "n": 1, "s": "plain", "u": f"mysql://h/d?password={PASSWORD}&x=1"}) == {
        "api_key": "***", "n": 1, "s": "plain", "u": "mysql://h/d?password=***&x=1"}


@pytest.mark.parametrize(
    ("make_url", "expected"),
    [
        (lambda tmp: f"nosuchdialect://u:{PASSWORD}@h/d", "unknown database dialect"),
        (lambda tmp: f"postgresql:/u:{PASSWORD}@h/d", "not a database URL"),
        (lambda tmp: f"sqlite:///{tmp / 'a_file' / 'results.db'}", "cannot create the folder"),
        # Nothing listens on port 1; without psycopg2 this is the missing-driver error, also a UserError.
        (lambda tmp: f"postgresql://u:{PASSWORD}@127.0.0.1:1/d", "127.0.0.1:1"),
    ],
)
def test_bad_url_is_a_one_line_user_error_without_the_password(tmp_path, make_url, expected):
    (tmp_path / "a_file").write_text("not a folder")
    with pytest.raises(UserError) as caught:
        ResultsStore(make_url(tmp_path))
    message = str(caught.value)
    assert expected in message
    assert "\n" not in message and PASSWORD not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_reading_a_missing_sqlite_file_is_a_user_error_and_creates_nothing(tmp_path):
    path = tmp_path / "nothing.db"
    with pytest.raises(UserError, match="no results database"):
        load_test_results(f"sqlite:///{path}")
    assert not path.exists()


def test_provenance(tmp_path):
    provenance = collect_provenance("cpu")
    assert provenance["device"] == "cpu"
    assert provenance["python"].count(".") == 2
    assert provenance["packages"]["torch"] == metadata.version("torch")
    assert provenance["packages"]["sqlalchemy"] == metadata.version("sqlalchemy")
    assert any(name.startswith("faiss") and version for name, version in provenance["packages"].items())
    assert provenance["hostname"] and provenance["platform"]
    assert provenance["torch_threads"] == torch.get_num_threads()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:
        assert provenance["git"]["commit"] == head.stdout.strip()
        assert isinstance(provenance["git"]["dirty"], bool)
    assert _git_state(tmp_path) is None
    # Without a GPU the CUDA device keeps its plain name instead of failing.
    assert re.fullmatch(r"cuda:0( \(.+\))?", collect_provenance("cuda:0")["device"])
