"""The face store contract. Every store (SQLite, Postgres, the Supabase store) must pass it:
add a factory to `STORE_FACTORIES` and the whole suite runs against it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import ItemResult, Operation, TaskStatus, UserEntry
from facebatch_gui.core.store import FaceRecord, FaceStore, SqliteStore

PACK = PackIdentity("test-pack", "d" * 64, "r" * 64, 640, 8)
OTHER_PACK = PackIdentity("other-pack", "e" * 64, "s" * 64, 640, 8)


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> FaceStore:
    return SqliteStore(tmp_path / "contract.db")


def _postgres(request: pytest.FixtureRequest, tmp_path: Path) -> FaceStore:
    """Real PostgreSQL (FACEBATCH_TEST_PG_DSN, a fresh database per session, emptied per test)."""
    from facebatch_gui.core.store.postgres import PostgresStore

    return PostgresStore(request.getfixturevalue("pg_dsn"))


def _supabase(request: pytest.FixtureRequest, tmp_path: Path) -> FaceStore:
    """The Supabase store against the PostgREST stand-in (tests/support/postgrest.py: a real HTTP
    server that checks requests as PostgREST parses them and runs them on the real test
    PostgreSQL), since no PostgREST can run here."""
    from facebatch_gui.core.store.supabase import SupabaseStore
    from tests.support.pgfixtures import SERVICE_KEY

    server = request.getfixturevalue("standin")
    return SupabaseStore(server.url, SERVICE_KEY, backoff_s=0.01)


STORE_FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], FaceStore]] = {
    "sqlite": _sqlite,
    "postgres": _postgres,
    "supabase": _supabase,
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[FaceStore]:
    s = STORE_FACTORIES[request.param](request, tmp_path)
    yield s
    s.close()


def _vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(8).astype(np.float32)
    return v / np.linalg.norm(v)


def _face(user_id: str, seed: int = 0, pack: PackIdentity = PACK) -> FaceRecord:
    return FaceRecord(
        user_id=user_id,
        embedding=_vec(seed),
        pack=pack,
        bbox=[1.0, 2.0, 30.0, 40.0],
        det_score=0.9,
        quality={"face_size": 28, "blur": 100.0, "det_score": 0.9},
        thumbnail_jpeg=b"\xff\xd8jpeg",
        source_url=f"http://127.0.0.1/{user_id}.jpg",
    )


def _ok(user_id: str) -> ItemResult:
    return ItemResult(user_id=user_id, status=True)


def _register(store: FaceStore, task_id: str | None, index: int, user_id: str, **kw: object):
    return store.commit_registration(
        task_id,
        index,
        _face(user_id, seed=index),
        _ok(user_id),
        replace=kw.get("replace", False),  # type: ignore[arg-type]
        create_user=kw.get("create_user", True),  # type: ignore[arg-type]
    )


def test_task_round_trip_keeps_the_wire_shape(any_store: FaceStore) -> None:
    entries = [UserEntry("a", "http://x/a.jpg", 2), UserEntry("b", "http://x/b.jpg", 3)]
    record = any_store.create_task(Operation.REGISTER, entries, {"replace": False})
    assert record.status == TaskStatus.QUEUED
    assert (record.total_items, record.completed_items, record.failed_items) == (2, 0, 0)
    wire = record.wire()
    for key in (
        "task_id",
        "status",
        "progress",
        "total_items",
        "completed_items",
        "failed_items",
        "results",
        "error_message",
        "created_at",
        "updated_at",
    ):
        assert key in wire
    assert any_store.task_options(record.task_id) == {"replace": False}
    assert any_store.unfinished_items(record.task_id) == [(0, entries[0]), (1, entries[1])]


def test_registration_writes_face_and_outcome_together(any_store: FaceStore) -> None:
    task = any_store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    any_store.claim_task(task.task_id)
    result = _register(any_store, task.task_id, 0, "a")
    assert result.status
    assert not result.replaced
    face = any_store.get_face("a")
    assert face is not None
    assert face.pack == PACK
    np.testing.assert_allclose(face.embedding, _vec(0))
    assert face.thumbnail_jpeg == b"\xff\xd8jpeg"
    record = any_store.get_task(task.task_id)
    assert record is not None
    assert (record.completed_items, record.failed_items, record.progress) == (1, 0, 100)
    assert [r.user_id for r in record.results] == ["a"]
    assert any_store.unfinished_items(task.task_id) == []


def test_existing_face_is_refused_unless_replace(any_store: FaceStore) -> None:
    _register(any_store, None, 0, "a")
    again = _register(any_store, None, 1, "a")
    assert not again.status
    assert again.error_code == ErrorCode.FACE_ALREADY_REGISTERED
    np.testing.assert_allclose(any_store.get_face("a").embedding, _vec(0))  # type: ignore[union-attr]
    replaced = _register(any_store, None, 2, "a", replace=True)
    assert replaced.status
    assert replaced.replaced
    np.testing.assert_allclose(any_store.get_face("a").embedding, _vec(2))  # type: ignore[union-attr]


def test_missing_user_without_create_is_user_not_found(any_store: FaceStore) -> None:
    result = _register(any_store, None, 0, "ghost", create_user=False)
    assert result.error_code == ErrorCode.USER_NOT_FOUND
    assert any_store.get_face("ghost") is None
    assert any_store.existing_users(["ghost"]) == set()


def test_deletion_reports_every_id(any_store: FaceStore) -> None:
    _register(any_store, None, 0, "with-face")
    _register(any_store, None, 1, "emptied")
    any_store.commit_deletion(None, 0, UserEntry("emptied"))
    entries = [UserEntry("with-face"), UserEntry("emptied"), UserEntry("never-seen")]
    task = any_store.create_task(Operation.DELETE, entries, {})
    results = [any_store.commit_deletion(task.task_id, i, e) for i, e in enumerate(entries)]
    assert [r.status for r in results] == [True, False, False]
    assert [r.error_code for r in results] == [
        None,
        ErrorCode.NO_FACE_REGISTERED,
        ErrorCode.USER_NOT_FOUND,
    ]
    assert any_store.get_face("with-face") is None
    record = any_store.get_task(task.task_id)
    assert record is not None
    assert (record.completed_items, record.failed_items) == (3, 2)


def test_bulk_lookups_cover_large_id_lists(any_store: FaceStore) -> None:
    ids = [f"user-{i}" for i in range(1200)]
    for i, uid in enumerate(ids[:3]):
        _register(any_store, None, i, uid)
    assert any_store.users_with_faces(ids) == set(ids[:3])
    assert any_store.existing_users(ids) == set(ids[:3])


def test_gallery_holds_one_embedding_space_and_counts_others(any_store: FaceStore) -> None:
    _register(any_store, None, 0, "a")
    _register(any_store, None, 1, "b")
    any_store.commit_registration(
        None, 2, _face("c", 9, OTHER_PACK), _ok("c"), replace=False, create_user=True
    )
    snapshot = any_store.load_gallery(PACK.space)
    assert sorted(snapshot.user_ids) == ["a", "b"]
    assert snapshot.embeddings.shape == (2, 8)
    assert snapshot.other_spaces == {"other-pack": 1}
    row = snapshot.user_ids.index("b")
    np.testing.assert_allclose(snapshot.embeddings[row], _vec(1))


def test_cancelled_items_are_reopened_by_claim(any_store: FaceStore) -> None:
    entries = [UserEntry("a", "u"), UserEntry("b", "u"), UserEntry("c", "u")]
    task = any_store.create_task(Operation.REGISTER, entries, {})
    any_store.claim_task(task.task_id)
    _register(any_store, task.task_id, 0, "a")
    cancelled = ItemResult.failure(entries[1], Operation.REGISTER, ErrorCode.CANCELLED, "stop")
    any_store.record_results(task.task_id, [(1, cancelled)])
    any_store.set_task_status(task.task_id, TaskStatus.CANCELLED)
    assert [i for i, _ in any_store.unfinished_items(task.task_id)] == [1, 2]
    any_store.claim_task(task.task_id)
    record = any_store.get_task(task.task_id)
    assert record is not None
    assert record.status == TaskStatus.PROCESSING
    assert record.completed_items == 1


def test_list_tasks_newest_first_without_results(any_store: FaceStore) -> None:
    first = any_store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    second = any_store.create_task(Operation.DELETE, [UserEntry("a")], {})
    listed = any_store.list_tasks()
    assert [t.task_id for t in listed][:2] == [second.task_id, first.task_id]
    assert all(t.results == [] for t in listed)


# -- SQLite specifics ---------------------------------------------------------------------------


def test_task_of_a_dead_process_becomes_interrupted(tmp_path: Path) -> None:
    """A real child process claims a task and dies without finishing it."""
    db = tmp_path / "crash.db"
    store = SqliteStore(db)
    task = store.create_task(Operation.REGISTER, [UserEntry("a", "u"), UserEntry("b", "u")], {})
    code = (
        "import sys; from facebatch_gui.core.store import SqliteStore;"
        f"s = SqliteStore({str(db)!r}); s.claim_task({task.task_id!r}); sys.exit(0)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    before = store.get_task(task.task_id)
    assert before is not None
    assert before.status == TaskStatus.PROCESSING
    assert store.recover_interrupted() == [task.task_id]
    after = store.get_task(task.task_id)
    assert after is not None
    assert after.status == TaskStatus.INTERRUPTED
    assert "resume" in (after.error_message or "")
    store.close()


def test_running_task_of_this_process_is_not_interrupted(store: SqliteStore) -> None:
    task = store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    store.claim_task(task.task_id)
    assert store.recover_interrupted() == []


def test_failed_write_leaves_neither_face_nor_outcome(store: SqliteStore) -> None:
    """The item write fails after the face write, inside SQLite (a trigger raises, as a full disk
    would): the face must roll back with it."""
    task = store.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    store._conn.execute(
        "CREATE TRIGGER refuse_item BEFORE UPDATE ON task_items BEGIN"
        " SELECT RAISE(ABORT, 'disk full'); END"
    )
    with pytest.raises(sqlite3.DatabaseError, match="disk full"):
        _register(store, task.task_id, 0, "a")
    assert store.get_face("a") is None
    assert store.existing_users(["a"]) == set()
    assert store.unfinished_items(task.task_id) == [(0, UserEntry("a", "u"))]


def test_concurrent_writers_from_threads(store: SqliteStore) -> None:
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(50):
                _register(store, None, offset + i, f"t{offset}-{i}")
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n * 1000,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert len(store.load_gallery(PACK.space).user_ids) == 200


def test_unopenable_path_is_a_store_error(tmp_path: Path) -> None:
    from facebatch_gui.core.errors import StoreError

    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="Cannot open the face store"):
        SqliteStore(blocker / "sub" / "faces.db")
