"""The embedded default store: one SQLite file in the user's data folder.

WAL mode lets the GUI read while a batch writes; `BEGIN IMMEDIATE` makes each item's outcome one
atomic write even with several processes on the same file. Tasks carry an owner (host:pid) and a
heartbeat so that a task whose process died is found and marked `interrupted` at the next start.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import platformdirs

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.errors import ErrorCode, StoreError
from facebatch_gui.core.records import (
    ItemResult,
    Operation,
    TaskRecord,
    TaskStatus,
    UserEntry,
    new_task_id,
    utc_now,
)
from facebatch_gui.core.store.base import FaceRecord, GallerySnapshot

SCHEMA_VERSION = 1
STALE_HEARTBEAT_S = 60.0
_CHUNK = 500  # stays well under SQLite's bound-parameter limit

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id     TEXT PRIMARY KEY,
    created_at  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS faces (
    user_id     TEXT PRIMARY KEY REFERENCES users(user_id) ON DELETE CASCADE,
    embedding   BLOB NOT NULL,
    pack_space  TEXT NOT NULL,
    pack        TEXT NOT NULL,
    bbox        TEXT NOT NULL,
    det_score   REAL NOT NULL,
    quality     TEXT NOT NULL,
    thumbnail   BLOB,
    source_url  TEXT,
    task_id     TEXT,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS faces_pack_space ON faces(pack_space);
CREATE TABLE IF NOT EXISTS tasks (
    task_id       TEXT PRIMARY KEY,
    operation     TEXT NOT NULL,
    status        TEXT NOT NULL,
    total_items   INTEGER NOT NULL,
    error_message TEXT,
    options       TEXT NOT NULL,
    owner         TEXT,
    heartbeat_at  REAL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at);
CREATE TABLE IF NOT EXISTS task_items (
    task_id          TEXT NOT NULL REFERENCES tasks(task_id) ON DELETE CASCADE,
    idx              INTEGER NOT NULL,
    user_id          TEXT NOT NULL,
    avatar_image_url TEXT NOT NULL,
    line             INTEGER,
    state            TEXT NOT NULL DEFAULT 'pending',
    result           TEXT,
    finished_at      TEXT,
    PRIMARY KEY (task_id, idx)
);
CREATE INDEX IF NOT EXISTS task_items_state ON task_items(task_id, state);
"""


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("FaceBatch", appauthor=False)) / "facebatch.db"


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _item_state(result: ItemResult) -> str:
    if result.status:
        return "succeeded"
    return "cancelled" if result.error_code == ErrorCode.CANCELLED else "failed"


