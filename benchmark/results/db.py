"""Database plumbing shared by the results tables (``results.store``) and Optuna's storage (``tuning.storage``).

One set of values and one place for: parsing a URL into a one-line error, the engine options, SQLite's
configuration (busy timeout, WAL, real transactions), waiting out a database server's restart, retrying the table
creation race between processes, and turning driver errors into one-line ``UserError``s with the URL redacted.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, event, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, OperationalError

from benchmark.errors import UserError
from benchmark.redaction import redact_url

logger = logging.getLogger(__name__)

DEFAULT_STORAGE = "sqlite:///results/benchmark.db"
# How long a SQLite writer queues for the write lock before "database is locked". The longer of the two values
# the results store (60 s) and Optuna's storage (120 s) used: a long trial's final write waiting longer costs
# nothing, while failing it loses the trial.
SQLITE_BUSY_TIMEOUT_S = 120
CONNECT_TIMEOUT_S = 10
# Processes starting at once race to create the same tables; the larger of the two former counts (3 and 5), with a
# growing pause, so that a crowd of workers starting together all get through.
CREATE_ATTEMPTS = 5
# How long a worker waits for a database server that went away (restart, failover) before it gives up.
RECONNECT_WAIT_S = 120
EXAMPLE_URLS = "e.g. sqlite:///results/benchmark.db, postgresql://user@host:5432/dbname or journal:///path/file.log"

T = TypeVar("T")


def parse_url(url: str) -> URL:
    """``url`` parsed, with the PostgreSQL driver this project installs; a one-line UserError when it is no URL."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # ValueError: a port that is not a number
        raise UserError(f"not a database URL: {redact_url(url)!r}; expected {EXAMPLE_URLS}") from None
    return with_installed_postgres_driver(parsed)


def is_sqlite_file(parsed: URL) -> bool:
    """A SQLite URL naming a file path (not in-memory, not a ``file:`` URI)."""
    database = parsed.database
    return (parsed.get_backend_name() == "sqlite" and bool(database) and database != ":memory:"
            and not parsed.query.get("uri") and not database.startswith("file:"))


def engine_options(parsed: URL) -> dict:
    """``create_engine`` keyword arguments for ``parsed``: busy timeout on SQLite, pre-ping and a connect timeout
    on servers."""
    if parsed.get_backend_name() == "sqlite":
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    connect_args = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = CONNECT_TIMEOUT_S
    return {"pool_pre_ping": True, "connect_args": connect_args}


@contextmanager
def driver_errors(url: str, parsed: URL) -> Iterator[None]:
    """Turn a missing dialect or driver, or a bad URL argument, raised while creating an engine into a UserError."""
    shown = redact_url(url)
    try:
        yield
    except NoSuchModuleError:
        raise UserError(f"unknown database dialect {parsed.drivername!r} in {shown}; expected {EXAMPLE_URLS}") from None
    except ImportError as error:
        postgres = parsed.get_backend_name() == "postgresql"
        hint = " (pip install 'dml-benchmark[postgres]' installs psycopg2, used by postgresql:// URLs)" if postgres else ""
        raise UserError(
            f"the database driver {error.name!r} for {shown} is not installed; install it{hint} or name an installed "
            f"driver in the URL (dialect+driver://...)"
        ) from None
    except (ArgumentError, TypeError) as error:
        raise UserError(f"bad database URL {shown}: {first_line(error, url)}") from None


def make_engine(url: str, *, write: bool, json_serializer: Callable | None = None) -> Engine:
    """An engine for ``url`` that has connected once; bad URLs raise a one-line UserError with the URL redacted.

    ``write=False`` (the read API) refuses a missing SQLite file instead of creating an empty one, and opens a SQLite
    file read-only. A database of another application is refused before anything is written to it.
    """
    parsed = parse_url(url)
    sqlite_file = is_sqlite_file(parsed)
    if sqlite_file:
        prepare_sqlite_file(parsed, url, write=write)
        check_sqlite_file(parsed, url)
    options = engine_options(parsed)
    if json_serializer is not None:
        options["json_serializer"] = json_serializer
    if sqlite_file and not write:
        options["creator"] = read_only_sqlite(Path(parsed.database))
    with driver_errors(url, parsed):
        engine = create_engine(parsed, **options)
    sqlite = parsed.get_backend_name() == "sqlite"
    if sqlite:
        configure_sqlite(engine, write=write)
    try:
        with user_errors(url, "cannot connect to the database"), engine.connect() as conn:
            conn.execute(select(1))
            if not sqlite_file:  # a SQLite file was checked above, before any connection could change it
                check_schema(conn, url, whole_file=False)
    except UserError:
        engine.dispose()
        raise
    if not sqlite:
        wait_for_server_restarts(engine)
    return engine


