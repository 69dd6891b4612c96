"""The routes `Shortcuts` serves without the router (ingest/shortcuts.py).

A status read (`GET /api/progress/video/{video_id}/status`) is answered by `answer_status`, a
bare ASGI handler, where FastAPI's request handler would run `get_status`. Each request below
goes to the app as it ships and to the same app without `Shortcuts` (so through FastAPI, its
dependencies, validation and response model), over the same Redis, MongoDB and clock: the two
answers must be the same status, body bytes and headers, refusals included. The dispatch test
holds that the shipped app does hand those requests to `answer_status`, and only those.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.types import Receive, Scope, Send

from ingest.app import create_app
from ingest.routes_progress import answer_status
from ingest.routes_watch_time import answer_watch_time
from ingest.shortcuts import Shortcuts
from shared.clock import MockedClock
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings

STATUS = "/api/progress/video/{}/status"
T0 = 1_800_000_000.0
READ_LIMIT = 40  # reads per minute; each case reads twice (once per app), the last case past it


def without_shortcuts(app: FastAPI) -> FastAPI:
    app.user_middleware = [m for m in app.user_middleware if cast(object, m.cls) is not Shortcuts]
    return app


@pytest.fixture
def settings(redis_url: str, mongo_url: str, tmp_path: Path) -> Settings:
    """With pages mounted at `/`, as in production."""
    (tmp_path / "index.html").write_text("<!doctype html><title>pages</title>")
    return make_settings(
        redis_url, mongo_url, read_rate_limit_per_minute=READ_LIMIT, frontend_dist=tmp_path
    )


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(T0)


@pytest.fixture
def apps(settings: Settings, clock: MockedClock) -> Iterator[tuple[TestClient, TestClient]]:
    """(the app as it ships, the app without Shortcuts), `s-0` and `s-1` enrolled in the test
    course, `s-0` with 30 s of `v-100` watched; `s-9` enrolled in nothing."""
    shipped, plain = create_app(settings, clock), without_shortcuts(create_app(settings, clock))
    with TestClient(shipped) as fast, TestClient(plain) as slow:
        admin = bearer(settings, "a-root", "admin", now=T0)
        assert fast.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        for n in range(2):
            url = f"/api/courses/{COURSE_ID}/enrollments/s-{n}"
            assert fast.put(url, headers=admin).status_code == 201
        route = "/api/progress/video/v-100/watch-time"
        s0 = bearer(settings, "s-0", now=T0)
        for end in (10, 20, 30):  # ten seconds apart by the server's clock: all of it credited
            clock.advance(10)
            hb = heartbeat(watch_time=end, played=[[end - 10, end]])
            assert fast.post(route, json=hb, headers=s0).status_code == 202
        yield fast, slow


def token(settings: Settings, user: str, role: str = "student") -> dict[str, str]:
    return bearer(settings, user, role, now=T0)


def answers(
    apps: tuple[TestClient, TestClient], url: str, headers: list[tuple[str, str]]
) -> list[tuple[int, bytes, list[tuple[str, str]]]]:
    """Each app's answer: status, body and headers in their order (but the request id, which
    differs)."""
    out = []
    for client in apps:
        reply = client.get(url, headers=headers)
        kept = [(k, v) for k, v in reply.headers.multi_items() if k != "x-request-id"]
        out.append((reply.status_code, reply.content, kept))
    return out


def cases(settings: Settings) -> list[tuple[str, str, list[tuple[str, str]], int]]:
    """(what, url, headers, the status API.md gives it)."""
    s0, s9 = list(token(settings, "s-0").items()), list(token(settings, "s-9").items())
    teacher = list(token(settings, "t-phys", "teacher").items())
    admin = list(token(settings, "a-root", "admin").items())
    own, long_id = STATUS.format("v-100"), "v" * 129
    return [
        ("a student's own status", own, s0, 200),
        ("a video not started", STATUS.format("v-600"), s0, 200),
        ("a material that is not a video", STATUS.format("pdf-1"), s0, 200),
        ("no token", own, [], 401),
        ("another scheme", own, [("Authorization", "Basic czA6cHc=")], 401),
        ("a token not ours", own, [("Authorization", "Bearer not.a.jwt")], 401),
        ("of two tokens the first counts", own, [*s0, *s9], 200),
        ("a teacher", own, teacher, 403),
        ("an unknown video", STATUS.format("v-none"), s0, 404),
        ("a video id too long", STATUS.format(long_id), s0, 422),
        ("a video id with a control character", STATUS.format("v%01x"), s0, 422),
        ("the student named, themselves", own + "?student_id=s-0", s0, 200),
        ("another student named", own + "?student_id=s-1", s0, 403),
        ("an empty student_id", own + "?student_id=", s0, 422),
        ("of two student_ids the last counts", own + "?student_id=s-1&student_id=s-0",
         s0, 200),
        ("both ids refused: the path's first", STATUS.format(long_id) + "?student_id=",
         s0, 422),
        ("a refused student_id before an unknown video", STATUS.format("v-none") + "?student_id=",
         s0, 422),
        ("an admin naming no one", own, admin, 422),
        ("an admin naming a student", own + "?student_id=s-0", admin, 200),
        ("an admin naming a student not enrolled", own + "?student_id=s-9", admin, 403),
        ("a student enrolled in nothing", own, s9, 403),
        ("another query parameter", own + "?x=1", s0, 200),
    ]  # fmt: skip


def test_a_status_read_gets_fastapis_answer_from_the_shortcut(
    apps: tuple[TestClient, TestClient], settings: Settings
) -> None:
    seen = set()
    for what, url, headers, status in cases(settings):
        fast, slow = answers(apps, url, headers)
        assert fast == slow, what
        assert fast[0] == status, (what, fast)
        seen.add(status)
        assert ("content-type", "application/json") in fast[2], what
    assert seen == {200, 401, 403, 404, 422}
    # The student's status worked out by hand: three heartbeats ten seconds apart, each with
    # its ten seconds played, of the 100 s video: 30 s at position 30.
    fast, _ = apps
    mine = fast.get(STATUS.format("v-100"), headers=token(settings, "s-0")).json()
    assert (mine["watch_time"], mine["watched_seconds"], mine["progress_percentage"]) == (
        30.0,
        30.0,
        30.0,
    )


def test_a_reader_past_the_read_limit_gets_the_same_429(
    apps: tuple[TestClient, TestClient], settings: Settings, clock: MockedClock
) -> None:
    fast, _ = apps
    s1 = token(settings, "s-1")
    spent = [fast.get(STATUS.format("v-100"), headers=s1).status_code for _ in range(READ_LIMIT)]
    assert spent == [200] * READ_LIMIT
    first, second = answers(apps, STATUS.format("v-100"), list(s1.items()))
    assert first == second
    assert first[0] == 429
    # The window ends on the minute: T0 is a whole minute and the fixture's heartbeats moved
    # the clock 30 s past it, so 30 s to wait.
    assert ("retry-after", "30") in first[2]
    clock.advance(60)
    assert fast.get(STATUS.format("v-100"), headers=s1).status_code == 200


def test_the_shipped_app_hands_status_reads_and_heartbeats_to_their_handlers(
    settings: Settings,
) -> None:
    """The app's `Shortcuts` with recording handlers in place of the real ones: which request
    goes where, and with the path parameters the router would set."""
    app = create_app(settings)
    [entry] = [m for m in app.user_middleware if cast(object, m.cls) is Shortcuts]
    routes = cast(list[tuple[str, Any, Any]], entry.kwargs["routes"])
    assert [(m, h) for m, _, h in routes] == [
        ("POST", answer_watch_time),
        ("GET", answer_status),
    ]
    seen: list[tuple[str, Any]] = []

    def recorder(name: str) -> Any:
        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            seen.append((name, scope.get("path_params")))

        return handle

    shortcuts = Shortcuts(recorder("router"), [(m, r, recorder(h.__name__)) for m, r, h in routes])
    requests = [
        ("GET", "/api/progress/video/v-1/status", ("answer_status", {"video_id": "v-1"})),
        ("HEAD", "/api/progress/video/v-1/status", ("router", None)),
        ("POST", "/api/progress/video/v-1/status", ("router", None)),
        ("GET", "/api/progress/video/v-1/status/more", ("router", None)),
        ("POST", "/api/progress/video/v-2/watch-time", ("answer_watch_time", {"video_id": "v-2"})),
        ("GET", "/api/progress/video/v-2/watch-time", ("router", None)),
        ("GET", "/api/progress/course/c-1", ("router", None)),
    ]  # fmt: skip

    async def nothing() -> Any:
        return {}

    async def ignore(_: Any) -> None:
        return None

    async def dispatch() -> None:
        for method, path, _ in requests:
            scope = {"type": "http", "method": method, "path": path, "root_path": "", "headers": []}
            await shortcuts(scope, nothing, ignore)

    asyncio.run(dispatch())
    assert seen == [expected for _, _, expected in requests]
