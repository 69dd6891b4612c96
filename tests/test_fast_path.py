"""The heartbeat route's ASGI fast path (ingest/fast_path.py) answers exactly as the FastAPI
route it stands in for: same statuses, bodies, headers and refusal counters, for good requests
and for each way a request can be refused. Both apps run over the same real Redis and MongoDB
stand-in; each gets its own students so that stateful answers can be compared too."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from ingest.app import create_app
from ingest.errors import BodyLimitMiddleware
from ingest.fast_path import WatchTimeFastPath
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings

ROUTE = "/api/progress/video/{}/watch-time"
JSON = {"Content-Type": "application/json"}
COMPARED_HEADERS = ("content-type", "www-authenticate", "retry-after")


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, rate_limit_per_minute=6)


@pytest.fixture
def clients(settings: Settings) -> Iterator[dict[bool, TestClient]]:
    """Two apps, with and without the fast path; students `fast-*` and `slow-*` are enrolled."""
    with (
        TestClient(create_app(settings, fast_path=True)) as fast,
        TestClient(create_app(settings, fast_path=False)) as slow,
    ):
        admin = bearer(settings, "a-root", "admin")
        assert fast.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        for prefix in ("fast", "slow"):
            for n in range(3):
                url = f"/api/courses/{COURSE_ID}/enrollments/{prefix}-{n}"
                assert fast.put(url, headers=admin).status_code == 201
        yield {True: fast, False: slow}


def rejected(reason: str) -> float:
    return (
        REGISTRY.get_sample_value("videoprogress_heartbeats_rejected_total", {"reason": reason})
        or 0.0
    )


def answer(
    client: TestClient, path: str, content: bytes, headers: dict[str, str]
) -> dict[str, Any]:
    r = client.post(path, content=content, headers=headers)
    return {
        "status": r.status_code,
        "body": r.json() if r.content else None,
        "headers": {h: r.headers.get(h) for h in COMPARED_HEADERS},
        "has_request_id": bool(r.headers.get("x-request-id")),
    }


def both(
    clients: dict[bool, TestClient],
    settings: Settings,
    video: str,
    content: bytes | str,
    headers: dict[str, str] | None = None,
    student: str | None = "0",
    role: str = "student",
    expect_reason: str | None = None,
) -> dict[str, Any]:
    """The same request through both apps (each as its own student); asserts the answers are
    equal, and that each counted one refusal under `expect_reason`. Returns the answer."""
    raw = content.encode() if isinstance(content, str) else content
    answers = {}
    for fast in (True, False):
        h = dict(headers if headers is not None else JSON)
        if student is not None:
            h.update(bearer(settings, f"{'fast' if fast else 'slow'}-{student}", role))
        before = rejected(expect_reason) if expect_reason else 0.0
        answers[fast] = answer(clients[fast], ROUTE.format(video), raw, h)
        if expect_reason:
            assert rejected(expect_reason) == before + 1, (fast, expect_reason)
    assert answers[True] == answers[False]
    assert answers[True]["has_request_id"]
    return answers[True]


def body(**fields: Any) -> str:
    return json.dumps(heartbeat(**fields))


def test_accepted_heartbeats_get_the_same_state_back(
    clients: dict[bool, TestClient], settings: Settings
) -> None:
    first = both(clients, settings, "v-100", body(watch_time=10, played=[[0, 10]]))
    assert first["status"] == 202
    # Worked out by hand: 10 s of a 100 s video watched, position 10.
    assert first["body"] == {
        "accepted": True,
        "watch_time": 10.0,
        "progress_percentage": 10.0,
        "watched_seconds": 10.0,
        "completed": False,
    }
    assert first["headers"]["content-type"] == "application/json"
    second = both(clients, settings, "v-100", body(watch_time=95, played=[[10, 95]]))
    assert second["body"] == {
        "accepted": True,
        "watch_time": 95.0,
        "progress_percentage": 95.0,
        "watched_seconds": 95.0,
        "completed": True,
    }


def test_the_reply_is_the_same_bytes(clients: dict[bool, TestClient], settings: Settings) -> None:
    # A position-only heartbeat: nothing covered yet, so the sums are over nothing.
    replies = [
        clients[fast]
        .post(
            ROUTE.format("v-600"),
            content=body(watch_time=5, total=600),
            headers={**JSON, **bearer(settings, f"{prefix}-2")},
        )
        .content
        for fast, prefix in ((True, "fast"), (False, "slow"))
    ]
    assert replies[0] == replies[1]
    assert json.loads(replies[0])["watched_seconds"] == 0.0
    assert b'"watched_seconds":0.0' in replies[0]  # a float, as the schema says


def case(name: str, content: str | bytes, status: int, reason: str | None, **request: Any) -> Any:
    """One refused request: `request` may set video, headers, student (None: no token), role."""
    request = {"video": "v-100", "headers": None, "student": "0", "role": "student", **request}
    return pytest.param(content, request, status, reason, id=name)


NO_TOKEN = {"student": None}
# A table, one refusal per row: fmt: skip on the closing bracket.
REFUSALS = [
    case("no token", body(watch_time=1), 401, "unauthenticated", **NO_TOKEN),
    case("not a JWT", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={**JSON, "Authorization": "Bearer nope"}),
    case("basic scheme", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={**JSON, "Authorization": "Basic YTpi"}),
    case("bare scheme", body(watch_time=1), 401, "unauthenticated", student=None,
         headers={**JSON, "Authorization": "Bearer"}),
    case("teacher token", body(watch_time=1), 403, "forbidden", role="teacher"),
    case("not enrolled", body(watch_time=1), 403, "forbidden", student="9"),
    case("unknown video", body(watch_time=1), 404, "not_found", video="v-404"),
    case("not a video", body(watch_time=1), 422, "invalid", video="pdf-1"),
    case("duration disagrees", body(watch_time=1, total=300), 422, "invalid"),
    case("past the end", body(watch_time=150), 422, "invalid"),
    case("unknown field", body(watch_time=1, speed=2), 422, "invalid"),
    case("range backwards", body(watch_time=1, played=[[5, 1]]), 422, "invalid"),
    case("malformed JSON", '{"watch_time": ', 422, "invalid"),
    # FastAPI decodes the body before it checks the token: so does the fast path.
    case("malformed JSON, no token", '{"watch_time": ', 422, "invalid", **NO_TOKEN),
    case("schema-invalid, no token", body(watch_time=150), 401, "unauthenticated", **NO_TOKEN),
    case("NaN", '{"watch_time": NaN, "total_duration": 100}', 422, "invalid"),
    case("a list", "[1, 2]", 422, "invalid"),
    case("null", "null", 422, "invalid"),
    case("empty body", "", 422, "invalid"),
    case("text/plain", body(watch_time=1), 422, "invalid", headers={"Content-Type": "text/plain"}),
    case("no content type", body(watch_time=1), 422, "invalid", headers={}),
    case("not UTF-8", b'{"watch_time": "\xff"}', 400, "http_error"),
    case("two slashes, +json", body(watch_time=1), 422, "invalid",
         headers={"Content-Type": "application/a/b+json"}),  # email.message: text/plain
    case("over the body limit", body(watch_time=1, session_id="x" * 70_000), 413, "too_large"),
]  # fmt: skip


@pytest.mark.parametrize(("content", "request_", "status", "reason"), REFUSALS)
def test_refusals_are_the_same(
    clients: dict[bool, TestClient],
    settings: Settings,
    content: str,
    request_: dict[str, Any],
    status: int,
    reason: str | None,
) -> None:
    got = both(clients, settings, content=content, expect_reason=reason, **request_)
    assert got["status"] == status, got
    assert set(got["body"]) == {"error"} and got["body"]["error"]["message"]
    if status == 401:
        assert got["headers"]["www-authenticate"] == "Bearer"


A_MONTH_AGO = (datetime.now(UTC) - timedelta(days=31)).isoformat()
# API.md, "Hostile input": one row per rule, with the error code each answer must carry.
HOSTILE = [
    case("session id with a NUL", body(watch_time=1, session_id="a\x00b"), 422, "invalid"),
    case("session id with a space", body(watch_time=1, session_id="a b"), 422, "invalid"),
    case("session id of 129", body(watch_time=1, session_id="s" * 129), 422, "invalid"),
    case("empty session id", body(watch_time=1, session_id=""), 422, "invalid"),
    case("client_ts in year 1", body(watch_time=1, client_ts="0001-01-01T00:00:00+01:00"),
         422, "client_ts_out_of_range"),
    case("client_ts a month old", body(watch_time=1, client_ts=A_MONTH_AGO), 422,
         "client_ts_out_of_range"),
    case("client_ts not a date", body(watch_time=1, client_ts="2026-13-45T00:00:00Z"), 422,
         "client_ts_out_of_range"),
    case("client_ts without a zone", body(watch_time=1, client_ts="2026-01-01T00:00:00"), 422,
         "client_ts_out_of_range"),
    case("video id with a NUL", body(watch_time=1), 422, "invalid", video="a%00b"),
    case("video id with a newline", body(watch_time=1), 422, "invalid", video="a%0Ab"),
    case("video id of 129", body(watch_time=1), 422, "invalid", video="v" * 129),
    case("video id and body both bad", body(watch_time=150), 422, "invalid", video="a%00b"),
    case("video id bad, body missing", "", 422, "invalid", video="a%00b"),
    # FastAPI checks the token, then the path and the body together: so does the fast path.
    case("video id bad, no token", body(watch_time=1), 401, "unauthenticated", video="a%00b",
         **NO_TOKEN),
    case("video id bad, malformed JSON", '{"watch_time": ', 422, "invalid", video="a%00b"),
    case("unknown video of 128", body(watch_time=1), 404, "not_found", video="v" * 128),
]  # fmt: skip


@pytest.mark.parametrize(("content", "request_", "status", "code"), HOSTILE)
def test_hostile_input_is_refused_alike(
    clients: dict[bool, TestClient],
    settings: Settings,
    content: str,
    request_: dict[str, Any],
    status: int,
    code: str,
) -> None:
    got = both(clients, settings, content=content, expect_reason=code, **request_)
    assert (got["status"], got["body"]["error"]["code"]) == (status, code), got


def test_both_name_every_refused_field(clients: dict[bool, TestClient], settings: Settings) -> None:
    content = body(watch_time=1, session_id="a b", playback_rate=99)
    got = both(clients, settings, "a%00b", content, expect_reason="invalid")
    fields = [d["field"] for d in got["body"]["error"]["details"]]
    assert fields == ["path.video_id", "session_id", "playback_rate"]  # the path's first


def test_json_with_a_parameter_in_the_content_type_is_json(
    clients: dict[bool, TestClient], settings: Settings
) -> None:
    got = both(
        clients,
        settings,
        "v-600",
        body(watch_time=3, total=600),
        {"Content-Type": "application/json; charset=utf-8"},
    )
    assert got["status"] == 202


def test_the_rate_limit_answers_the_same(
    clients: dict[bool, TestClient], settings: Settings
) -> None:
    # settings: 6 heartbeats a minute per student; the 7th is refused with Retry-After.
    for n in range(6):
        got = both(clients, settings, "v-600", body(watch_time=n, total=600), student="1")
        assert got["status"] == 202
    got = both(
        clients,
        settings,
        "v-600",
        body(watch_time=7, total=600),
        student="1",
        expect_reason="rate_limited",
    )
    assert got["status"] == 429
    assert got["headers"]["retry-after"] is not None and int(got["headers"]["retry-after"]) > 0


def test_other_methods_and_paths_pass_through(
    clients: dict[bool, TestClient], settings: Settings
) -> None:
    token = bearer(settings, "fast-2")
    fast, slow = clients[True], clients[False]
    for path in (ROUTE.format("v-100"), ROUTE.format("v-100") + "/", "/api/progress/video/x"):
        assert (
            fast.get(path, headers=token).status_code == slow.get(path, headers=token).status_code
        )
    assert fast.get("/api/progress/video/v-100/status", headers=token).status_code == 200
    # A percent-encoded slash decodes to a path separator: no route takes it, in either app
    # (the pages' mount answers 405 to a POST).
    statuses = {
        app.post(
            "/api/progress/video/a%2Fb/watch-time",
            content=body(watch_time=1),
            headers={**JSON, **token},
        ).status_code
        for app in (fast, slow)
    }
    assert len(statuses) == 1 and statuses.pop() in (404, 405)


def test_of_repeated_headers_the_first_counts(
    clients: dict[bool, TestClient], settings: Settings
) -> None:
    json_first = [("content-type", "application/json"), ("content-type", "text/plain")]
    for content_types, token_first, expected in (
        (json_first, True, 202),
        (json_first, False, 401),
        (json_first[::-1], True, 422),
    ):
        statuses = []
        for fast in (True, False):
            good = bearer(settings, f"{'fast' if fast else 'slow'}-2")["Authorization"]
            tokens = [good, "Bearer nope"] if token_first else ["Bearer nope", good]
            headers = content_types + [("authorization", t) for t in tokens]
            r = clients[fast].post(
                ROUTE.format("v-100"), content=body(watch_time=2), headers=headers
            )
            statuses.append(r.status_code)
        assert statuses == [expected, expected], (content_types, token_first)


class _Passed:
    """The app behind a middleware: records what was passed on to it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])


