"""Teacher and admin views through HTTP, over real RQ workers, Redis and the MongoDB stand-in.

A class with hand-chosen watched ranges; every expected number below is worked out by hand
from the table in `CLASS` (course phys-101: k-v-100 is 100 s, k-v-600 is 600 s, plus k-pdf-1 and
k-link-1, so 4 materials).
"""

from __future__ import annotations

import csv
import io
import signal
import threading
import time
from typing import Any

import httpx
import pytest

from shared.storage.live_rollups import LiveRollups
from tests.helpers import (
    CLASS_COURSE_ID,
    COURSE_ID,
    bearer,
    buffered,
    heartbeat,
    leased,
    present,
    wait_until,
)
from tests.stack import Stack
from tests.stack import enroll as enroll_in
from tests.stack import post as post_to
from tests.stack import stored as stored_in

pytestmark = pytest.mark.system

# student -> heartbeats as (video, duration, played ranges) and completed non-video materials
CLASS: dict[str, dict[str, Any]] = {
    "ana": {"watch": [("k-v-100", 100, [[0, 100]]), ("k-v-600", 600, [[0, 60]])], "open": []},
    "ben": {
        "watch": [("k-v-100", 100, [[0, 30]]), ("k-v-100", 100, [[0, 30]])],
        "open": ["k-pdf-1"],
    },
    "cat": {"watch": [("k-v-100", 100, [[60, 100]])], "open": []},
    "dan": {"watch": [], "open": []},
    "eve": {
        "watch": [("k-v-100", 100, [[0, 100]]), ("k-v-600", 600, [[0, 600]])],
        "open": ["k-pdf-1", "k-link-1"],
    },
}
# Worked out by hand: (progress %, completed materials, watched seconds)
EXPECTED_ROWS = {
    "ana": (25.0, 1, 160.0),  # k-v-100 complete; k-v-600 at 10 %
    "ben": (25.0, 1, 30.0),  # rewatching [0, 30] counts once; k-pdf-1 complete
    "cat": (0.0, 0, 40.0),
    "dan": (0.0, 0, 0.0),
    "eve": (100.0, 4, 700.0),
}


def enroll(stack: Stack, student: str) -> dict[str, str]:
    return enroll_in(stack, student, CLASS_COURSE_ID)


def post(stack: Stack, headers: dict[str, str], video: str = "k-v-100", **body: Any) -> Any:
    return post_to(stack, headers, video, **body)


def stored(stack: Stack, student: str, video: str = "k-v-100") -> dict[str, Any] | None:
    return stored_in(stack, student, video)


@pytest.fixture(scope="session")
def klass(system_stack: Stack) -> Stack:
    """The class above, flushed to MongoDB; plus 'fay', who watched and then left the course."""
    stack = system_stack
    for student, plan in [
        *CLASS.items(),
        ("fay", {"watch": [("k-v-100", 100, [[0, 100]])], "open": []}),
    ]:
        headers = enroll(stack, student)
        for video, duration, played in plan["watch"]:
            end = played[-1][1]
            assert post(stack, headers, video, **heartbeat(end, duration, played=played)).is_success
        for material in plan["open"]:
            r = httpx.post(
                f"{stack.url}/api/progress/material/{material}/complete", headers=headers
            )
            assert r.status_code == 202
    admin = bearer(stack.settings(), "root", "admin")
    r = httpx.delete(f"{stack.url}/api/courses/{CLASS_COURSE_ID}/enrollments/fay", headers=admin)
    assert r.status_code == 204
    wait_until(lambda: buffered(stack.redis_client())[0] == 0, timeout_s=30)
    # ...and its rollup records persisted (ROLLUP_PERSIST_S=2 here), so that the module's
    # tests read one settled state, whichever of two reads comes first.
    live = LiveRollups(stack.redis_client())
    wait_until(lambda: not live.records(CLASS_COURSE_ID), timeout_s=30)
    return stack


def teacher(stack: Stack, user: str = "t-phys") -> dict[str, str]:
    return bearer(stack.settings(), user, "teacher")


def get(stack: Stack, path: str, headers: dict[str, str], **params: Any) -> httpx.Response:
    return httpx.get(f"{stack.url}{path}", headers=headers, params=params, timeout=30)


