"""How many documents a teacher's page reads, counted from what MongoDB returns (pymongo's
command monitoring: the `firstBatch`/`nextBatch` lengths of every reply), over the MongoDB
stand-in, at a class larger than the pages: a page must read one page of documents plus a
constant, not the class."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import pytest

from shared.domain import analytics
from shared.domain.catalog import Course
from shared.domain.rollup import RollupEntry
from shared.ops import teacher_views
from shared.storage import rollup_store
from shared.storage.mongo_store import MongoStore
from tests.helpers import DocumentsRead

STUDENTS = 260  # more than a 200-row matrix page and a 50-row class page, plus their constants
MATERIALS = 12
CONSTANT = 5  # the stale probe and the page's extra row, with room to spare


def the_course() -> Course:
    materials = [{"material_id": f"r-v-{i:02d}", "title": f"Video {i}", "type": "video",
                  "duration": 100} for i in range(MATERIALS)]  # fmt: skip
    return Course.model_validate({"course_id": "reads-101", "title": "Reads",
                                  "teacher_ids": ["t-r"],
                                  "modules": [{"module_id": "m", "title": "All",
                                               "materials": materials}]})  # fmt: skip


def class_plan() -> dict[tuple[str, str], dict[str, RollupEntry]]:
    """Each student's entries: random progress on about 60 % of the materials."""
    course = the_course()
    rng = random.Random(22)
    plan: dict[tuple[str, str], dict[str, RollupEntry]] = {}
    for i in range(STUDENTS):
        plan[(f"s{i:04d}", course.course_id)] = {
            m.material_id: RollupEntry(1, watched_seconds=p, progress=p, completed=p >= 90.0,
                                       last_watched=float(rng.randint(1, 50)))
            for m in course.materials
            if (p := float(rng.randint(0, 100))) and rng.random() < 0.6
        }  # fmt: skip
    return plan


@pytest.fixture
def counted(mongo_url: str) -> Iterator[tuple[MongoStore, DocumentsRead]]:
    """A class of STUDENTS with random progress, and a store whose reads are counted."""
    course = the_course()
    seeder = MongoStore(mongo_url)
    seeder.ensure_indexes()
    seeder.put_course(course)
    plan = class_plan()
    for student, course_id in plan:
        seeder.enroll(student, course_id)
    rollup_store.apply_entries(seeder, plan, {course.course_id: course})
    seeder.close()
    listener = DocumentsRead()
    store = MongoStore(mongo_url, listeners=[listener])
    yield store, listener
    store.close()


def reads(listener: DocumentsRead, run: Any) -> tuple[Any, int]:
    before = listener.count
    result = run()
    return result, listener.count - before


def test_the_counter_sees_a_whole_class_read(counted: tuple[MongoStore, DocumentsRead]) -> None:
    store, listener = counted
    (_, rows), n = reads(listener, lambda: teacher_views.matrix(store, the_course()))
    assert len(rows) == STUDENTS and n == STUDENTS  # what every matrix page read before


