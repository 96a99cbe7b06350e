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
import time
from pathlib import Path

import optuna
import sqlalchemy.exc
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock, JournalStorage
from sqlalchemy.engine import make_url

from benchmark.errors import UserError
from benchmark.results.provenance import redact_url
from benchmark.results.store import (DEFAULT_STORAGE, configure_sqlite, driver_message, wait_for_server_restarts,
                                     with_installed_postgres_driver)

logger = logging.getLogger(__name__)

HEARTBEAT_INTERVAL_S = 30
GRACE_PERIOD_S = 120
SQLITE_LOCK_TIMEOUT_S = 120
MAX_RETRIES = 3
_CREATE_ATTEMPTS = 5


def retry_callback() -> RetryHeartbeatStaleTrialCallback:
    """Re-queue a dead worker's trial with the same parameters, keeping the folds it had reported."""
    return RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRIES, inherit_intermediate_values=True)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    if url.startswith("journal://"):
        path = Path(url[len("journal://"):])
        _ensure_parent(path, url)
        return JournalStorage(JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path))))
    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise UserError(f"cannot parse storage URL {redact_url(url)!r}; expected e.g. {DEFAULT_STORAGE}, "
                        "postgresql://user@host/db or journal:///path/file.log") from None
    parsed = with_installed_postgres_driver(parsed)
    engine_kwargs: dict = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _ensure_parent(Path(parsed.database), url)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_LOCK_TIMEOUT_S}
    else:
        engine_kwargs["pool_pre_ping"] = True
    # Several processes starting at once race to create Optuna's tables; the loser retries.
    for attempt in range(1, _CREATE_ATTEMPTS + 1):
        try:
            storage = RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=engine_kwargs,
                heartbeat_interval=HEARTBEAT_INTERVAL_S,
                grace_period=GRACE_PERIOD_S,
                heartbeat_stale_trial_callback=retry_callback(),
            )
            if parsed.get_backend_name() != "sqlite":
                # A server restart under running workers pauses them (pool_pre_ping above finds the cut
                # connections), instead of failing every trial that reports a fold during the restart.
                wait_for_server_restarts(storage.engine)
            elif parsed.database not in (None, "", ":memory:"):
                # Without it two local workers can both pop the same enqueued (or re-queued) trial, train it twice
                # and the slower one crashes on "Cannot tell a COMPLETE trial". The connections RDBStorage opened
                # while creating its tables predate the setting: drop them.
                configure_sqlite(storage.engine, write=True)
                storage.engine.dispose()
            return storage
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.IntegrityError) as error:
            if attempt == _CREATE_ATTEMPTS or not _is_creation_race(error):
                raise UserError(f"cannot open storage {redact_url(url)}: {driver_message(error)}") from None
            time.sleep(0.5 * attempt)
        except (ImportError, ModuleNotFoundError) as error:
            raise UserError(f"storage {redact_url(url)} needs a database driver that is not installed: {error.name}; "
                            "for PostgreSQL: pip install '.[postgres]'") from None
        except sqlalchemy.exc.NoSuchModuleError:
            raise UserError(f"unknown database in storage URL {redact_url(url)}; expected sqlite, postgresql, mysql "
                            "or journal") from None
    raise AssertionError("unreachable")


def _is_creation_race(error: Exception) -> bool:
    text = str(error).lower()
    return "already exists" in text or "unique" in text or "locked" in text or "duplicate" in text


def _ensure_parent(path: Path, url: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the folder for storage {redact_url(url)}: {error.strerror}") from None
