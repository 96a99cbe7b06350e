"""A throwaway PostgreSQL database for a test, on the server named by BENCHMARK_TEST_POSTGRES_URL (default: the
local one, postgresql://postgres@127.0.0.1:5432/test); the test is skipped when no server is reachable."""

from __future__ import annotations

import os
import uuid

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

ADMIN_URL = make_url(os.environ.get("BENCHMARK_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")).set(
    drivername="postgresql+psycopg2"
)


@pytest.fixture
def pg_url():
    """The URL (plain ``postgresql://``, as a user writes it) of a fresh database, dropped afterwards."""
    pytest.importorskip("psycopg2")
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"bm_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except DBAPIError as error:
        admin.dispose()
        pytest.skip(f"no usable PostgreSQL at {ADMIN_URL.render_as_string(hide_password=True)}: {error.__class__.__name__}")
    try:
        yield ADMIN_URL.set(drivername="postgresql", database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
