"""Supabase store specifics against the PostgREST stand-in (tests/support/postgrest.py).

No PostgREST can run on these machines, so these tests talk to a real HTTP server on 127.0.0.1
that checks each request the way PostgREST parses it (method, path, filters, Prefer headers,
URL length, row caps) and runs it on the real test PostgreSQL, answering in PostgREST's formats
and error bodies. It is a stand-in, not PostgREST itself. The live tests at the end run against a
real Supabase project when SUPABASE_URL and SUPABASE_SERVICE_KEY are set, and skip otherwise.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from facebatch_gui.core.errors import ErrorCode, StoreError
from facebatch_gui.core.records import ItemResult, Operation, TaskStatus, UserEntry
from facebatch_gui.core.store.config import Problem, StoreConfig, StoreKind, check_connection
from facebatch_gui.core.store.supabase import SupabaseStore, chunk_for_url, pg_list
from tests.support.pgfixtures import SERVICE_KEY
from tests.support.postgrest import PostgrestStandIn, parse_in_list
from tests.test_store_contract import PACK, _face, _ok


@pytest.fixture
def sb(standin: PostgrestStandIn) -> Iterator[SupabaseStore]:
    s = SupabaseStore(standin.url, SERVICE_KEY, backoff_s=0.01)
    yield s
    s.close()


def _register(store: SupabaseStore, uid: str, seed: int = 0, **kw: Any) -> ItemResult:
    return store.commit_registration(
        kw.pop("task_id", None),
        kw.pop("index", 0),
        _face(uid, seed),
        _ok(uid),
        replace=kw.pop("replace", False),
        create_user=True,
    )


def test_list_literal_round_trips_through_the_standin_parser() -> None:
    values = ["plain", "with,comma", 'quote"d', "back\\slash", "(paren)", ""]
    assert parse_in_list(pg_list(values)) == values


def test_id_lookups_are_chunked_under_the_url_bound(
    sb: SupabaseStore, standin: PostgrestStandIn
) -> None:
    ids = [f"user,{i:05d}-" + "x" * 40 + '"q"' for i in range(1500)]
    for uid in ids[:3]:
        _register(sb, uid)
    standin.requests.clear()
    assert sb.users_with_faces(ids) == set(ids[:3])
    assert sb.existing_users(ids) == set(ids[:3])  # an RPC: ids in the body, 1,000 a call
    lookups = [r for r in standin.rest_requests() if r.method == "GET"]
    assert len(lookups) > 10  # 1,500 long ids cannot fit one URL
    assert max(r.url_length for r in lookups) < 4600
    assert all(r.status == 200 for r in lookups)
    chunks = list(chunk_for_url(ids, 4000))
    assert sum(len(c) for c in chunks) == 1500


def test_standin_refuses_overlong_urls_and_bad_filters(standin: PostgrestStandIn) -> None:
    """The stand-in's own strictness, so the chunking test above can fail."""
    import httpx

    headers = {"apikey": SERVICE_KEY, "Authorization": f"Bearer {SERVICE_KEY}"}
    long = pg_list([f"u{i:06d}" for i in range(2000)])
    r = httpx.get(f"{standin.url}/rest/v1/faces?user_id=in.{long}", headers=headers)
    assert r.status_code == 414
    r = httpx.get(f"{standin.url}/rest/v1/faces?user_id=like.a*", headers=headers)
    assert (r.status_code, r.json()["code"]) == (400, "PGRST100")
    r = httpx.get(f"{standin.url}/rest/v1/nope?select=a", headers=headers)
    assert (r.status_code, r.json()["code"]) == (404, "PGRST205")
    r = httpx.get(f"{standin.url}/rest/v1/faces", headers={"apikey": "wrong"})
    assert r.status_code == 401


def test_reads_page_through_the_row_cap(sb: SupabaseStore, standin: PostgrestStandIn) -> None:
    standin.max_rows = 40
    for i in range(95):
        _register(sb, f"p{i:03d}", i)
    snap = sb.load_gallery(PACK.space)
    assert sorted(snap.user_ids) == [f"p{i:03d}" for i in range(95)]
    assert snap.embeddings.shape == (95, 8)
    entries = [UserEntry(f"t{i}", "u") for i in range(130)]
    task = sb.create_task(Operation.REGISTER, entries, {})
    assert len(sb.unfinished_items(task.task_id)) == 130
    cancelled = [
        (i, ItemResult.failure(e, Operation.REGISTER, ErrorCode.CANCELLED, "stop"))
        for i, e in enumerate(entries)
    ]
    sb.record_results(task.task_id, cancelled)
    record = sb.get_task(task.task_id)
    assert record is not None
    assert len(record.results) == 130


