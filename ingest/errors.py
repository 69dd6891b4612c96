"""Every error leaves as {"error": {"code", "message", "details"}} (API.md)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import redis.exceptions
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.metrics import HEARTBEATS_REJECTED
from shared.errors import RateLimited, ServiceError, Unauthenticated, Unavailable


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
    if isinstance(exc, Unavailable | RateLimited):
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

    @app.exception_handler(redis.exceptions.ConnectionError)
    @app.exception_handler(redis.exceptions.TimeoutError)
    async def _redis_down(request: Request, exc: Exception) -> JSONResponse:
        _count_refused_heartbeat(request, "unavailable")
        return error_response(
            503, "unavailable", "the heartbeat buffer (Redis) is unavailable; retry later",
            headers={"Retry-After": "5"},
        )  # fmt: skip


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413 before anything reads them whole."""

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
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _TooLarge:
            await self._too_large(scope, receive, send)

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(
            413, "too_large", f"request body over {self.max_bytes} bytes", {"limit": self.max_bytes}
        )
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass
