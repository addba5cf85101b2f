"""What a front end without Qt (the HTTP endpoint) needs from the task manager.

The Qt side implements it in `facebatch_gui.qt.service`; keeping the protocol here lets the HTTP
layer depend on the core only, and lets every front end share one task manager.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from facebatch_gui.core.errors import FaceBatchError
from facebatch_gui.core.records import TaskRecord, UserEntry
from facebatch_gui.core.settings import BatchSettings


class ServiceUnavailable(FaceBatchError):
    """The task manager cannot take the call now (shutting down, busy past a timeout, no models)."""


@runtime_checkable
class TaskService(Protocol):
    def start_register(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str:
        """Create and start a register task; returns its id."""
        ...

    def start_delete(self, entries: Sequence[UserEntry], settings: BatchSettings) -> str: ...

    def get_task(self, task_id: str) -> TaskRecord | None:
        """The task with its results, or None when no such task exists."""
        ...

    def list_tasks(self, limit: int = 50) -> list[TaskRecord]:
        """Most recent first, without results."""
        ...

    def cancel(self, task_id: str) -> bool:
        """Ask a task running here to stop; False when it is not running in this process."""
        ...

    def running_count(self) -> int: ...