def test_task_items_are_inserted_in_bulk(sb: SupabaseStore, standin: PostgrestStandIn) -> None:
    entries = [UserEntry(f"b{i}", f"http://127.0.0.1/{i}.jpg", i + 2) for i in range(2500)]
    standin.requests.clear()
    task = sb.create_task(Operation.REGISTER, entries, {"replace": True})
    posts = [
        r for r in standin.rest_requests() if r.method == "POST" and r.path.endswith("/task_items")
    ]
    assert [len(r.body) for r in posts] == [1000, 1000, 500]
    assert all(r.prefer.get("return") == "minimal" for r in posts)
    assert sb.unfinished_items(task.task_id)[2499] == (2499, entries[2499])
    assert sb.task_options(task.task_id) == {"replace": True}


def test_network_errors_and_5xx_are_retried(sb: SupabaseStore, standin: PostgrestStandIn) -> None:
    _register(sb, "a")
    standin.fail_next = [503, 0, 502]
    face = sb.get_face("a")
    assert face is not None
    assert [r.status for r in standin.requests[-4:]] == [503, 0, 502, 200]


def test_retries_give_up_with_a_clear_error(sb: SupabaseStore, standin: PostgrestStandIn) -> None:
    standin.fail_next = [503] * 10
    with pytest.raises(StoreError, match=r"read the face of user 'a' after 5 tries"):
        sb.get_face("a")


def test_lost_answer_of_a_committed_registration_is_not_a_false_refusal(
    sb: SupabaseStore, standin: PostgrestStandIn
) -> None:
    """The first call commits but its answer is lost; the retry finds the face already there and
    recognises it as this item's own write."""
    task = sb.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    standin.lose_next = 1
    result = _register(sb, "a", task_id=task.task_id)
    assert result.status, result.error_message
    record = sb.get_task(task.task_id)
    assert record is not None
    assert (record.completed_items, record.failed_items) == (1, 0)