def _call(
    middleware: Any, path: str, root_path: str = "", headers: Any = (), messages: Any = ()
) -> list[dict[str, Any]]:
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "root_path": root_path,
        "headers": list(headers),
        "query_string": b"",
    }
    pending = list(messages)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    return sent


def test_the_fast_path_finds_its_route_under_a_root_path() -> None:
    inner = _Passed()
    fast = WatchTimeFastPath(inner, max_bytes=100)
    huge = [(b"content-length", b"1000")]  # refused before anything else: no app state needed
    sent = _call(fast, "/vp" + ROUTE.format("v-1"), root_path="/vp", headers=huge)
    assert sent[0]["status"] == 413 and inner.paths == []
    _call(fast, "/vp/api/progress/video/v-1/status", root_path="/vp", headers=huge)
    assert inner.paths == ["/vp/api/progress/video/v-1/status"]


@pytest.mark.parametrize("fast", [True, False], ids=["fast path", "body limit"])
def test_a_client_gone_mid_body_gets_no_answer_and_counts_nothing(fast: bool) -> None:
    inner = _Passed()
    middleware = (WatchTimeFastPath if fast else BodyLimitMiddleware)(inner, max_bytes=100)
    before = {reason: rejected(reason) for reason in ("invalid", "too_large", "internal_error")}
    part = {"type": "http.request", "body": b'{"watch_time": 1', "more_body": True}
    sent = _call(middleware, ROUTE.format("v-1"), messages=[part])
    assert sent == [] and inner.paths == []
    assert {reason: rejected(reason) for reason in before} == before


