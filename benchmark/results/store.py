"""Writing results: one short transaction per write, so a crash never loses a result already recorded.

Any SQLAlchemy URL works; the default SQLite file is the one the Optuna study uses, next to Optuna's tables.
SQLite is opened in WAL mode with a long busy timeout and every write transaction starts with
``BEGIN IMMEDIATE``: several worker processes then queue for the write lock instead of failing with
"database is locked" (a deferred transaction that reads first and writes later fails at once instead of waiting).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from sqlalchemy import Engine, create_engine, delete, event, insert, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError

from benchmark.errors import UserError
from benchmark.results.provenance import redact_secrets, redact_url
from benchmark.results.schema import (
    RUN_KINDS,
    RUN_STATUSES,
    Base,
    EpochCurve,
    FoldResult,
    Meta,
    ProxyDiagnostic,
    Run,
    TestResult,
)

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///results/benchmark.db"
SQLITE_BUSY_TIMEOUT_S = 60
_CONNECT_TIMEOUT_S = 10
_CREATE_ATTEMPTS = 3
# How long a worker waits for a database server that went away (restart, failover) before it gives up.
RECONNECT_WAIT_S = 120
_EXAMPLE_URLS = "e.g. sqlite:///results/benchmark.db or postgresql://user@host:5432/dbname"

# Validation metric names (pytorch-metric-learning's AccuracyCalculator) -> bm_fold_results columns.
_VAL_COLUMNS = {
    "precision_at_1": "val_precision_at_1",
    "r_precision": "val_r_precision",
    "mean_average_precision_at_r": "val_map_at_r",
}
_EPOCH_FIELDS = frozenset(
    column.name for column in EpochCurve.__table__.columns if column.name not in {"id", "run_id", "fold"}
)


class ResultsStore:
    """The ``bm_*`` tables of one database; creates them on first use."""

    def __init__(self, url: str = DEFAULT_STORAGE):
        self.url = redact_url(url)  # safe to log and print
        self._engine = make_engine(url, write=True)
        try:
            with user_errors(url, "cannot create the results tables in"):
                self.create_tables()
        except UserError:
            self._engine.dispose()
            raise

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def create_tables(self) -> None:
        """Create the missing ``bm_*`` tables; safe to call again and from several processes at once."""
        for attempt in range(1, _CREATE_ATTEMPTS + 1):
            try:
                with self._engine.begin() as conn:
                    Base.metadata.create_all(conn, checkfirst=True)
                return
            except DBAPIError as error:
                # Another process created a table between our check and our CREATE ("already exists").
                if attempt == _CREATE_ATTEMPTS or not _is_duplicate_object(error):
                    raise
                logger.debug("tables created concurrently, checking again: %s", error.orig)

    # ---- runs -------------------------------------------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        study_name: str,
        dataset: str,
        loss: str,
        protocol: str,
        params: dict,
        config: dict,
        seed: int,
        split_hash: str,
        provenance: dict,
        trial_number: int | None = None,
        reproduction: int | None = None,
    ) -> int:
        """Record a new run with status "running" and return its id."""
        if kind not in RUN_KINDS:
            raise ValueError(f"run kind {kind!r} is not one of {RUN_KINDS}")
        values = {
            "kind": kind,
            "study_name": study_name,
            "dataset": dataset,
            "loss": loss,
            "protocol": protocol,
            "trial_number": _int_or_none(trial_number),
            "reproduction": _int_or_none(reproduction),
            "seed": int(seed),
            "params": redact_secrets(params),
            "config": redact_secrets(config),
            "split_hash": split_hash,
            "provenance": redact_secrets(provenance),
            "status": "running",
            "created_at": _now(),
        }
        with self._engine.begin() as conn:
            result = conn.execute(insert(Run).values(values))
        return int(result.inserted_primary_key[0])

    def finish_run(self, run_id: int, status: str, objective: float | None = None) -> None:
        """Mark a run complete, failed or pruned, with its objective (mean validation MAP@R for a trial)."""
        _check_final_status(status)
        with self._engine.begin() as conn:
            _finish(conn, run_id, status, objective)

    def record_fold(
        self,
        run_id: int,
        fold: int,
        status: str,
        best_epoch: int | None,
        epochs_trained: int,
        seconds: float,
        val_metrics: Mapping,
    ) -> None:
        """Record (or replace) one fold's outcome; ``val_metrics`` uses AccuracyCalculator's names.

        Accepted keys: precision_at_1, r_precision, mean_average_precision_at_r, recall_at_k ({k: value}) or
        recall_at_<k>. An empty mapping (no validation happened) leaves the scores NULL.
        """
        values = {"val_precision_at_1": None, "val_r_precision": None, "val_map_at_r": None}
        recall = {}
        for name, value in flatten_metrics(val_metrics).items():
            if name in _VAL_COLUMNS:
                values[_VAL_COLUMNS[name]] = value
            elif name.startswith("recall_at_"):
                recall[name.removeprefix("recall_at_")] = value
            else:
                raise ValueError(f"unknown validation metric {name!r}; expected {sorted(_VAL_COLUMNS)} or recall_at_k")
        row = {
            "run_id": run_id,
            "fold": int(fold),
            "status": status,
            "best_epoch": _int_or_none(best_epoch),
            "epochs_trained": int(epochs_trained),
            "seconds": float(seconds),
            "val_recall_at_k": recall or None,
            **values,
        }
        with self._engine.begin() as conn:
            conn.execute(delete(FoldResult).where(FoldResult.run_id == run_id, FoldResult.fold == row["fold"]))
            conn.execute(insert(FoldResult).values(row))

    def record_epochs(self, run_id: int, fold: int, rows: Iterable[Mapping]) -> None:
        """Record (or replace) epochs of one fold.

        Each row: epoch (required), loss, val_precision_at_1, val_r_precision, val_map_at_r, lrs ({group: lr}),
        scale, seconds; missing keys are NULL (e.g. the validation scores of epochs without validation).
        """
        records = []
        for row in rows:
            unknown = set(row) - _EPOCH_FIELDS
            if unknown or "epoch" not in row:
                raise ValueError(f"epoch row keys {sorted(row)}: need 'epoch', may have {sorted(_EPOCH_FIELDS)}")
            record = {field: None for field in _EPOCH_FIELDS}
            for field, value in row.items():
                if field == "epoch":
                    record[field] = int(value)
                elif field == "lrs":
                    record[field] = None if value is None else {str(k): _float(v) for k, v in value.items()}
                else:
                    record[field] = _float(value)
            records.append({"run_id": run_id, "fold": int(fold), **record})
        if not records:
            return
        epochs = [record["epoch"] for record in records]
        with self._engine.begin() as conn:
            conn.execute(
                delete(EpochCurve).where(
                    EpochCurve.run_id == run_id, EpochCurve.fold == int(fold), EpochCurve.epoch.in_(epochs)
                )
            )
            conn.execute(insert(EpochCurve), records)

    # ---- test results -----------------------------------------------------------------------------------------

    def record_proxy_diagnostics(self, run_id: int, fold: int, rows: Iterable[Mapping]) -> None:
        """Record (or replace) the proxy-cosine summaries of one fold: rows of ``{"epoch": e, **summary}`` as
        ``benchmark.evaluation.proxy_diagnostics.proxy_cosine_summary`` returns them."""
        records = []
        for row in rows:
            summary = {k: v for k, v in row.items() if k not in {"epoch", "pairs", "mean", "variance"}}
            records.append({"run_id": run_id, "fold": int(fold), "epoch": int(row["epoch"]), "pairs": int(row["pairs"]),
                            "mean": _float(row["mean"]), "variance": _float(row["variance"]),
                            "summary": _jsonable(summary)})
        if not records:
            return
        with self._engine.begin() as conn:
            conn.execute(delete(ProxyDiagnostic).where(
                ProxyDiagnostic.run_id == run_id, ProxyDiagnostic.fold == int(fold),
                ProxyDiagnostic.epoch.in_([r["epoch"] for r in records])))
            conn.execute(insert(ProxyDiagnostic), records)

    def record_test_metrics(
        self,
        run_id: int,
        study_name: str,
        dataset: str,
        loss: str,
        protocol: str,
        reproduction: int,
        seed: int,
        metrics: Mapping[str, Mapping],
    ) -> None:
        """Record a reproduction's test metrics, ``{mode: {metric: value}}``, and mark its run complete.

        Modes are "separated_128" and "concatenated_512"; ``recall_at_k`` ({1: v, 2: v}) is stored as
        recall_at_1, recall_at_2. All modes and the run's completion are one transaction, so a crash cannot
        leave half a reproduction. Recording again from the same run replaces its rows; recording a reproduction
        that another run completed raises ValueError.
        """
        if not metrics or not all(isinstance(values, Mapping) and values for values in metrics.values()):
            raise ValueError(f"test metrics must be {{mode: {{metric: value}}}}, got keys {sorted(metrics)}")
        reproduction = int(reproduction)
        rows = [
            {
                "run_id": run_id,
                "study_name": study_name,
                "dataset": dataset,
                "loss": loss,
                "protocol": protocol,
                "reproduction": reproduction,
                "seed": int(seed),
                "mode": mode,
                "metric": metric,
                "value": value,
            }
            for mode, values in metrics.items()
            for metric, value in flatten_metrics(values).items()
        ]
        same_reproduction = (TestResult.study_name == study_name, TestResult.reproduction == reproduction)
        with self._engine.begin() as conn:
            owner = conn.execute(
                select(Run.id)
                .join(TestResult, TestResult.run_id == Run.id)
                .where(*same_reproduction, Run.id != run_id, Run.status == "complete")
                .limit(1)
            ).first()
            if owner is not None:
                raise ValueError(
                    f"reproduction {reproduction} of study {study_name!r} was already completed by run {owner[0]}"
                )
            conn.execute(delete(TestResult).where(*same_reproduction))
            _finish(conn, run_id, "complete", None)
            conn.execute(insert(TestResult), rows)

    def completed_reproductions(self, study_name: str) -> set[int]:
        """Reproduction numbers of ``study_name`` whose test run completed."""
        with self._engine.connect() as conn:
            found = conn.execute(
                select(Run.reproduction).distinct().where(
                    Run.study_name == study_name,
                    Run.kind == "test",
                    Run.status == "complete",
                    Run.reproduction.is_not(None),
                )
            )
            return {int(value) for value in found.scalars()}

    def running_runs(self, study_name: str) -> list[dict]:
        """Runs of ``study_name`` still marked running: id, kind, trial number, reproduction, hostname and pid."""
        with self._engine.connect() as conn:
            rows = conn.execute(
                select(Run.id, Run.kind, Run.trial_number, Run.reproduction, Run.provenance).where(
                    Run.study_name == study_name, Run.status == "running"
                )
            )
            return [{"run_id": row.id, "kind": row.kind, "trial_number": row.trial_number,
                     "reproduction": row.reproduction, "hostname": (row.provenance or {}).get("hostname"),
                     "pid": (row.provenance or {}).get("pid")} for row in rows]

    def mark_abandoned(self, run_ids: Iterable[int]) -> None:
        """Close runs whose process died mid-run as failed; one that finished in the meantime keeps its status."""
        ids = [int(run_id) for run_id in run_ids]
        if not ids:
            return
        with self._engine.begin() as conn:
            conn.execute(update(Run).where(Run.id.in_(ids), Run.status == "running")
                         .values(status="failed", finished_at=_now()))

    # ---- key/value facts --------------------------------------------------------------------------------------

    def get_meta(self, key: str, default=None):
        with self._engine.connect() as conn:
            row = conn.execute(select(Meta.value).where(Meta.key == key)).first()
        return default if row is None else row[0]

    def set_meta(self, key: str, value) -> None:
        """Store ``value`` (any JSON value) under ``key``, replacing what was there."""
        for retry in (False, True):
            try:
                with self._engine.begin() as conn:
                    if conn.execute(update(Meta).where(Meta.key == key).values(value=value)).rowcount == 0:
                        conn.execute(insert(Meta).values(key=key, value=value))
                return
            except IntegrityError:
                # Another process inserted the key first; the retry updates it.
                if retry:
                    raise

    def setdefault_meta(self, key: str, value):
        """Store ``value`` under ``key`` unless a value is there already; return the stored value.

        The first writer wins, also across processes (e.g. the split hash a study was created on).
        """
        try:
            with self._engine.begin() as conn:
                row = conn.execute(select(Meta.value).where(Meta.key == key)).first()
                if row is not None:
                    return row[0]
                conn.execute(insert(Meta).values(key=key, value=value))
        except IntegrityError:
            logger.debug("meta key %s inserted concurrently", key)
        return self.get_meta(key)


# ---- engine -----------------------------------------------------------------------------------------------------


def make_engine(url: str, *, write: bool) -> Engine:
    """An engine for ``url`` that has connected once; bad URLs raise a one-line UserError with the URL redacted.

    ``write=False`` (the read API) refuses a missing SQLite file instead of creating an empty one.
    """
    shown = redact_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"not a database URL: {shown!r}; expected {_EXAMPLE_URLS}") from None
    parsed = with_installed_postgres_driver(parsed)
    options: dict = {"json_serializer": _json_dumps}
    connect_args: dict = {}
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        _prepare_sqlite_file(parsed, shown, write=write)
        connect_args["timeout"] = SQLITE_BUSY_TIMEOUT_S
    else:
        options["pool_pre_ping"] = True
        if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
            connect_args["connect_timeout"] = _CONNECT_TIMEOUT_S
    try:
        engine = create_engine(parsed, connect_args=connect_args, **options)
    except NoSuchModuleError:
        raise UserError(
            f"unknown database dialect {parsed.drivername!r} in {shown}; expected {_EXAMPLE_URLS}"
        ) from None
    except ImportError as error:
        hint = " (pip install 'dml-benchmark[postgres]' installs psycopg2, used by postgresql:// URLs)" if parsed.get_backend_name() == "postgresql" else ""
        raise UserError(
            f"the database driver {error.name!r} for {shown} is not installed; install it{hint} or name an installed "
            f"driver in the URL (dialect+driver://...)"
        ) from None
    except (ArgumentError, TypeError) as error:
        raise UserError(f"bad database URL {shown}: {_first_line(error, url)}") from None
    if sqlite:
        configure_sqlite(engine, write=write)
    try:
        with user_errors(url, "cannot connect to the results database"), engine.connect() as conn:
            conn.execute(select(1))
    except UserError:
        engine.dispose()
        raise
    if not sqlite:
        wait_for_server_restarts(engine)
    return engine


def wait_for_server_restarts(engine: Engine, wait_s: float = RECONNECT_WAIT_S) -> None:
    """Retry ``engine``'s new connections for up to ``wait_s`` while the server is down, instead of failing at once.

    Call it once the engine has connected: a server that answered and then restarts (maintenance, failover) costs a
    long-running worker a pause, not its trial; a server never reached still fails at once. ``pool_pre_ping``
    notices the pooled connections the restart cut and reconnects through here; a query the restart interrupts
    still fails (nothing can tell whether it committed)."""

    @event.listens_for(engine, "do_connect")
    def _connect(dialect, _record, cargs, cparams):
        deadline = time.monotonic() + wait_s
        first = True
        while True:
            try:
                return dialect.connect(*cargs, **cparams)
            except dialect.loaded_dbapi.OperationalError as error:
                if time.monotonic() > deadline:
                    raise
                if first:
                    first = False
                    logger.warning("database unreachable (%s); retrying for up to %.0f s",
                                   _first_line(error, engine.url.render_as_string(hide_password=False)), wait_s)
                time.sleep(2)


def database_error(error: BaseException | None) -> OperationalError | None:
    """The database error behind ``error`` (Optuna may wrap it, or raise another while handling it), or None.

    Its ``connection_invalidated`` tells a connection cut mid-query (a server restart) from a refused query."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OperationalError):
            return error
        error = error.__cause__ or error.__context__
    return None


