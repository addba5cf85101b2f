"""The production store on PostgreSQL >= 14 (or Supabase's direct connection string).

psycopg 3 with a connection pool. Each item's write is one call of the schema's SQL function in one
transaction, so the face and its outcome commit together and the unique key on `faces.user_id`
settles races between instances (the loser gets face_already_registered, never database_error).
Task state lives in the database, so every instance sees every task; a task whose owner stopped
heartbeating (by the database's clock) is marked interrupted and any instance can resume it.
The gallery loads with a binary cursor straight into one float32 matrix.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import ConnectionPool, PoolTimeout

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.errors import StoreError
from facebatch_gui.core.records import (
    ItemResult,
    Operation,
    TaskRecord,
    TaskStatus,
    UserEntry,
    new_task_id,
)
from facebatch_gui.core.store.base import FaceRecord, GallerySnapshot
from facebatch_gui.core.store.shared import (
    INTERRUPTED_MESSAGE,
    STALE_HEARTBEAT_S,
    claimed_elsewhere,
    default_owner,
    deletion_outcomes,
    owner_is_dead,
    registration_outcomes,
    schema_sql,
    task_record,
)

# Argument types of the schema's functions, so psycopg's parameters resolve to one signature.
_SIGNATURES: dict[str, tuple[str, ...]] = {
    "facebatch_commit_registration": (
        "text", "integer", "text", "real[]", "text", "jsonb", "jsonb", "real", "jsonb", "bytea",
        "text", "text", "text", "jsonb", "boolean", "boolean",
    ),
    "facebatch_commit_deletion": ("text", "integer", "text", "jsonb"),
    "facebatch_record_results": ("text", "jsonb"),
    "facebatch_set_task_status": ("text", "text", "text", "boolean"),
    "facebatch_claim_task": ("text", "text"),
    "facebatch_heartbeat": ("text",),
    "facebatch_mark_interrupted": ("text", "text", "text"),
}  # fmt: skip
_CHUNK = 10_000


def decode_embeddings(blobs: Sequence[bytes]) -> np.ndarray:
    """`faces.embedding` values (float32 big-endian, one length) -> (n, dim) float32."""
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    size = len(blobs[0])
    raw = b"".join(blobs)
    if size % 4 or len(raw) != size * len(blobs):
        raise StoreError("faces of one pack space have embeddings of different lengths")
    return np.frombuffer(raw, dtype=">f4").reshape(len(blobs), size // 4).astype(np.float32)


def apply_schema(
    dsn: str,
    *,
    users_table: str = "users",
    users_id_column: str = "id",
    with_vector: bool = False,
    timeout_s: float = 10,
) -> None:
    """Run schema.sql (idempotent) with the users table's name and id column set for it."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=int(timeout_s)) as conn:
            conn.execute("SELECT set_config('facebatch.users_table', %s, false)", (users_table,))
            conn.execute(
                "SELECT set_config('facebatch.users_id_column', %s, false)", (users_id_column,)
            )
            conn.execute(
                "SELECT set_config('facebatch.with_vector', %s, false)",
                ("on" if with_vector else "off",),
            )
            conn.execute(schema_sql().encode())
    except psycopg.Error as exc:
        raise StoreError(f"Could not apply the FaceBatch schema: {exc}") from exc


