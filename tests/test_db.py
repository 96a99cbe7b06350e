"""The database plumbing shared by the results tables and Optuna's storage (benchmark.results.db), and run recording."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from benchmark.errors import UserError
from benchmark.results.db import SQLITE_BUSY_TIMEOUT_S, make_engine
from benchmark.tuning.storage import open_storage


def _sqlite_settings(engine) -> tuple[int, str, int]:
    with engine.connect() as conn:
        return (conn.execute(text("PRAGMA busy_timeout")).scalar(), conn.execute(text("PRAGMA journal_mode")).scalar(),
                conn.execute(text("PRAGMA foreign_keys")).scalar())


def test_results_engine_and_optuna_storage_configure_sqlite_alike(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'bench.db'}"
    results = make_engine(url, write=True)
    optuna_engine = open_storage(url).engine
    try:
        assert _sqlite_settings(results) == _sqlite_settings(optuna_engine) == (SQLITE_BUSY_TIMEOUT_S * 1000, "wal", 1)
    finally:
        results.dispose()
        optuna_engine.dispose()


@pytest.mark.parametrize(("url", "expected"), [("postgresql:/u:pw@h/d", "not a database URL"),
                                                ("nosuchdialect://u@h/d", "unknown database dialect 'nosuchdialect'")])
def test_results_and_optuna_storage_reject_a_bad_url_with_the_same_line(url, expected):
    messages = []
    for opener in (lambda: make_engine(url, write=True), lambda: open_storage(url)):
        with pytest.raises(UserError) as caught:
            opener()
        messages.append(str(caught.value))
    assert expected in messages[0] and expected in messages[1]
    assert "pw" not in "".join(messages)


def test_a_run_the_block_leaves_open_is_marked_failed_and_a_finished_one_keeps_its_status(tmp_path):
    from benchmark.results import ResultsStore, load_runs

    url = f"sqlite:///{tmp_path / 'runs.db'}"
    identity = dict(study_name="s", dataset="synthetic", loss="contrastive", protocol="quick", params={}, config={},
                    seed=0, split_hash="h", provenance={})
    with ResultsStore(url) as store:
        with pytest.raises(KeyboardInterrupt), store.run("trial", trial_number=0, **identity):
            raise KeyboardInterrupt
        with store.run("trial", trial_number=1, **identity) as record:
            record.finish("pruned")
        with store.run("test", reproduction=0, **identity) as record:
            record.test_metrics(0, 5, {"separated_128": {"precision_at_1": 0.5}})
    runs = load_runs(url)
    assert list(runs["status"]) == ["failed", "pruned", "complete"]


def test_proxy_diagnostics_round_trip(tmp_path):
    from benchmark.results import ResultsStore, load_proxy_diagnostics

    url = f"sqlite:///{tmp_path / 'proxy.db'}"
    with ResultsStore(url) as store:
        run = store.start_run("run", "s", "synthetic", "proxy_anchor", "quick", {}, {}, 0, "h", {})
        store.record_proxy_diagnostics(run, 0, [{"epoch": 2, "pairs": 6, "mean": 0.1, "variance": 0.02,
                                                 "min": -0.4, "histogram": [1, 2, 3]}])
    row = load_proxy_diagnostics(url).iloc[0]
    assert (row["epoch"], row["pairs"], row["mean"]) == (2, 6, 0.1)
    assert row["summary"] == {"min": -0.4, "histogram": [1, 2, 3]}
