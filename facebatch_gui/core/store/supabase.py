"""The production store on a Supabase project, through its REST API (supabase-py / PostgREST).

Same tables and SQL functions as the Postgres store (`resources/supabase/schema.sql`): each item's
write is one RPC call, and PostgREST runs each call in one transaction, so the face and its
outcome commit together and the unique key settles races between instances. Face lookups by
many ids are split so that no URL grows past `max_filter_chars` (user lookups go in an RPC's
body); reads page through PostgREST's row cap; bulk inserts go 1,000 rows a request. Network
errors and 5xx answers are retried with backoff; what still fails raises StoreError naming the
row and PostgREST's error. Thumbnails go into the row, or into a Storage bucket when
`thumbnails_bucket` is set.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
import numpy as np
from postgrest.exceptions import APIError
from postgrest.types import ReturnMethod

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.errors import ErrorCode, StoreError
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
    task_record,
)

log = logging.getLogger(__name__)

INSERT_CHUNK = 1000
_RETRY_SQLSTATES = ("08", "53", "57P", "40001", "40P01")
_RETRY_PGRST = ("PGRST000", "PGRST001", "PGRST002", "PGRST003")


class SupabaseDbError(StoreError):
    """PostgREST refused a request; `code` is its error code (SQLSTATE or PGRSTnnn)."""

    def __init__(self, message: str, code: str | None) -> None:
        super().__init__(message)
        self.code = code


def pg_list(values: Sequence[str]) -> str:
    """PostgREST's list literal, every element quoted: `("a","b,c","d\\"e")`."""
    return "(" + ",".join(_quoted(v) for v in values) + ")"


