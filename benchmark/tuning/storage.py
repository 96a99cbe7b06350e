"""Optuna storage from a URL: SQLite (default), PostgreSQL/MySQL for many machines, or a journal file.

- ``sqlite:///results/benchmark.db``: one machine; a generous lock timeout so several local processes can share it.
- ``postgresql://user@host/db`` / ``mysql+pymysql://...``: many workers on many machines.
- ``journal:///path/to/study.log``: Optuna's append-only journal file, the robust choice for many processes on one
  machine (no SQLite locking).

RDB storages get heartbeats: a worker that dies mid-trial leaves a trial whose heartbeat goes stale; Optuna then
marks it FAIL and our callback re-queues its parameters (with the folds it had finished).
A database server that restarts under running workers pauses them (``wait_for_server_restarts``) rather than
failing their trials; one that stays away makes them stop with a one-line error, and a rerun resumes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from sqlalchemy.exc import DBAPIError

from benchmark.errors import UserError
from benchmark.results.db import (check_schema, check_sqlite_file, configure_sqlite, driver_errors, driver_message,
                                  engine_options, is_sqlite_file, parse_url, prepare_sqlite_file, read_only_sqlite,
                                  retry_creation, user_errors, wait_for_server_restarts)
from benchmark.redaction import redact_url

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
MAX_RETRIES = 3


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Re-queue a dead worker's trial with the same parameters, keeping the folds it had reported."""
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)


def open_storage(url: str, *, read_only: bool = False) -> optuna.storages.BaseStorage:
    """The storage at ``url``; one of another application (foreign tables, a corrupt journal) is a UserError before
    anything is written to it. ``read_only`` (status, report): nothing is created and a SQLite file is opened
    read-only; a database without Optuna's tables reads as one without studies."""
    if url.startswith("journal://"):
        return _open_journal(Path(url[len("journal://"):]), url)
    parsed = parse_url(url)
    sqlite_file = is_sqlite_file(parsed)
    if sqlite_file:
        prepare_sqlite_file(parsed, url, write=not read_only)
        tables = check_sqlite_file(parsed, url)
    else:
        tables = _check_server(parsed, url)
    if read_only and "studies" not in tables:
        return optuna.storages.InMemoryStorage()
    options = engine_options(parsed)
    if read_only and sqlite_file:
        options["creator"] = read_only_sqlite(Path(parsed.database))

    def create() -> RDBStorage:
        storage = RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=options,
            skip_table_creation=read_only,
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=retry_callback(),
        )
        if parsed.get_backend_name() != "sqlite":
            # A server restart under running workers pauses them (pool_pre_ping finds the cut connections),
            # instead of failing every trial that reports a fold during the restart.
            wait_for_server_restarts(storage.engine)
        elif sqlite_file and not read_only:
            # Without it two local workers can both pop the same enqueued (or re-queued) trial, train it twice
            # and the slower one crashes on "Cannot tell a COMPLETE trial". The connections RDBStorage opened
            # while creating its tables predate the setting: drop them.
            configure_sqlite(storage.engine, write=True)
            storage.engine.dispose()
        return storage

    try:
        with driver_errors(url, parsed):
            return retry_creation(create)
    except DBAPIError as error:
        raise UserError(f"cannot open storage {redact_url(url)}: {driver_message(error)}") from None


def _open_journal(path: Path, url: str) -> JournalStorage:
    _check_journal(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    except OSError as error:
        raise UserError(f"cannot open the journal storage {redact_url(url)}: {error.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        # JSONDecodeError and UnicodeDecodeError are ValueErrors; a record of the wrong shape is a Key/TypeError.
        raise UserError(f"the journal {path} is not an Optuna journal or is corrupt ({type(error).__name__}: "
                        f"{str(error)[:80]}); expected a file written by `benchmark tune --storage journal:///...`, "
                        "or a new path") from None


def _check_journal(path: Path) -> None:
    """Every line of an existing journal must be one JSON record of Optuna's: Optuna skips a bad last line when
    reading but fails only after appending to the file, so a foreign or corrupt file is refused before that."""
    import json

    try:
        with path.open("rb") as f:
            for number, line in enumerate(f, start=1):
                problem = None
                if not line.endswith(b"\n"):
                    problem = "is incomplete (a write was cut short; remove it to continue)"
                else:
                    try:
                        record = json.loads(line)
                    except ValueError:  # JSONDecodeError, UnicodeDecodeError
                        record = None
                    if not isinstance(record, dict) or not isinstance(record.get("op_code"), int):
                        problem = "is not an Optuna journal record"
                if problem:
                    raise UserError(f"the journal {path} is corrupt: line {number} {problem}; expected a file written "
                                    "by `benchmark tune --storage journal:///...`, or a new path")
    except FileNotFoundError:
        return
    except IsADirectoryError:
        raise UserError(f"the journal {path} is a folder; expected a file") from None
    except OSError as error:
        raise UserError(f"cannot read the journal {path}: {error.strerror}") from None


def _check_server(parsed, url: str) -> set[str]:
    """Connect once to a database server and check its tables before Optuna creates any; returns the tables."""
    from sqlalchemy import create_engine

    with driver_errors(url, parsed):
        engine = create_engine(parsed, **engine_options(parsed))
    try:
        with user_errors(url, "cannot open storage"), engine.connect() as conn:
            return check_schema(conn, url, whole_file=False)
    finally:
        engine.dispose()
