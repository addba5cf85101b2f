"""What the Postgres and Supabase stores share: the schema file, the outcomes handed to the
schema's SQL functions, and how a row of `facebatch_tasks()` becomes a TaskRecord.

Both stores run each item's write through the same SQL function (`facebatch_commit_registration`
and friends in `resources/supabase/schema.sql`), so the atomicity and the uniqueness rules live in
one place: the database.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from facebatch_gui.core.errors import ErrorCode
from facebatch_gui.core.records import (
    ItemResult,
    Operation,
    TaskRecord,
    TaskStatus,
    UserEntry,
    utc_now,
)
from facebatch_gui.core.store.base import FaceRecord

STALE_HEARTBEAT_S = 60.0
INTERRUPTED_MESSAGE = (
    "The process running this task stopped before it finished; resume it to run the unfinished "
    "items"
)


def schema_path() -> Path:
    """`resources/supabase/schema.sql` in a checkout; packaged copies sit beside this module."""
    here = Path(__file__).resolve()
    for candidate in (
        here.parents[3] / "resources" / "supabase" / "schema.sql",
        here.parent / "schema.sql",
    ):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("resources/supabase/schema.sql not found")


def schema_sql() -> str:
    return schema_path().read_text(encoding="utf-8")


def default_owner() -> str:
    """host:pid, as the SQLite store writes it: lets recovery on the same host check the pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_is_dead(owner: str | None, heartbeat_age_s: float | None, lease_s: float) -> bool:
    """A task's owner is gone when its pid is dead on this host, or its heartbeat is stale."""
    host, _, pid = (owner or "").rpartition(":")
    if owner and host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False  # alive on this host, as the SQLite store decides
    return heartbeat_age_s is None or heartbeat_age_s > lease_s


def registration_outcomes(face: FaceRecord, result: ItemResult) -> dict[str, Any]:
    """The outcome for each case the SQL function can meet, as ItemResult JSON."""
    uid = face.user_id
    refused = {"status": False}
    return {
        "ok": result.model_dump(mode="json"),
        "user_not_found": result.model_copy(
            update={
                **refused,
                "error_code": ErrorCode.USER_NOT_FOUND,
                "error_message": f"User {uid!r} does not exist in the store",
            }
        ).model_dump(mode="json"),
        "face_already_registered": result.model_copy(
            update={
                **refused,
                "error_code": ErrorCode.FACE_ALREADY_REGISTERED,
                "error_message": f"User {uid!r} already has a face (enrolled {{enrolled}}); "
                "use replace to overwrite it",
            }
        ).model_dump(mode="json"),
    }


def deletion_outcomes(entry: UserEntry) -> dict[str, Any]:
    uid = entry.user_id
    return {
        "ok": ItemResult(
            user_id=uid, status=True, operation=Operation.DELETE, finished_at=utc_now()
        ).model_dump(mode="json"),
        "no_face_registered": ItemResult.failure(
            entry,
            Operation.DELETE,
            ErrorCode.NO_FACE_REGISTERED,
            f"User {uid!r} exists but has no registered face",
        ).model_dump(mode="json"),
        "user_not_found": ItemResult.failure(
            entry,
            Operation.DELETE,
            ErrorCode.USER_NOT_FOUND,
            f"User {uid!r} does not exist in the store",
        ).model_dump(mode="json"),
    }


def task_record(row: Mapping[str, Any], results: list[ItemResult]) -> TaskRecord:
    """A row of `facebatch_tasks()` (plus the finished items) as the wire-shaped record."""
    total, completed = int(row["total_items"]), int(row["completed_items"])
    return TaskRecord(
        task_id=row["task_id"],
        operation=Operation(row["operation"]),
        status=TaskStatus(row["status"]),
        progress=TaskRecord.progress_of(completed, total),
        total_items=total,
        completed_items=completed,
        failed_items=int(row["failed_items"]),
        results=results,
        error_message=row["error_message"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def claimed_elsewhere(task_id: str) -> str:
    return (
        f"Task {task_id} is being run by another instance (its heartbeat is fresh); it can be "
        "resumed here once that instance stops and the task shows as interrupted"
    )