# ---- whose database is it ---------------------------------------------------------------------------------------

_SQLITE_MAGIC = b"SQLite format 3\x00"


def _expected_tables() -> dict[str, set[str]]:
    """Table -> columns of everything this program creates: Optuna's tables and the results tables."""
    from benchmark.results.schema import Base

    ours = {table.name: {column.name for column in table.columns} for table in Base.metadata.tables.values()}
    return {**_optuna_tables(), **ours}


@functools.cache
def _optuna_tables() -> dict[str, set[str]]:
    """Optuna's tables and their columns, read from a schema its public ``RDBStorage`` creates in memory (the models
    that define them are in a private module)."""
    import optuna
    from sqlalchemy import inspect

    storage = optuna.storages.RDBStorage("sqlite:///:memory:")
    try:
        with storage.engine.connect() as conn:
            inspector = inspect(conn)
            return {table: {column["name"] for column in inspector.get_columns(table)}
                    for table in inspector.get_table_names()}
    finally:
        storage.engine.dispose()


def check_sqlite_file(parsed: URL, url: str) -> set[str]:
    """An existing SQLite file must be a SQLite database of this program (or empty): checked read-only, before
    SQLAlchemy or Optuna open it, so that another application's file is left byte-identical (no tables, no WAL).
    Returns the tables it holds."""
    path = Path(parsed.database)
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except FileNotFoundError:
        return set()  # a new database
    except OSError as error:
        raise UserError(f"cannot read the database {redact_url(url)}: {error.strerror}") from None
    if not header:
        return set()  # an empty file is a new database to SQLite
    if not header.startswith(_SQLITE_MAGIC):
        raise UserError(f"{path} is not a SQLite database (from {redact_url(url)}); expected a database file made by "
                        "benchmark, or a path where one can be created")
    engine = create_engine("sqlite://", creator=read_only_sqlite(path))
    try:
        with user_errors(url, "cannot read the database"), engine.connect() as conn:
            return check_schema(conn, url, whole_file=True)
    finally:
        engine.dispose()


def check_schema(conn, url: str, *, whole_file: bool) -> set[str]:
    """Tables named like ours must have our columns; ``whole_file`` (a SQLite file): a file with tables, none of
    them ours, belongs to another application. Returns the tables present."""
    from sqlalchemy import inspect

    inspector = inspect(conn)
    present = set(inspector.get_table_names())
    if not present:
        return present  # a new database: nothing to compare
    expected = _expected_tables()
    ours = present & set(expected)
    if whole_file and present and not ours:
        shown = ", ".join(sorted(present)[:5]) + (", ..." if len(present) > 5 else "")
        raise UserError(f"{redact_url(url)} is another application's database (tables: {shown}); expected a "
                        "benchmark database or a new file")
    for table in sorted(ours):
        missing = expected[table] - {column["name"] for column in inspector.get_columns(table)}
        if missing:
            raise UserError(f"table {table} in {redact_url(url)} lacks the columns {', '.join(sorted(missing))}: the "
                            "database belongs to another application or an incompatible version; expected a "
                            "benchmark database or a new one")
    return present


def read_only_sqlite(path: Path) -> Callable:
    """A connection factory that opens ``path`` read-only and leaves no ``-wal``/``-shm`` files next to it.

    A read-only connection to a WAL-mode database creates (and cannot remove) those files; ``immutable`` avoids
    that. It is used only when no ``-wal`` file exists, i.e. no writer is in the middle of a session; otherwise the
    files are there already and a plain read-only connection sees the writer's committed transactions."""
    import sqlite3

    wal_mode = False
    try:
        with path.open("rb") as f:
            header = f.read(20)
        wal_mode = len(header) == 20 and header[18] == 2 and header[19] == 2
    except OSError:
        pass
    immutable = wal_mode and not path.with_name(path.name + "-wal").exists()
    uri = f"{path.resolve().as_uri()}?{'immutable=1' if immutable else 'mode=ro'}"

    def connect():
        return sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S, check_same_thread=False)

    return connect


