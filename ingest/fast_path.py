"""The single-heartbeat route, answered straight from ASGI.

`POST /api/progress/video/{video_id}/watch-time` is the request every open player sends every
10 s. Through FastAPI about half of its time went to the framework's per-request machinery
(routing, dependency solving, exit stacks, exception wrappers: see README, Performance). This
middleware answers it with the same steps in the same order as FastAPI takes them (body limit,
JSON decoding, bearer token and role, the path's id and the body schema, then
`record_heartbeat`) and the same error
shape, and passes every other request on. The FastAPI route stays declared, for the schema and
for an app built with `create_app(fast_path=False)`; tests/test_fast_path.py holds the two to
the same answers.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import get_route_path  # type: ignore[attr-defined]  # not re-exported; the router's own
from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.auth import bearer_principal, check_role
from ingest.errors import TooLarge, answer_error, count_refusal, read_body, too_large_response
from ingest.metrics import INGEST_SECONDS
from ingest.models import HeartbeatBody
from ingest.routes_progress import record_heartbeat
from shared.domain.catalog import PrintableId

ROUTE = re.compile(r"/api/progress/video/([^/]+)/watch-time")
_MISSING = object()
_VIDEO_ID: TypeAdapter[str] = TypeAdapter(PrintableId)  # the route's `video_id: MaterialId`


class WatchTimeFastPath:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = None
        if scope["type"] == "http" and scope["method"] == "POST":
            route = ROUTE.fullmatch(get_route_path(scope))  # as Starlette's router sees it
        if route is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        try:
            reply = await self._answer(scope, receive, route.group(1))
        except ClientDisconnect:
            return  # no one to answer, nothing accepted
        except TooLarge:
            count_refusal("POST", scope["path"], "too_large")
            await too_large_response(self.max_bytes)(scope, receive, send)
        except Exception as exc:  # every refusal leaves in the error shape, and counts
            await answer_error(exc, "POST", scope["path"])(scope, receive, send)
        else:
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(reply)).encode()),
            ]
            await send({"type": "http.response.start", "status": 202, "headers": headers})
            await send({"type": "http.response.body", "body": reply})
        INGEST_SECONDS.observe(time.perf_counter() - started)

    async def _answer(self, scope: Scope, receive: Receive, video_id: str) -> bytes:
        authorization: str | None = None
        content_type: bytes | None = None
        for name, value in scope["headers"]:  # the first of repeated headers, as Starlette
            if name == b"authorization" and authorization is None:
                authorization = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value
        raw = decode_body(await read_body(scope, receive, self.max_bytes), content_type)
        state = scope["app"].state
        principal = await bearer_principal(state.ctx.verifier, authorization)
        student = check_role(principal, ("student",))
        errors = _path_errors(video_id)  # FastAPI reports the path's errors, then the body's
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


def _path_errors(video_id: str) -> list[Any]:
    try:
        _VIDEO_ID.validate_python(video_id)
    except ValidationError as exc:
        return [{**err, "loc": ("path", "video_id", *err["loc"])} for err in exc.errors()]
    return []


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
    except UnicodeDecodeError:
        raise HTTPException(400, "There was an error parsing the body") from None
