"""PostgreSQL for tests: a throwaway database per test, on a server that is either the one named by
BENCHMARK_TEST_POSTGRES_URL (default: the local one, postgresql://postgres@127.0.0.1:5432/test) or, where that one
does not answer or BENCHMARK_TEST_OWN_PG=1, a private server started for the session from the installed PostgreSQL
binaries (initdb, pg_ctl) in a temporary folder on a free port. Tests are skipped only when neither is possible."""

from __future__ import annotations

import glob
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

CONFIGURED_URL = make_url(os.environ.get("BENCHMARK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
                          ).set(drivername="postgresql+psycopg2")
# initdb refuses to run as root: as root the server runs as this system user (Debian's package creates it).
SERVER_USER = "postgres"


def find_pg_bin() -> Path | None:
    """The folder holding initdb and pg_ctl: on PATH, else the newest of Debian's /usr/lib/postgresql/<v>/bin."""
    on_path = [Path(p).resolve().parent for p in (shutil.which("initdb"), shutil.which("pg_ctl")) if p]
    debian = sorted(glob.glob("/usr/lib/postgresql/*/bin"),
                    key=lambda p: [int(n) for n in re.findall(r"\d+", Path(p).parent.name)], reverse=True)
    for folder in [*on_path, *map(Path, debian)]:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


class PrivateServer:
    """A PostgreSQL server of our own (trust auth, fsync off), for a test session or a test that restarts it."""

    def __init__(self):
        self.bin = find_pg_bin()
        if self.bin is None:
            pytest.skip("no PostgreSQL server answers and no initdb/pg_ctl binaries are installed to start one")
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            try:
                pwd.getpwnam(SERVER_USER)
            except KeyError:
                pytest.skip(f"running as root, and there is no {SERVER_USER!r} user to run initdb as")
            self._as_user = (["runuser", "-u", SERVER_USER, "--"] if shutil.which("runuser")
                             else ["su", SERVER_USER, "-s", "/bin/sh", "-c"])
        # Under /tmp, not pytest's tmp_path: that one's 0700 parents are closed to the server's user.
        self.root = Path(tempfile.mkdtemp(prefix="bm-test-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        if self._as_user:
            shutil.chown(self.root, SERVER_USER, SERVER_USER)
        self.port = _free_port()
        try:
            self._pg("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8")
            # Settings in the file, not on pg_ctl's command line, so that a restart keeps them.
            with open(self.data / "postgresql.conf", "a") as conf:
                conf.write(f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                           f"unix_socket_directories = '{self.root}'\n"
                           "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n")
            self.start()
        except BaseException:
            shutil.rmtree(self.root, ignore_errors=True)
            raise
        self.url = URL.create("postgresql+psycopg2", username="postgres", host="127.0.0.1", port=self.port,
                              database="postgres")

    def _pg(self, tool: str, *args: str) -> None:
        command = [str(self.bin / tool), *args]
        if self._as_user[:1] == ["su"]:
            command = [*self._as_user, shlex.join(command)]
        else:
            command = [*self._as_user, *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} {' '.join(args)} failed: {result.stderr.strip()}\n{log[-2000:]}")

    def start(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")

    def remove(self) -> None:
        try:
            self.stop("immediate")
        except RuntimeError:
            pass  # already stopped
        shutil.rmtree(self.root, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _answers(url: URL) -> bool:
    engine = create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except DBAPIError:
        return False
    finally:
        engine.dispose()


_session_admin_url: URL | None = None


def session_admin_url(config: pytest.Config) -> URL:
    """An administrator URL of a server for the whole session: the configured one if it answers (and
    BENCHMARK_TEST_OWN_PG is not 1), else a private one, started on first use and removed when the session ends.
    A cache rather than a session fixture, so that test modules need to import only ``pg_url``."""
    global _session_admin_url
    if _session_admin_url is None:
        if os.environ.get("BENCHMARK_TEST_OWN_PG") != "1" and _answers(CONFIGURED_URL):
            _session_admin_url = CONFIGURED_URL
        else:
            server = PrivateServer()
            config.add_cleanup(server.remove)
            _session_admin_url = server.url
    return _session_admin_url


@pytest.fixture
def private_pg():
    """A server of this test's own, which the test may stop and restart without disturbing any other."""
    pytest.importorskip("psycopg2")
    server = PrivateServer()
    try:
        yield server
    finally:
        server.remove()


def create_database(admin_url: URL) -> str:
    """A new database on ``admin_url``'s server: its plain ``postgresql://`` URL, as a user writes it."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"bm_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError as error:
        pytest.skip(f"cannot create a database on {admin_url.render_as_string(hide_password=True)}: "
                    f"{error.__class__.__name__}")
    finally:
        admin.dispose()
    return admin_url.set(drivername="postgresql", database=name).render_as_string(hide_password=False)


@pytest.fixture
def pg_url(request):
    """The URL (plain ``postgresql://``, as a user writes it) of a fresh database, dropped afterwards."""
    pytest.importorskip("psycopg2")
    admin_url = session_admin_url(request.config)
    url = create_database(admin_url)
    yield url
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()