class SqliteStore:
    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.path, check_same_thread=False, isolation_level=None, timeout=15.0
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA foreign_keys=ON")
            self._conn.executescript(_SCHEMA)
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"Cannot open the face store at {self.path}: {exc}") from exc
        self._lock = threading.RLock()

    # -- plumbing -------------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            else:
                self._conn.execute("COMMIT")

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def _chunked(self, sql: str, values: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for start in range(0, len(values), _CHUNK):
            chunk = list(values[start : start + _CHUNK])
            marks = ",".join("?" * len(chunk))
            found.update(row[0] for row in self._query(sql.format(marks=marks), chunk))
        return found

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- users and faces ------------------------------------------------------------------------
    def existing_users(self, user_ids: Sequence[str]) -> set[str]:
        return self._chunked("SELECT user_id FROM users WHERE user_id IN ({marks})", user_ids)

    def users_with_faces(self, user_ids: Sequence[str]) -> set[str]:
        return self._chunked("SELECT user_id FROM faces WHERE user_id IN ({marks})", user_ids)

    def add_users(self, user_ids: Sequence[str]) -> None:
        now = utc_now()
        with self._write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO users(user_id, created_at) VALUES (?, ?)",
                [(uid, now) for uid in user_ids],
            )

    def get_face(self, user_id: str) -> FaceRecord | None:
        rows = self._query(
            "SELECT user_id, embedding, pack, bbox, det_score, quality, thumbnail, source_url,"
            " task_id, created_at, updated_at FROM faces WHERE user_id = ?",
            (user_id,),
        )
        if not rows:
            return None
        r = rows[0]
        return FaceRecord(
            user_id=r[0],
            embedding=np.frombuffer(r[1], dtype=np.float32).copy(),
            pack=PackIdentity.from_json(r[2]),
            bbox=json.loads(r[3]),
            det_score=r[4],
            quality=json.loads(r[5]),
            thumbnail_jpeg=r[6],
            source_url=r[7],
            task_id=r[8],
            created_at=r[9],
            updated_at=r[10],
        )

    def load_gallery(self, space: str) -> GallerySnapshot:
        rows = self._query("SELECT user_id, embedding FROM faces WHERE pack_space = ?", (space,))
        others = self._query(
            "SELECT pack, COUNT(*) FROM faces WHERE pack_space != ? GROUP BY pack", (space,)
        )
        if rows:
            matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            matrix = matrix.reshape(len(rows), -1).copy()
        else:
            matrix = np.zeros((0, 0), dtype=np.float32)
        return GallerySnapshot(
            user_ids=[r[0] for r in rows],
            embeddings=matrix,
            other_spaces={PackIdentity.from_json(p).name: n for p, n in others},
        )

    # -- item outcomes --------------------------------------------------------------------------
    def _save_item(
        self, conn: sqlite3.Connection, task_id: str | None, index: int, result: ItemResult
    ) -> None:
        if task_id is None:
            return
        conn.execute(
            "UPDATE task_items SET state = ?, result = ?, finished_at = ?"
            " WHERE task_id = ? AND idx = ?",
            (_item_state(result), result.model_dump_json(), result.finished_at, task_id, index),
        )
        conn.execute("UPDATE tasks SET updated_at = ? WHERE task_id = ?", (utc_now(), task_id))

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
        now = utc_now()
        with self._write() as conn:
            user_known = conn.execute(
                "SELECT 1 FROM users WHERE user_id = ?", (face.user_id,)
            ).fetchone()
            had_face = conn.execute(
                "SELECT created_at FROM faces WHERE user_id = ?", (face.user_id,)
            ).fetchone()
            if not user_known and not create_user:
                result = result.model_copy(
                    update={
                        "status": False,
                        "error_code": ErrorCode.USER_NOT_FOUND,
                        "error_message": f"User {face.user_id!r} does not exist in the store",
                    }
                )
            elif had_face and not replace:
                result = result.model_copy(
                    update={
                        "status": False,
                        "error_code": ErrorCode.FACE_ALREADY_REGISTERED,
                        "error_message": f"User {face.user_id!r} already has a face "
                        f"(enrolled {had_face[0]}); use replace to overwrite it",
                    }
                )
            else:
                if not user_known:
                    conn.execute(
                        "INSERT INTO users(user_id, created_at) VALUES (?, ?)", (face.user_id, now)
                    )
                conn.execute(
                    "INSERT INTO faces(user_id, embedding, pack_space, pack, bbox, det_score,"
                    " quality, thumbnail, source_url, task_id, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
                    " ON CONFLICT(user_id) DO UPDATE SET embedding=excluded.embedding,"
                    " pack_space=excluded.pack_space, pack=excluded.pack, bbox=excluded.bbox,"
                    " det_score=excluded.det_score, quality=excluded.quality,"
                    " thumbnail=excluded.thumbnail, source_url=excluded.source_url,"
                    " task_id=excluded.task_id, updated_at=excluded.updated_at",
                    (
                        face.user_id,
                        np.asarray(face.embedding, dtype=np.float32).tobytes(),
                        face.pack.space,
                        face.pack.to_json(),
                        json.dumps(face.bbox),
                        face.det_score,
                        json.dumps(face.quality),
                        face.thumbnail_jpeg,
                        face.source_url,
                        task_id,
                        now,
                        now,
                    ),
                )
                result = result.model_copy(update={"replaced": bool(had_face)})
            self._save_item(conn, task_id, index, result)
        return result

    def commit_deletion(self, task_id: str | None, index: int, entry: UserEntry) -> ItemResult:
        with self._write() as conn:
            known = conn.execute(
                "SELECT 1 FROM users WHERE user_id = ?", (entry.user_id,)
            ).fetchone()
            deleted = conn.execute("DELETE FROM faces WHERE user_id = ?", (entry.user_id,)).rowcount
            if deleted:
                result = ItemResult(
                    user_id=entry.user_id,
                    status=True,
                    operation=Operation.DELETE,
                    finished_at=utc_now(),
                )
            elif known:
                result = ItemResult.failure(
                    entry,
                    Operation.DELETE,
                    ErrorCode.NO_FACE_REGISTERED,
                    f"User {entry.user_id!r} exists but has no registered face",
                )
            else:
                result = ItemResult.failure(
                    entry,
                    Operation.DELETE,
                    ErrorCode.USER_NOT_FOUND,
                    f"User {entry.user_id!r} does not exist in the store",
                )
            self._save_item(conn, task_id, index, result)
        return result

    def record_result(self, task_id: str, index: int, result: ItemResult) -> None:
        with self._write() as conn:
            self._save_item(conn, task_id, index, result)

    def record_results(self, task_id: str, results: Sequence[tuple[int, ItemResult]]) -> None:
        with self._write() as conn:
            for index, result in results:
                self._save_item(conn, task_id, index, result)

    # -- tasks ----------------------------------------------------------------------------------
    def create_task(
        self, operation: Operation, entries: Sequence[UserEntry], options: dict[str, object]
    ) -> TaskRecord:
        task_id, now = new_task_id(), utc_now()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO tasks(task_id, operation, status, total_items, options, created_at,"
                " updated_at) VALUES (?,?,?,?,?,?,?)",
                (
                    task_id,
                    operation.value,
                    TaskStatus.QUEUED.value,
                    len(entries),
                    json.dumps(options),
                    now,
                    now,
                ),
            )
            conn.executemany(
                "INSERT INTO task_items(task_id, idx, user_id, avatar_image_url, line)"
                " VALUES (?,?,?,?,?)",
                [
                    (task_id, i, e.user_id, e.avatar_image_url, e.line)
                    for i, e in enumerate(entries)
                ],
            )
        record = self.get_task(task_id)
        assert record is not None
        return record

    def _counts(self, task_id: str) -> tuple[int, int]:
        row = self._query(
            "SELECT COUNT(*) FILTER (WHERE state != 'pending'),"
            " COUNT(*) FILTER (WHERE state IN ('failed', 'cancelled'))"
            " FROM task_items WHERE task_id = ?",
            (task_id,),
        )[0]
        return int(row[0]), int(row[1])

    def get_task(self, task_id: str, *, with_results: bool = True) -> TaskRecord | None:
        rows = self._query(
            "SELECT task_id, operation, status, total_items, error_message, created_at, updated_at"
            " FROM tasks WHERE task_id = ?",
            (task_id,),
        )
        if not rows:
            return None
        return self._record(rows[0], with_results)

    def _record(self, row: tuple, with_results: bool) -> TaskRecord:
        task_id, operation, status, total, error, created, updated = row
        completed, failed = self._counts(task_id)
        results: list[ItemResult] = []
        if with_results:
            results = [
                ItemResult.model_validate_json(r[0])
                for r in self._query(
                    "SELECT result FROM task_items WHERE task_id = ? AND state != 'pending'"
                    " ORDER BY finished_at, idx",
                    (task_id,),
                )
            ]
        return TaskRecord(
            task_id=task_id,
            operation=Operation(operation),
            status=TaskStatus(status),
            progress=TaskRecord.progress_of(completed, total),
            total_items=total,
            completed_items=completed,
            failed_items=failed,
            results=results,
            error_message=error,
            created_at=created,
            updated_at=updated,
        )

    def list_tasks(self, limit: int = 50) -> list[TaskRecord]:
        rows = self._query(
            "SELECT task_id, operation, status, total_items, error_message, created_at, updated_at"
            " FROM tasks ORDER BY created_at DESC LIMIT ?",
            (limit,),
        )
        return [self._record(row, with_results=False) for row in rows]

    def task_options(self, task_id: str) -> dict[str, object]:
        rows = self._query("SELECT options FROM tasks WHERE task_id = ?", (task_id,))
        if not rows:
            raise StoreError(f"No task {task_id}")
        return json.loads(rows[0][0])

    def set_task_status(
        self, task_id: str, status: TaskStatus, error_message: str | None = None
    ) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE tasks SET status = ?, error_message = ?, updated_at = ?,"
                " owner = CASE WHEN ? THEN NULL ELSE owner END WHERE task_id = ?",
                (status.value, error_message, utc_now(), status.is_final, task_id),
            )

    def claim_task(self, task_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE task_items SET state = 'pending', result = NULL, finished_at = NULL"
                " WHERE task_id = ? AND state = 'cancelled'",
                (task_id,),
            )
            conn.execute(
                "UPDATE tasks SET status = ?, error_message = NULL, owner = ?, heartbeat_at = ?,"
                " updated_at = ? WHERE task_id = ?",
                (TaskStatus.PROCESSING.value, _owner(), time.time(), utc_now(), task_id),
            )

    def heartbeat(self, task_id: str) -> None:
        with self._write() as conn:
            conn.execute(
                "UPDATE tasks SET heartbeat_at = ? WHERE task_id = ?", (time.time(), task_id)
            )

    def unfinished_items(self, task_id: str) -> list[tuple[int, UserEntry]]:
        rows = self._query(
            "SELECT idx, user_id, avatar_image_url, line FROM task_items"
            " WHERE task_id = ? AND state IN ('pending', 'cancelled') ORDER BY idx",
            (task_id,),
        )
        return [(r[0], UserEntry(r[1], r[2], r[3])) for r in rows]

    def recover_interrupted(self) -> list[str]:
        """Mark `processing` tasks whose owner is gone as `interrupted`; return their ids."""
        host = socket.gethostname()
        now = time.time()
        stale = []
        for task_id, owner, beat in self._query(
            "SELECT task_id, owner, heartbeat_at FROM tasks WHERE status = ?",
            (TaskStatus.PROCESSING.value,),
        ):
            owner_host, _, pid = (owner or "").rpartition(":")
            if owner and owner_host == host and pid.isdigit():
                dead = not _pid_alive(int(pid))
            else:
                dead = beat is None or now - beat > STALE_HEARTBEAT_S
            if dead:
                stale.append(task_id)
        for task_id in stale:
            self.set_task_status(
                task_id,
                TaskStatus.INTERRUPTED,
                "The process running this task stopped before it finished; resume it to run "
                "the unfinished items",
            )
        return stale