def test_database_error_names_the_row_and_the_postgrest_error(
    sb: SupabaseStore, pg_dsn: str
) -> None:
    """The item write fails inside PostgreSQL (a trigger raises): PostgREST answers 400 P0001;
    the store's error names the user and that error, and nothing of the item was written."""
    task = sb.create_task(Operation.REGISTER, [UserEntry("a", "u")], {})
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$BEGIN RAISE EXCEPTION 'disk full' USING HINT = 'free some space'; END$$"
        )
        conn.execute(
            "CREATE TRIGGER refuse_item BEFORE UPDATE ON task_items"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    try:
        with pytest.raises(StoreError) as info:
            _register(sb, "a", task_id=task.task_id)
        text = str(info.value)
        assert "user 'a' (item 0)" in text
        assert "P0001: disk full" in text
        assert "free some space" in text
        assert sb.get_face("a") is None
        assert sb.unfinished_items(task.task_id) == [(0, UserEntry("a", "u"))]
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("DROP TRIGGER refuse_item ON task_items")
            conn.execute("DROP FUNCTION refuse()")


def test_two_instances_racing_one_wins_each_user(standin: PostgrestStandIn) -> None:
    stores = [SupabaseStore(standin.url, SERVICE_KEY, owner=f"m{n}:1") for n in range(2)]
    barrier = threading.Barrier(2)
    results: list[ItemResult] = []
    errors: list[BaseException] = []

    def work(store: SupabaseStore, n: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(25):
                results.append(_register(store, f"r{i}", n))
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s, n)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    for i in range(25):
        mine = [r for r in results if r.user_id == f"r{i}"]
        assert sorted(r.status for r in mine) == [False, True]
        assert next(r for r in mine if not r.status).error_code == (
            ErrorCode.FACE_ALREADY_REGISTERED
        )
    for s in stores:
        s.close()


def test_stale_task_is_interrupted_and_resumed_by_another_instance(
    standin: PostgrestStandIn, pg_dsn: str
) -> None:
    a = SupabaseStore(standin.url, SERVICE_KEY, owner="machine-a:1")
    b = SupabaseStore(standin.url, SERVICE_KEY, owner="machine-b:1")
    task = a.create_task(Operation.REGISTER, [UserEntry("x", "u"), UserEntry("y", "u")], {})
    a.claim_task(task.task_id)
    _register(a, "x", task_id=task.task_id, index=0)
    assert b.recover_interrupted() == []
    with pytest.raises(StoreError, match="being run by another instance"):
        b.claim_task(task.task_id)
    with psycopg.connect(pg_dsn, autocommit=True) as conn:  # A stopped 5 minutes ago
        conn.execute("UPDATE tasks SET heartbeat_at = now() - interval '5 minutes'")
    assert b.recover_interrupted() == [task.task_id]
    b.claim_task(task.task_id)
    assert [i for i, _ in b.unfinished_items(task.task_id)] == [1]
    _register(b, "y", task_id=task.task_id, index=1)
    b.set_task_status(task.task_id, TaskStatus.COMPLETED)
    done = a.get_task(task.task_id)
    assert done is not None
    assert (done.status, done.completed_items) == (TaskStatus.COMPLETED, 2)


def test_thumbnails_go_to_the_storage_bucket(standin: PostgrestStandIn, pg_dsn: str) -> None:
    store = SupabaseStore(standin.url, SERVICE_KEY, thumbnails_bucket="faces", backoff_s=0.01)
    assert _register(store, "t").status
    assert len(standin.objects) == 1
    (path,) = standin.objects
    assert path.startswith("faces/faces/")
    assert standin.objects[path][0] == b"\xff\xd8jpeg"
    with psycopg.connect(pg_dsn) as conn:
        row = conn.execute("SELECT thumbnail, thumbnail_path FROM faces").fetchone()
    assert row is not None
    assert row[0] is None
    assert f"faces/{row[1]}" == path
    face = store.get_face("t")
    assert face is not None
    assert face.thumbnail_jpeg == b"\xff\xd8jpeg"
    refused = _register(store, "t", 1)  # already registered: its upload is removed again
    assert refused.error_code == ErrorCode.FACE_ALREADY_REGISTERED
    assert list(standin.objects) == [path]
    store.close()


def test_check_connection_on_supabase(standin: PostgrestStandIn, pg_session_dsn: str) -> None:
    def config(url: str, key: str) -> StoreConfig:
        return StoreConfig(kind=StoreKind.SUPABASE, supabase_url=url, supabase_key=key)

    ok = check_connection(config(standin.url, SERVICE_KEY), PACK)
    assert ok.ok, ok.message
    bad = check_connection(config(standin.url, "not-the-key"), PACK)
    assert (bad.ok, bad.problem) == (False, Problem.BAD_CREDENTIALS)
    assert "service-role key" in bad.message
    dead = check_connection(config("http://127.0.0.1:9", SERVICE_KEY), PACK)
    assert (dead.ok, dead.problem) == (False, Problem.UNREACHABLE)
    name = f"facebatch_noschema_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        empty = psycopg.conninfo.make_conninfo(pg_session_dsn, dbname=name)
        with PostgrestStandIn(empty, SERVICE_KEY) as bare:
            missing = check_connection(config(bare.url, SERVICE_KEY), PACK)
        assert (missing.ok, missing.problem) == (False, Problem.SCHEMA_MISSING)
    finally:
        with psycopg.connect(pg_session_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- live: a real Supabase project --------------------------------------------------------------

LIVE = pytest.mark.skipif(
    not (os.environ.get("SUPABASE_URL") and os.environ.get("SUPABASE_SERVICE_KEY")),
    reason="SUPABASE_URL and SUPABASE_SERVICE_KEY are not set: no real Supabase project to test",
)


@LIVE
def test_live_round_trip_on_a_real_project() -> None:
    """Registers, reads, refuses, lists and deletes on the real project, with unique ids, and
    cleans up after itself. The project must have resources/supabase/schema.sql applied."""
    store = SupabaseStore(os.environ["SUPABASE_URL"], os.environ["SUPABASE_SERVICE_KEY"])
    uid = f"facebatch-live-{uuid.uuid4().hex[:12]}"
    task = store.create_task(Operation.REGISTER, [UserEntry(uid, "u")], {"live": True})
    try:
        store.claim_task(task.task_id)
        assert _register(store, uid, task_id=task.task_id).status
        assert _register(store, uid).error_code == ErrorCode.FACE_ALREADY_REGISTERED
        assert store.users_with_faces([uid, "nobody-" + uid]) == {uid}
        face = store.get_face(uid)
        assert face is not None
        assert face.pack == PACK
        assert uid in store.load_gallery(PACK.space).user_ids
        store.set_task_status(task.task_id, TaskStatus.COMPLETED)
        assert task.task_id in [t.task_id for t in store.list_tasks(200)]
    finally:
        assert store.commit_deletion(None, 0, UserEntry(uid)).status
        store._client.table("tasks").delete().eq("task_id", task.task_id).execute()
        store._client.table(store.users_table).delete().eq(store.users_id_column, uid).execute()
        store.close()


def test_existing_users_work_with_a_uuid_users_table(
    standin: PostgrestStandIn, pg_dsn: str
) -> None:
    """Supabase projects often key users by uuid: ids that are not uuids must not break lookups."""
    store = SupabaseStore(standin.url, SERVICE_KEY)
    uid = "8d3b7c52-3f0b-4b5e-9a43-6f8f5d2d8e11"
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE uuid_users (uid uuid PRIMARY KEY)")
        conn.execute("INSERT INTO uuid_users VALUES (%s)", (uid,))
        conn.execute("UPDATE facebatch_meta SET value = 'uuid_users' WHERE key = 'users_table'")
        conn.execute("UPDATE facebatch_meta SET value = 'uid' WHERE key = 'users_id_column'")
    try:
        assert store.existing_users([uid, "not-a-uuid", "x,y"]) == {uid}
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as conn:
            conn.execute("UPDATE facebatch_meta SET value = 'users' WHERE key = 'users_table'")
            conn.execute("UPDATE facebatch_meta SET value = 'id' WHERE key = 'users_id_column'")
            conn.execute("DROP TABLE uuid_users")
        store.close()
