"""Request and response bodies of the HTTP API, as the original design document has them.

The task record itself is the core `TaskRecord` (its `wire()` shape), so that `facebatch status
--json`, this endpoint and the original API agree field for field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from facebatch_gui.core.records import TaskStatus

REGISTER_MESSAGE = "Batch face registration started in background"
DELETE_MESSAGE = "Batch face deletion started in background"


class UserIn(BaseModel):
    user_id: str
    avatar_image_url: str


class BatchRegisterRequest(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "users": [
                        {
                            "user_id": "alice",
                            "avatar_image_url": "https://example.com/photos/alice.jpg",
                        }
                    ]
                }
            ]
        }
    )

    users: list[UserIn] = Field(min_length=1)


class BatchDeleteRequest(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"user_ids": ["alice", "bob"]}]})

    user_ids: list[str] = Field(min_length=1)


class BatchStarted(BaseModel):
    task_id: str
    message: str
    total_users: int


class CancelAccepted(BaseModel):
    task_id: str
    status: TaskStatus = Field(description="The task's status when the request arrived")
    message: str


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str


class ErrorBody(BaseModel):
    detail: str