def _quoted(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def chunk_for_url(
    values: Sequence[str], max_chars: int, max_items: int = 500
) -> Iterator[list[str]]:
    """Split ids so that each `in.(...)` filter stays under `max_chars` once URL-encoded."""
    chunk: list[str] = []
    size = 0
    for v in values:
        cost = len(quote(_quoted(v), safe="")) + 3  # the encoded comma
        if chunk and (size + cost > max_chars or len(chunk) >= max_items):
            yield chunk
            chunk, size = [], 0
        chunk.append(v)
        size += cost
    if chunk:
        yield chunk


def _hex(data: bytes | None) -> str | None:
    return None if data is None else "\\x" + data.hex()


def _unhex(text: str | None) -> bytes | None:
    if text is None:
        return None
    if not text.startswith("\\x"):
        raise StoreError(f"unexpected bytea text from PostgREST: {text[:20]!r}")
    return bytes.fromhex(text[2:])


def _describe(exc: APIError) -> str:
    text = f"{exc.code or 'error'}: {exc.message or 'no message'}"
    if exc.details:
        text += f" ({exc.details})"
    if exc.hint:
        text += f"; hint: {exc.hint}"
    return text


def _retryable(exc: Exception) -> bool:
    if isinstance(exc, httpx.TransportError):
        return True
    if isinstance(exc, APIError):
        code = exc.code or ""
        if code.isdigit():  # a non-PostgREST body (a proxy's page): its HTTP status
            return code.startswith("5")
        return code.startswith(_RETRY_SQLSTATES) or code in _RETRY_PGRST
    return False


class SupabaseStore:
    def __init__(
        self,
        url: str,
        key: str,
        *,
        thumbnails_bucket: str | None = None,
        lease_s: float = STALE_HEARTBEAT_S,
        owner: str | None = None,
        retries: int = 4,
        backoff_s: float = 0.5,
        timeout_s: float = 30.0,
        max_filter_chars: int = 4000,
        page_size: int = 1000,
    ) -> None:
        """`retries` extra tries after a network error or 5xx, the delay doubling from
        `backoff_s`; `max_filter_chars` bounds one `in.(...)` filter in the URL."""
        from supabase import ClientOptions, create_client
        from supabase.lib.client_options import DEFAULT_HEADERS

        self.url = url
        self.lease_s = lease_s
        self.owner = owner or default_owner()
        self.thumbnails_bucket = thumbnails_bucket
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_filter_chars = max_filter_chars
        self.page_size = page_size
        try:
            self._client = create_client(
                url,
                key,
                options=ClientOptions(
                    headers=dict(DEFAULT_HEADERS),
                    postgrest_client_timeout=timeout_s,
                    postgrest_client_retry=False,  # this store retries, for every method
                    storage_client_timeout=int(timeout_s),
                    auto_refresh_token=False,
                    persist_session=False,
                ),
            )
        except Exception as exc:  # supabase-py raises its own exception for a bad URL/key
            raise StoreError(f"Cannot set up the Supabase client for {url}: {exc}") from exc
        try:
            meta = self._run(
                "read the FaceBatch settings (table facebatch_meta)",
                lambda: self._client.table("facebatch_meta").select("key,value").execute().data,
            )
        except SupabaseDbError as exc:
            if exc.code == "PGRST205":
                raise StoreError(
                    f"The FaceBatch schema is missing in the Supabase project {url}: run "
                    "resources/supabase/schema.sql in its SQL editor (or 'facebatch db init "
                    "--store postgres --dsn <its direct connection string>')"
                ) from exc
            raise
        values = {row["key"]: row["value"] for row in meta}
        self.users_table = values.get("users_table", "users").split(".")[-1].strip('"')
        self.users_id_column = values.get("users_id_column", "id")

    # -- plumbing -------------------------------------------------------------------------------
    def _run(self, what: str, call: Callable[[], Any]) -> Any:
        """Run one request, retrying network errors and 5xx with backoff; name what failed."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            try:
                return call()
            except (APIError, httpx.HTTPError) as exc:
                if attempt < self.retries and _retryable(exc):
                    log.warning("Supabase: %s failed (%s); retrying", what, exc)
                    time.sleep(delay)
                    delay *= 2
                    continue
                raise self._error(what, exc, attempt) from exc
        raise AssertionError("unreachable")

    def _error(self, what: str, exc: Exception, attempt: int) -> StoreError:
        tries = f" after {attempt + 1} tries" if attempt else ""
        if isinstance(exc, APIError):
            if (exc.message or "").lower().startswith("invalid api key") or exc.code in (
                "PGRST301",
                "PGRST302",
                "401",
            ):
                return SupabaseDbError(
                    f"Supabase refused the key while trying to {what}: {_describe(exc)}; use "
                    "the project's service-role key (SUPABASE_SERVICE_KEY)",
                    exc.code,
                )
            return SupabaseDbError(
                f"Supabase could not {what}{tries}: PostgREST error {_describe(exc)}", exc.code
            )
        return StoreError(
            f"Cannot reach Supabase at {self.url} to {what}{tries}: {type(exc).__name__}: {exc}"
        )

    def _rpc(self, what: str, function: str, params: dict[str, Any]) -> Any:
        return self._run(what, lambda: self._client.rpc(function, params).execute().data)

    def _ids_in(self, table: str, column: str, user_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        ids = list(dict.fromkeys(user_ids))
        for chunk in chunk_for_url(ids, self.max_filter_chars):
            rows = self._run(
                f"look up {len(chunk)} users in {table}",
                lambda chunk=chunk: (
                    self._client.table(table)  # type: ignore[misc]
                    .select(column)
                    .filter(column, "in", pg_list(chunk))
                    .execute()
                    .data
                ),
            )
            found.update(str(r[column]) for r in rows)
        return found

    def close(self) -> None:
        try:
            self._client.postgrest.session.close()
        except Exception:
            log.debug("closing the PostgREST session failed", exc_info=True)

    # -- users and faces ------------------------------------------------------------------------
    def existing_users(self, user_ids: Sequence[str]) -> set[str]:
        """Through an RPC that compares ids as text: the users table's ids may be uuids, which a
        PostgREST `in` filter would refuse for any id that is not one."""
        found: set[str] = set()
        ids = list(dict.fromkeys(user_ids))
        for start in range(0, len(ids), INSERT_CHUNK):
            chunk = ids[start : start + INSERT_CHUNK]
            rows = self._rpc(
                f"look up {len(chunk)} users in {self.users_table}",
                "facebatch_existing_users",
                {"p_user_ids": chunk},
            )
            found.update(rows or [])
        return found

    def users_with_faces(self, user_ids: Sequence[str]) -> set[str]:
        return self._ids_in("faces", "user_id", user_ids)

    def get_face(self, user_id: str) -> FaceRecord | None:
        rows = self._run(
            f"read the face of user {user_id!r}",
            lambda: (
                self._client.table("faces")
                .select(
                    "user_id,embedding,pack,bbox,det_score,quality,thumbnail,thumbnail_path,"
                    "source_url,task_id,created_at,updated_at"
                )
                .eq("user_id", user_id)
                .execute()
                .data
            ),
        )
        if not rows:
            return None
        r = rows[0]
        thumbnail = _unhex(r["thumbnail"])
        if r["thumbnail_path"] and self.thumbnails_bucket:
            path, bucket = r["thumbnail_path"], self.thumbnails_bucket
            thumbnail = self._run(
                f"download the thumbnail of user {user_id!r} ({bucket}/{path})",
                lambda: self._client.storage.from_(bucket).download(path),
            )
        blob = _unhex(r["embedding"]) or b""
        return FaceRecord(
            user_id=r["user_id"],
            embedding=np.frombuffer(blob, dtype=">f4").astype(np.float32),
            pack=PackIdentity(**r["pack"]),
            bbox=list(r["bbox"]),
            det_score=float(r["det_score"]),
            quality=dict(r["quality"]),
            thumbnail_jpeg=thumbnail,
            source_url=r["source_url"],
            task_id=r["task_id"],
            created_at=r["created_at"],
            updated_at=r["updated_at"],
        )

    def space_counts(self) -> dict[str, tuple[int, str]]:
        rows = self._rpc("count faces per pack", "facebatch_space_counts", {})
        return {r["pack_space"]: (int(r["faces"]), r["pack_name"]) for r in rows}

    def load_gallery(self, space: str) -> GallerySnapshot:
        """Every face of `space`, page by page in user_id order (keyset, so no page is skipped)."""
        ids: list[str] = []
        blobs: list[bytes] = []
        last: str | None = None
        while True:

            def page(after: str | None = last) -> Any:
                q = (
                    self._client.table("faces")
                    .select("user_id,embedding")
                    .eq("pack_space", space)
                    .order("user_id")
                    .limit(self.page_size)
                )
                if after is not None:
                    q = q.gt("user_id", after)
                return q.execute().data

            rows = self._run(f"load the faces of pack space {space} after {last!r}", page)
            for r in rows:
                ids.append(r["user_id"])
                blobs.append(_unhex(r["embedding"]) or b"")
            if not rows:  # until an empty page: the server may cap pages below page_size
                break
            last = rows[-1]["user_id"]
        others = self._rpc(
            "count faces of other packs", "facebatch_other_spaces", {"p_space": space}
        )
        if blobs:
            size = len(blobs[0])
            matrix = np.frombuffer(b"".join(blobs), dtype=">f4").reshape(len(blobs), size // 4)
            embeddings = matrix.astype(np.float32)
        else:
            embeddings = np.zeros((0, 0), dtype=np.float32)
        return GallerySnapshot(
            user_ids=ids,
            embeddings=embeddings,
            other_spaces={r["pack_name"]: int(r["faces"]) for r in others},
        )

    # -- item outcomes --------------------------------------------------------------------------
    def _upload_thumbnail(self, user_id: str, data: bytes) -> str:
        assert self.thumbnails_bucket is not None
        digest = hashlib.sha256(user_id.encode()).hexdigest()[:32]
        path = f"faces/{digest}/{uuid.uuid4().hex}.jpg"
        bucket = self.thumbnails_bucket
        self._run(
            f"upload the thumbnail of user {user_id!r} to {bucket}/{path}",
            lambda: self._client.storage.from_(bucket).upload(
                path, data, {"content-type": "image/jpeg"}
            ),
        )
        return path

    def _remove_thumbnail(self, path: str) -> None:
        assert self.thumbnails_bucket is not None
        try:
            self._client.storage.from_(self.thumbnails_bucket).remove([path])
        except Exception:  # noqa: BLE001 - an orphaned thumbnail is harmless
            log.warning("could not remove the unused thumbnail %s", path)

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
        embedding = np.asarray(face.embedding, dtype=np.float32)
        path = None
        if self.thumbnails_bucket and face.thumbnail_jpeg is not None:
            path = self._upload_thumbnail(face.user_id, face.thumbnail_jpeg)
        params = {
            "p_task_id": task_id,
            "p_idx": index,
            "p_user_id": face.user_id,
            "p_embedding": embedding.tolist(),
            "p_pack_space": face.pack.space,
            "p_pack": {
                "name": face.pack.name,
                "detector_sha256": face.pack.detector_sha256,
                "recognizer_sha256": face.pack.recognizer_sha256,
                "det_size": face.pack.det_size,
                "embedding_dim": face.pack.embedding_dim,
            },
            "p_bbox": [float(v) for v in face.bbox],
            "p_det_score": float(face.det_score),
            "p_quality": face.quality,
            "p_thumbnail": None if path else _hex(face.thumbnail_jpeg),
            "p_thumbnail_path": path,
            "p_source_url": face.source_url,
            "p_enrolled_by": self.owner,
            "p_results": registration_outcomes(face, result),
            "p_replace": replace,
            "p_create_user": create_user,
        }
        tries = 0

        def call() -> Any:
            nonlocal tries
            tries += 1
            return self._client.rpc("facebatch_commit_registration", params).execute().data

        out = ItemResult.model_validate(
            self._run(f"store the face of user {face.user_id!r} (item {index})", call)
        )
        if (
            tries > 1
            and out.error_code == ErrorCode.FACE_ALREADY_REGISTERED
            and self._is_own_write(face.user_id, embedding)
        ):
            # An earlier try committed but its answer was lost: that write is this item's.
            out = ItemResult.model_validate(params["p_results"]["ok"])
            if task_id is not None:
                self.record_result(task_id, index, out)
        if path and not out.status:
            self._remove_thumbnail(path)
        return out

    def _is_own_write(self, user_id: str, embedding: np.ndarray) -> bool:
        stored = self.get_face(user_id)
        return stored is not None and np.array_equal(stored.embedding, embedding)

    def commit_deletion(self, task_id: str | None, index: int, entry: UserEntry) -> ItemResult:
        out = self._rpc(
            f"delete the face of user {entry.user_id!r} (item {index})",
            "facebatch_commit_deletion",
            {
                "p_task_id": task_id,
                "p_idx": index,
                "p_user_id": entry.user_id,
                "p_results": deletion_outcomes(entry),
            },
        )
        return ItemResult.model_validate(out)

    def record_result(self, task_id: str, index: int, result: ItemResult) -> None:
        self.record_results(task_id, [(index, result)])

    def record_results(self, task_id: str, results: Sequence[tuple[int, ItemResult]]) -> None:
        items = [{"idx": i, "result": r.model_dump(mode="json")} for i, r in results]
        for start in range(0, len(items), INSERT_CHUNK):
            self._rpc(
                f"record {len(items[start : start + INSERT_CHUNK])} results of task {task_id}",
                "facebatch_record_results",
                {"p_task_id": task_id, "p_items": items[start : start + INSERT_CHUNK]},
            )

    # -- tasks ----------------------------------------------------------------------------------
    def _insert(self, what: str, table: str, rows: list[dict[str, Any]]) -> None:
        """Insert rows in one request; a duplicate key on a retry means the first try landed."""
        tries = 0

        def call() -> None:
            nonlocal tries
            tries += 1
            try:
                self._client.table(table).insert(rows, returning=ReturnMethod.minimal).execute()
            except APIError as exc:
                if tries > 1 and exc.code == "23505":
                    return
                raise

        self._run(what, call)

    def create_task(
        self, operation: Operation, entries: Sequence[UserEntry], options: dict[str, object]
    ) -> TaskRecord:
        task_id = new_task_id()
        self._insert(
            f"create task {task_id}",
            "tasks",
            [
                {
                    "task_id": task_id,
                    "operation": operation.value,
                    "status": TaskStatus.QUEUED.value,
                    "total_items": len(entries),
                    "options": options,
                }
            ],
        )
        try:
            for start in range(0, len(entries), INSERT_CHUNK):
                rows = [
                    {
                        "task_id": task_id,
                        "idx": i,
                        "user_id": e.user_id,
                        "avatar_image_url": e.avatar_image_url,
                        "line": e.line,
                    }
                    for i, e in enumerate(entries[start : start + INSERT_CHUNK], start)
                ]
                self._insert(
                    f"add items {start}-{start + len(rows) - 1} to task {task_id}",
                    "task_items",
                    rows,
                )
        except StoreError:
            self._run(
                f"remove the half-created task {task_id}",
                lambda: self._client.table("tasks").delete().eq("task_id", task_id).execute(),
            )
            raise
        record = self.get_task(task_id)
        assert record is not None
        return record

    def _pages(self, what: str, build: Callable[[int], Any]) -> list[dict[str, Any]]:
        """All rows of an ordered query, `page_size` at a time (PostgREST caps each answer)."""
        rows: list[dict[str, Any]] = []
        while True:
            offset = len(rows)
            page = self._run(what, lambda offset=offset: build(offset).execute().data)  # type: ignore[misc]
            if not page:  # until an empty page: the server may cap pages below page_size
                return rows
            rows.extend(page)

    def get_task(self, task_id: str, *, with_results: bool = True) -> TaskRecord | None:
        rows = self._rpc(
            f"read task {task_id}", "facebatch_tasks", {"p_task_id": task_id, "p_limit": 1}
        )
        if not rows:
            return None
        results: list[ItemResult] = []
        if with_results:
            items = self._pages(
                f"read the results of task {task_id}",
                lambda offset: (
                    self._client.table("task_items")
                    .select("result")
                    .eq("task_id", task_id)
                    .neq("state", "pending")
                    .order("finished_at", nullsfirst=True)
                    .order("idx")
                    .range(offset, offset + self.page_size - 1)
                ),
            )
            results = [ItemResult.model_validate(r["result"]) for r in items]
        return task_record(rows[0], results)

    def list_tasks(self, limit: int = 50) -> list[TaskRecord]:
        rows = self._rpc("list tasks", "facebatch_tasks", {"p_task_id": None, "p_limit": limit})
        return [task_record(r, []) for r in rows]

    def task_options(self, task_id: str) -> dict[str, object]:
        rows = self._run(
            f"read the options of task {task_id}",
            lambda: (
                self._client.table("tasks").select("options").eq("task_id", task_id).execute().data
            ),
        )
        if not rows:
            raise StoreError(f"No task {task_id}")
        return dict(rows[0]["options"])

    def set_task_status(
        self, task_id: str, status: TaskStatus, error_message: str | None = None
    ) -> None:
        self._rpc(
            f"set task {task_id} {status.value}",
            "facebatch_set_task_status",
            {
                "p_task_id": task_id,
                "p_status": status.value,
                "p_error_message": error_message,
                "p_final": status.is_final,
            },
        )

    def claim_task(self, task_id: str) -> None:
        claimed = self._rpc(
            f"claim task {task_id}",
            "facebatch_claim_task",
            {"p_task_id": task_id, "p_owner": self.owner},
        )
        if not claimed:
            raise StoreError(claimed_elsewhere(task_id))

    def heartbeat(self, task_id: str) -> None:
        self._rpc(f"heartbeat task {task_id}", "facebatch_heartbeat", {"p_task_id": task_id})

    def unfinished_items(self, task_id: str) -> list[tuple[int, UserEntry]]:
        rows = self._pages(
            f"read the unfinished items of task {task_id}",
            lambda offset: (
                self._client.table("task_items")
                .select("idx,user_id,avatar_image_url,line")
                .eq("task_id", task_id)
                .in_("state", ["pending", "cancelled"])
                .order("idx")
                .range(offset, offset + self.page_size - 1)
            ),
        )
        return [(r["idx"], UserEntry(r["user_id"], r["avatar_image_url"], r["line"])) for r in rows]

    def recover_interrupted(self) -> list[str]:
        """As the Postgres store: dead pid on this host, or a heartbeat older than the lease."""
        stale = []
        for row in self._rpc("list running tasks", "facebatch_processing_tasks", {}):
            if row["owner"] == self.owner:
                continue
            if owner_is_dead(row["owner"], row["heartbeat_age_s"], self.lease_s) and self._rpc(
                f"mark task {row['task_id']} interrupted",
                "facebatch_mark_interrupted",
                {
                    "p_task_id": row["task_id"],
                    "p_owner": row["owner"],
                    "p_message": INTERRUPTED_MESSAGE,
                },
            ):
                stale.append(row["task_id"])
        return stale
