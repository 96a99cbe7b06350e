"""The results database on a real PostgreSQL server, in a throwaway database; skipped when none is reachable.

The server is taken from BENCHMARK_TEST_POSTGRES_URL, by default the local one (postgresql://postgres@127.0.0.1:5432/test).
"""

from __future__ import annotations

import threading

import pytest

psycopg2 = pytest.importorskip("psycopg2")


from _results_helpers import RUN_IDENTITY, sample_metrics  # noqa: E402
from benchmark.results import (  # noqa: E402
    ResultsStore,
    load_epoch_curves,
    load_fold_results,
    load_runs,
    load_test_results,
    summarize_test_results,
)
from _pg import pg_url  # noqa: E402,F401  (the fixture: a throwaway database on the local server)


def test_postgres_round_trip(pg_url):
    # Two stores creating the tables at the same moment: the loser of the race must not fail.
    stores, errors = [], []

    def open_store():
        try:
            stores.append(ResultsStore(pg_url))
        except Exception as error:  # reported by the assertion below
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == [] and len(stores) == 2
    store = stores[0]
    stores[1].close()

    try:
        trial = store.start_run("trial", "pg", **RUN_IDENTITY, params={"margin": 0.1}, config={"x": [1, 2]},
                                seed=1, split_hash="abc", provenance={"device": "cpu"}, trial_number=0)
        store.record_fold(trial, 0, "ok", 2, 3, 1.5, {"mean_average_precision_at_r": 0.25,
                                                      "recall_at_k": {1: 0.5}})
        store.record_epochs(trial, 0, [{"epoch": 1, "loss": float("nan"), "lrs": {"trunk": 1e-6}},
                                       {"epoch": 2, "loss": 0.5, "val_mean_average_precision_at_r": 0.25}])
        store.finish_run(trial, "pruned", objective=0.25)
        for reproduction, base in enumerate((0.5, 0.6)):
            run_id = store.start_run("test", "pg", **RUN_IDENTITY, params={}, config={}, seed=reproduction,
                                     split_hash="abc", provenance={}, reproduction=reproduction)
            store.record_test_metrics(run_id, "pg", **RUN_IDENTITY, reproduction=reproduction, seed=reproduction,
                                      metrics={"separated_128": sample_metrics(base)})
        with pytest.raises(ValueError, match="already completed"):
            store.record_test_metrics(trial, "pg", **RUN_IDENTITY, reproduction=0, seed=0,
                                      metrics={"separated_128": sample_metrics(0.9)})
        store.set_meta("split_hash:pg", "abc")
        assert store.get_meta("split_hash:pg") == "abc"
        assert store.completed_reproductions("pg") == {0, 1}
    finally:
        store.close()

    runs = load_runs(pg_url)
    assert list(runs["status"]) == ["pruned", "complete", "complete"]
    assert runs.iloc[0]["config"] == {"x": [1, 2]} and runs.iloc[0]["objective"] == 0.25
    assert str(runs["created_at"].dtype).endswith("UTC]")
    folds = load_fold_results(pg_url)
    assert folds.iloc[0]["val_mean_average_precision_at_r"] == 0.25 and folds.iloc[0]["val_recall_at_1"] == 0.5
    curves = load_epoch_curves(pg_url)
    assert curves["train_loss"].isna().tolist() == [True, False]
    assert curves["val_mean_average_precision_at_r"].tolist()[1] == 0.25
    assert len(load_test_results(pg_url)) == 2 * 7
    summary = summarize_test_results(pg_url).set_index("metric")
    assert summary.loc["precision_at_1", "n"] == 2
    assert summary.loc["precision_at_1", "mean"] == pytest.approx(0.55)
    # t(0.975, 1) * sem, with sem = 0.05
    assert summary.loc["precision_at_1", "ci_high"] == pytest.approx(0.55 + 12.7062047 * 0.05)