def driver_message(error: DBAPIError) -> str:
    """The first line of what the database driver said."""
    return _first_line(error.orig if error.orig is not None else error)


@contextmanager
def user_errors(url: str, what: str) -> Iterator[None]:
    """Turn a database error raised inside the block into a one-line UserError naming the redacted URL."""
    try:
        yield
    except DBAPIError as error:
        raise UserError(f"{what} {redact_url(url)}: {_first_line(error.orig, url)}") from None


def with_installed_postgres_driver(parsed: URL) -> URL:
    """A plain ``postgresql://`` means psycopg (3) to SQLAlchemy 2.1, but this project's extra installs psycopg2."""
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return parsed.set(drivername="postgresql+psycopg2")
    return parsed


def _prepare_sqlite_file(parsed: URL, shown: str, *, write: bool) -> None:
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("uri") or database.startswith("file:"):
        return
    path = Path(database)
    if not write:
        if not path.is_file():
            raise UserError(f"no results database at {path} (from {shown}); run a study first or pass --storage")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create the folder {path.parent} for the results database {shown}: {error.strerror}"
        ) from None
    # WAL mode writes <db>-wal and <db>-shm next to the file: the folder itself must be writable.
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"the results database {shown} is not writable; expected a writable file and folder")


def configure_sqlite(engine: Engine, *, write: bool) -> None:
    """Real transactions on a SQLite engine: its connections made from now on begin each one themselves.

    Python's sqlite3 module opens a transaction only at the first write, so a read-then-update (Optuna popping a
    WAITING trial, us checking a run before writing it) is not atomic across processes: two of them can both read
    the row as free. ``BEGIN IMMEDIATE`` takes the write lock at the start; a writer that finds it taken waits for
    the busy timeout instead of failing."""
    begin = "BEGIN IMMEDIATE" if write else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):
        # Take transaction control from the sqlite3 module so that our BEGIN below is the one that runs.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if write:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql(begin)


