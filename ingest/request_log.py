"""A log line per request (at DEBUG; at WARNING when it failed with a 5xx or took over a
second), with a request id taken from X-Request-ID when sane, and returned in the response.
An exception no one answered becomes a logged 500 in the error shape here, inside the id."""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ingest.errors import answer_error
from shared.runtime.logs import request_id

log = logging.getLogger("videoprogress.http")
_SANE_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SLOW_S = 1.0


class RequestLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if _SANE_ID.match(incoming) else secrets.token_hex(8)
        token = request_id.set(rid)
        started = time.perf_counter()
        status: int | None = None  # set when the response starts

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if status is not None:  # too late for an answer: uvicorn closes the connection
                raise
            response = answer_error(exc, scope["method"], scope["path"])
            await response(scope, receive, send_with_id)
        finally:
            if status is None:  # no response: the client left (nginx's 499)
                status = 499
            elapsed = time.perf_counter() - started
            # Ordinary requests at DEBUG (a line per heartbeat costs ~20 % of the route);
            # server errors and slow requests always.
            level = logging.WARNING if status >= 500 or elapsed > SLOW_S else logging.DEBUG
            if log.isEnabledFor(level):
                log.log(
                    level,
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],  # never the query string or headers
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                    },
                )
            request_id.reset(token)
