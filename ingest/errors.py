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
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.metrics import HEARTBEATS_REJECTED
from shared.errors import ClientTsOutOfRange, RetryLater, ServiceError, Unauthenticated

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


# Validation rules that API.md gives an error code of their own (when the first error's).
_CODED_RULES = {ClientTsOutOfRange.code}


def invalid_response(errors: Iterable[Mapping[str, Any]]) -> tuple[JSONResponse, str]:
    """The 422 for validation errors (each named once), and its error code."""
    details = list({(d["field"], d["rule"]): d for d in validation_details(errors)}.values())
    first = details[0] if details else {"field": "body", "rule": "invalid"}
    message = f"{first['field']}: {first.get('message') or first['rule']}"
    code = first["rule"] if first["rule"] in _CODED_RULES else "invalid"
    return error_response(422, code, message, details), code


# A body that a JSON content type announces but that cannot be decoded for another reason than
# its syntax (FastAPI's own 400, and the heartbeat route's, whose cause is the decoder's error).
UNREADABLE_BODY = {
    "type": "json_invalid",
    "loc": ("body",),
    "msg": "not JSON this service reads: UTF-8 text, integers of at most 4,300 digits, and "
    "arrays and objects nested less than about 1,000 deep",
}


def _unreadable_body(exc: StarletteHTTPException) -> bool:
    return exc.status_code == 400 and isinstance(exc.__cause__, ValueError | RecursionError)


def _unavailable() -> JSONResponse:
    return error_response(
        503,
        "unavailable",
        "the heartbeat buffer (Redis) is unavailable; retry later",
        headers={"Retry-After": "5"},
    )


_REDIS_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    # A Redis Cluster whose primary for this student's slot is down or moving.
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
    redis.exceptions.TryAgainError,
)
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "too_large"}


def response_for(exc: Exception, method: str, path: str) -> tuple[JSONResponse, str]:
    """The error-shaped response for an exception, and the reason it counts under when it
    refused a heartbeat. Unexpected exceptions are logged and answer 500."""
    if isinstance(exc, ServiceError):
        headers: dict[str, str] | None = None
        if isinstance(exc, Unauthenticated):
            headers = {"WWW-Authenticate": "Bearer"}
        elif isinstance(exc, RetryLater):
            headers = {"Retry-After": str(exc.retry_after_s)}
        return error_response(exc.status, exc.code, exc.message, exc.details, headers), exc.code
    if isinstance(exc, RequestValidationError):  # the request's, not a bug's ValidationError
        return invalid_response(exc.errors())
    if isinstance(exc, StarletteHTTPException) and _unreadable_body(exc):
        return invalid_response([UNREADABLE_BODY])
    if isinstance(exc, StarletteHTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers), code
    if isinstance(exc, _REDIS_DOWN) or (
        isinstance(exc, redis.exceptions.ResponseError) and "READONLY" in str(exc)
    ):  # inside a script, READONLY and OOM arrive as a generic script error
        return _unavailable(), "unavailable"
    if isinstance(exc, redis.exceptions.ResponseError) and "OOM" in str(exc):
        log.error("Redis refused a write: out of memory (maxmemory reached)")
        response = error_response(
            503,
            "buffer_full",
            "the heartbeat buffer is full; retry later",
            headers={"Retry-After": "10"},
        )
        return response, "buffer_full"
    log.error("unhandled error on %s %s", method, path, exc_info=exc)
    response = error_response(500, "internal_error", "unexpected error; it has been logged")
    return response, "internal_error"


HANDLED = (
    ServiceError,
    RequestValidationError,
    StarletteHTTPException,
    redis.exceptions.ResponseError,
    *_REDIS_DOWN,
)


def answer_error(exc: Exception, method: str, path: str) -> JSONResponse:
    """`response_for`, and a refused single heartbeat counted under its reason, whichever
    layer refused it."""
    response, reason = response_for(exc, method, path)
    count_refusal(method, path, reason)
    return response


def count_refusal(method: str, path: str, reason: str) -> None:
    if method == "POST" and path.endswith("/watch-time"):
        HEARTBEATS_REJECTED.labels(reason=reason).inc()


def install_error_handlers(app: FastAPI) -> None:
    """The expected refusals. Anything else is answered by RequestLogMiddleware, inside the
    request's id (Starlette would answer it from its outermost middleware, after the id and the
    request log line are gone)."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        return answer_error(exc, request.method, request.url.path)

    for exc_class in HANDLED:
        app.add_exception_handler(exc_class, handle)


class TooLarge(Exception):
    pass


async def read_body(scope: Scope, receive: Receive, max_bytes: int) -> bytes:
    """The whole request body; TooLarge past `max_bytes` (declared or streamed),
    ClientDisconnect if the client leaves before its end."""
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect  # gone mid-body: a part is not a request
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > max_bytes:
            raise TooLarge
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def too_large_response(max_bytes: int) -> JSONResponse:
    return error_response(
        413, "too_large", f"request body over {max_bytes} bytes", {"limit": max_bytes}
    )


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
        try:
            body = await read_body(scope, receive, self.max_bytes)
        except ClientDisconnect:
            return
        except TooLarge:
            count_refusal(scope["method"], scope["path"], "too_large")
            await too_large_response(self.max_bytes)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
