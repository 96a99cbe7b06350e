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
from benchmark.results.db import (configure_sqlite, driver_errors, driver_message, engine_options, is_sqlite_file,
                                  parse_url, prepare_sqlite_file, retry_creation, wait_for_server_restarts)
from benchmark.redaction import redact_url

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
MAX_RETRIES = 3


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Re-queue a dead worker's trial with the same parameters, keeping the folds it had reported."""
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise UserError(f"cannot create the folder for storage {redact_url(url)}: {error.strerror}") from None
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    parsed = parse_url(url)
    sqlite_file = is_sqlite_file(parsed)
    if sqlite_file:
        prepare_sqlite_file(parsed, url, write=True)

    def create() -> RDBStorage:
        storage = RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=engine_options(parsed),
            heartbeat_interval=HEARTBEAT_INTERVAL_S,
            grace_period=GRACE_PERIOD_S,
            heartbeat_stale_trial_callback=retry_callback(),
        )
        if parsed.get_backend_name() != "sqlite":
            # A server restart under running workers pauses them (pool_pre_ping finds the cut connections),
            # instead of failing every trial that reports a fold during the restart.
            wait_for_server_restarts(storage.engine)
        elif sqlite_file:
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
