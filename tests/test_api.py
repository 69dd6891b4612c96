"""The HTTP contract (API.md) of the student and catalog routes, in-process, over real Redis and
the MongoDB stand-in: authorization matrix, validation rules, error shape, read-your-writes.

Flushes here call the flush job's function directly; tests/test_system.py runs the same flow
through real uvicorn and RQ worker processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import jwt
import pymongo
import pytest
import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from rq import Queue

from ingest.app import create_app
from ingest.routes_catalog import RECALCULATE_JOB
from shared.settings import Settings
from shared.storage.clients import Buffer
from shared.storage.keys import ProgressKey
from tests.helpers import (
    COURSE,
    COURSE_ID,
    KEY_SCHEMA,
    SECRET,
    bearer,
    buffered,
    heartbeat,
    make_settings,
    present,
    wait_until,
)
from workers import maintenance
from workers.context import build_context
from workers.flush import flush_batch

STUDENT, OTHER_STUDENT, OUTSIDER = "s-ana", "s-ben", "s-out"
TEACHER, OTHER_TEACHER, ADMIN = "t-phys", "t-chem", "a-root"


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        admin = bearer(settings, ADMIN, "admin")
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        for student in (STUDENT, OTHER_STUDENT):
            r = c.put(f"/api/courses/{COURSE_ID}/enrollments/{student}", headers=admin)
            assert r.status_code == 201
        yield c


@pytest.fixture
def as_student(settings: Settings) -> dict[str, str]:
    return bearer(settings, STUDENT)


def flush(settings: Settings) -> None:
    ctx = build_context(settings)
    report = flush_batch(ctx, 500)
    assert not report.errors, report.errors
    ctx.mongo.close()


def assert_error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and body["error"]["message"]
    if code:
        assert body["error"]["code"] == code
    error: dict[str, Any] = body["error"]
    return error


def iso_ago(seconds: float) -> str:
    return datetime.fromtimestamp(time.time() - seconds, UTC).isoformat()


def test_a_player_clock_far_ahead_is_clamped_to_the_server_clock(
    client: TestClient, as_student: dict[str, str]
) -> None:
    # A reading stamped a year ahead must not pin the resume position forever.
    ahead = datetime.fromtimestamp(time.time() + 365 * 86400, UTC).isoformat()
    watch(client, as_student, **heartbeat(50, client_ts=ahead, played=[]))
    r = watch(client, as_student, **heartbeat(20, client_ts=iso_ago(-120), played=[]))
    assert r.json()["watch_time"] == 20.0


def watch(c: TestClient, headers: dict[str, str], video: str = "v-100", **body: Any) -> Any:
    return c.post(f"/api/progress/video/{video}/watch-time", json=body, headers=headers)


# -- authentication ------------------------------------------------------------------------


def _token(claims: dict[str, Any], key: str = SECRET, alg: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, key, algorithm=alg)}"}


def _claims(**overrides: Any) -> dict[str, Any]:
    return {"sub": STUDENT, "role": "student", "exp": int(time.time()) + 600, **overrides}


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer not.a.jwt"}, id="malformed"),
        pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="not-bearer"),
        pytest.param(_token(_claims(), key="another-secret-" + "x" * 40), id="bad-signature"),
        pytest.param(_token(_claims(exp=int(time.time()) - 60)), id="expired"),  # past the leeway
        pytest.param(_token({"sub": STUDENT, "role": "student"}), id="no-exp"),
        pytest.param(_token(_claims(role="janitor")), id="unknown-role"),
        pytest.param(_token(_claims(nbf=int(time.time()) + 600)), id="not-yet-valid"),
        pytest.param(_token({"sub": STUDENT, "exp": int(time.time()) + 600}), id="no-role"),
        pytest.param(_token({"role": "student", "exp": int(time.time()) + 600}), id="no-sub"),
        pytest.param(
            {"Authorization": "Bearer " + jwt.encode(_claims(), "", algorithm="none")},
            id="alg-none",
        ),
    ],
)
def test_bad_tokens_get_401_with_www_authenticate(
    client: TestClient, headers: dict[str, str]
) -> None:
    r = watch(client, headers, **heartbeat(5))
    assert_error(r, 401, "unauthenticated")
    assert r.headers["WWW-Authenticate"] == "Bearer"


# -- authorization matrix ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "user", "status"),
    [
        pytest.param("student", STUDENT, 202, id="student-own"),
        pytest.param("teacher", TEACHER, 403, id="teacher"),
        pytest.param("admin", ADMIN, 403, id="admin"),
        pytest.param("student", OUTSIDER, 403, id="student-not-enrolled"),
    ],
)
def test_who_may_send_heartbeats(
    client: TestClient, settings: Settings, role: str, user: str, status: int
) -> None:
    r = watch(client, bearer(settings, user, role), **heartbeat(5))
    assert r.status_code == status, r.text
    if status != 202:
        assert_error(r, status, "forbidden")


@pytest.mark.parametrize(
    ("role", "user", "query", "status"),
    [
        pytest.param("student", STUDENT, "", 200, id="student-own"),
        pytest.param("student", STUDENT, f"?student_id={STUDENT}", 200, id="student-names-self"),
        pytest.param("student", STUDENT, f"?student_id={OTHER_STUDENT}", 403, id="student-other"),
        pytest.param("teacher", TEACHER, f"?student_id={STUDENT}", 403, id="teacher"),
        pytest.param("admin", ADMIN, f"?student_id={STUDENT}", 200, id="admin-names-student"),
        pytest.param("admin", ADMIN, "", 422, id="admin-without-student"),
        pytest.param("student", OUTSIDER, "", 403, id="student-not-enrolled"),
    ],
)
def test_who_may_read_progress(
    client: TestClient, settings: Settings, role: str, user: str, query: str, status: int
) -> None:
    headers = bearer(settings, user, role)
    for path in ("/api/progress/video/v-100/status", f"/api/progress/course/{COURSE_ID}"):
        r = client.get(path + query, headers=headers)
        assert r.status_code == status, (path, r.text)
    r = client.post(
        "/api/progress/videos/status" + query, json={"material_ids": ["v-100"]}, headers=headers
    )
    assert r.status_code == status, r.text


def test_admin_reads_the_named_students_progress_not_their_own(
    client: TestClient, settings: Settings, as_student: dict[str, str]
) -> None:
    assert watch(client, as_student, **heartbeat(40, played=[[0, 40]])).status_code == 202
    admin = bearer(settings, ADMIN, "admin")
    mine = client.get(f"/api/progress/video/v-100/status?student_id={STUDENT}", headers=admin)
    other = client.get(
        f"/api/progress/video/v-100/status?student_id={OTHER_STUDENT}", headers=admin
    )
    assert mine.json()["watched_seconds"] == 40.0
    assert other.json()["watched_seconds"] == 0.0


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("PUT", f"/api/courses/{COURSE_ID}", COURSE, id="put-course"),
        pytest.param("PUT", f"/api/courses/{COURSE_ID}/enrollments/s-new", None, id="enroll"),
        pytest.param(
            "DELETE", f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", None, id="unenroll"
        ),
    ],
)
@pytest.mark.parametrize("role", ["student", "teacher"])
def test_only_admins_manage_the_catalog(
    client: TestClient, settings: Settings, method: str, path: str, body: Any, role: str
) -> None:
    user = TEACHER if role == "teacher" else STUDENT
    r = client.request(method, path, json=body, headers=bearer(settings, user, role))
    assert_error(r, 403, "forbidden")


@pytest.mark.parametrize(
    ("role", "user", "status"),
    [
        pytest.param("student", STUDENT, 200, id="enrolled-student"),
        pytest.param("student", OUTSIDER, 403, id="other-student"),
        pytest.param("teacher", TEACHER, 200, id="its-teacher"),
        pytest.param("teacher", OTHER_TEACHER, 403, id="other-teacher"),
        pytest.param("admin", ADMIN, 200, id="admin"),
    ],
)
def test_who_may_read_a_course(
    client: TestClient, settings: Settings, role: str, user: str, status: int
) -> None:
    r = client.get(f"/api/courses/{COURSE_ID}", headers=bearer(settings, user, role))
    assert r.status_code == status, r.text
    if status == 200:
        assert [m["module_id"] for m in r.json()["modules"]] == ["mod-a", "mod-b"]


def test_enrollment_changes_take_effect_at_once(client: TestClient, settings: Settings) -> None:
    admin, newcomer = bearer(settings, ADMIN, "admin"), bearer(settings, "s-new")
    assert watch(client, newcomer, **heartbeat(5)).status_code == 403
    r = client.put(f"/api/courses/{COURSE_ID}/enrollments/s-new", headers=admin)
    assert r.status_code == 201
    r = client.put(f"/api/courses/{COURSE_ID}/enrollments/s-new", headers=admin)
    assert r.status_code == 200  # already enrolled: idempotent
    assert watch(client, newcomer, **heartbeat(5)).status_code == 202
    r = client.delete(f"/api/courses/{COURSE_ID}/enrollments/s-new", headers=admin)
    assert r.status_code == 204
    assert watch(client, newcomer, **heartbeat(6)).status_code == 403
    r = client.delete(f"/api/courses/{COURSE_ID}/enrollments/s-new", headers=admin)
    assert_error(r, 404, "not_found")


def test_a_material_belongs_to_one_course(client: TestClient, settings: Settings) -> None:
    other = {"title": "Copy", "teacher_ids": [], "modules": [COURSE["modules"][0]]}
    r = client.put("/api/courses/copy-course", json=other, headers=bearer(settings, ADMIN, "admin"))
    error = assert_error(r, 422, "invalid")
    assert set(error["details"][0]["material_ids"]) == {"v-100", "v-600"}


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(heartbeat(101), "body", id="watch-time-over-duration"),
        pytest.param(heartbeat(-1), "watch_time", id="negative-watch-time"),
        pytest.param(heartbeat(0, total=0), "total_duration", id="zero-duration"),
        pytest.param(
            heartbeat(5, total=50), "total_duration", id="duration-disagrees-with-catalog"
        ),
        pytest.param({"watch_time": "five", "total_duration": 100}, "watch_time", id="wrong-type"),
        pytest.param({"total_duration": 100}, "watch_time", id="missing-field"),
        pytest.param(heartbeat(5, watchTime=5), "watchTime", id="unknown-field"),
        pytest.param(heartbeat(5, played=[[10, 5]]), "body", id="played-backwards"),
        pytest.param(heartbeat(5, played=[[0, 1e12]]), "played", id="played-huge"),
        pytest.param(heartbeat(5, seq=-1), "seq", id="negative-seq"),
        pytest.param(heartbeat(5, client_ts="yesterday"), "client_ts", id="bad-client-ts"),
        pytest.param(heartbeat(5, client_ts="2026-11-28T10:00:00"), "client_ts", id="naive-ts"),
        pytest.param(heartbeat(1e300, total=1e301), "total_duration", id="huge-numbers"),
    ],
)
def test_invalid_heartbeats_get_422_naming_the_field_and_store_nothing(
    client: TestClient,
    as_student: dict[str, str],
    redis_client: Buffer,
    body: dict[str, Any],
    field: str,
) -> None:
    r = watch(client, as_student, **body)
    # API.md, "Hostile input": a client_ts that is no date has a code of its own.
    error = assert_error(r, 422, "client_ts_out_of_range" if field == "client_ts" else "invalid")
    assert any(d["field"].startswith(field) for d in error["details"]), error
    assert all(d["rule"] for d in error["details"])
    assert redis_client.exists(ProgressKey(STUDENT, "v-100", KEY_SCHEMA).pending) == 0
    assert buffered(redis_client) == (0, 0)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(
    client: TestClient, as_student: dict[str, str], redis_client: Buffer, literal: str
) -> None:
    raw = '{"watch_time": ' + literal + ', "total_duration": 100}'
    r = client.post(
        "/api/progress/video/v-100/watch-time",
        content=raw,
        headers={**as_student, "Content-Type": "application/json"},
    )
    assert_error(r, 422, "invalid")
    assert buffered(redis_client) == (0, 0)


def test_non_json_body_is_422(client: TestClient, as_student: dict[str, str]) -> None:
    r = client.post(
        "/api/progress/video/v-100/watch-time",
        content=b"watch_time=5",
        headers={**as_student, "Content-Type": "application/json"},
    )
    assert_error(r, 422, "invalid")


def test_oversized_body_is_413(
    client: TestClient, as_student: dict[str, str], settings: Settings
) -> None:
    items = [{"material_id": "v-100", **heartbeat(1)}] * 2000
    raw = json.dumps({"heartbeats": items}).encode()
    assert len(raw) > settings.max_body_bytes
    r = client.post(
        "/api/progress/heartbeats",
        content=raw,
        headers={**as_student, "Content-Type": "application/json"},
    )
    error = assert_error(r, 413, "too_large")
    assert error["details"]["limit"] == settings.max_body_bytes


def test_unknown_video_is_404(client: TestClient, as_student: dict[str, str]) -> None:
    assert_error(watch(client, as_student, "v-nope", **heartbeat(5)), 404, "not_found")
    r = client.get("/api/progress/video/v-nope/status", headers=as_student)
    assert_error(r, 404, "not_found")
    assert_error(client.get("/api/progress/course/nope", headers=as_student), 404, "not_found")


def test_heartbeats_are_for_videos_and_complete_is_for_the_rest(
    client: TestClient, as_student: dict[str, str]
) -> None:
    error = assert_error(watch(client, as_student, "pdf-1", **heartbeat(5)), 422, "invalid")
    assert error["details"][0]["rule"] == "not_a_video"
    r = client.post("/api/progress/material/v-100/complete", headers=as_student)
    assert assert_error(r, 422, "invalid")["details"][0]["rule"] == "is_a_video"


def test_batches_over_500_items_are_refused(client: TestClient, as_student: dict[str, str]) -> None:
    items = [{"material_id": "v-100", "watch_time": 1, "total_duration": 100}] * 501
    r = client.post("/api/progress/heartbeats", json={"heartbeats": items}, headers=as_student)
    assert_error(r, 422, "invalid")
    r = client.post(
        "/api/progress/videos/status", json={"material_ids": ["v-100"] * 501}, headers=as_student
    )
    assert_error(r, 422, "invalid")


def test_duration_within_tolerance_is_accepted(
    client: TestClient, as_student: dict[str, str]
) -> None:
    # Catalog: 600 s. Tolerance: max(2 s, 2 %) = 12 s.
    assert watch(client, as_student, "v-600", **heartbeat(5, total=611.9)).status_code == 202
    assert watch(client, as_student, "v-600", **heartbeat(5, total=612.5)).status_code == 422


# -- progress semantics through the API -------------------------------------------------------


def test_read_your_writes_before_any_worker_ran(
    client: TestClient, as_student: dict[str, str], mongo_db: Any
) -> None:
    r = watch(client, as_student, **heartbeat(30, played=[[0, 30]]))
    assert r.status_code == 202
    assert r.json() == {
        "accepted": True,
        "watch_time": 30.0,
        "progress_percentage": 30.0,
        "watched_seconds": 30.0,
        "completed": False,
    }
    status = client.get("/api/progress/video/v-100/status", headers=as_student).json()
    assert status["watch_time"] == 30.0 and status["watched_seconds"] == 30.0
    assert status["course_id"] == COURSE_ID and status["total_duration"] == 100.0
    assert status["last_watched"] is not None and status["completed_at"] is None
    assert mongo_db.watch_progress.count_documents({}) == 0  # nothing flushed yet


def test_never_watched_is_zeros(client: TestClient, as_student: dict[str, str]) -> None:
    status = client.get("/api/progress/video/v-600/status", headers=as_student).json()
    assert status == {
        "material_id": "v-600",
        "course_id": COURSE_ID,
        "watch_time": 0.0,
        "total_duration": 600.0,
        "progress_percentage": 0.0,
        "watched_seconds": 0.0,
        "unverified_seconds": 0.0,
        "completed": False,
        "completed_at": None,
        "last_watched": None,
        "playback_rate": None,
    }


def test_rewind_resumes_where_rewound_and_keeps_coverage(
    client: TestClient, as_student: dict[str, str]
) -> None:
    watch(client, as_student, **heartbeat(50, played=[[0, 50]], seq=1, session_id="p1"))
    r = watch(client, as_student, **heartbeat(10, played=[], seq=2, session_id="p1"))
    assert r.json()["watch_time"] == 10.0
    assert r.json()["watched_seconds"] == 50.0


def test_out_of_order_readings_keep_the_latest_position(
    client: TestClient, as_student: dict[str, str]
) -> None:
    late, early = iso_ago(10), iso_ago(20)
    watch(client, as_student, **heartbeat(20, client_ts=late, played=[[10, 20]]))
    r = watch(client, as_student, **heartbeat(10, client_ts=early, played=[[0, 10]]))
    assert r.json()["watch_time"] == 20.0
    assert r.json()["watched_seconds"] == 20.0


def test_duplicate_heartbeats_change_nothing(
    client: TestClient, as_student: dict[str, str]
) -> None:
    body = heartbeat(40, played=[[20, 40]], seq=3, session_id="p", client_ts=iso_ago(3600))
    first = watch(client, as_student, **body).json()
    again = watch(client, as_student, **body).json()
    assert first == again == {**first, "watched_seconds": 20.0, "watch_time": 40.0}


def test_seeking_is_not_watching(client: TestClient, as_student: dict[str, str]) -> None:
    t0 = iso_ago(30)
    watch(client, as_student, "v-600", **heartbeat(0, 600, session_id="p", seq=0, client_ts=t0))
    r = watch(
        client,
        as_student,
        "v-600",
        **heartbeat(590, 600, session_id="p", seq=1, client_ts=iso_ago(25)),
    )
    assert r.json()["watched_seconds"] == 0.0  # 590 s in 5 s: a seek
    r = watch(
        client,
        as_student,
        "v-600",
        **heartbeat(600, 600, session_id="p", seq=2, client_ts=iso_ago(15)),
    )
    assert r.json()["watched_seconds"] == 10.0 and not r.json()["completed"]


def test_completion_at_80_percent_is_sticky(client: TestClient, as_student: dict[str, str]) -> None:
    r = watch(client, as_student, **heartbeat(79, played=[[0, 79]]))
    assert not r.json()["completed"]
    r = watch(client, as_student, **heartbeat(80, played=[[79, 80]]))
    assert r.json()["completed"] and r.json()["progress_percentage"] == 80.0
    r = watch(client, as_student, **heartbeat(0, played=[]))
    assert r.json()["completed"] and r.json()["watch_time"] == 0.0
    status = client.get("/api/progress/video/v-100/status", headers=as_student).json()
    assert status["completed"] and status["completed_at"] is not None


def test_batch_route_judges_each_item_alone(
    client: TestClient, as_student: dict[str, str], redis_client: Buffer
) -> None:
    items = [
        {"material_id": "v-100", **heartbeat(10, played=[[0, 10]])},
        {"material_id": "v-100", **heartbeat(500)},  # over the duration
        {"material_id": "v-nope", **heartbeat(1)},
        "not an object",
        {"material_id": "v-600", **heartbeat(20, 600, played=[[0, 20]])},
        {"material_id": "v-100", **heartbeat(20, played=[[10, 20]])},
    ]
    r = client.post("/api/progress/heartbeats", json={"heartbeats": items}, headers=as_student)
    assert r.status_code == 202, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == list(range(6))
    assert [x["accepted"] for x in results] == [True, False, False, False, True, True]
    assert [x["error"]["code"] for x in results if not x["accepted"]] == [
        "invalid",
        "not_found",
        "invalid",
    ]
    statuses = client.post(
        "/api/progress/videos/status",
        json={"material_ids": ["v-100", "v-600", "v-nope"]},
        headers=as_student,
    ).json()
    assert statuses["unknown"] == ["v-nope"]
    assert statuses["statuses"]["v-100"]["watched_seconds"] == 20.0
    assert statuses["statuses"]["v-600"]["watched_seconds"] == 20.0
    assert redis_client.llen(ProgressKey(STUDENT, "v-100", KEY_SCHEMA).pending) == 2


def test_batch_from_a_student_not_enrolled_accepts_nothing(
    client: TestClient, settings: Settings
) -> None:
    items = [{"material_id": "v-100", **heartbeat(10)}]
    r = client.post(
        "/api/progress/heartbeats", json={"heartbeats": items}, headers=bearer(settings, OUTSIDER)
    )
    assert r.json()["results"][0]["error"]["code"] == "forbidden"


def test_course_progress_counts_completed_materials(
    client: TestClient, as_student: dict[str, str]
) -> None:
    watch(client, as_student, **heartbeat(90, played=[[0, 90]]))  # v-100 complete (90 %)
    watch(client, as_student, "v-600", **heartbeat(60, 600, played=[[0, 60]]))  # 10 %
    r = client.post("/api/progress/material/pdf-1/complete", headers=as_student)
    assert r.status_code == 202 and r.json()["completed"] is True
    course = client.get(f"/api/progress/course/{COURSE_ID}", headers=as_student).json()
    assert course["progress_percentage"] == 50.0  # 2 of 4 materials
    assert sorted(course["completed_materials"]) == ["pdf-1", "v-100"]
    assert course["total_materials"] == 4
    assert course["videos"] == {
        "total": 2,
        "started": 2,
        "completed": 1,
        "watched_seconds": 150.0,
        "total_seconds": 700.0,
    }
    mod_a, mod_b = course["modules"]
    assert mod_a["progress_percentage"] == 50.0 and mod_b["progress_percentage"] == 50.0
    assert mod_a["watched_seconds"] == 150.0 and mod_a["total_seconds"] == 700.0
    assert [m["progress_percentage"] for m in mod_a["materials"]] == [90.0, 10.0]
    assert [m["completed"] for m in mod_b["materials"]] == [True, False]


def test_flush_writes_one_document_per_key_with_the_right_values(
    client: TestClient, settings: Settings, as_student: dict[str, str], mongo_db: Any
) -> None:
    for i in range(10):
        watch(client, as_student, **heartbeat(10 * (i + 1), played=[[10 * i, 10 * (i + 1)]]))
    watch(client, bearer(settings, OTHER_STUDENT), **heartbeat(5, played=[[0, 5]]))
    flush(settings)
    docs = {d["student_id"]: d for d in mongo_db.watch_progress.find({}, {"_id": 0})}
    assert set(docs) == {STUDENT, OTHER_STUDENT}
    mine = docs[STUDENT]
    assert mine["flushes"] == 1  # ten heartbeats, one write
    assert mine["v"] == 10
    assert mine["watch_time"] == 100.0 and mine["watched_seconds"] == 100.0
    assert mine["watched_ranges"] == [[0.0, 100.0]]
    assert mine["completed"] is True and mine["course_id"] == COURSE_ID
    assert docs[OTHER_STUDENT]["watched_seconds"] == 5.0
    # Status after the flush comes from the same state: still exact.
    status = client.get("/api/progress/video/v-100/status", headers=as_student).json()
    assert status["watched_seconds"] == 100.0 and status["completed"]


def test_states_expired_from_redis_are_read_back_from_mongodb(
    client: TestClient, settings: Settings, as_student: dict[str, str], redis_client: Buffer
) -> None:
    watch(client, as_student, **heartbeat(30, played=[[0, 30]]))
    flush(settings)
    redis_client.delete(ProgressKey(STUDENT, "v-100", KEY_SCHEMA).state)  # as if its TTL ran out
    status = client.get("/api/progress/video/v-100/status", headers=as_student).json()
    assert status["watched_seconds"] == 30.0
    r = watch(client, as_student, **heartbeat(40, played=[[30, 40]]))
    assert r.json()["watched_seconds"] == 40.0
    flush(settings)
    mongo: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(settings.mongo_url)
    key = {"student_id": STUDENT, "material_id": "v-100"}
    doc = present(mongo.get_default_database().watch_progress.find_one(key))
    mongo.close()
    assert doc["watched_seconds"] == 40.0 and doc["v"] == 2


def test_a_stored_state_holding_a_64_bit_seq_is_read_back_and_cached(
    client: TestClient, settings: Settings, as_student: dict[str, str], redis_client: Buffer
) -> None:
    """A player numbering its heartbeats with Date.now(): MongoDB keeps the seq of its
    position-only reading as a 64-bit integer, which pymongo reads back as bson's Int64. The
    web process caches the state it folds onto it (found by a review: a 500 for every
    heartbeat and status read of the key until a flush, when the cache took only built-in
    types)."""
    seq = 1_800_000_000_000
    assert watch(client, as_student, **heartbeat(10, session_id="p1", seq=seq)).status_code == 202
    flush(settings)
    redis_client.delete(ProgressKey(STUDENT, "v-100", KEY_SCHEMA).state)  # as if its TTL ran out
    r = watch(client, as_student, **heartbeat(12, session_id="p1", seq=seq + 1))
    assert r.status_code == 202, r.text
    status = client.get("/api/progress/video/v-100/status", headers=as_student)
    assert status.status_code == 200, status.text
    assert status.json()["watch_time"] == 12.0  # the later reading of the session: position 12


def test_readyz_and_healthz(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert r.status_code == 200
    body = r.json()
    durability = body.pop("buffer_durability")  # its values: tests/test_durability.py
    assert body == {"redis": "ok", "mongodb": "ok", "outbox": {"xapi": 0, "webhook": 0, "grade": 0}}
    assert set(durability) == {"aof", "appendfsync"}
    assert "videoprogress_heartbeats_accepted_total" in client.get("/metrics").text


def test_a_new_key_needs_no_mongodb_read_to_ingest_or_read(
    client: TestClient, as_student: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("MongoDB was read although it holds nothing for this key")

    app = client.app
    assert isinstance(app, FastAPI)
    monkeypatch.setattr(app.state.ctx.mongo, "find_states", unreachable)
    r = watch(client, as_student, **heartbeat(10, played=[[0, 10]]))
    assert r.status_code == 202 and r.json()["watched_seconds"] == 10.0
    status = client.get("/api/progress/video/v-100/status", headers=as_student)
    assert status.json()["watched_seconds"] == 10.0
    course = client.get(f"/api/progress/course/{COURSE_ID}", headers=as_student)
    assert course.status_code == 200


def test_a_course_change_recalculates_enrollment_progress(
    client: TestClient,
    settings: Settings,
    as_student: dict[str, str],
    mongo_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """At once in what the student sees (computed on read); in the enrollments, by the job the
    change queued (a whole class's documents: a job's work, not the admin's request's)."""
    watch(client, as_student, **heartbeat(90, played=[[0, 90]]))  # v-100 complete: 1 of 4
    flush(settings)
    ctx = build_context(settings)

    ctx.mongo.record_completion(STUDENT, COURSE_ID, ["v-100"], ctx.catalog().courses[COURSE_ID])
    enrollment = {"student_id": STUDENT, "course_id": COURSE_ID}
    assert present(mongo_db.enrollments.find_one(enrollment))["progress_percentage"] == 25.0
    bigger = json.loads(json.dumps(COURSE))
    bigger["modules"][1]["materials"].append(
        {"material_id": "pdf-2", "title": "More", "type": "pdf"}
    )
    r = client.put(
        f"/api/courses/{COURSE_ID}", json=bigger, headers=bearer(settings, ADMIN, "admin")
    )
    assert r.status_code == 200
    course = client.get(f"/api/progress/course/{COURSE_ID}", headers=as_student).json()
    assert course["progress_percentage"] == 20.0 and course["total_materials"] == 5
    queue = Queue(settings.queue_name, connection=redis.Redis.from_url(settings.redis_url))
    [job] = [j for j in queue.get_jobs() if j.func_name == RECALCULATE_JOB]
    assert list(job.args) == [COURSE_ID]
    monkeypatch.setattr(maintenance, "get_context", lambda: ctx)
    job.perform()
    assert (
        present(mongo_db.enrollments.find_one(enrollment))["progress_percentage"] == 20.0
    )  # 1 of 5


def test_a_new_catalog_is_parsed_off_the_event_loop(
    redis_url: str, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every API process re-reads the catalog after a change; parsing a large one takes a good
    part of a second, so it runs in a worker thread, never on the event loop that serves the
    heartbeats (the real parser, watched: which thread it ran on)."""
    import threading

    from shared.domain.catalog import Catalog

    settings = make_settings(redis_url, mongo_url)
    threads: list[str] = []
    real = Catalog.from_json

    def watched(blob: Any, version: int) -> Catalog:
        threads.append(threading.current_thread().name)
        return real(blob, version)

    with TestClient(create_app(settings)) as c:
        monkeypatch.setattr(Catalog, "from_json", staticmethod(watched))
        admin = bearer(settings, "root", "admin")
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        wait_until(lambda: threads)  # the process's refresh (every second) saw the new version
        loop_thread = c.portal.call(lambda: threading.current_thread().name)  # type: ignore[union-attr]
    assert threads and loop_thread not in threads


def test_a_fault_in_the_stored_data_is_not_blamed_on_the_cursor(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ValueError from the data under a teacher's page is the service's fault: a 500 in the
    error shape, logged. The routes answered every ValueError with a 422 on `cursor`, a cursor
    the client never sent (a review found it); a cursor the service did not make stays a 422."""
    from shared.storage import rollup_store

    def unreadable(doc: dict[str, Any]) -> Any:
        raise ValueError("a stored value the code cannot read")

    monkeypatch.setattr(rollup_store, "_totals_of", unreadable)
    teacher = bearer(settings, TEACHER, "teacher")
    base = f"/api/teacher/courses/{COURSE_ID}"
    for path in (f"{base}/progress", f"{base}/matrix?limit=10"):
        error = assert_error(client.get(path, headers=teacher), 500, "internal_error")
        assert "cursor" not in json.dumps(error), path
    monkeypatch.undo()
    for path in (f"{base}/progress?cursor=nope", f"{base}/matrix?limit=10&cursor=nope"):
        error = assert_error(client.get(path, headers=teacher), 422)
        assert error["details"] == [{"field": "cursor", "rule": "invalid"}], path