def test_class_table_has_one_exact_row_per_enrolled_student(klass: Stack) -> None:
    r = get(klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/progress", teacher(klass))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["next_cursor"] is None
    rows = {row["student_id"]: row for row in body["rows"]}
    assert set(rows) == set(EXPECTED_ROWS)  # fay left the course; dan is there at 0
    for student, (progress, completed, watched) in EXPECTED_ROWS.items():
        row = rows[student]
        got = (row["progress_percentage"], row["completed_materials"], row["watched_seconds"])
        assert got == (progress, completed, watched), student
    assert rows["dan"]["last_active"] is None and rows["eve"]["last_active"] is not None


def test_pages_cover_every_student_once_in_order(klass: Stack) -> None:
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {"sort": "-progress", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = get(
            klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/progress", teacher(klass), **params
        )
        body = body.json()
        assert len(body["rows"]) <= 2
        seen += [row["student_id"] for row in body["rows"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # progress descending; ties by student id descending (the order is total)
    assert seen == ["eve", "ben", "ana", "dan", "cat"]
    r = get(klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/progress", teacher(klass), sort="bogus")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid"


def test_csv_parses_back_to_the_same_rows(klass: Stack) -> None:
    path = f"/api/teacher/courses/{CLASS_COURSE_ID}/progress"
    as_json = get(klass, path, teacher(klass)).json()["rows"]
    for response in (
        get(klass, path, teacher(klass), format="csv"),
        get(klass, path, {**teacher(klass), "Accept": "text/csv"}),
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        parsed = list(csv.DictReader(io.StringIO(response.text)))
        assert [
            {
                **row,
                "progress_percentage": float(row["progress_percentage"]),
                "completed_materials": int(row["completed_materials"]),
                "watched_seconds": float(row["watched_seconds"]),
                "unverified_seconds": float(row["unverified_seconds"]),
                "last_active": row["last_active"] or None,
                "name": row["name"] or None,  # an empty cell: no roster name
            }
            for row in parsed
        ] == as_json


def test_cli_writes_the_class_table_as_csv(klass: Stack, tmp_path: Any) -> None:
    import subprocess
    import sys

    out = tmp_path / "class.csv"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "shared.devtools.cli",
            "class-csv",
            CLASS_COURSE_ID,
            "--output",
            str(out),
        ],
        env=klass.env,
        check=True,
    )
    rows = {r["student_id"]: r for r in csv.DictReader(out.open())}
    assert {
        s: (
            float(r["progress_percentage"]),
            int(r["completed_materials"]),
            float(r["watched_seconds"]),
        )
        for s, r in rows.items()
    } == EXPECTED_ROWS


def test_stats_match_the_class(klass: Stack) -> None:
    stats = get(klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/stats", teacher(klass)).json()
    assert stats["enrolled"] == 5
    assert stats["average_progress"] == 30.0  # (25 + 25 + 0 + 0 + 100) / 5
    assert stats["completion_rate"] == 0.2  # eve only
    by_material = {m["material_id"]: m for m in stats["materials"]}
    assert by_material["k-v-100"] == {  # ana 100, ben 30, cat 40, eve 100 (fay left)
        "material_id": "k-v-100",
        "started": 4,
        "completed": 2,
        "average_watched_percentage": 67.5,
    }
    assert by_material["k-v-600"] == {  # ana 10, eve 100
        "material_id": "k-v-600",
        "started": 2,
        "completed": 1,
        "average_watched_percentage": 55.0,
    }
    assert (by_material["k-pdf-1"]["started"], by_material["k-pdf-1"]["completed"]) == (2, 2)
    assert (by_material["k-link-1"]["started"], by_material["k-link-1"]["completed"]) == (1, 1)


def test_retention_counts_each_viewer_once_per_slice(klass: Stack) -> None:
    r = get(klass, "/api/teacher/materials/k-v-100/retention", teacher(klass), buckets=4)
    body = r.json()
    assert body["viewers"] == 4 and body["duration"] == 100.0
    # slices of 25 s; a viewer counts when they watched >= 12.5 s of it:
    # ana [0,100], ben [0,30], cat [60,100], eve [0,100]
    assert [(b["start"], b["end"], b["share"]) for b in body["buckets"]] == [
        (0.0, 25.0, 0.75),
        (25.0, 50.0, 0.5),
        (50.0, 75.0, 0.75),
        (75.0, 100.0, 0.75),
    ]
    r = get(klass, "/api/teacher/materials/k-pdf-1/retention", teacher(klass))
    assert r.status_code == 422


def test_views_agree_with_the_students_own_numbers(klass: Stack) -> None:
    """The class table, the matrix and the teacher's drill-down (all from rollups or stored
    state) against the student's own course view (hot state): the same numbers."""
    matrix = {
        row["student_id"]: (row["progress"], row["completed"])
        for row in get(klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/matrix", teacher(klass))
        .json()["rows"]
    }  # fmt: skip
    rows = {
        row["student_id"]: row
        for row in get(
            klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/progress", teacher(klass)
        ).json()["rows"]
    }
    for student in ("ana", "ben", "cat", "dan", "eve"):
        own = get(
            klass, f"/api/progress/course/{CLASS_COURSE_ID}", bearer(klass.settings(), student)
        )
        seen = get(
            klass,
            f"/api/teacher/courses/{CLASS_COURSE_ID}/students/{student}/progress",
            teacher(klass),
        )
        assert seen.json() == own.json() | {"student_id": student, "name": None}  # no roster
        assert own.json()["progress_percentage"] == rows[student]["progress_percentage"]
        assert own.json()["videos"]["watched_seconds"] == rows[student]["watched_seconds"]
        assert len(own.json()["completed_materials"]) == rows[student]["completed_materials"]
        materials = [m for mod in own.json()["modules"] for m in mod["materials"]]
        videos = [m for m in materials if m["type"] == "video"]
        unverified = round(sum(m["unverified_seconds"] for m in videos), 3)
        assert unverified == rows[student]["unverified_seconds"]
        cells = matrix[student]
        assert cells == ([m["progress_percentage"] for m in materials],
                         [m["completed"] for m in materials])  # fmt: skip


@pytest.mark.parametrize(
    "path",
    [
        f"/api/teacher/courses/{CLASS_COURSE_ID}/progress",
        f"/api/teacher/courses/{CLASS_COURSE_ID}/students/ana/progress",
        f"/api/teacher/courses/{CLASS_COURSE_ID}/stats",
        f"/api/teacher/courses/{CLASS_COURSE_ID}/matrix",
        "/api/teacher/materials/k-v-100/retention",
    ],
)
@pytest.mark.parametrize(
    ("user", "role", "status"),
    [
        pytest.param("t-phys", "teacher", 200, id="its-teacher"),
        pytest.param("t-chem", "teacher", 403, id="other-teacher"),
        pytest.param("ana", "student", 403, id="student"),
        pytest.param("root", "admin", 200, id="admin"),
    ],
)
def test_who_sees_teacher_views(klass: Stack, path: str, user: str, role: str, status: int) -> None:
    r = get(klass, path, bearer(klass.settings(), user, role))
    assert r.status_code == status, r.text


# The matrix, by hand from CLASS: materials k-v-100 (100 s), k-v-600 (600 s), k-pdf-1, k-link-1.
EXPECTED_MATRIX = {
    "ana": ([100.0, 10.0, 0.0, 0.0], [True, False, False, False]),
    "ben": ([30.0, 0.0, 100.0, 0.0], [False, False, True, False]),
    "cat": ([40.0, 0.0, 0.0, 0.0], [False, False, False, False]),
    "dan": ([0.0, 0.0, 0.0, 0.0], [False, False, False, False]),
    "eve": ([100.0, 100.0, 100.0, 100.0], [True, True, True, True]),
}


def test_matrix_has_a_cell_per_student_and_material(klass: Stack) -> None:
    r = get(klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/matrix", teacher(klass))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["course_id"] == CLASS_COURSE_ID and body["next_cursor"] is None
    assert body["materials"] == [
        {"material_id": "k-v-100", "title": "Speed", "type": "video"},
        {"material_id": "k-v-600", "title": "Forces", "type": "video"},
        {"material_id": "k-pdf-1", "title": "Notes", "type": "pdf"},
        {"material_id": "k-link-1", "title": "More", "type": "link"},
    ]
    assert {row["student_id"]: (row["progress"], row["completed"]) for row in body["rows"]} \
        == EXPECTED_MATRIX  # fmt: skip
    assert [row["student_id"] for row in body["rows"]] == ["ana", "ben", "cat", "dan", "eve"]


def test_matrix_pages_in_the_class_tables_order_and_streams_csv(klass: Stack) -> None:
    path = f"/api/teacher/courses/{CLASS_COURSE_ID}/matrix"
    seen, cursor = [], None
    for _ in range(5):
        params = {"sort": "-progress", "limit": 2, **({"cursor": cursor} if cursor else {})}
        body = get(klass, path, teacher(klass), **params).json()
        seen += [row["student_id"] for row in body["rows"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == ["eve", "ben", "ana", "dan", "cat"]
    r = get(klass, path, teacher(klass), format="csv", sort="student_id")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0] == ["student_id", "name", "k-v-100", "k-v-600", "k-pdf-1", "k-link-1"]
    assert lines[1] == ["ana", "", "100.0", "10.0", "0.0", "0.0"]  # no LMS roster, no name
    assert {line[0]: [float(x) for x in line[2:]] for line in lines[1:]} == {
        s: progress for s, (progress, _) in EXPECTED_MATRIX.items()
    }
    for params in ({"limit": 0}, {"limit": 5001}, {"sort": "bogus"}, {"cursor": "nope"}):
        assert get(klass, path, teacher(klass), **params).status_code == 422, params
    assert get(klass, "/api/teacher/courses/nope/matrix", teacher(klass)).status_code == 404


def test_class_table_filters_by_inactivity_and_student_id(klass: Stack) -> None:
    path = f"/api/teacher/courses/{CLASS_COURSE_ID}/progress"

    def ids(**params: Any) -> list[str]:
        r = get(klass, path, teacher(klass), **params)
        assert r.status_code == 200, r.text
        return [row["student_id"] for row in r.json()["rows"]]

    assert ids(inactive_days=1) == ["dan"]  # everyone else watched minutes ago; dan never did
    assert ids(inactive_days=0) == ["ana", "ben", "cat", "dan", "eve"]
    assert ids(q="AN") == ["ana", "dan"]  # contains, any case
    assert ids(q="e") == ["ben", "eve"]
    assert ids(q="an", inactive_days=1) == ["dan"]
    assert ids(q="zzz") == []
    r = get(klass, path, teacher(klass), format="csv", q="AN")
    assert [row["student_id"] for row in csv.DictReader(io.StringIO(r.text))] == ["ana", "dan"]
    r = get(klass, path, teacher(klass), format="csv", inactive_days=1)
    assert [row["student_id"] for row in csv.DictReader(io.StringIO(r.text))] == ["dan"]
    for params in ({"inactive_days": -1}, {"inactive_days": "x"}, {"q": ""}):
        assert get(klass, path, teacher(klass), **params).status_code == 422, params
    assert ids(sort="-unverified_seconds") and ids(sort="unverified_seconds")


def test_drill_down_shows_each_videos_watched_ranges(klass: Stack) -> None:
    path = f"/api/teacher/courses/{CLASS_COURSE_ID}/students/cat/progress"
    view = get(klass, path, teacher(klass)).json()
    materials = {m["material_id"]: m for mod in view["modules"] for m in mod["materials"]}
    assert materials["k-v-100"]["watched_ranges"] == [[60.0, 100.0]]
    assert (materials["k-v-100"]["title"], materials["k-v-100"]["type"]) == ("Speed", "video")
    assert materials["k-v-600"]["watched_ranges"] == []
    assert (materials["k-pdf-1"]["title"], materials["k-pdf-1"]["type"]) == ("Notes", "pdf")
    ana = get(
        klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/students/ana/progress", teacher(klass)
    )
    ana_materials = {m["material_id"]: m for mod in ana.json()["modules"]
                     for m in mod["materials"]}  # fmt: skip
    assert ana_materials["k-v-600"]["watched_ranges"] == [[0.0, 60.0]]
    assert all(isinstance(m["unverified_seconds"], float) for m in ana_materials.values())


def test_a_teacher_cannot_view_a_student_outside_the_course(klass: Stack) -> None:
    r = get(klass, f"/api/teacher/courses/{CLASS_COURSE_ID}/students/fay/progress", teacher(klass))
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_only_admins_erase(klass: Stack) -> None:
    for headers in (teacher(klass), bearer(klass.settings(), "ana")):
        r = httpx.delete(
            f"{klass.url}/api/admin/progress", params={"student_id": "ana"}, headers=headers
        )
        assert r.status_code == 403


def test_erasure_refuses_a_material_id_that_is_not_a_catalog_id(klass: Stack) -> None:
    # "a|b" for student "c" would be the document key of student "b|c" on material "a".
    admin = bearer(klass.settings(), "root", "admin")
    params = {"student_id": "c", "material_id": "a|b"}
    r = httpx.delete(f"{klass.url}/api/admin/progress", params=params, headers=admin)
    assert r.status_code == 422 and r.json()["error"]["details"][0]["field"] == "query.material_id"
    assert klass.db().watch_progress.count_documents({"_id": "a|b|c"}) == 0


# The erasure tests run on both buffer kinds (marked `cluster`) with students of the system
# tests' course (COURSE_ID), so that the class above stays as it is, whichever runs first.


def _erase(stack: Stack, student: str, material: str | None = None) -> dict[str, Any]:
    params = {"student_id": student, **({"material_id": material} if material else {})}
    admin = bearer(stack.settings(), "root", "admin")
    r = httpx.delete(f"{stack.url}/api/admin/progress", params=params, headers=admin, timeout=60)
    assert r.status_code == 200, r.text
    report: dict[str, Any] = r.json()
    return report


def _status(stack: Stack, student: str, video: str = "v-100") -> dict[str, Any]:
    path = f"/api/progress/video/{video}/status"
    status: dict[str, Any] = get(stack, path, bearer(stack.settings(), student)).json()
    return status


@pytest.mark.cluster
def test_erasure_removes_queued_heartbeats_and_nothing_comes_back(stack: Stack) -> None:
    headers = enroll_in(stack, "gus")
    assert post_to(stack, headers, **heartbeat(90, played=[[0, 90]])).status_code == 202
    wait_until(lambda: (d := stored_in(stack, "gus")) and d.get("completed"))
    wait_until(
        lambda: (
            (e := stack.db().enrollments.find_one({"student_id": "gus"}))
            and e["completed_materials"]
        )
    )
    stack.kill_all("worker", signal.SIGTERM)  # the next heartbeats stay queued in Redis
    try:
        for end in (20, 40):
            body = heartbeat(end, 600, played=[[end - 20, end]])
            assert post_to(stack, headers, "v-600", **body).status_code == 202
        report = _erase(stack, "gus")
    finally:
        stack.restart_workers()
    assert report["queued_heartbeats"] == 2 and report["documents"] == 1
    assert report["enrollments"] == 1
    flushes_have_run(stack)  # none may bring anything back
    for video in ("v-100", "v-600"):
        assert _status(stack, "gus", video)["watched_seconds"] == 0.0
        doc = stored_in(stack, "gus", video)
        assert doc is None or "course_id" not in doc  # a tombstone holds only a version
    enrollment = present(stack.db().enrollments.find_one({"student_id": "gus"}))
    assert enrollment["completed_materials"] == [] and enrollment["progress_percentage"] == 0.0
    assert _row(stack, "gus") == (0.0, 0, 0.0, None)  # the class table forgot too
    # Watching again starts from nothing and is stored again.
    assert (
        post_to(stack, headers, **heartbeat(10, played=[[0, 10]])).json()["watched_seconds"] == 10
    )
    wait_until(lambda: (d := stored_in(stack, "gus")) and d.get("watched_seconds") == 10.0)
    wait_until(lambda: _row(stack, "gus")[2] == 10.0)


def flushes_have_run(stack: Stack) -> None:
    """Waits until a flush that began after this call has stored a probe's heartbeat and the
    buffer is empty: whatever an erasure left queued would have been stored by then."""
    probe = f"probe-{time.monotonic_ns()}"
    headers = enroll_in(stack, probe)
    assert post_to(stack, headers, **heartbeat(10, played=[[0, 10]])).status_code == 202
    wait_until(lambda: stored_in(stack, probe), timeout_s=30)
    wait_until(lambda: buffered(stack.redis_client()) == (0, 0), timeout_s=30)


def _row(stack: Stack, student: str) -> tuple[Any, ...]:
    r = get(stack, f"/api/teacher/courses/{COURSE_ID}/progress", teacher(stack), q=student)
    [row] = [row for row in r.json()["rows"] if row["student_id"] == student]
    return (row["progress_percentage"], row["completed_materials"], row["watched_seconds"],
            row["last_active"])  # fmt: skip


@pytest.mark.cluster
def test_erasure_wins_over_a_flush_in_flight(stack: Stack) -> None:
    headers = enroll_in(stack, "hal")
    r = stack.redis_client()
    present(stack.mongo.proc).send_signal(
        signal.SIGSTOP
    )  # a flush will hang while holding hal's batch
    eraser = threading.Thread(target=lambda: _erase(stack, "hal", "v-100"))
    try:
        assert post_to(stack, headers, **heartbeat(50, played=[[0, 50]])).status_code == 202
        wait_until(lambda: leased(r, "hal", "v-100"), timeout_s=30)
        eraser.start()
        time.sleep(1)
    finally:
        present(stack.mongo.proc).send_signal(signal.SIGCONT)
    eraser.join(60)
    wait_until(lambda: not leased(r, "hal", "v-100"), timeout_s=30)
    flushes_have_run(stack)
    assert _status(stack, "hal")["watched_seconds"] == 0.0
    doc = stored_in(stack, "hal")
    assert doc is None or "course_id" not in doc
