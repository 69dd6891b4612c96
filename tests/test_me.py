"""`GET /api/me/courses` in-process, over real Redis and the MongoDB stand-in: each role's
shape and scope, admin paging, the empty case. Expected numbers are worked out by hand from the
tests' course (phys-101: v-100, v-600, pdf-1, link-1) and a second course, chem-201."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings
from workers.context import build_context
from workers.flush import flush_batch

CHEM = {
    "title": "Chemistry 201",
    "teacher_ids": ["t-chem", "t-both"],
    "modules": [{"module_id": "m", "title": "Bonds", "materials": [
        {"material_id": "c-video", "title": "Bonds", "type": "video", "duration": 200},
        {"material_id": "c-pdf", "title": "Sheet", "type": "pdf"},
    ]}],
}  # fmt: skip
PHYS = {**COURSE, "teacher_ids": ["t-phys", "t-both"]}


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        admin = bearer(settings, "root", "admin")
        for course_id, body in ((COURSE_ID, PHYS), ("chem-201", CHEM)):
            assert c.put(f"/api/courses/{course_id}", json=body, headers=admin).status_code == 201
        for student, course_id in (("ana", COURSE_ID), ("ana", "chem-201"), ("ben", COURSE_ID)):
            r = c.put(f"/api/courses/{course_id}/enrollments/{student}", headers=admin)
            assert r.status_code == 201
        yield c


def flush(settings: Settings) -> None:
    ctx = build_context(settings)
    report = flush_batch(ctx, 500)
    assert not report.errors, report.errors
    ctx.mongo.close()


def me(client: TestClient, settings: Settings, user: str, role: str, **params: Any) -> Any:
    r = client.get("/api/me/courses", params=params, headers=bearer(settings, user, role))
    assert r.status_code == 200, r.text
    return r.json()


def test_a_student_sees_their_courses_with_the_numbers_of_their_course_view(
    client: TestClient, settings: Settings
) -> None:
    ana = bearer(settings, "ana")
    body = heartbeat(100, played=[[0, 100]])
    assert client.post("/api/progress/video/v-100/watch-time", json=body, headers=ana).is_success
    assert client.post("/api/progress/material/pdf-1/complete", headers=ana).status_code == 202
    body = heartbeat(50, 200, played=[[0, 50]])
    assert client.post("/api/progress/video/c-video/watch-time", json=body, headers=ana).is_success

    # Before any flush the percentages already agree with the course view (read-your-writes);
    # the latest activity comes from the stored rollup, so it is null until the flush.
    before = me(client, settings, "ana", "student")
    assert before["next_cursor"] is None
    assert [(c["course_id"], c["progress_percentage"], c["completed_materials"],
             c["total_materials"], c["last_active"]) for c in before["courses"]] == [
        ("chem-201", 0.0, 0, 2, None),  # 50 of 200 s is 25 %: not complete
        (COURSE_ID, 50.0, 2, 4, None),  # v-100 and pdf-1 of 4
    ]  # fmt: skip
    flush(settings)
    after = me(client, settings, "ana", "student")
    assert [c["title"] for c in after["courses"]] == ["Chemistry 201", "Physics 101"]
    assert all(c["last_active"] is not None for c in after["courses"])
    for course in after["courses"]:
        own = client.get(f"/api/progress/course/{course['course_id']}", headers=ana).json()
        assert course["progress_percentage"] == own["progress_percentage"]
        assert course["completed_materials"] == len(own["completed_materials"])
        assert course["total_materials"] == own["total_materials"]


def test_a_student_without_courses_gets_an_empty_list(
    client: TestClient, settings: Settings
) -> None:
    assert me(client, settings, "nobody", "student") == {"courses": [], "next_cursor": None}


def test_teachers_see_only_the_courses_they_teach(client: TestClient, settings: Settings) -> None:
    ana = bearer(settings, "ana")
    body = heartbeat(100, played=[[0, 100]])
    assert client.post("/api/progress/video/v-100/watch-time", json=body, headers=ana).is_success
    for material in ("pdf-1", "link-1"):
        r = client.post(f"/api/progress/material/{material}/complete", headers=ana)
        assert r.status_code == 202
    flush(settings)
    phys = me(client, settings, "t-phys", "teacher")
    # ana 3 of 4 = 75 %, ben 0 %: average 37.5, nobody at 100 %
    assert phys == {"courses": [{"course_id": COURSE_ID, "title": "Physics 101", "enrolled": 2,
                                 "average_progress": 37.5, "completion_rate": 0.0}],
                    "next_cursor": None}  # fmt: skip
    chem = me(client, settings, "t-chem", "teacher")
    assert [(c["course_id"], c["enrolled"], c["average_progress"]) for c in chem["courses"]] == [
        ("chem-201", 1, 0.0)
    ]
    both = me(client, settings, "t-both", "teacher")
    assert [c["course_id"] for c in both["courses"]] == ["chem-201", COURSE_ID]
    assert me(client, settings, "t-none", "teacher") == {"courses": [], "next_cursor": None}
    stats = client.get(
        f"/api/teacher/courses/{COURSE_ID}/stats", headers=bearer(settings, "t-phys", "teacher")
    ).json()
    assert {k: stats[k] for k in ("enrolled", "average_progress", "completion_rate")} == {
        k: phys["courses"][0][k] for k in ("enrolled", "average_progress", "completion_rate")
    }


def test_admins_page_through_every_course(client: TestClient, settings: Settings) -> None:
    first = me(client, settings, "root", "admin", limit=1)
    assert [c["course_id"] for c in first["courses"]] == ["chem-201"]
    assert set(first["courses"][0]) == {
        "course_id", "title", "enrolled", "average_progress", "completion_rate"
    }  # fmt: skip
    assert first["next_cursor"] is not None
    second = me(client, settings, "root", "admin", limit=1, cursor=first["next_cursor"])
    assert [c["course_id"] for c in second["courses"]] == [COURSE_ID]
    assert second["courses"][0]["enrolled"] == 2
    assert second["next_cursor"] is None
    whole = me(client, settings, "root", "admin")
    assert [c["course_id"] for c in whole["courses"]] == ["chem-201", COURSE_ID]
    assert whole["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-zero"),
        pytest.param({"limit": 501}, id="limit-too-big"),
        pytest.param({"cursor": "%%%"}, id="cursor-not-base64"),
        pytest.param({"cursor": base64.urlsafe_b64encode(b"\xff\xfe").decode()}, id="not-utf8"),
    ],
)
def test_bad_paging_is_422(client: TestClient, settings: Settings, params: dict[str, Any]) -> None:
    r = client.get("/api/me/courses", params=params, headers=bearer(settings, "root", "admin"))
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid"


def test_no_token_is_401(client: TestClient) -> None:
    r = client.get("/api/me/courses")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