def _is_duplicate_object(error: DBAPIError) -> bool:
    text = str(error.orig).lower()
    return "already exists" in text or "duplicate" in text or isinstance(error, IntegrityError)


def _first_line(error: BaseException | None, url: str | None = None) -> str:
    """The first line of a driver's message, with the URL's password cut out should the driver echo it."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    try:
        password = make_url(url).password if url else None
    except ArgumentError:
        password = None
    return text.replace(str(password), "***") if password else text


# ---- values -----------------------------------------------------------------------------------------------------


def flatten_metrics(metrics: Mapping) -> dict[str, float | None]:
    """``{"recall_at_k": {1: a, 2: b}, "r_precision": c}`` -> ``{"recall_at_1": a, "recall_at_2": b, "r_precision": c}``.

    Non-finite values become None (stored as NULL).
    """
    flat: dict[str, float | None] = {}
    for name, value in metrics.items():
        if isinstance(value, Mapping):
            if not name.endswith("_at_k"):
                raise ValueError(f"metric {name!r} has a mapping value; only <name>_at_k metrics may ({{k: value}})")
            items = {f"{name.removesuffix('k')}{k}": v for k, v in value.items()}
        else:
            items = {name: value}
        for flat_name, flat_value in items.items():
            if flat_name in flat:
                raise ValueError(f"metric {flat_name!r} given twice")
            flat[flat_name] = _float(flat_value)
    return flat


def _finish(conn, run_id: int, status: str, objective) -> None:
    done = conn.execute(
        update(Run).where(Run.id == run_id).values(status=status, objective=_float(objective), finished_at=_now())
    )
    if done.rowcount == 0:
        raise ValueError(f"no run with id {run_id}")


def _check_final_status(status: str) -> None:
    if status not in RUN_STATUSES or status == "running":
        raise ValueError(f"final run status {status!r} is not one of {[s for s in RUN_STATUSES if s != 'running']}")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _float(value) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _int_or_none(value) -> int | None:
    return None if value is None else int(value)


def _jsonable(value):
    # JSON has no NaN and no numpy types; PostgreSQL rejects NaN in json, SQLite would store invalid JSON.
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _json_dumps(value) -> str:
    return json.dumps(_jsonable(value), allow_nan=False)