class _BrokenCatalog:
    async def material(self, material_id: str) -> None:
        raise RuntimeError("injected fault")


def test_an_unexpected_error_is_a_logged_500_in_the_error_shape(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    answers = []
    for fast in (True, False):
        app = create_app(settings, fast_path=fast)
        with TestClient(app, raise_server_exceptions=False) as client:
            app.state.ctx.catalog = _BrokenCatalog()
            before = rejected("internal_error")
            headers = {**JSON, **bearer(settings, "fast-0"), "X-Request-ID": f"fault-{fast}"}
            r = client.post(ROUTE.format("v-100"), content=body(watch_time=1), headers=headers)
            answers.append((r.status_code, r.json()))
            assert r.headers["x-request-id"] == f"fault-{fast}"
            assert rejected("internal_error") == before + 1
    assert answers[0] == answers[1]
    assert answers[0][0] == 500
    assert answers[0][1]["error"]["code"] == "internal_error"
    logged = [r for r in caplog.records if r.getMessage().startswith("unhandled error on POST")]
    assert len(logged) == 2 and all(
        r.exc_info and "injected fault" in str(r.exc_info[1]) for r in logged
    )
    # The operator finds the traceback by the id the client was given, on either path.
    assert [getattr(r, "request_id", None) for r in logged] == ["fault-True", "fault-False"]


def test_an_unexpected_error_elsewhere_is_a_500_with_the_request_id_and_no_refusal_counted(
    settings: Settings,
) -> None:
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False) as client:
        app.state.ctx.catalog = _BrokenCatalog()
        before = rejected("internal_error")
        headers = {**bearer(settings, "fast-0"), "X-Request-ID": "status-fault"}
        r = client.get("/api/progress/video/v-100/status", headers=headers)
        assert (r.status_code, r.json()["error"]["code"]) == (500, "internal_error")
        assert r.headers["x-request-id"] == "status-fault"
        assert rejected("internal_error") == before  # a status read is not a heartbeat
