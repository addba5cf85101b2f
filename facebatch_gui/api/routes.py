"""The routes of the original design document, plus task listing, cancel and a health check.

Handlers only validate and delegate to the `TaskService`; they never touch Qt, the runners or
the store directly.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from facebatch_gui import __version__
from facebatch_gui.api.schemas import (
    DELETE_MESSAGE,
    REGISTER_MESSAGE,
    BatchDeleteRequest,
    BatchRegisterRequest,
    BatchStarted,
    CancelAccepted,
    ErrorBody,
    Health,
)
from facebatch_gui.core.apiconfig import ApiConfig
from facebatch_gui.core.records import TaskRecord, UserEntry
from facebatch_gui.core.service import TaskService
from facebatch_gui.core.settings import BatchSettings

RETRY_AFTER_S = 5


@dataclass
class ApiContext:
    service: TaskService
    config: ApiConfig
    settings: Callable[[], BatchSettings]
    start_lock: threading.Lock = field(default_factory=threading.Lock)

    def task_settings(self) -> BatchSettings:
        """The operator's settings, with downloads held to public http(s) URLs (unless allowed)."""
        base = self.settings()
        fetch = base.fetch.model_copy(
            update={
                "allow_local": False,
                "allow_private_networks": self.config.allow_private_urls,
                "allowed_networks": list(self.config.allowed_networks),
            }
        )
        return base.model_copy(update={"fetch": fetch})

    def check_batch_size(self, count: int, name: str) -> None:
        limit = self.config.max_users_per_batch
        if count > limit:
            raise RequestValidationError(
                [
                    {
                        "type": "too_long",
                        "loc": ("body", name),
                        "msg": f"List should have at most {limit} items, not {count} "
                        "(the endpoint's users-per-batch limit)",
                        "ctx": {"field_type": "List", "max_length": limit, "actual_length": count},
                    }
                ]
            )

    def start(self, launch: Callable[[], str]) -> str:
        """Start a task unless too many are running; the lock makes check-and-start one step."""
        with self.start_lock:
            running = self.service.running_count()
            limit = self.config.max_concurrent_tasks
            if running >= limit:
                raise HTTPException(
                    status.HTTP_429_TOO_MANY_REQUESTS,
                    f"{running} tasks are running, the limit is {limit}; try again later",
                    headers={"Retry-After": str(RETRY_AFTER_S)},
                )
            return launch()


def _ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.ctx
    return ctx


Ctx = Annotated[ApiContext, Depends(_ctx)]


def _err(description: str) -> dict[str, Any]:
    return {"model": ErrorBody, "description": description}


Responses = dict[int | str, dict[str, Any]]

_UNAVAILABLE: Responses = {
    503: _err("The task manager cannot take the call now (no models, shutting down)")
}
_START: Responses = {
    413: _err("Request body over the size limit"),
    429: _err("Too many tasks running; see Retry-After"),
    **_UNAVAILABLE,
}
_NOT_FOUND: Responses = {404: _err("No such task")}

router = APIRouter(prefix="/faces", tags=["faces"])
health_router = APIRouter(tags=["health"])


@router.post("/batch-register", response_model=BatchStarted, responses=_START)
def batch_register(body: BatchRegisterRequest, ctx: Ctx) -> BatchStarted:
    """Start registering the faces of these users in the background."""
    ctx.check_batch_size(len(body.users), "users")
    entries = [
        UserEntry(u.user_id, u.avatar_image_url, line=i) for i, u in enumerate(body.users, 1)
    ]
    settings = ctx.task_settings()
    task_id = ctx.start(lambda: ctx.service.start_register(entries, settings))
    return BatchStarted(task_id=task_id, message=REGISTER_MESSAGE, total_users=len(entries))


@router.post("/batch-delete", response_model=BatchStarted, responses=_START)
def batch_delete(body: BatchDeleteRequest, ctx: Ctx) -> BatchStarted:
    """Start deleting the faces of these users in the background."""
    ctx.check_batch_size(len(body.user_ids), "user_ids")
    entries = [UserEntry(uid, "", line=i) for i, uid in enumerate(body.user_ids, 1)]
    settings = ctx.task_settings()
    task_id = ctx.start(lambda: ctx.service.start_delete(entries, settings))
    return BatchStarted(task_id=task_id, message=DELETE_MESSAGE, total_users=len(entries))


@router.get(
    "/task-status/{task_id}",
    response_model=TaskRecord,
    responses={**_NOT_FOUND, **_UNAVAILABLE},
)
def task_status(task_id: str, ctx: Ctx) -> JSONResponse:
    """The task record with every settled user's result."""
    record = ctx.service.get_task(task_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Task not found")
    return JSONResponse(record.wire())


@router.get("/tasks", response_model=list[TaskRecord], responses=_UNAVAILABLE)
def list_tasks(
    ctx: Ctx, limit: Annotated[int, Query(ge=1, le=500, description="How many")] = 20
) -> JSONResponse:
    """Recent tasks, newest first, without their per-user results."""
    return JSONResponse([r.wire() for r in ctx.service.list_tasks(limit)])


@router.post(
    "/tasks/{task_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=CancelAccepted,
    responses={
        **_NOT_FOUND,
        409: _err("The task is not running in this app (finished, or another process's)"),
        **_UNAVAILABLE,
    },
)
def cancel_task(task_id: str, ctx: Ctx) -> CancelAccepted:
    """Ask a running task to stop; its unfinished users end `cancelled`, and it can be resumed."""
    record = ctx.service.get_task(task_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Task not found")
    if record.status.is_final or not ctx.service.cancel(task_id):
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"Task {task_id} is {record.status.value} and not running in this app; "
            "only a running task can be cancelled",
        )
    return CancelAccepted(task_id=task_id, status=record.status, message="Cancellation requested")


@health_router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness; needs no token and does not wait for the task manager."""
    return Health(version=__version__)
