"""The export (right of access) and the erasure, from a data-protection officer's view: what
the service holds about a student is in their export, erasing them removes it, and a student
whose id holds `/` is reached on every route that names a student in its path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.clock import MockedClock
from shared.settings import Settings
from shared.storage.clients import Buffer
from shared.storage.keys import ProgressKey
from tests.helpers import COURSE, COURSE_ID, KEY_SCHEMA, bearer, make_settings, present
from tests.test_erasure import STUDENT as ERASED
from tests.test_erasure import Campus, campus  # noqa: F401  (the fixture)

STUDENT = "s-dpo"
NOW = 1_800_000_000.0


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, max_client_age_s=3600.0)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=MockedClock(NOW))) as c:
        admin = bearer(settings, "root", "admin", now=NOW)
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        r = c.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin)
        assert r.status_code == 201
        yield c


def test_buffered_data_the_export_cannot_read_is_listed_not_left_out(
    client: TestClient, settings: Settings, redis_client: Buffer
) -> None:
    """Heartbeats buffered in a form this version cannot parse (an older version's, or
    damaged: the flush sets such a key aside and keeps its data) are still held about the
    student: the export lists the material with the error, as it does for an unreadable
    stored document, instead of leaving the material out or showing no pending heartbeats."""
    key = ProgressKey(STUDENT, "v-100", KEY_SCHEMA)
    redis_client.rpush(key.pending, '{"r": 1800000001.0, "w": 5.0, "s": "tab"')  # cut short
    redis_client.sadd(KEY_SCHEMA.key_index(STUDENT), "v-100")

    r = client.get("/api/progress/export", headers=bearer(settings, STUDENT, now=NOW))

    assert r.status_code == 200, r.text
    by_material: dict[str, Any] = {m["material_id"]: m for m in r.json()["materials"]}
    assert "v-100" in by_material, r.json()["materials"]
    assert "unreadable" in by_material["v-100"]


def test_erasing_a_material_retired_from_its_course_erases_its_completion(
    campus: Campus,  # noqa: F811
) -> None:
    """A material the course no longer lists (an admin replaced the course without it) is still
    named in the student's enrollment as completed: erasing that material takes it out too."""
    c = campus
    who = c.enroll(ERASED)
    c.open(who, "pdf-1")
    c.flush()
    c.run_completion_jobs()
    assert "pdf-1" in present(c.ctx.mongo.enrollment(ERASED, COURSE_ID))["completed_materials"]
    retired = json.loads(json.dumps(COURSE))
    retired["modules"][1]["materials"] = retired["modules"][1]["materials"][1:]  # pdf-1 goes
    admin = c.token("a-root", "admin")
    assert c.client.put(f"/api/courses/{COURSE_ID}", json=retired, headers=admin).status_code == 200
    c.ctx.catalog()  # the workers' catalog follows the publish

    report = c.erase("pdf-1")

    assert report["documents"] == 1
    enrollment = present(c.ctx.mongo.enrollment(ERASED, COURSE_ID))
    assert "pdf-1" not in enrollment["completed_materials"], enrollment
    exported = c.client.get(f"/api/admin/students/{ERASED}/export", headers=admin).json()
    assert "pdf-1" not in json.dumps(exported["enrollments"]), exported["enrollments"]


def test_an_admin_exports_a_student_whose_id_holds_a_slash(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_url: str
) -> None:
    """Student ids are any 1-128 printable characters (API.md, "Hostile input"), and
    `videoprogress load-catalog` enrolls such ids: one with a `/` (an identity provider's
    subject) watches, and the admin's export of them must answer, not 404."""
    from shared.ops.admin_ops import set_enrollment
    from shared.storage.mongo_store import MongoStore

    student = "idp/ana"
    mongo = MongoStore(mongo_url)
    set_enrollment(mongo, redis_client, KEY_SCHEMA, student, COURSE_ID, True)
    who = bearer(settings, student, now=NOW)
    r = client.post("/api/progress/video/v-100/watch-time",
                    json={"watch_time": 30, "total_duration": 100}, headers=who)  # fmt: skip
    assert r.status_code == 202, r.text
    assert client.get("/api/progress/export", headers=who).json()["materials"]

    admin = bearer(settings, "root", "admin", now=NOW)
    r = client.get("/api/admin/students/idp%2Fana/export", headers=admin)

    assert r.status_code == 200, r.text
    assert r.json()["student_id"] == student and r.json()["materials"]


def test_a_student_whose_id_holds_a_slash_is_enrolled_seen_and_unenrolled_by_path(
    client: TestClient, settings: Settings
) -> None:
    """The routes that name a student in their path take `%2F` as the export's does: an admin
    enrolls and unenrolls `idp/ana`, and the course's teacher reads their progress."""
    admin = bearer(settings, "root", "admin", now=NOW)
    url = f"/api/courses/{COURSE_ID}/enrollments/idp%2Fana"
    r = client.put(url, headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["student_id"] == "idp/ana"
    who = bearer(settings, "idp/ana", now=NOW)
    r = client.post("/api/progress/video/v-100/watch-time",
                    json={"watch_time": 30, "total_duration": 100}, headers=who)  # fmt: skip
    assert r.status_code == 202, r.text  # enrolled: the path's id was the student's

    teacher = bearer(settings, "t-phys", "teacher", now=NOW)  # COURSE's teacher
    r = client.get(f"/api/teacher/courses/{COURSE_ID}/students/idp%2Fana/progress", headers=teacher)
    assert r.status_code == 200, r.text
    assert r.json()["student_id"] == "idp/ana"

    assert client.delete(url, headers=admin).status_code == 204
    assert client.delete(url, headers=admin).status_code == 404  # they were, and are no more
    r = client.put(f"/api/courses/{COURSE_ID}/enrollments/idp%2Fana%0A", headers=admin)
    assert r.status_code == 422  # a control character is still refused
