"""The face store contract that the embedded SQLite store and the production stores share.

Every write that settles one user's item (the face change *and* the item's outcome) happens in one
transaction, so a crash never leaves a face without its result or a result without its face.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from facebatch_gui.core.engine import PackIdentity
from facebatch_gui.core.records import ItemResult, Operation, TaskRecord, TaskStatus, UserEntry


@dataclass(slots=True)
class FaceRecord:
    user_id: str
    embedding: np.ndarray
    pack: PackIdentity
    bbox: list[float]
    det_score: float
    quality: dict[str, float]
    thumbnail_jpeg: bytes | None = None
    source_url: str | None = None
    task_id: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


@dataclass(slots=True)
class GallerySnapshot:
    """All enrolled faces of one embedding space, for the duplicate check."""

    user_ids: list[str]
    embeddings: np.ndarray
    other_spaces: dict[str, int] = field(default_factory=dict)


@runtime_checkable
class FaceStore(Protocol):
    # -- users and faces ------------------------------------------------------------------------
    def existing_users(self, user_ids: Sequence[str]) -> set[str]: ...

    def users_with_faces(self, user_ids: Sequence[str]) -> set[str]: ...

    def get_face(self, user_id: str) -> FaceRecord | None: ...

    def load_gallery(self, space: str) -> GallerySnapshot: ...

    # -- item outcomes (atomic with the face change) -------------------------------------------
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
        """Write face + outcome; may turn `result` into user_not_found/face_already_registered."""
        ...

    def commit_deletion(self, task_id: str | None, index: int, entry: UserEntry) -> ItemResult: ...

    def record_result(self, task_id: str, index: int, result: ItemResult) -> None: ...

    def record_results(self, task_id: str, results: Sequence[tuple[int, ItemResult]]) -> None: ...

    # -- tasks ----------------------------------------------------------------------------------
    def create_task(
        self, operation: Operation, entries: Sequence[UserEntry], options: dict[str, object]
    ) -> TaskRecord: ...

    def get_task(self, task_id: str, *, with_results: bool = True) -> TaskRecord | None: ...

    def list_tasks(self, limit: int = 50) -> list[TaskRecord]: ...

    def task_options(self, task_id: str) -> dict[str, object]: ...

    def set_task_status(
        self, task_id: str, status: TaskStatus, error_message: str | None = None
    ) -> None: ...

    def claim_task(self, task_id: str) -> None:
        """Mark the task processing, owned by this process, and reopen its unfinished items."""
        ...

    def heartbeat(self, task_id: str) -> None: ...

    def unfinished_items(self, task_id: str) -> list[tuple[int, UserEntry]]: ...

    def recover_interrupted(self) -> list[str]: ...

    def close(self) -> None: ...
