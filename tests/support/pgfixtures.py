"""Real PostgreSQL for the tests: one fresh database per session, emptied before each test.

`.ci/run` starts a throwaway server and exports FACEBATCH_TEST_PG_DSN (a login that may create
databases). Without it the Postgres tests skip and say so; see the README to run them locally.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import conninfo

from facebatch_gui.core.store.postgres import apply_schema

PG_ENV = "FACEBATCH_TEST_PG_DSN"


@pytest.fixture(scope="session")
def pg_session_dsn() -> Iterator[str]:
    """A new database `facebatch_test_<random>` with schema.sql applied; dropped at the end."""
    admin = os.environ.get(PG_ENV)
    if not admin:
        pytest.skip(f"{PG_ENV} is not set: no PostgreSQL to test against (.ci/run sets it)")
    name = f"facebatch_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = conninfo.make_conninfo(admin, dbname=name)
    try:
        apply_schema(dsn)
        yield dsn
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_session_dsn: str) -> str:
    """The session database, with every FaceBatch table emptied for this test."""
    with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE faces, task_items, tasks, users")
    return pg_session_dsn


SERVICE_KEY = "test-service-role-key." + "x" * 40


@pytest.fixture(scope="session")
def postgrest_standin(pg_session_dsn: str) -> Iterator[Any]:
    """The PostgREST/Storage stand-in (tests/support/postgrest.py) on the session database."""
    from tests.support.postgrest import PostgrestStandIn

    with PostgrestStandIn(pg_session_dsn, SERVICE_KEY) as server:
        yield server


@pytest.fixture
def standin(postgrest_standin: Any, pg_dsn: str) -> Any:
    """The stand-in with emptied tables, no recorded requests and no injected failures."""
    postgrest_standin.requests.clear()
    postgrest_standin.fail_next.clear()
    postgrest_standin.objects.clear()
    postgrest_standin.max_rows = 1000
    return postgrest_standin
