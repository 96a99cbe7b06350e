"""The database plumbing shared by the results tables and Optuna's storage (benchmark.results.db)."""

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