@pytest.mark.parametrize("sort", ["student_id", "-progress", "last_active", "-watched_seconds"])
def test_a_class_page_reads_one_page_of_documents(
    counted: tuple[MongoStore, DocumentsRead], sort: str
) -> None:
    store, listener = counted
    course = the_course()
    cursor, pages = None, 0
    while pages == 0 or cursor is not None:
        (chunk, cursor), n = reads(
            listener, lambda c=cursor: teacher_views.class_page(store, course, sort, 50, c)
        )
        assert n <= 50 + CONSTANT, (sort, pages, n)
        pages += 1
    assert pages == -(-STUDENTS // 50)


@pytest.mark.parametrize("sort", ["student_id", "-progress", "last_active", "unverified_seconds"])
def test_a_matrix_page_reads_one_page_of_documents_and_equals_the_whole_matrix(
    counted: tuple[MongoStore, DocumentsRead], sort: str
) -> None:
    store, listener = counted
    course = the_course()
    _, whole = teacher_views.matrix(store, course)
    by_student = {r.row.student_id: r for r in whole}
    expected, _ = analytics.page([r.row for r in whole], sort, STUDENTS, None)
    seen: list[teacher_views.MatrixRow] = []
    cursor = None
    for _ in range(3):
        (chunk, cursor), n = reads(
            listener, lambda c=cursor: teacher_views.matrix_page(store, course, sort, 200, c)
        )
        assert n <= 200 + CONSTANT, (sort, n)
        seen += chunk
        if cursor is None:
            break
    assert cursor is None and len(seen) == STUDENTS
    assert seen == [by_student[r.student_id] for r in expected]


@pytest.mark.parametrize("sort", ["student_id", "-progress", "last_active"])
def test_a_class_scoped_page_reads_one_page_of_its_class(
    counted: tuple[MongoStore, DocumentsRead], sort: str
) -> None:
    """An LMS class (shared/lti/classes.py): half the course, by the enrollments' `classes`
    array; its pages read one page of documents and hold exactly that class's students."""
    store, listener = counted
    course = the_course()
    ids = [f"s{i:04d}" for i in range(STUDENTS)]
    store.enrollments.update_many({"student_id": {"$in": ids[::2]}}, {"$set": {"classes": ["k1"]}})
    store.enrollments.update_many({"student_id": {"$in": ids[1::2]}}, {"$set": {"classes": ["k2"]}})
    seen: list[str] = []
    cursor, pages = None, 0
    while pages == 0 or cursor is not None:
        (chunk, cursor), n = reads(
            listener,
            lambda c=cursor: teacher_views.class_page(store, course, sort, 50, c, "k1"),
        )
        assert n <= 50 + CONSTANT, (sort, pages, n)
        seen += [row.student_id for row in chunk]
        pages += 1
    assert sorted(seen) == ids[::2] and len(seen) == len(set(seen))
    assert pages == -(-len(ids[::2]) // 50)


def test_a_drill_down_reads_one_enrollment_for_its_name(
    counted: tuple[MongoStore, DocumentsRead],
) -> None:
    """The drill-down's look-up beside the student's own course view: whether the student is
    enrolled (in the teacher's LMS class) and the roster's name, from one document."""
    store, listener = counted
    store.enrollments.update_one(
        {"student_id": "s0007"}, {"$set": {"classes": ["k1"], "name": "Grace Hopper"}}
    )
    course_id = the_course().course_id
    found, n = reads(listener, lambda: store.enrolled_name("s0007", course_id, "k1"))
    assert found == (True, "Grace Hopper") and n == 1
    found, n = reads(listener, lambda: store.enrolled_name("s0008", course_id))
    assert found == (True, None) and n == 1  # enrolled, no LMS roster
    found, n = reads(listener, lambda: store.enrolled_name("s0008", course_id, "k1"))
    assert found == (False, None) and n == 0  # not in that class


def test_stats_read_a_constant_number_of_documents(
    counted: tuple[MongoStore, DocumentsRead],
) -> None:
    store, listener = counted
    course = the_course()
    stats, n = reads(listener, lambda: teacher_views.stats(store, course))
    assert n <= CONSTANT  # the two probes and the aggregate, not the class
    # Worked out from the plan, not from the stored rollups.
    plan = class_plan()
    done = [sum(e.completed for e in entries.values()) for entries in plan.values()]
    assert stats["enrolled"] == STUDENTS
    assert stats["average_progress"] == pytest.approx(
        sum(100 * d / MATERIALS for d in done) / STUDENTS, abs=0.001
    )
    assert stats["completion_rate"] == round(done.count(MATERIALS) / STUDENTS, 4)
    for m, got in zip(course.materials, stats["materials"], strict=True):
        seen = [e[m.material_id] for e in plan.values() if m.material_id in e]
        assert (got["started"], got["completed"]) == (len(seen), sum(e.completed for e in seen))
        average = sum(e.progress for e in seen) / len(seen)
        assert got["average_watched_percentage"] == pytest.approx(average, abs=0.001)


def test_stats_read_the_class_while_an_enrollment_is_stale(
    counted: tuple[MongoStore, DocumentsRead],
) -> None:
    store, listener = counted
    course = the_course()
    fast = teacher_views.stats(store, course)
    store.enrollments.update_one({"student_id": "s0007"}, {"$set": {"rollup_course": "old"}})
    slow, n = reads(listener, lambda: teacher_views.stats(store, course))
    assert n >= STUDENTS and slow == fast  # the fallback counts the class: the same numbers