class PostgresStore:
    def __init__(
        self,
        dsn: str,
        *,
        max_connections: int = 8,
        lease_s: float = STALE_HEARTBEAT_S,
        owner: str | None = None,
        connect_timeout_s: float = 10.0,
    ) -> None:
        """`owner` names this instance in tasks it runs (default host:pid); `lease_s` is how old
        another owner's heartbeat may get before its task counts as interrupted."""
        self.dsn = dsn
        self.lease_s = lease_s
        self.owner = owner or default_owner()
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"connect_timeout": int(connect_timeout_s)},
            open=False,
            name="facebatch",
        )
        try:
            self._pool.open(wait=True, timeout=connect_timeout_s)
        except PoolTimeout as exc:
            self._pool.close()
            raise StoreError(f"Cannot connect to PostgreSQL: {_describe_connect(dsn)}") from exc
        try:
            with self._conn() as conn:
                rows = conn.execute(
                    "SELECT key, value FROM facebatch_meta"
                    " WHERE key IN ('users_table', 'users_id_column')"
                ).fetchall()
                meta = dict(rows)
                table = conn.execute("SELECT %s::regclass::text", (meta["users_table"],))
                users_table = table.fetchone()
                assert users_table is not None
        except (psycopg.errors.UndefinedTable, KeyError) as exc:
            self._pool.close()
            raise StoreError(
                "The FaceBatch schema is missing in this database: run 'facebatch db init "
                "--store postgres --dsn ...' (or resources/supabase/schema.sql) first"
            ) from exc
        except psycopg.Error as exc:
            self._pool.close()
            raise StoreError(f"Cannot use the PostgreSQL store: {exc}") from exc
        self.users_table = str(users_table[0])
        self.users_id_column = str(meta["users_id_column"])
        self._users = sql.SQL(self.users_table)  # already quoted by regclass::text
        self._uid = sql.Identifier(self.users_id_column)
        self._closed = threading.Event()

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection in one transaction (commit on success, rollback on error)."""
        with self._pool.connection() as conn:
            yield conn

    def _call(self, function: str, *args: object) -> Any:
        """One SQL function call in its own transaction; its single value."""
        types = _SIGNATURES[function]
        marks = sql.SQL(", ").join(
            sql.SQL("%s::{}").format(sql.SQL(t))
            for t in types  # type names from _SIGNATURES
        )
        query = sql.SQL("SELECT {}({})").format(sql.Identifier(function), marks)
        with self._conn() as conn:
            row = conn.execute(query, args).fetchone()
        return row[0] if row else None

    def _rows(self, query: str | sql.Composable, params: Sequence[object] = ()) -> list[Any]:
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall()

    def close(self) -> None:
        if not self._closed.is_set():
            self._closed.set()
            self._pool.close()

    # -- users and faces ------------------------------------------------------------------------
    def _ids_in(self, query: sql.SQL | sql.Composed, user_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(user_ids))
        with self._conn() as conn:
            for start in range(0, len(ids), _CHUNK):
                rows = conn.execute(query, (ids[start : start + _CHUNK],)).fetchall()
                found.update(r[0] for r in rows)
        return found

    def existing_users(self, user_ids: Sequence[str]) -> set[str]:
        query = sql.SQL("SELECT {uid}::text FROM {users} WHERE {uid}::text = ANY(%s)").format(
            uid=self._uid, users=self._users
        )
        return self._ids_in(query, user_ids)

    def users_with_faces(self, user_ids: Sequence[str]) -> set[str]:
        return self._ids_in(sql.SQL("SELECT user_id FROM faces WHERE user_id = ANY(%s)"), user_ids)

    def add_users(self, user_ids: Sequence[str]) -> None:
        """Bulk-create users (tests, imports); existing ones are left alone."""
        query = sql.SQL("INSERT INTO {users} ({uid}) VALUES (%s) ON CONFLICT DO NOTHING").format(
            users=self._users, uid=self._uid
        )
        with self._conn() as conn, conn.cursor() as cur:
            cur.executemany(query, [(uid,) for uid in user_ids])

    def get_face(self, user_id: str) -> FaceRecord | None:
        rows = self._rows(
            "SELECT user_id, embedding, pack, bbox, det_score, quality, thumbnail, source_url,"
            " task_id, facebatch_iso(created_at) AS created_at,"
            " facebatch_iso(updated_at) AS updated_at FROM faces WHERE user_id = %s",
            (user_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return FaceRecord(
            user_id=r["user_id"],
            embedding=decode_embeddings([bytes(r["embedding"])])[0],
            pack=PackIdentity(**r["pack"]),
            bbox=list(r["bbox"]),
            det_score=float(r["det_score"]),
            quality=dict(r["quality"]),
            thumbnail_jpeg=bytes(r["thumbnail"]) if r["thumbnail"] is not None else None,
            source_url=r["source_url"],
            task_id=r["task_id"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )

    def space_counts(self) -> dict[str, tuple[int, str]]:
        """pack space -> (faces, pack name): what the connection check reports."""
        rows = self._rows("SELECT * FROM facebatch_space_counts()")
        return {r["pack_space"]: (int(r["faces"]), r["pack_name"]) for r in rows}

    def load_gallery(self, space: str) -> GallerySnapshot:
        """Every face of `space`, in one binary read straight into one float32 matrix."""
        with self._conn() as conn:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            with conn.cursor(binary=True) as cur:
                cur.execute("SELECT user_id, embedding FROM faces WHERE pack_space = %s", (space,))
                rows = cur.fetchall()
            others = conn.execute(
                "SELECT pack_name, faces FROM facebatch_other_spaces(%s)", (space,)
            ).fetchall()
        return GallerySnapshot(
            user_ids=[r[0] for r in rows],
            embeddings=decode_embeddings([r[1] for r in rows]),
            other_spaces={name: int(n) for name, n in others},
        )

    # -- item outcomes --------------------------------------------------------------------------
    def commit_registration(
        self,
        task_id: str | None,
        index: int,
        face: FaceRecord,
        result: ItemResult,
        *,
        replace: bool,
        create_user: bool,
    ) -> ItemResult:
        out = self._call(
            "facebatch_commit_registration",
            task_id,
            index,
            face.user_id,
            np.asarray(face.embedding, dtype=np.float32).tolist(),
            face.pack.space,
            Jsonb(_pack_json(face.pack)),
            Jsonb([float(v) for v in face.bbox]),
            float(face.det_score),
            Jsonb(face.quality),
            face.thumbnail_jpeg,
            None,
            face.source_url,
            self.owner,
            Jsonb(registration_outcomes(face, result)),
            replace,
            create_user,
        )
        return ItemResult.model_validate(out)

    def commit_deletion(self, task_id: str | None, index: int, entry: UserEntry) -> ItemResult:
        out = self._call(
            "facebatch_commit_deletion",
            task_id,
            index,
            entry.user_id,
            Jsonb(deletion_outcomes(entry)),
        )
        return ItemResult.model_validate(out)

    def record_result(self, task_id: str, index: int, result: ItemResult) -> None:
        self.record_results(task_id, [(index, result)])

    def record_results(self, task_id: str, results: Sequence[tuple[int, ItemResult]]) -> None:
        items = [{"idx": i, "result": r.model_dump(mode="json")} for i, r in results]
        for start in range(0, len(items), _CHUNK):
            self._call("facebatch_record_results", task_id, Jsonb(items[start : start + _CHUNK]))

    # -- tasks ----------------------------------------------------------------------------------
    def create_task(
        self, operation: Operation, entries: Sequence[UserEntry], options: dict[str, object]
    ) -> TaskRecord:
        task_id = new_task_id()
        with self._conn() as conn, conn.cursor() as cur:
            cur.execute(
                "INSERT INTO tasks (task_id, operation, status, total_items, options)"
                " VALUES (%s, %s, %s, %s, %s)",
                (task_id, operation.value, TaskStatus.QUEUED.value, len(entries), Jsonb(options)),
            )
            with cur.copy(
                "COPY task_items (task_id, idx, user_id, avatar_image_url, line) FROM STDIN"
            ) as copy:
                for i, e in enumerate(entries):
                    copy.write_row((task_id, i, e.user_id, e.avatar_image_url, e.line))
        record = self.get_task(task_id)
        assert record is not None
        return record

    def get_task(self, task_id: str, *, with_results: bool = True) -> TaskRecord | None:
        rows = self._rows("SELECT * FROM facebatch_tasks(%s, 1)", (task_id,))
        if not rows:
            return None
        results: list[ItemResult] = []
        if with_results:
            results = [
                ItemResult.model_validate(r["result"])
                for r in self._rows(
                    "SELECT result FROM task_items WHERE task_id = %s AND state <> 'pending'"
                    " ORDER BY finished_at NULLS FIRST, idx",
                    (task_id,),
                )
            ]
        return task_record(rows[0], results)

    def list_tasks(self, limit: int = 50) -> list[TaskRecord]:
        rows = self._rows("SELECT * FROM facebatch_tasks(NULL, %s)", (limit,))
        return [task_record(r, []) for r in rows]

    def task_options(self, task_id: str) -> dict[str, object]:
        rows = self._rows("SELECT options FROM tasks WHERE task_id = %s", (task_id,))
        if not rows:
            raise StoreError(f"No task {task_id}")
        return dict(rows[0]["options"])

    def set_task_status(
        self, task_id: str, status: TaskStatus, error_message: str | None = None
    ) -> None:
        self._call(
            "facebatch_set_task_status", task_id, status.value, error_message, status.is_final
        )

    def claim_task(self, task_id: str) -> None:
        if not self._call("facebatch_claim_task", task_id, self.owner):
            raise StoreError(claimed_elsewhere(task_id))

    def heartbeat(self, task_id: str) -> None:
        self._call("facebatch_heartbeat", task_id)

    def unfinished_items(self, task_id: str) -> list[tuple[int, UserEntry]]:
        rows = self._rows(
            "SELECT idx, user_id, avatar_image_url, line FROM task_items"
            " WHERE task_id = %s AND state IN ('pending', 'cancelled') ORDER BY idx",
            (task_id,),
        )
        return [(r["idx"], UserEntry(r["user_id"], r["avatar_image_url"], r["line"])) for r in rows]

    def recover_interrupted(self) -> list[str]:
        """Mark `processing` tasks whose owner is gone as `interrupted`; return their ids.

        Gone: a dead pid on this host, or a heartbeat older than the lease by the database clock.
        """
        stale = []
        for row in self._rows("SELECT * FROM facebatch_processing_tasks()"):
            if row["owner"] == self.owner:
                continue
            if owner_is_dead(row["owner"], row["heartbeat_age_s"], self.lease_s) and self._call(
                "facebatch_mark_interrupted", row["task_id"], row["owner"], INTERRUPTED_MESSAGE
            ):
                stale.append(row["task_id"])
        return stale


def _pack_json(pack: PackIdentity) -> dict[str, object]:
    return {
        "name": pack.name,
        "detector_sha256": pack.detector_sha256,
        "recognizer_sha256": pack.recognizer_sha256,
        "det_size": pack.det_size,
        "embedding_dim": pack.embedding_dim,
    }


def _describe_connect(dsn: str) -> str:
    """Why a connection fails, in psycopg's words, without the password."""
    try:
        psycopg.connect(dsn, connect_timeout=5).close()
    except psycopg.Error as exc:
        return str(exc).strip()
    return "the pool timed out"
