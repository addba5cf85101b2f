"""`create_app`: the FastAPI application over a `TaskService`, with limits and optional auth.

Auth and the body limit are plain ASGI middleware so that they act before the body is parsed: an
unauthenticated client gets 401 whatever it sends, and an oversized body is refused (413) without
being read past the limit.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import FastAPI, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from facebatch_gui import __version__
from facebatch_gui.api.routes import ApiContext, health_router, router
from facebatch_gui.api.schemas import ErrorBody
from facebatch_gui.core.apiconfig import ApiConfig
from facebatch_gui.core.service import ServiceUnavailable, TaskService
from facebatch_gui.core.settings import BatchSettings

OPEN_PATHS = frozenset({"/health"})


async def _send_json(
    send: Send, status: int, detail: str, headers: dict[str, str] | None = None
) -> None:
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class TokenMiddleware:
    """Every path but /health needs `Authorization: Bearer <token>` (constant-time compare)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            supplied = b""
            for name, value in scope["headers"]:
                if name == b"authorization":
                    scheme, _, rest = value.partition(b" ")
                    if scheme.lower() == b"bearer":
                        supplied = rest.strip()
            if not hmac.compare_digest(supplied, self.token):
                await _send_json(
                    send,
                    401,
                    "Missing or wrong token: send 'Authorization: Bearer <token>'",
                    {"WWW-Authenticate": "Bearer"},
                )
                return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, by the declared length or while reading."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = f"Request body is over the limit of {self.max_bytes:,} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
        chunks: list[bytes] = []
        size = 0
        first: Message | None = None
        while True:
            message = await receive()
            if message["type"] != "http.request":
                first = message  # a disconnect: hand it on as it is
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _send_json(send, 413, too_big)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                first = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed and first is not None:
                replayed = True
                return first
            return await receive()

        await self.app(scope, replay, send)


_bearer = HTTPBearer(
    auto_error=False, description="The token given to `facebatch serve --token` or the GUI"
)


def _declare_bearer(_: Annotated[Any, Security(_bearer)] = None) -> None:
    """Puts the bearer scheme in the OpenAPI document; `TokenMiddleware` enforces it."""


def create_app(
    service: TaskService,
    config: ApiConfig | None = None,
    settings: BatchSettings | Callable[[], BatchSettings] | None = None,
) -> FastAPI:
    """`settings` is the operator's BatchSettings (or a callable giving the current ones)."""
    config = config or ApiConfig()
    if settings is None:
        settings = BatchSettings()
    provider = settings if callable(settings) else (lambda s=settings: s)
    app = FastAPI(
        title="FaceBatch",
        version=__version__,
        description="Start batch face registration and deletion, and follow their progress.",
    )
    app.state.ctx = ApiContext(service=service, config=config, settings=provider)
    app.include_router(health_router)
    if config.token:
        app.include_router(
            router,
            dependencies=[Security(_declare_bearer)],
            responses={401: {"model": ErrorBody, "description": "Missing or wrong token"}},
        )
    else:
        app.include_router(router)

    @app.exception_handler(StarletteHTTPException)
    async def _unparsable_body(request: Request, exc: StarletteHTTPException) -> Response:
        # FastAPI answers 400 when the body is not even JSON text (bytes that are not UTF-8,
        # nesting too deep for the parser); these routes raise no 400 themselves. A malformed
        # body is 422 here, in the shape of FastAPI's other validation errors.
        if exc.status_code == 400 and exc.__cause__ is not None:
            cause = exc.__cause__
            return JSONResponse(
                {
                    "detail": [
                        {
                            "type": "json_invalid",
                            "loc": ["body"],
                            "msg": f"Body is not valid JSON ({type(cause).__name__}: {cause})",
                        }
                    ]
                },
                status_code=422,
            )
        return await http_exception_handler(request, exc)

    @app.exception_handler(ServiceUnavailable)
    async def _unavailable(_request: Request, exc: ServiceUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    if config.token:
        app.add_middleware(TokenMiddleware, token=config.token)  # outermost: before the body
    return app
