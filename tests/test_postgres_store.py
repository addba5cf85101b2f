"""Postgres store specifics on a real PostgreSQL (FACEBATCH_TEST_PG_DSN; skipped without it):
uniqueness races between instances, interrupted tasks resumed by another instance, atomicity,
the schema's idempotence and its users-table settings."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest

from facebatch_gui.core.errors import ErrorCode, StoreError
from facebatch_gui.core.records import ItemResult, Operation, TaskStatus, UserEntry
from facebatch_gui.core.store.postgres import PostgresStore, apply_schema, decode_embeddings
from tests.test_store_contract import PACK, _face, _ok, _vec


@pytest.fixture
def pg_store(pg_dsn: str) -> Iterator[PostgresStore]:
    s = PostgresStore(pg_dsn)
    yield s
    s.close()


def _race(stores: list[PostgresStore], user_ids: list[str], replace: bool) -> list[ItemResult]:
    """Every store registers every user at once, each from its own thread, after one barrier."""
    barrier = threading.Barrier(len(stores))
    results: list[ItemResult] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(n: int, store: PostgresStore) -> None:
        try:
            barrier.wait(timeout=30)
            for i, uid in enumerate(user_ids):
                r = store.commit_registration(
                    None, i, _face(uid, seed=n), _ok(uid), replace=replace, create_user=True
                )
                with lock:
                    results.append(r)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n, s)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    return results


def test_two_instances_racing_on_the_same_users_one_wins_each(pg_dsn: str) -> None:
    """Two stores (two pools, as two machines would have) register the same 60 users at once."""
    stores = [PostgresStore(pg_dsn, owner=f"machine-{n}:1") for n in range(2)]
    try:
        ids = [f"race-{i}" for i in range(60)]
        results = _race(stores, ids, replace=False)
        for uid in ids:
            mine = [r for r in results if r.user_id == uid]
            assert sorted(r.status for r in mine) == [False, True]
            loser = next(r for r in mine if not r.status)
            assert loser.error_code == ErrorCode.FACE_ALREADY_REGISTERED
            assert "already has a face (enrolled 20" in (loser.error_message or "")
        assert len(stores[0].load_gallery(PACK.space).user_ids) == 60
        assert stores[0].existing_users(ids) == set(ids)
    finally:
        for s in stores:
            s.close()


def test_racing_replacements_never_fail(pg_dsn: str) -> None:
    stores = [PostgresStore(pg_dsn) for _ in range(2)]
    try:
        ids = [f"rep-{i}" for i in range(30)]
        results = _race(stores, ids, replace=True)
        assert all(r.status for r in results)
        assert sorted(r.replaced for r in results) == [False] * 30 + [True] * 30
    finally:
        for s in stores:
            s.close()


def test_stale_task_of_another_instance_is_interrupted_and_resumed(pg_dsn: str) -> None:
    """Instance A (another machine) claims a task, settles one item and stops heartbeating;
    instance B sees it interrupted once A's lease has passed by the database clock, claims it and
    finishes the rest."""
    a = PostgresStore(pg_dsn, owner="machine-a:4242", lease_s=1.0)
    b = PostgresStore(pg_dsn, owner="machine-b:777", lease_s=1.0)
    try:
        entries = [UserEntry(f"u{i}", f"http://127.0.0.1/{i}.jpg") for i in range(3)]
        task = a.create_task(Operation.REGISTER, entries, {"replace": False})
        a.claim_task(task.task_id)
        a.commit_registration(
            task.task_id, 0, _face("u0"), _ok("u0"), replace=False, create_user=True
        )
        assert b.recover_interrupted() == []  # A's heartbeat is fresh
        deadline = time.monotonic() + 10
        found: list[str] = []
        while not found and time.monotonic() < deadline:
            time.sleep(0.3)
            found = b.recover_interrupted()
        assert found == [task.task_id]
        seen = b.get_task(task.task_id)
        assert seen is not None
        assert seen.status == TaskStatus.INTERRUPTED
        assert "resume" in (seen.error_message or "")
        assert [i for i, _ in b.unfinished_items(task.task_id)] == [1, 2]
        b.claim_task(task.task_id)
        for i, e in b.unfinished_items(task.task_id):
            b.commit_registration(
                task.task_id,
                i,
                _face(e.user_id, i),
                _ok(e.user_id),
                replace=False,
                create_user=True,
            )
        b.set_task_status(task.task_id, TaskStatus.COMPLETED)
        done = a.get_task(task.task_id)  # A's view: the same shared state
        assert done is not None
        assert (done.status, done.completed_items, done.failed_items) == (
            TaskStatus.COMPLETED,
            3,
            0,
        )
        assert b.recover_interrupted() == []
    finally:
        a.close()
        b.close()


def test_task_of_a_dead_process_on_this_host_is_interrupted_at_once(
    pg_dsn: str, pg_store: PostgresStore
) -> None:
    """A real child process claims a task and exits; its pid is gone, so no lease wait."""
    task = pg_store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    code = (
        "import sys; from facebatch_gui.core.store.postgres import PostgresStore;"
        f"s = PostgresStore({pg_dsn!r}); s.claim_task({task.task_id!r}); s.close()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert pg_store.recover_interrupted() == [task.task_id]


def test_running_task_of_this_instance_is_not_interrupted(pg_store: PostgresStore) -> None:
    task = pg_store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    pg_store.claim_task(task.task_id)
    assert pg_store.recover_interrupted() == []


def test_failed_item_write_leaves_neither_face_nor_outcome(
    pg_dsn: str, pg_store: PostgresStore
) -> None:
    """The outcome write fails inside the database after the face insert (a trigger raises, as a
    full disk would): the face must roll back with it."""
    task = pg_store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'disk full'; END$$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_item BEFORE UPDATE ON task_items"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    try:
        with pytest.raises(psycopg.Error, match="disk full"):
            pg_store.commit_registration(
                task.task_id, 0, _face("a"), _ok("a"), replace=False, create_user=True
            )
        assert pg_store.get_face("a") is None
        assert pg_store.existing_users(["a"]) == set()
        assert pg_store.unfinished_items(task.task_id) == [(0, UserEntry("a", "u"))]
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_item ON task_items")
            conn.execute("DROP FUNCTION refuse()")


def test_big_task_round_trips(pg_store: PostgresStore) -> None:
    entries = [UserEntry(f"u{i}", f"http://127.0.0.1/{i}.jpg", i + 2) for i in range(5000)]
    task = pg_store.create_task(Operation.REGISTER, entries, {})
    assert pg_store.unfinished_items(task.task_id)[4999] == (4999, entries[4999])
    cancelled = [
        (i, ItemResult.failure(e, Operation.REGISTER, ErrorCode.CANCELLED, "stop"))
        for i, e in enumerate(entries)
    ]
    pg_store.record_results(task.task_id, cancelled)
    record = pg_store.get_task(task.task_id, with_results=False)
    assert record is not None
    assert (record.completed_items, record.failed_items) == (5000, 5000)


def test_binary_embedding_decoding_matches_the_stored_values(pg_store: PostgresStore) -> None:
    for i in range(5):
        pg_store.commit_registration(
            None, i, _face(f"v{i}", i), _ok(f"v{i}"), replace=False, create_user=True
        )
    snap = pg_store.load_gallery(PACK.space)
    for uid, row in zip(snap.user_ids, snap.embeddings, strict=True):
        face = pg_store.get_face(uid)
        assert face is not None
        np.testing.assert_array_equal(row, face.embedding)
    assert decode_embeddings([]).shape == (0, 0)
    with psycopg.connect(pg_store.dsn) as conn:  # the SQL decoder (pgvector backfill) agrees
        row = conn.execute(
            "SELECT facebatch_float4_array(embedding) FROM faces WHERE user_id = 'v3'"
        ).fetchone()
    assert row is not None
    np.testing.assert_allclose(np.asarray(row[0], dtype=np.float32), _vec(3), rtol=1e-6)


def test_schema_is_idempotent_and_takes_a_custom_users_table(pg_session_dsn: str) -> None:
    """An existing `profiles(uid uuid)` table is used as the users table, uuid ids and all."""
    name = "facebatch_custom_users"
    base = psycopg.conninfo.conninfo_to_dict(pg_session_dsn)
    with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = psycopg.conninfo.make_conninfo(**{**base, "dbname": name})  # type: ignore[arg-type]
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE profiles (uid uuid PRIMARY KEY, email text)")
        for _ in range(2):
            apply_schema(dsn, users_table="profiles", users_id_column="uid")
        store = PostgresStore(dsn)
        try:
            uid = "8d3b7c52-3f0b-4b5e-9a43-6f8f5d2d8e11"
            assert store.users_table == "profiles"
            assert store.commit_registration(
                None, 0, _face(uid), _ok(uid), replace=False, create_user=True
            ).status
            assert store.existing_users([uid, "nobody"]) == {uid}
            with psycopg.connect(dsn) as conn:
                assert conn.execute("SELECT count(*) FROM profiles").fetchone() == (1,)
                assert conn.execute("SELECT to_regclass('users')").fetchone() == (None,)
        finally:
            store.close()
    finally:
        with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_missing_schema_and_unreachable_server_are_store_errors(pg_session_dsn: str) -> None:
    base = psycopg.conninfo.conninfo_to_dict(pg_session_dsn)
    with pytest.raises(StoreError, match="schema is missing"):
        PostgresStore(psycopg.conninfo.make_conninfo(**{**base, "dbname": "postgres"}))  # type: ignore[arg-type]
    with pytest.raises(StoreError, match="Cannot connect"):
        PostgresStore("host=127.0.0.1 port=9 dbname=x user=x", connect_timeout_s=2)


def test_a_task_runs_on_one_instance_at_a_time(pg_dsn: str) -> None:
    """B cannot claim A's running task; once A's task is found interrupted, B can."""
    a = PostgresStore(pg_dsn, owner="machine-a:1")
    b = PostgresStore(pg_dsn, owner="machine-b:1")
    try:
        task = a.create_task(Operation.REGISTER, [UserEntry("x", "u")], {})
        a.claim_task(task.task_id)
        a.claim_task(task.task_id)  # the owner may claim again
        with pytest.raises(StoreError, match="being run by another instance"):
            b.claim_task(task.task_id)
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE tasks SET heartbeat_at = now() - interval '5 minutes'")
        assert b.recover_interrupted() == [task.task_id]
        b.claim_task(task.task_id)
        record = b.get_task(task.task_id)
        assert record is not None
        assert record.status == TaskStatus.PROCESSING
    finally:
        a.close()
        b.close()
