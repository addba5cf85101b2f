"""Plain records that flow from the user list through a task to the store and back to callers.

`TaskRecord` and `ItemResult` keep the wire shape of the original design document field for field
(`task_id`, `status`, `progress`, `total_items`, `completed_items`, `failed_items`, `results`,
`error_message`, `created_at`, `updated_at`), with extra per-item detail added beside it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from pydantic import BaseModel, Field

from facebatch_gui.core.errors import ErrorCode


def utc_now() -> str:
    """ISO-8601 in UTC with an explicit offset, so every store and client agrees on the instant."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def new_task_id() -> str:
    return str(uuid.uuid4())


class Operation(StrEnum):
    REGISTER = "register"
    DELETE = "delete"


class TaskStatus(StrEnum):
    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def is_final(self) -> bool:
        return self in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.CANCELLED)

    @property
    def is_resumable(self) -> bool:
        return self in (TaskStatus.INTERRUPTED, TaskStatus.CANCELLED, TaskStatus.FAILED)


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One row of a user list. `line` is where it came from, so errors can point at it."""

    user_id: str
    avatar_image_url: str = ""
    line: int | None = None


class QualityFigures(BaseModel):
    face_size: int = Field(description="Shorter side of the face box in source pixels")
    blur: float = Field(description="Variance of the Laplacian on the aligned 112x112 face")
    det_score: float


class ItemResult(BaseModel):
    """Outcome of one user in a task; `status` is true on success, as in the seed's results."""

    user_id: str
    status: bool
    operation: Operation = Operation.REGISTER
    error_code: ErrorCode | None = None
    error_message: str | None = None
    avatar_image_url: str | None = None
    bbox: list[float] | None = None
    det_score: float | None = None
    quality: QualityFigures | None = None
    face_count: int | None = None
    duplicate_of: str | None = None
    similarity: float | None = None
    previous_similarity: float | None = None
    warnings: list[str] = Field(default_factory=list)
    replaced: bool = False
    finished_at: str | None = None

    @classmethod
    def failure(
        cls,
        entry: UserEntry,
        operation: Operation,
        code: ErrorCode,
        message: str,
        **extra: object,
    ) -> ItemResult:
        return cls(
            user_id=entry.user_id,
            status=False,
            operation=operation,
            error_code=code,
            error_message=message,
            avatar_image_url=entry.avatar_image_url or None,
            finished_at=utc_now(),
            **extra,
        )


class TaskRecord(BaseModel):
    task_id: str
    status: TaskStatus
    progress: int = 0
    total_items: int = 0
    completed_items: int = 0
    failed_items: int = 0
    results: list[ItemResult] = Field(default_factory=list)
    error_message: str | None = None
    created_at: str
    updated_at: str
    operation: Operation = Operation.REGISTER

    @staticmethod
    def progress_of(completed: int, total: int) -> int:
        return 100 if total == 0 else min(100, completed * 100 // total)

    def wire(self) -> dict[str, object]:
        """The JSON shape clients of the original API read."""
        return self.model_dump(mode="json")
