"""`POST /api/progress/video/{video_id}/watch-time`: the request every open player sends every
10 s, served by a bare ASGI app.

Through FastAPI's request handler about half of this route's time went to the framework's
per-request machinery (dependency solving, exit stacks, exception wrappers: see
docs/performance.md, "0.6.0 and before"). So the route is an `APIRoute` whose app is
`answer_watch_time`: FastAPI documents it from `post_watch_time`'s signature like any other
route, and `answer_watch_time` takes FastAPI's steps in FastAPI's order (JSON decoding, bearer
token and role, the path's id and the body's schema together, then `record_heartbeat`: the
catalog, then `ProgressService.record`), answering every refusal in the error shape. The app's
BodyLimitMiddleware has refused a body over MAX_BODY_BYTES before it. `Shortcuts`, the app's
innermost middleware (ingest/shortcuts.py), hands it the heartbeats without Starlette's
exception middleware, FastAPI's exit stack and the router (about 15 % of a heartbeat's CPU in
process, 2026-12-07); a request to the path with another method goes through the router, which
answers it 405.
tests/test_watch_time_route.py holds the route to API.md's refusals.
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import ValidationError
from pydantic_core import to_json
from starlette.datastructures import State
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Receive, Scope, Send

from ingest.auth import bearer_principal, check_role
from ingest.deps import MaterialId, Student, material_or_404
from ingest.errors import answer_error, read_body
from ingest.metrics import HEARTBEATS_ACCEPTED, INGEST_SECONDS
from ingest.models import HeartbeatAccepted, HeartbeatBody
from ingest.progress_service import ProgressService, to_heartbeat
from ingest.shortcuts import id_errors, send_json
from shared.tokens import Principal

PATH = "/api/progress/video/{video_id}/watch-time"
_MISSING = object()


async def post_watch_time(
    video_id: MaterialId, body: HeartbeatBody, student: Student
) -> HeartbeatAccepted:
    """Record one heartbeat. `202` means it is durably buffered; the reply is the state as of
    this heartbeat."""
    raise NotImplementedError  # the route's declaration, for its schema: answer_watch_time serves


class WatchTimeRoute(APIRoute):
    """A route FastAPI documents from its endpoint, served by `answer_watch_time` instead of
    FastAPI's request handler."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.app = answer_watch_time

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """The path with another method is this route's too: `handle` answers it 405 with
        `Allow: POST`, before the pages' mount at `/` could take it as a file (404)."""
        match, child = super().matches(scope)
        return (Match.FULL if match is Match.PARTIAL else match), child


def add_watch_time_route(app: FastAPI) -> WatchTimeRoute:
    """Add the route to the app's own router (a route of an included router is always served
    by FastAPI's request handler); the router tries its routes in order, so add it first.
    Returns it, for `Shortcuts`."""
    app.router.add_api_route(
        PATH,
        post_watch_time,
        methods=["POST"],
        status_code=202,
        response_model=HeartbeatAccepted,
        tags=["student progress"],
        route_class_override=WatchTimeRoute,
    )
    return next(r for r in app.router.routes if isinstance(r, WatchTimeRoute))


async def answer_watch_time(scope: Scope, receive: Receive, send: Send) -> None:
    """`202` and the state as of the heartbeat, or the refusal in the error shape, counted
    under its reason."""
    started = time.perf_counter()
    try:
        reply = await _answer(scope, receive, scope["app"].state)
    except Exception as exc:  # every refusal leaves in the error shape, and counts
        await answer_error(exc, "POST", scope["path"])(scope, receive, send)
    else:
        await send_json(send, 202, reply)
    INGEST_SECONDS.observe(time.perf_counter() - started)


async def _answer(scope: Scope, receive: Receive, state: State) -> bytes:
    authorization: str | None = None
    content_type: bytes | None = None
    for name, value in scope["headers"]:  # the first of repeated headers, as Starlette
        if name == b"authorization" and authorization is None:
            authorization = value.decode("latin-1")
        elif name == b"content-type" and content_type is None:
            content_type = value
    max_bytes = state.ctx.settings.max_body_bytes  # already held to it: BodyLimitMiddleware
    raw = decode_body(await read_body(scope, receive, max_bytes), content_type)
    principal = await bearer_principal(state.ctx.verifier, authorization)
    student = check_role(principal, ("student",))
    video_id: str = scope["path_params"]["video_id"]
    errors = id_errors(("path", "video_id"), video_id)  # FastAPI: the path's, then the body's
    if raw is _MISSING:
        errors.append({"type": "missing", "loc": ("body",), "msg": "Field required"})
    else:
        try:
            body = HeartbeatBody.model_validate(raw, from_attributes=True)  # as FastAPI does
        except ValidationError as exc:
            errors += exc.errors()
    if errors:
        raise RequestValidationError(errors)
    return to_json(await record_heartbeat(state.progress, student, video_id, body))


def decode_body(body: bytes, content_type: bytes | None) -> Any:
    """What FastAPI hands to validation: nothing, the decoded JSON (for a JSON content type,
    parsed as its `email.message` does), or the raw bytes (which then fail validation)."""
    if not body:
        return _MISSING
    media = (content_type or b"").partition(b";")[0].strip().lower()
    maintype, _, subtype = media.partition(b"/")
    if not (
        maintype == b"application"
        and b"/" not in subtype
        and (subtype == b"json" or subtype.endswith(b"+json"))
    ):
        return body
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        error = {
            "type": "json_invalid",
            "loc": ("body", exc.pos),
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": exc.msg},
        }
        raise RequestValidationError([error]) from None
    except (ValueError, RecursionError) as exc:  # not UTF-8, an integer too long, too deep
        # As FastAPI's own routes do; the error handler answers 422 (ingest/errors.py).
        raise HTTPException(400, "There was an error parsing the body") from exc


async def record_heartbeat(
    service: ProgressService, student: Principal, video_id: str, body: HeartbeatBody
) -> dict[str, Any]:
    """Buffer one heartbeat and return the reply's body (HeartbeatAccepted's shape, built
    directly: this is the hottest path); raises the ServiceError that refused it."""
    ref = await material_or_404(service.ctx.catalog, video_id)
    ctx = service.ctx
    hb = to_heartbeat(body, ref, ctx.clock.time(), ctx.settings.max_client_age_s)
    state = await service.record(student.user_id, ref, video_id, hb)  # refusals: the handler
    HEARTBEATS_ACCEPTED.inc()
    return {
        "accepted": True,
        "watch_time": state.position,
        "progress_percentage": state.progress,
        "watched_seconds": state.watched_seconds,
        "completed": state.completed,
    }
