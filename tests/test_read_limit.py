"""The per-user read limit (API.md, "Hostile input": reads and exports are rate limited per user
like heartbeats): status reads, course views, `/api/me/courses` and exports count against
READ_RATE_LIMIT_PER_MINUTE (an export as EXPORT_READ_COST reads); past it `429` with
`Retry-After` (the seconds left in the minute) in the error shape. The app runs in-process
on real Redis and the MongoDB stand-in with a `MockedClock`, so the window is moved, not waited
for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from httpx import Response

from ingest.app import create_app
from ingest.deps import EXPORT_READ_COST
from shared.clock import MockedClock
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings

LIMIT = 40
T0 = 1_800_000_000.0 + 15  # 15 s into a minute: Retry-After is 45 s
STUDENT, OTHER, TEACHER, ADMIN = "s-reader", "s-other", "t-phys", "a-root"


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(T0)


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, read_rate_limit_per_minute=LIMIT)


@pytest.fixture
def client(settings: Settings, clock: MockedClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock)) as c:
        admin = bearer(settings, ADMIN, "admin", now=clock.time())
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        for student in (STUDENT, OTHER):
            r = c.put(f"/api/courses/{COURSE_ID}/enrollments/{student}", headers=admin)
            assert r.status_code == 201
        yield c


def reads(client: TestClient, who: dict[str, str]) -> list[Response]:
    """One of each read a student's pages make."""
    return [
        client.get("/api/progress/video/v-100/status", headers=who),
        client.post("/api/progress/videos/status", json={"material_ids": ["v-100"]}, headers=who),
        client.get(f"/api/progress/course/{COURSE_ID}", headers=who),
        client.get("/api/me/courses", headers=who),
    ]


def assert_limited(response: Response, retry_after: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == str(retry_after)
    error = response.json()["error"]
    assert error["code"] == "rate_limited" and error["message"]


@pytest.mark.cluster  # the count's script on the caller's partition, on every layout
def test_reads_past_the_limit_get_429_until_the_minute_ends(
    client: TestClient, settings: Settings, clock: MockedClock
) -> None:
    me = bearer(settings, STUDENT, now=T0)
    answered = [r.status_code for _ in range(LIMIT // 4) for r in reads(client, me)]
    assert answered == [200] * LIMIT
    for refused in reads(client, me):  # each kind of read, one past the limit
        assert_limited(refused, 45)
    assert_limited(client.get("/api/progress/export", headers=me), 45)
    # Heartbeats have their own limit: still taken.
    r = client.post("/api/progress/video/v-100/watch-time", json=heartbeat(5), headers=me)
    assert r.status_code == 202
    clock.advance(44)
    assert_limited(reads(client, me)[0], 1)
    clock.advance(1)  # the next minute: refused reads did not count
    assert [r.status_code for _ in range(LIMIT // 4) for r in reads(client, me)] == [200] * LIMIT


def test_one_users_reads_never_use_up_anothers(client: TestClient, settings: Settings) -> None:
    me, other = bearer(settings, STUDENT, now=T0), bearer(settings, OTHER, now=T0)
    for _ in range(LIMIT // 4 + 1):
        reads(client, me)
    assert_limited(reads(client, me)[0], 45)
    assert [r.status_code for r in reads(client, other)] == [200] * 4
    teacher = bearer(settings, TEACHER, "teacher", now=T0)
    assert client.get("/api/me/courses", headers=teacher).status_code == 200


def test_an_export_counts_as_many_reads(client: TestClient, settings: Settings) -> None:
    me = bearer(settings, STUDENT, now=T0)
    assert client.get("/api/progress/export", headers=me).status_code == 200
    allowed = LIMIT - EXPORT_READ_COST
    statuses = [client.get("/api/me/courses", headers=me).status_code for _ in range(allowed + 1)]
    assert statuses == [200] * allowed + [429]
    # An admin's exports count against the admin, not the student exported.
    admin = bearer(settings, ADMIN, "admin", now=T0)
    path = f"/api/admin/students/{OTHER}/export"
    assert client.get(path, headers=admin).status_code == 200
    assert_limited(client.get(path, headers=admin), 45)
    assert (
        client.get("/api/progress/export", headers=bearer(settings, OTHER, now=T0)).status_code
        == 200
    )


def test_a_caller_refused_for_its_role_spends_nothing(
    client: TestClient, settings: Settings
) -> None:
    teacher = bearer(settings, TEACHER, "teacher", now=T0)
    for _ in range(LIMIT + 5):  # a teacher may not read a student's status: 403, not counted
        r = client.get("/api/progress/video/v-100/status", headers=teacher)
        assert r.status_code == 403
    assert client.get("/api/me/courses", headers=teacher).status_code == 200


def test_a_limit_of_zero_turns_it_off(redis_url: str, mongo_url: str) -> None:
    settings = make_settings(redis_url, mongo_url, read_rate_limit_per_minute=0)
    with TestClient(create_app(settings)) as c:  # the system clock
        me = bearer(settings, TEACHER, "teacher")
        assert {c.get("/api/me/courses", headers=me).status_code for _ in range(60)} == {200}


TEACHER_READS = [
    f"/api/teacher/courses/{COURSE_ID}/progress?limit=1",
    f"/api/teacher/courses/{COURSE_ID}/progress?format=csv",
    f"/api/teacher/courses/{COURSE_ID}/matrix",
    f"/api/teacher/courses/{COURSE_ID}/stats",
    f"/api/teacher/courses/{COURSE_ID}/students/{STUDENT}/progress",
    "/api/teacher/materials/v-100/retention",
]


@pytest.mark.parametrize("path", TEACHER_READS)
def test_a_teachers_dashboard_reads_count_too(
    client: TestClient, settings: Settings, clock: MockedClock, path: str
) -> None:
    """A class table, its CSV, the matrix, stats, a student's view, retention: each counts as a
    read of the teacher's, as a student's reads do (they read a whole class, not one key)."""
    teacher = bearer(settings, TEACHER, "teacher", now=clock.time())
    answers = [client.get(path, headers=teacher) for _ in range(LIMIT + 1)]
    assert [r.status_code for r in answers[:LIMIT]] == [200] * LIMIT
    assert_limited(answers[LIMIT], 45)
