"""Store selection in the CLI and `check_connection`, against a real PostgreSQL
(FACEBATCH_TEST_PG_DSN; skipped without it): db init / db check, a real register batch and
a resume by a second process, all on Postgres."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import conninfo

from facebatch_gui.core.records import Operation, TaskStatus, UserEntry
from facebatch_gui.core.store.config import (
    Problem,
    StoreConfig,
    StoreKind,
    check_connection,
    open_store,
)
from facebatch_gui.core.store.postgres import PostgresStore
from tests.support.imageserver import ImageServer
from tests.test_cli import cli, write_csv
from tests.test_store_contract import OTHER_PACK, PACK, _face, _ok


@pytest.fixture
def empty_db(pg_session_dsn: str) -> Iterator[str]:
    """A database without the schema, dropped afterwards."""
    name = f"facebatch_empty_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield conninfo.make_conninfo(pg_session_dsn, dbname=name)
    with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg(dsn: str) -> StoreConfig:
    return StoreConfig(kind=StoreKind.POSTGRES, dsn=dsn)


def test_db_init_applies_the_schema_and_db_check_reports(empty_db: str) -> None:
    before = cli("db", "check", "--store", "postgres", "--dsn", empty_db)
    assert before.returncode == 1
    assert "schema is missing" in before.stdout
    for _ in range(2):  # idempotent
        out = cli("db", "init", "--store", "postgres", "--dsn", empty_db)
        assert out.returncode == 0, out.stderr
    after = cli("db", "check", "--store", "postgres", "--dsn", empty_db)
    assert after.returncode == 0, after.stdout + after.stderr
    assert "Connected to PostgreSQL" in after.stdout
    assert "0 faces enrolled" in after.stdout
    assert "password" not in after.stdout


def test_check_connection_names_each_problem(pg_dsn: str, empty_db: str) -> None:
    assert check_connection(_pg(pg_dsn), PACK).ok
    missing = check_connection(_pg(empty_db), PACK)
    assert (missing.ok, missing.problem) == (False, Problem.SCHEMA_MISSING)
    assert "db init" in missing.message
    dead = check_connection(_pg("host=127.0.0.1 port=9 dbname=x user=x connect_timeout=2"))
    assert (dead.ok, dead.problem) == (False, Problem.UNREACHABLE)
    nobody = conninfo.make_conninfo(pg_dsn, user="no_such_role_fb", password="x")
    creds = check_connection(_pg(nobody))
    assert (creds.ok, creds.problem) == (False, Problem.BAD_CREDENTIALS)
    store = open_store(_pg(pg_dsn))
    try:
        store.commit_registration(
            None, 0, _face("c", 1, OTHER_PACK), _ok("c"), replace=False, create_user=True
        )
    finally:
        store.close()
    wrong = check_connection(_pg(pg_dsn), PACK)
    assert (wrong.ok, wrong.problem, wrong.faces) == (False, Problem.WRONG_PACK, 1)
    assert "other-pack" in wrong.message
    assert check_connection(_pg(pg_dsn), OTHER_PACK).ok


def test_wrong_password_is_bad_credentials(pg_dsn: str) -> None:
    """Needs a server that checks passwords (.ci/run starts one with scram-sha-256)."""
    params = conninfo.conninfo_to_dict(pg_dsn)
    bad = conninfo.make_conninfo(pg_dsn, password="definitely-wrong")
    try:
        psycopg.connect(bad, connect_timeout=5).close()
    except psycopg.OperationalError:
        pass
    else:
        pytest.skip(f"the server at {params.get('host')} trusts logins; no password to get wrong")
    report = check_connection(_pg(bad))
    assert (report.ok, report.problem) == (False, Problem.BAD_CREDENTIALS)
    assert "password authentication failed" in report.message


def test_persisted_settings_hold_no_secrets() -> None:
    config = StoreConfig(
        kind=StoreKind.SUPABASE,
        dsn="host=db.example user=postgres password=hunter2 dbname=postgres",
        supabase_url="https://x.supabase.co",
        supabase_key="service-secret",
    )
    text = json.dumps(config.persisted())
    assert "hunter2" not in text
    assert "service-secret" not in text
    assert "db.example" in text
    assert config.resolved_supabase_key() == "service-secret"
    again = StoreConfig.model_validate(config.persisted())
    assert again.supabase_url == "https://x.supabase.co"


def test_delete_batch_and_task_list_on_postgres(pg_dsn: str) -> None:
    store = PostgresStore(pg_dsn)
    try:
        store.commit_registration(
            None, 0, _face("rose"), _ok("rose"), replace=False, create_user=True
        )
    finally:
        store.close()
    out = cli("delete", "--ids", "rose,nobody", "--store", "postgres", "--dsn", pg_dsn, "--json")
    assert out.returncode == 1, out.stderr
    record = json.loads(out.stdout)
    assert [r["status"] for r in record["results"]] == [True, False]
    listing = cli("tasks", "--store", "postgres", "--dsn", pg_dsn, "--json")
    assert listing.returncode == 0, listing.stderr
    assert [t["task_id"] for t in json.loads(listing.stdout)] == [record["task_id"]]


@pytest.mark.models
def test_register_on_postgres_and_resume_from_another_process(
    tmp_path: Path, pg_dsn: str, image_server: ImageServer, model_dir: Path
) -> None:
    """A real batch enrolls alex into Postgres; then another instance (machine A) claims a task,
    settles its first item (alex again: refused) and stops heartbeating; `facebatch resume` in a
    new process finds the task interrupted and runs the two pending items."""
    listing = write_csv(
        tmp_path / "a.csv",
        [("alex", image_server.url("faces/identities/alex_lacamoire/1.jpg"))],
    )
    args = ("--store", "postgres", "--dsn", pg_dsn, "--model-dir", str(model_dir))
    out = cli("register", str(listing), *args, "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["completed_items"] == 1

    other = PostgresStore(pg_dsn, owner="machine-a:1")
    try:
        entries = [
            UserEntry("alex", image_server.url("faces/identities/alex_lacamoire/2.jpg")),
            UserEntry("kit", image_server.url("faces/identities/kit_harington/1.jpg")),
            UserEntry("gone", image_server.url("status/404")),
        ]
        task = other.create_task(Operation.REGISTER, entries, {"replace": False})
        other.claim_task(task.task_id)
        other.commit_registration(
            task.task_id, 0, _face("alex", 5, PACK), _ok("alex"), replace=False, create_user=True
        )
    finally:
        other.close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # machine A stopped 5 minutes ago
        conn.execute(
            "UPDATE tasks SET heartbeat_at = now() - interval '5 minutes' WHERE task_id = %s",
            (task.task_id,),
        )
    resumed = cli("resume", task.task_id, *args, "--json")
    assert "were interrupted" in resumed.stderr
    record = json.loads(resumed.stdout)
    assert record["status"] == TaskStatus.COMPLETED
    assert (record["completed_items"], record["failed_items"]) == (3, 2)
    by_user = {r["user_id"]: r for r in record["results"]}
    assert by_user["alex"]["error_code"] == "face_already_registered"  # settled by machine A
    assert by_user["kit"]["status"] is True
    assert by_user["gone"]["error_code"] == "download_failed"


def test_check_connection_on_sqlite_names_a_wrong_pack(tmp_path: Path) -> None:
    config = StoreConfig(kind=StoreKind.SQLITE, sqlite_path=tmp_path / "s.db")
    assert check_connection(config, PACK).ok
    store = open_store(config)
    store.commit_registration(
        None, 0, _face("c", 1, OTHER_PACK), _ok("c"), replace=False, create_user=True
    )
    store.close()
    report = check_connection(config, PACK)
    assert (report.ok, report.problem, report.faces) == (False, Problem.WRONG_PACK, 1)
    assert "SQLite" in report.message
