"""Every error leaves as {"error": {"code", "message", "details"}} (API.md)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.metrics import HEARTBEATS_REJECTED
from shared.errors import RetryLater, ServiceError, Unauthenticated

log = logging.getLogger(__name__)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details}}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_details(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Name the field and the rule of each validation error."""
    return [
        {
            "field": ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body",
            "rule": err.get("type"),
            "message": err.get("msg"),
        }
        for err in errors
    ]


def _headers_for(exc: ServiceError) -> dict[str, str] | None:
    if isinstance(exc, Unauthenticated):
        return {"WWW-Authenticate": "Bearer"}
    if isinstance(exc, RetryLater):
        return {"Retry-After": str(exc.retry_after_s)}
    return None


def _count_refused_heartbeat(request: Request, code: str) -> None:
    """Every refused single heartbeat, whatever refused it, counts under its reason."""
    if request.method == "POST" and request.url.path.endswith("/watch-time"):
        HEARTBEATS_REJECTED.labels(reason=code).inc()


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        _count_refused_heartbeat(request, exc.code)
        return error_response(exc.status, exc.code, exc.message, exc.details, _headers_for(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        _count_refused_heartbeat(request, "invalid")
        details = validation_details(exc.errors())
        first = details[0] if details else {"field": "body", "rule": "invalid"}
        message = f"{first['field']}: {first.get('message') or first['rule']}"
        return error_response(422, "invalid", message, details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        code = codes.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(redis.exceptions.ResponseError)
    async def _redis_refused(request: Request, exc: Exception) -> JSONResponse:
        # Inside a script, OOM and READONLY arrive as a generic script error.
        text = str(exc)
        if "OOM" in text:
            _count_refused_heartbeat(request, "buffer_full")
            log.error("Redis refused a write: out of memory (maxmemory reached)")
            return error_response(
                503, "buffer_full", "the heartbeat buffer is full; retry later",
                headers={"Retry-After": "10"},
            )  # fmt: skip
        if "READONLY" in text:
            return await _redis_down(request, exc)
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "unexpected error; it has been logged")

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    @app.exception_handler(redis.exceptions.ReadOnlyError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        _count_refused_heartbeat(request, "unavailable")
        return error_response(
            503, "unavailable", "the heartbeat buffer (Redis) is unavailable; retry later",
            headers={"Retry-After": "5"},
        )  # fmt: skip


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413, declared (Content-Length) or streamed (chunked):
    a streamed body is read here, up to the limit, and replayed to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break  # the client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._too_large(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "too_large", f"request body over {self.max_bytes} bytes", {"limit": self.max_bytes}
        )
        await response(scope, receive, send)
