"""The routes every open player calls, served without FastAPI's per-request machinery.

A heartbeat every 10 s (`POST .../watch-time`, ingest/routes_watch_time.py) and a status read
each time a player loads (`GET .../status`, ingest/routes_progress.py) are nearly all of a
school's requests. Through FastAPI's request handler (the router, dependency solving, exit
stacks, exception wrappers, the response model validated again) a status read cost the web
process more CPU than a whole heartbeat (docs/performance.md, "Status reads without the
router"). Each of these routes is still a FastAPI route, documented by OpenAPI from its
declaration, and a bare ASGI handler takes the route's steps in FastAPI's order and answers in
its shapes. `Shortcuts`, the app's innermost middleware, hands each handler its requests
without the router.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Receive, Scope, Send

from shared.domain.catalog import PrintableId

_PRINTABLE_ID: TypeAdapter[str] = TypeAdapter(PrintableId)  # ingest.deps' ids, as declared


class Shortcuts:
    """The app's innermost middleware: a request that one of `routes` (method, route, handler)
    matches in full (`route.matches`, the router's own test, root path included) goes straight
    to its handler, with the path parameters the router would set; any other request goes on
    to the router. A route's path must be one no route before it in the router matches: the
    router would have given that route the request."""

    def __init__(self, app: ASGIApp, routes: Sequence[tuple[str, BaseRoute, ASGIApp]]) -> None:
        self.app = app
        self.routes: dict[str, list[tuple[BaseRoute, ASGIApp]]] = {}
        for method, route, handler in routes:
            self.routes.setdefault(method, []).append((route, handler))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for route, handler in self.routes.get(scope["method"], ()):
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child)
                    await handler(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def first_header(scope: Scope, name: bytes) -> str | None:
    """The first of a request's headers called `name` (lower case), as Starlette reads it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def id_errors(loc: tuple[str, str], value: str) -> list[Any]:
    """FastAPI's validation errors for a client's id (a `PrintableId` path or query
    parameter) at `loc`, such as ("path", "video_id"); none when it is valid."""
    try:
        _PRINTABLE_ID.validate_python(value)
    except ValidationError as exc:
        return [{**err, "loc": (*loc, *err["loc"])} for err in exc.errors()]
    return []


async def send_json(send: Send, status: int, body: bytes) -> None:
    """An answer of JSON bytes, its headers in the order of Starlette's responses."""
    headers = [(b"content-length", b"%d" % len(body)), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
