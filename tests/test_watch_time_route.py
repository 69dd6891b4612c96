"""The heartbeat route (`POST /api/progress/video/{video_id}/watch-time`, served by the bare
ASGI app of ingest/routes_watch_time.py) against API.md: every refusal in the error shape, with
its status, code, headers and refusal counter, and, when a request has two faults, the one
FastAPI would report for the route's declaration (`video_id: MaterialId, body: HeartbeatBody,
student: Student`). FastAPI's order, from its request handler:

1. the app's body limit (a middleware, before routing): 413;
2. the body, read and decoded as JSON when its content type says JSON (422 `json_invalid`
   when it is not JSON, not UTF-8, or beyond the decoder: an integer of more than 4,300 digits,
   nesting deeper than its recursion allows); any other content type passes as bytes;
3. the dependencies, in the signature's order: the token (401), then the role (403);
4. the path's parameters and the body validated together: one 422, the path's errors first;
5. the route's own body: the catalog (404), then its checks and the clock's (422), then the
   buffer's enrollment check (403), rate limit (429).

Real Redis and the MongoDB stand-in; expected answers are worked out from API.md and the order
above, never from the handler.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from ingest.app import create_app
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings

ROUTE = "/api/progress/video/{}/watch-time"
JSON = {"Content-Type": "application/json"}


@pytest.fixture
def settings(redis_url: str, mongo_url: str, tmp_path: Path) -> Settings:
    """With pages mounted at `/`, as in production (a page of their own, built or not)."""
    (tmp_path / "index.html").write_text("<!doctype html><title>pages</title>")
    return make_settings(redis_url, mongo_url, rate_limit_per_minute=6, frontend_dist=tmp_path)


@contextmanager
def serving(app: FastAPI, settings: Settings) -> Iterator[TestClient]:
    """The app, with students `s-0`, `s-1` and `s-2` enrolled in the test course."""
    with TestClient(app) as client:
        admin = bearer(settings, "a-root", "admin")
        course = client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin)
        assert course.status_code == 201
        for n in range(3):
            url = f"/api/courses/{COURSE_ID}/enrollments/s-{n}"
            assert client.put(url, headers=admin).status_code == 201
        yield client


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with serving(create_app(settings), settings) as client:
        yield client


def rejected(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("videoprogress_heartbeats_rejected_total", {"reason": reason})
        or 0.0
    )


def body(**fields: Any) -> str:
    return json.dumps(heartbeat(**fields))


def post(
    client: TestClient,
    settings: Settings,
    content: str | bytes,
    video: str = "v-100",
    headers: dict[str, str] | None = None,
    student: str | None = "0",
    role: str = "student",
) -> Any:
    """The request, as student `s-<student>` (None: no token) unless `headers` has a token."""
    h = dict(JSON if headers is None else headers)
    if student is not None:
        h.update(bearer(settings, f"s-{student}", role))
    raw = content.encode() if isinstance(content, str) else content
    return client.post(ROUTE.format(video), content=raw, headers=h)


def test_accepted_heartbeats_get_the_state_back(client: TestClient, settings: Settings) -> None:
    first = post(client, settings, body(watch_time=10, played=[[0, 10]]))
    assert first.status_code == 202
    assert first.headers["content-type"] == "application/json"
    assert first.headers["x-request-id"]
    # Worked out by hand: 10 s of a 100 s video watched, position 10.
    assert first.json() == {
        "accepted": True,
        "watch_time": 10.0,
        "progress_percentage": 10.0,
        "watched_seconds": 10.0,
        "completed": False,
    }
    second = post(client, settings, body(watch_time=95, played=[[10, 95]]))
    assert second.json() == {
        "accepted": True,
        "watch_time": 95.0,
        "progress_percentage": 95.0,
        "watched_seconds": 95.0,
        "completed": True,
    }


def test_the_reply_carries_floats_as_the_schema_says(
    client: TestClient, settings: Settings
) -> None:
    # A position-only heartbeat: nothing covered yet, so the sums are over nothing.
    reply = post(client, settings, body(watch_time=5, total=600), video="v-600")
    assert reply.status_code == 202
    assert b'"watched_seconds":0.0' in reply.content


def case(
    name: str,
    content: str | bytes,
    status: int,
    code: str,
    fields: list[str] | None = None,
    **request: Any,
) -> Any:
    """One refused request and its answer: `fields` are the details' fields of a 422, in
    order; `request` may set video, headers, student (None: no token) and role."""
    return pytest.param(content, request, status, code, fields, id=name)


NO_TOKEN: dict[str, Any] = {"student": None}
TEACHER: dict[str, Any] = {"role": "teacher"}
BAD_ID: dict[str, Any] = {"video": "a%00b"}  # the server decodes it: an id with a NUL
A_MONTH_AGO = (datetime.now(UTC) - timedelta(days=31)).isoformat()
MALFORMED = '{"watch_time": '  # JSON ends at 15: "Expecting value" there
# A table, one refusal per row: fmt: skip on the closing bracket.
REFUSALS = [
    # API.md, "Authentication" and the authorization matrix.
    case("no token", body(watch_time=1), 401, "unauthenticated", **NO_TOKEN),
    case("not a JWT", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={**JSON, "Authorization": "Bearer nope"}),
    case("basic scheme", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={**JSON, "Authorization": "Basic YTpi"}),
    case("bare scheme", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={**JSON, "Authorization": "Bearer"}),
    case("teacher token", body(watch_time=1), 403, "forbidden", **TEACHER),
    case("admin token", body(watch_time=1), 403, "forbidden", role="admin"),
    case("not enrolled", body(watch_time=1), 403, "forbidden", student="9"),
    # The heartbeat route's rules.
    case("unknown video", body(watch_time=1), 404, "not_found", video="v-404"),
    case("not a video", body(watch_time=1), 422, "invalid", ["material_id"], video="pdf-1"),
    case("duration disagrees", body(watch_time=1, total=300), 422, "invalid", ["total_duration"]),
    case("past the end", body(watch_time=150), 422, "invalid", ["body"]),
    case("negative position", body(watch_time=-1), 422, "invalid", ["watch_time"]),
    case("unknown field", body(watch_time=1, speed=2), 422, "invalid", ["speed"]),
    case("range backwards", body(watch_time=1, played=[[5, 1]]), 422, "invalid", ["body"]),
    case("NaN", '{"watch_time": NaN, "total_duration": 100}', 422, "invalid", ["watch_time"]),
    case("malformed JSON", MALFORMED, 422, "invalid", ["15"]),
    case("a list", "[1, 2]", 422, "invalid", ["body"]),
    case("null", "null", 422, "invalid", ["body"]),
    case("empty body", "", 422, "invalid", ["body"]),
    case("text/plain", body(watch_time=1), 422, "invalid", ["body"],
         headers={"Content-Type": "text/plain"}),
    case("no content type", body(watch_time=1), 422, "invalid", ["body"], headers={}),
    case("two slashes, +json", body(watch_time=1), 422, "invalid", ["body"],
         headers={"Content-Type": "application/a/b+json"}),  # email.message: text/plain
    case("not UTF-8", b'{"watch_time": "\xff"}', 422, "invalid", ["body"]),
    case("an integer of 5,000 digits", '{"watch_time": 1' + "0" * 5000 + "}", 422, "invalid",
         ["body"]),
    case("nested 20,000 deep", '{"a": ' + "[" * 20_000 + "]" * 20_000 + "}", 422, "invalid",
         ["body"]),
    case("over the body limit", body(watch_time=1, session_id="x" * 70_000), 413, "too_large"),
    # API.md, "Hostile input".
    case("session id with a NUL", body(watch_time=1, session_id="a\x00b"), 422, "invalid",
         ["session_id"]),
    case("session id with a space", body(watch_time=1, session_id="a b"), 422, "invalid",
         ["session_id"]),
    case("session id of 129", body(watch_time=1, session_id="s" * 129), 422, "invalid",
         ["session_id"]),
    case("empty session id", body(watch_time=1, session_id=""), 422, "invalid", ["session_id"]),
    case("client_ts in year 1", body(watch_time=1, client_ts="0001-01-01T00:00:00+01:00"),
         422, "client_ts_out_of_range", ["client_ts"]),
    case("client_ts a month old", body(watch_time=1, client_ts=A_MONTH_AGO), 422,
         "client_ts_out_of_range", ["client_ts"]),
    case("client_ts not a date", body(watch_time=1, client_ts="2026-13-45T00:00:00Z"), 422,
         "client_ts_out_of_range", ["client_ts"]),
    case("client_ts without a zone", body(watch_time=1, client_ts="2026-01-01T00:00:00"), 422,
         "client_ts_out_of_range", ["client_ts"]),
    case("video id with a NUL", body(watch_time=1), 422, "invalid", ["path.video_id"], **BAD_ID),
    case("video id with a newline", body(watch_time=1), 422, "invalid", ["path.video_id"],
         video="a%0Ab"),
    case("video id of 129", body(watch_time=1), 422, "invalid", ["path.video_id"],
         video="v" * 129),
    case("unknown video of 128", body(watch_time=1), 404, "not_found", video="v" * 128),
]  # fmt: skip

# Two faults in one request: the answer is the first of FastAPI's steps (module docstring).
FIRST_FAULT_WINS = [
    # 1. The body limit before anything else.
    case("too large, no token", body(watch_time=1, session_id="x" * 70_000), 413, "too_large",
         **NO_TOKEN),
    case("too large, bad video id", body(watch_time=150, session_id="x" * 70_000), 413,
         "too_large", **BAD_ID),
    # 2. The body's decoding before the token, the role and the path.
    case("malformed JSON, no token", MALFORMED, 422, "invalid", ["15"], **NO_TOKEN),
    case("malformed JSON, teacher", MALFORMED, 422, "invalid", ["15"], **TEACHER),
    case("malformed JSON, bad video id", MALFORMED, 422, "invalid", ["15"], **BAD_ID),
    case("not UTF-8, no token", b'{"watch_time": "\xff"}', 422, "invalid", ["body"],
         **NO_TOKEN),
    case("a 5,000-digit integer, no token", '{"watch_time": 1' + "0" * 5000 + "}", 422,
         "invalid", ["body"], **NO_TOKEN),
    case("nested 20,000 deep, no token", "[" * 20_000 + "]" * 20_000, 422, "invalid", ["body"],
         **NO_TOKEN),
    # 3. The token and the role before the path and the body's schema.
    case("schema-invalid, no token", body(watch_time=150), 401, "unauthenticated", **NO_TOKEN),
    case("schema-invalid, teacher", body(watch_time=150), 403, "forbidden", **TEACHER),
    case("empty body, no token", "", 401, "unauthenticated", **NO_TOKEN),
    case("text/plain, no token", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={"Content-Type": "text/plain"}),
    case("bad video id, no token", body(watch_time=1), 401, "unauthenticated", **BAD_ID,
         **NO_TOKEN),
    case("bad video id, teacher", body(watch_time=1), 403, "forbidden", **BAD_ID, **TEACHER),
    case("unknown video, no token", body(watch_time=1), 401, "unauthenticated", video="v-404",
         **NO_TOKEN),
    case("unknown video, teacher", body(watch_time=1), 403, "forbidden", video="v-404",
         **TEACHER),
    # 4. The path and the body together, the path's errors first.
    case("bad video id, schema-invalid", body(watch_time=150), 422, "invalid",
         ["path.video_id", "body"], **BAD_ID),
    case("bad video id, body missing", "", 422, "invalid", ["path.video_id", "body"], **BAD_ID),
    case("bad video id, text/plain", body(watch_time=1), 422, "invalid",
         ["path.video_id", "body"], headers={"Content-Type": "text/plain"}, **BAD_ID),
    # 5. Validation before the route's own checks.
    case("unknown video, schema-invalid", body(watch_time=150), 422, "invalid", ["body"],
         video="v-404"),
    case("not enrolled, schema-invalid", body(watch_time=150), 422, "invalid", ["body"],
         student="9"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("content", "request_", "status", "code", "fields"), REFUSALS + FIRST_FAULT_WINS
)
def test_refusals(
    client: TestClient,
    settings: Settings,
    content: str | bytes,
    request_: dict[str, Any],
    status: int,
    code: str,
    fields: list[str] | None,
) -> None:
    before = rejected(code)
    r = post(client, settings, content, **request_)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    # API.md, "Errors": the one error shape, counted under its code, with the request's id.
    error = r.json()["error"]
    assert set(r.json()) == {"error"} and set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-request-id"]
    assert rejected(code) == before + 1
    assert r.headers.get("www-authenticate") == ("Bearer" if status == 401 else None)
    if fields is not None:
        assert [d["field"] for d in error["details"]] == fields


def test_every_refused_field_is_named_the_path_first(
    client: TestClient, settings: Settings
) -> None:
    content = body(watch_time=1, session_id="a b", playback_rate=99)
    r = post(client, settings, content, video="a%00b")
    assert r.status_code == 422
    fields = [d["field"] for d in r.json()["error"]["details"]]
    assert fields == ["path.video_id", "session_id", "playback_rate"]  # the body's in its order


def test_json_with_a_parameter_in_the_content_type_is_json(
    client: TestClient, settings: Settings
) -> None:
    headers = {"Content-Type": "application/json; charset=utf-8"}
    r = post(client, settings, body(watch_time=3, total=600), video="v-600", headers=headers)
    assert r.status_code == 202


def test_the_rate_limit_answers_429_with_retry_after(
    client: TestClient, settings: Settings
) -> None:
    # settings: 6 heartbeats a minute per student; the 7th is refused with Retry-After.
    for n in range(6):
        r = post(client, settings, body(watch_time=n, total=600), video="v-600", student="1")
        assert r.status_code == 202
    before = rejected("rate_limited")
    r = post(client, settings, body(watch_time=7, total=600), video="v-600", student="1")
    assert (r.status_code, r.json()["error"]["code"]) == (429, "rate_limited")
    assert int(r.headers["retry-after"]) > 0
    assert rejected("rate_limited") == before + 1


def test_of_repeated_headers_the_first_counts(client: TestClient, settings: Settings) -> None:
    good = bearer(settings, "s-2")["Authorization"]
    json_first = [("content-type", "application/json"), ("content-type", "text/plain")]
    for content_types, tokens, expected in (
        (json_first, [good, "Bearer nope"], 202),
        (json_first, ["Bearer nope", good], 401),
        (json_first[::-1], [good, "Bearer nope"], 422),  # a text body fails the schema
    ):
        headers = content_types + [("authorization", t) for t in tokens]
        r = client.post(ROUTE.format("v-100"), content=body(watch_time=2), headers=headers)
        assert r.status_code == expected, (content_types, tokens)


def test_other_methods_are_refused_and_not_counted(client: TestClient, settings: Settings) -> None:
    before = rejected("method_not_allowed")
    r = client.get(ROUTE.format("v-100"), headers=bearer(settings, "s-2"))
    assert (r.status_code, r.json()["error"]["code"]) == (405, "method_not_allowed")
    assert r.headers["allow"] == "POST"
    assert rejected("method_not_allowed") == before  # only a POST is a heartbeat
    status = client.get("/api/progress/video/v-100/status", headers=bearer(settings, "s-2"))
    assert status.status_code == 200


def test_an_encoded_slash_is_not_a_video_id(client: TestClient, settings: Settings) -> None:
    # It decodes to a path separator: no route takes it, and the pages' mount refuses a POST.
    r = post(client, settings, body(watch_time=1), video="a%2Fb")
    assert r.status_code == 405


def test_the_schema_documents_the_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    operation = schema["paths"]["/api/progress/video/{video_id}/watch-time"]["post"]
    assert list(schema["paths"]["/api/progress/video/{video_id}/watch-time"]) == ["post"]
    [param] = operation["parameters"]
    assert (param["name"], param["in"], param["required"]) == ("video_id", "path", True)
    assert (param["schema"]["minLength"], param["schema"]["maxLength"]) == (1, 128)
    assert operation["requestBody"] == {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/HeartbeatBody"}}},
    }
    responses = operation["responses"]

    def model(status: str) -> Any:
        return responses[status]["content"]["application/json"]["schema"]["$ref"]

    # API.md: 202 and the state; the refusals of "Errors", each in the error shape.
    assert set(responses) == {"202", "401", "403", "404", "413", "422", "429", "503"}
    assert model("202") == "#/components/schemas/HeartbeatAccepted"
    assert {model(s) for s in responses if s != "202"} == {"#/components/schemas/ErrorResponse"}
    assert operation["security"] == [{"HTTPBearer": []}]
    assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    fields = set(schema["components"]["schemas"]["HeartbeatBody"]["properties"])
    assert fields == {"watch_time", "total_duration", "client_ts", "session_id", "seq", "played",
                      "playback_rate", "event"}  # fmt: skip
    answer = set(schema["components"]["schemas"]["HeartbeatAccepted"]["properties"])
    assert answer == {"accepted", "watch_time", "progress_percentage", "watched_seconds",
                      "completed"}  # fmt: skip


def _call(app: Any, path: str, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": "",
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_a_client_gone_mid_body_gets_no_answer_and_counts_nothing(settings: Settings) -> None:
    app = create_app(settings)  # the body is read before anything needs a service
    before = {reason: rejected(reason) for reason in ("invalid", "too_large", "internal_error")}
    part = {"type": "http.request", "body": b'{"watch_time": 1', "more_body": True}
    assert _call(app, ROUTE.format("v-1"), [part]) == []
    assert {reason: rejected(reason) for reason in before} == before


class _BrokenCatalog:
    async def material(self, material_id: str) -> None:
        raise RuntimeError("injected fault")


def test_an_unexpected_error_is_a_logged_500_in_the_error_shape(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.ctx.catalog = _BrokenCatalog()
        before = rejected("internal_error")
        headers = {**JSON, **bearer(settings, "s-0"), "X-Request-ID": "fault-1"}
        r = client.post(ROUTE.format("v-100"), content=body(watch_time=1), headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (500, "internal_error")
        assert r.headers["x-request-id"] == "fault-1"
        assert rejected("internal_error") == before + 1
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error on POST")]
    assert len(logged) == 1 and logged[0].exc_info
    assert "injected fault" in str(logged[0].exc_info[1])
    # The operator finds the traceback by the id the client was given.
    assert getattr(logged[0], "request_id", None) == "fault-1"


def test_an_unexpected_error_elsewhere_is_a_500_with_the_request_id_and_no_refusal_counted(
    settings: Settings,
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.ctx.catalog = _BrokenCatalog()
        before = rejected("internal_error")
        headers = {**bearer(settings, "s-0"), "X-Request-ID": "status-fault"}
        r = client.get("/api/progress/video/v-100/status", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (500, "internal_error")
        assert r.headers["x-request-id"] == "status-fault"
        assert rejected("internal_error") == before  # a status read is not a heartbeat


def test_the_service_keeps_at_most_state_cache_keys_states_and_answers_past_them(
    redis_url: str, mongo_url: str, tmp_path: Path
) -> None:
    """STATE_CACHE_KEYS bounds the states a web process keeps; a key evicted from them is
    answered from Redis, as right as before."""
    settings = make_settings(redis_url, mongo_url, state_cache_keys=2, frontend_dist=tmp_path)
    app = create_app(settings)
    with serving(app, settings) as client:
        for who in ("0", "1", "2"):  # three keys: s-0's is the least recently used, evicted
            first = post(client, settings, body(watch_time=10, played=[[0, 10]]), student=who)
            assert first.status_code == 202
        assert len(app.state.progress.cache) == 2
        again = post(client, settings, body(watch_time=30, played=[[10, 30]]), student="0")
        # Worked out by hand: 30 s of the 100 s video watched by s-0, at position 30.
        assert again.json() == {
            "accepted": True,
            "watch_time": 30.0,
            "progress_percentage": 30.0,
            "watched_seconds": 30.0,
            "completed": False,
        }
        assert len(app.state.progress.cache) == 2