def retry_creation(create: Callable[[], T]) -> T:
    """``create()``, retried while it loses the race of processes creating the same tables at once."""
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return create()
        except DBAPIError as error:
            if attempt == CREATE_ATTEMPTS or not is_creation_race(error):
                raise
            logger.debug("tables created concurrently, trying again: %s", driver_message(error))
            time.sleep(0.5 * attempt)
    raise AssertionError("unreachable")


def is_creation_race(error: DBAPIError) -> bool:
    """Another process created a table (or held SQLite's lock) between our check and our CREATE."""
    text = str(error.orig if error.orig is not None else error).lower()
    # "does not exist": a concurrent migration dropped the column we were about to drop (PostgreSQL).
    return (isinstance(error, IntegrityError)
            or any(word in text for word in ("already exists", "duplicate", "unique", "locked", "does not exist")))


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
                                   first_line(error, engine.url.render_as_string(hide_password=False)), wait_s)
                time.sleep(2)


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


def prepare_sqlite_file(parsed: URL, url: str, *, write: bool) -> None:
    """Reading: the file must exist. Writing: its folder is created and must be writable (WAL mode writes
    ``<db>-wal`` and ``<db>-shm`` next to the file)."""
    shown = redact_url(url)
    path = Path(parsed.database)
    if not write:
        if not path.is_file():
            raise UserError(f"no results database at {path} (from {shown}); run a study first or pass --storage")
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create the folder {path.parent} for the database {shown}: {error.strerror}") from None
    if not os.access(path.parent, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise UserError(f"the database {shown} is not writable; expected a writable file and folder")


def with_installed_postgres_driver(parsed: URL) -> URL:
    """A plain ``postgresql://`` means psycopg (3) to SQLAlchemy 2.1, but this project's extra installs psycopg2."""
    if parsed.drivername == "postgresql" and importlib.util.find_spec("psycopg") is None:
        if importlib.util.find_spec("psycopg2") is not None:
            return parsed.set(drivername="postgresql+psycopg2")
    return parsed


# ---- errors -----------------------------------------------------------------------------------------------------


@contextmanager
def user_errors(url: str, what: str) -> Iterator[None]:
    """Turn a database error raised inside the block into a one-line UserError naming the redacted URL."""
    try:
        yield
    except DBAPIError as error:
        raise UserError(f"{what} {redact_url(url)}: {first_line(error.orig, url)}") from None


def database_error(error: BaseException | None) -> DBAPIError | None:
    """The database error behind ``error`` (Optuna may wrap it, or raise another while handling it), or None.

    Its ``connection_invalidated`` tells a connection cut mid-query (a server restart) from a refused query."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, DBAPIError):
            return error
        error = error.__cause__ or error.__context__
    return None


# What drivers say when the server is away or busy: worth a rerun, unlike a refused query (no privilege, another
# schema, a read-only file), which a rerun repeats.
_TRANSIENT = ("could not connect", "connection refused", "server closed the connection", "terminating connection",
              "connection to server", "connection timed out", "timeout expired", "database is locked",
              "could not translate host name", "the database system is", "lost connection", "gone away",
              "disk is full", "no space left")


def is_transient(error: DBAPIError) -> bool:
    """A database that was unreachable or busy (a rerun resumes), rather than one that refused the query."""
    text = driver_message(error).lower()
    return error.connection_invalidated or (isinstance(error, OperationalError)
                                            and any(word in text for word in _TRANSIENT))


def driver_message(error: DBAPIError) -> str:
    """The first line of what the database driver said."""
    return first_line(error.orig if error.orig is not None else error)


def first_line(error: BaseException | None, url: str | None = None) -> str:
    """The first line of a driver's message, with the URL's password cut out should the driver echo it."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    try:
        password = make_url(url).password if url else None
    except (ArgumentError, ValueError):
        password = None
    return text.replace(str(password), "***") if password else text
