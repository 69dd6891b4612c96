"""API.md, "Hostile input (every route)": ids in paths and queries, session ids and client
times are refused at the door with a 422 that names them, leaving nothing half-stored; and what
is already stored, however odd, never makes an export fail. In-process over real Redis and the
MongoDB stand-in (the single-heartbeat route's refusals, in FastAPI's order:
tests/test_watch_time_route.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.clock import MockedClock
from shared.settings import Settings
from shared.storage.clients import Buffer
from shared.storage.keys import ProgressKey
from shared.storage.mongo_store import progress_id
from tests.helpers import COURSE, COURSE_ID, KEY_SCHEMA, bearer, buffered, heartbeat, make_settings

STUDENT = "s-ana"
NOW = 1_800_000_000.0  # the mocked server clock


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


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


BAD_IDS = [
    pytest.param("a%00b", "not_printable", id="NUL"),
    pytest.param("a%0Ab", "not_printable", id="newline"),
    pytest.param("a%7Fb", "not_printable", id="DEL"),
    pytest.param("a%E2%80%8Bb", "not_printable", id="zero-width space"),
    pytest.param("x" * 129, "string_too_long", id="129 characters"),
]
# (method, path with {} for the id, role, the field named): every route that takes an id.
ROUTES = [
    ("GET", "/api/progress/video/{}/status", "student", "path.video_id"),
    ("POST", "/api/progress/material/{}/complete", "student", "path.material_id"),
    ("GET", "/api/progress/course/{}", "student", "path.course_id"),
    ("GET", "/api/courses/{}", "student", "path.course_id"),
    ("PUT", f"/api/courses/{COURSE_ID}/enrollments/{{}}", "admin", "path.student_id"),
    ("DELETE", f"/api/courses/{COURSE_ID}/enrollments/{{}}", "admin", "path.student_id"),
    ("PUT", "/api/courses/{}/enrollments/s-new", "admin", "path.course_id"),
    ("GET", "/api/teacher/courses/{}/progress", "teacher", "path.course_id"),
    ("GET", f"/api/teacher/courses/{COURSE_ID}/students/{{}}/progress", "teacher",
     "path.student_id"),
    ("GET", "/api/teacher/courses/{}/stats", "teacher", "path.course_id"),
    ("GET", "/api/teacher/courses/{}/matrix", "teacher", "path.course_id"),
    ("GET", "/api/teacher/materials/{}/retention", "teacher", "path.material_id"),
    ("GET", "/api/admin/students/{}/export", "admin", "path.student_id"),
    ("GET", "/api/progress/video/v-100/status?student_id={}", "admin", "query.student_id"),
    ("GET", f"/api/progress/course/{COURSE_ID}?student_id={{}}", "admin", "query.student_id"),
    ("POST", "/api/progress/videos/status?student_id={}", "admin", "query.student_id"),
    ("DELETE", "/api/admin/progress?student_id={}", "admin", "query.student_id"),
]  # fmt: skip
USERS = {"student": STUDENT, "teacher": "t-phys", "admin": "root"}


@pytest.mark.parametrize(("raw", "rule"), BAD_IDS)
def test_ids_in_paths_and_queries_are_refused_on_every_route(
    client: TestClient, settings: Settings, mongo_db: Any, raw: str, rule: str
) -> None:
    enrollments = mongo_db.enrollments.count_documents({})
    for method, path, role, field in ROUTES:
        body = {"material_ids": ["v-100"]} if path.startswith("/api/progress/videos") else None
        r = client.request(
            method,
            path.format(raw),
            json=body,
            headers=bearer(settings, USERS[role], role, now=NOW),
        )
        assert r.status_code == 422, (method, path, r.text)
        error = r.json()["error"]
        assert error["code"] == "invalid"
        assert [(d["field"], d["rule"]) for d in error["details"]] == [(field, rule)], path
    assert mongo_db.enrollments.count_documents({}) == enrollments  # nothing half-stored


@pytest.mark.parametrize(
    ("raw", "rule"), [*BAD_IDS[:-1], pytest.param("x" * 257, "string_too_long", id="257")]
)
def test_the_class_tables_search_is_printable_text(
    client: TestClient, settings: Settings, raw: str, rule: str
) -> None:
    """`?q=` is matched as text against ids and names: up to 256 printable characters."""
    url = f"/api/teacher/courses/{COURSE_ID}/progress?q={raw}"
    r = client.get(url, headers=bearer(settings, "t-phys", "teacher", now=NOW))
    assert r.status_code == 422, r.text
    details = r.json()["error"]["details"]
    assert [(d["field"], d["rule"]) for d in details] == [("query.q", rule)]
    for fine in ("an", "élève ß", "x" * 256, "$where"):
        r = client.get(url.split("?")[0], params={"q": fine},
                       headers=bearer(settings, "t-phys", "teacher", now=NOW))  # fmt: skip
        assert r.status_code == 200, (fine, r.text)
        assert [row["student_id"] for row in r.json()["rows"]] == (
            [STUDENT] if fine == "an" else []
        )


def test_ids_of_128_printable_characters_are_looked_up(
    client: TestClient, settings: Settings
) -> None:
    headers = bearer(settings, STUDENT, now=NOW)
    for unknown in ("x" * 128, "an id with spaces", "élève-ß"):
        r = client.get(f"/api/progress/video/{unknown}/status", headers=headers)
        assert r.status_code == 404, (unknown, r.text)  # allowed, and not in the catalog


def test_the_role_is_checked_before_the_id(client: TestClient, settings: Settings) -> None:
    r = client.get("/api/teacher/courses/a%00b/stats", headers=bearer(settings, STUDENT, now=NOW))
    assert r.status_code == 403


def test_a_course_names_printable_teacher_ids(client: TestClient, settings: Settings) -> None:
    admin = bearer(settings, "root", "admin", now=NOW)
    course = {**COURSE, "teacher_ids": ["t-phys", "t\x00x"]}
    r = client.put("/api/courses/c-new", json=course, headers=admin)
    assert r.status_code == 422
    assert [d["field"] for d in r.json()["error"]["details"]] == ["teacher_ids.1"]
    assert client.get("/api/courses/c-new", headers=admin).status_code == 404


def watch(c: TestClient, settings: Settings, **body: Any) -> Any:
    return c.post(
        "/api/progress/video/v-100/watch-time",
        json=body,
        headers=bearer(settings, STUDENT, now=NOW),
    )


def test_client_ts_at_most_max_client_age_old(client: TestClient, settings: Settings) -> None:
    # MAX_CLIENT_AGE_S is 3600 here and the server's clock stands at NOW.
    assert watch(client, settings, **heartbeat(5, client_ts=iso(NOW - 3599))).status_code == 202
    r = watch(client, settings, **heartbeat(6, client_ts=iso(NOW - 3601)))
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "client_ts_out_of_range"
    assert error["details"] == [
        {"field": "client_ts", "rule": "client_ts_out_of_range", "max_age_s": 3600.0}
    ]
    # More than 60 s ahead is clamped, not refused: the position still counts as latest.
    r = watch(client, settings, **heartbeat(7, client_ts=iso(NOW + 86400)))
    assert r.status_code == 202 and r.json()["watch_time"] == 7.0


def test_the_batch_route_judges_each_item_by_the_same_rules(
    client: TestClient, settings: Settings, redis_client: Buffer
) -> None:
    items = [
        {"material_id": "v-100", **heartbeat(1, session_id="tab-1", seq=1)},
        {"material_id": "v-100", **heartbeat(2, session_id="a\x00b")},
        {"material_id": "v-100", **heartbeat(3, client_ts="0001-01-01T00:00:00+01:00")},
        {"material_id": "v-100", **heartbeat(4, client_ts="yesterday")},
        {"material_id": "v-100", **heartbeat(5, client_ts=iso(NOW - 7200))},
        {"material_id": "v\x00100", **heartbeat(6)},
        {"material_id": "v-600", **heartbeat(7, total=600, client_ts=iso(NOW - 60))},
    ]
    r = client.post(
        "/api/progress/heartbeats",
        json={"heartbeats": items},
        headers=bearer(settings, STUDENT, now=NOW),
    )
    assert r.status_code == 202, r.text
    got = [(x["index"], x["accepted"], (x["error"] or {}).get("code")) for x in r.json()["results"]]
    assert got == [
        (0, True, None),
        (1, False, "invalid"),
        (2, False, "client_ts_out_of_range"),
        (3, False, "client_ts_out_of_range"),
        (4, False, "client_ts_out_of_range"),
        (5, False, "invalid"),
        (6, True, None),
    ]
    assert buffered(redis_client) == (2, 2)  # the two good ones, nothing of the others


UNREADABLE = [
    pytest.param(b'{"heartbeats": ["\xff"]}', id="not UTF-8"),
    pytest.param(b'{"heartbeats": [{"watch_time": 1' + b"0" * 5000 + b"}]}", id="5,000 digits"),
    pytest.param(b"[" * 20_000 + b"]" * 20_000, id="nested 20,000 deep"),
]


@pytest.mark.parametrize("content", UNREADABLE)
@pytest.mark.parametrize("path", ["/api/progress/heartbeats", "/api/progress/videos/status"])
def test_a_json_body_the_decoder_cannot_read_is_a_422(
    client: TestClient, settings: Settings, redis_client: Buffer, path: str, content: bytes
) -> None:
    """API.md, "Errors": an invalid body is a 422 in the error shape, whatever made it
    unreadable (not only its syntax), and nothing of it is stored."""
    headers = {**bearer(settings, STUDENT, now=NOW), "Content-Type": "application/json"}
    r = client.post(path, content=content, headers=headers)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == "invalid"
    assert [d["field"] for d in r.json()["error"]["details"]] == ["body"]
    assert buffered(redis_client) == (0, 0)


def _cursor(position: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


NESTED = base64.urlsafe_b64encode(b"[" * 3000 + b"]" * 3000).decode()  # deeper than JSON goes
FORGED_CURSORS = [
    pytest.param("watched_seconds", NESTED, id="nested 3,000 deep"),
    pytest.param("watched_seconds", ["watched_seconds", [{"$gt": 1}, "x"]], id="an operator"),
    pytest.param("progress", ["progress", [float("inf"), "x"]], id="Infinity"),
    pytest.param("watched_seconds", ["watched_seconds", [[1, 2], "x"]], id="a list"),
    pytest.param("watched_seconds", ["watched_seconds", [True, "x"]], id="a boolean"),
    pytest.param("watched_seconds", ["watched_seconds", [1.0, 5]], id="a numeric student"),
    pytest.param("student_id", ["student_id", ["a", "b"]], id="two student ids"),
    pytest.param("watched_seconds", ["watched_seconds", [float("-inf"), "x"]], id="-Infinity"),
    pytest.param("progress", ["progress", [1e308, "x"]], id="1e308"),
    pytest.param("watched_seconds", ["watched_seconds", [10**400, "x"]], id="400 digits"),
    pytest.param("last_active", ["last_active", [2**64, "x"]], id="2**64"),
    pytest.param("watched_seconds", ["watched_seconds", [2**63, "x"]], id="2**63"),
]


@pytest.mark.parametrize("search", [None, "s-"])
@pytest.mark.parametrize("view", ["progress", "matrix"])
@pytest.mark.parametrize(("sort", "position"), FORGED_CURSORS)
def test_a_forged_cursor_is_a_422_and_never_reaches_a_query(
    client: TestClient, settings: Settings, view: str, sort: str, position: Any, search: str | None
) -> None:
    """A cursor is the service's own (the sort and the last row's value and student id): one
    whose value no row could have is refused before any query (MongoDB's sorted page, or the
    in-memory sort of a search)."""
    cursor = _cursor(position) if position is not NESTED else NESTED
    params: dict[str, Any] = {"sort": sort, "limit": 1, "cursor": cursor}
    if search:
        params["q"] = search
    r = client.get(f"/api/teacher/courses/{COURSE_ID}/{view}", params=params,
                   headers=bearer(settings, "t-phys", "teacher", now=NOW))  # fmt: skip
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"] == "cursor"


@pytest.mark.parametrize("view", ["progress", "matrix"])
@pytest.mark.parametrize("sort", ["student_id", "-progress", "last_active", "-last_active",
                                  "watched_seconds", "unverified_seconds"])  # fmt: skip
def test_the_services_own_cursors_page_through_every_sort(
    client: TestClient, settings: Settings, view: str, sort: str
) -> None:
    admin = bearer(settings, "root", "admin", now=NOW)
    for student in ("s-bo", "s-cy"):
        assert client.put(f"/api/courses/{COURSE_ID}/enrollments/{student}",
                          headers=admin).status_code == 201  # fmt: skip
    teacher = bearer(settings, "t-phys", "teacher", now=NOW)
    seen: list[str] = []
    params: dict[str, Any] = {"sort": sort, "limit": 1}
    while True:
        r = client.get(f"/api/teacher/courses/{COURSE_ID}/{view}", params=params, headers=teacher)
        assert r.status_code == 200, r.text
        seen += [row["student_id"] for row in r.json()["rows"]]
        if not r.json()["next_cursor"]:
            break
        params["cursor"] = r.json()["next_cursor"]
    assert sorted(seen) == [STUDENT, "s-bo", "s-cy"]  # each once: never active, all three


# -- what is stored, however odd, never fails an export ---------------------------------------


def test_the_export_answers_whatever_is_stored(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    # Left by older versions, or by hand: a pending heartbeat read in year 0 and one whose
    # position is not a number; a stored state no version wrote, a write time as text; an
    # enrollment figure that is NaN.
    key = ProgressKey(STUDENT, "v-100", KEY_SCHEMA)
    for raw in (
        json.dumps({"r": NOW, "w": 5.0, "t": -62135600400.0, "s": "tab", "q": 1, "e": "pause"}),
        '{"r": 1800000001.0, "w": NaN}',
    ):
        redis_client.rpush(key.pending, raw)
    # Listed in the student's key index, as ingest, a flush or setting the key aside leaves it
    # (CHANGELOG.md, 0.8.0): the export looks the student's keys up there.
    redis_client.sadd(KEY_SCHEMA.key_index(STUDENT), "v-100")
    mongo_db.watch_progress.insert_one(
        {"_id": progress_id(STUDENT, "v-600"), "student_id": STUDENT, "material_id": "v-600",
         "course_id": COURSE_ID, "v": 3, "state": {"position_key": 5}, "written_at": "monday"}
    )  # fmt: skip
    mongo_db.watch_progress.insert_one(  # parses, but its ranges are no numbers
        {"_id": progress_id(STUDENT, "pdf-1"), "student_id": STUDENT, "material_id": "pdf-1",
         "course_id": COURSE_ID, "v": 1, "state": {"covered": [["a", "b"]], "obs": []}}
    )  # fmt: skip
    mongo_db.enrollments.update_one(
        {"student_id": STUDENT}, {"$set": {"progress_percentage": float("nan"), "updated_at": 1e20}}
    )

    r = client.get("/api/progress/export", headers=bearer(settings, STUDENT, now=NOW))

    assert r.status_code == 200, r.text
    export = r.json()
    by_material = {m["material_id"]: m for m in export["materials"]}
    pending = by_material["v-100"]["pending_heartbeats"]
    assert [(h["client_ts"], h["watch_time"]) for h in pending] == [
        (-62135600400.0, 5.0),  # no calendar holds it: given as stored
        (None, None),  # NaN is no JSON number
    ]
    assert by_material["v-600"]["unreadable"].startswith("TypeError")
    assert by_material["pdf-1"]["unreadable"].startswith("TypeError")
    [enrollment] = export["enrollments"]
    assert enrollment["progress_percentage"] is None and enrollment["updated_at"] == 1e20
    for url in ("/api/progress/export?format=xapi", f"/api/admin/students/{STUDENT}/export"):
        role = "admin" if "admin" in url else "student"
        user = "root" if role == "admin" else STUDENT
        assert client.get(url, headers=bearer(settings, user, role, now=NOW)).status_code == 200, (
            url
        )


def _watched(student: str, material: str, **fields: Any) -> dict[str, Any]:
    """A `watch_progress` document as a flush writes it (half of the 100 s video watched)."""
    return {"_id": progress_id(student, material), "student_id": student, "material_id": material,
            "course_id": COURSE_ID, "v": 3, "watched_seconds": 50.0, "unverified_seconds": 0.0,
            "progress_percentage": 50.0, "completed": False, "watched_ranges": [[0.0, 50.0]],
            **fields}  # fmt: skip


@pytest.mark.parametrize(
    "odd",
    [
        pytest.param({"watched_ranges": [[0, 50, 1]]}, id="a range of three"),
        pytest.param({"watched_ranges": [["0", "50"]]}, id="ranges of text"),
        pytest.param({"watched_ranges": 7}, id="ranges a number"),
        pytest.param({"watched_seconds": "50.0 s"}, id="seconds as text"),
        pytest.param({"watched_ranges": [[0]]}, id="a range of one"),
    ],
)
def test_one_students_odd_document_leaves_the_class_retention_curve_standing(
    client: TestClient, settings: Settings, mongo_db: Any, odd: dict[str, Any]
) -> None:
    """The retention curve over the class leaves out a document it cannot read (written by an
    older version, or by hand) instead of failing for every student."""
    admin = bearer(settings, "root", "admin", now=NOW)
    assert client.put(f"/api/courses/{COURSE_ID}/enrollments/s-odd", headers=admin).is_success
    mongo_db.watch_progress.insert_many([_watched(STUDENT, "v-100"), _watched("s-odd", "v-100")])
    mongo_db.watch_progress.update_one({"student_id": "s-odd"}, {"$set": odd})
    r = client.get("/api/teacher/materials/v-100/retention", params={"buckets": 2},
                   headers=bearer(settings, "t-phys", "teacher", now=NOW))  # fmt: skip
    assert r.status_code == 200, r.text
    # The one readable viewer watched the first half: all of them for it, none for the second.
    assert [b["share"] for b in r.json()["buckets"]] == [1.0, 0.0]
