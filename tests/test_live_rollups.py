"""Enrollment rollups kept in Redis and written to MongoDB every ROLLUP_PERSIST_S
(shared/storage/live_rollups.py), over real Redis and the MongoDB stand-in: a flush writes no
enrollment document, the teacher views read the same numbers as if it had (values and a
page's order), the persister writes each enrollment once for many flushes, and whatever
interleaving of flushes, persists (some killed between MongoDB and Redis), enrolments,
unenrolments and rebuilds, the stats equal a count and the documents end equal to everything
flushed. Expected values come from a model kept by the test (a merge of what it flushed) and
from the domain's own totals of it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared.domain import analytics, rollup
from shared.domain.catalog import Course
from shared.domain.rollup import Entries, RollupEntry
from shared.ops import admin_ops, teacher_views
from shared.ops.erasure import erase_progress
from shared.settings import Settings
from shared.storage import aggregate_store, live_rollups, rollup_store
from shared.storage.live_rollups import CourseKeys
from tests.helpers import make_settings
from workers.context import WorkerContext, build_context

PERSIST_S = 600.0
STUDENTS = ("a0", "a1", "a2", "a3")


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, rollup_persist_s=PERSIST_S)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(settings)
    context.mongo.ensure_indexes()
    yield context
    context.mongo.close()


EXAMPLES = iter(range(10**6))


def new_course(ctx: WorkerContext, videos: int = 3) -> Course:
    n = next(EXAMPLES)
    materials = [{"material_id": f"l{n}-v{i}", "title": f"V{i}", "type": "video",
                  "duration": 100} for i in range(videos)]  # fmt: skip
    course = Course.model_validate({"course_id": f"live-{n}", "title": "L", "teacher_ids": [],
                                    "modules": [{"module_id": "m", "title": "M",
                                                 "materials": materials}]})  # fmt: skip
    admin_ops.save_course(ctx.mongo, ctx.redis, course)
    return course


def enrol(ctx: WorkerContext, course: Course, student: str, yes: bool = True) -> None:
    admin_ops.set_enrollment(ctx.mongo, ctx.buffer, ctx.key_schema, student, course.course_id, yes)


def entry(version: int, progress: float) -> RollupEntry:
    return RollupEntry(version, progress, 1.0, progress, progress >= 80.0, 1000.0 + version)


def counted(ctx: WorkerContext, course: Course) -> dict[str, Any]:
    """The stats counted from every enrollment's row (MongoDB's documents with the records
    laid over): what the aggregate plus the records' delta must equal."""
    rows = rollup_store.course_rollups(ctx.mongo, course, live=ctx.live)
    sums = teacher_views.class_sums(rows, course)
    return {"course_id": course.course_id,
            **analytics.course_stats(sums, [m.material_id for m in course.materials])}  # fmt: skip


def expected_stats(course: Course, model: dict[str, Entries]) -> dict[str, Any]:
    """The stats of the model, worked out from its entries with the domain's contribution."""
    sums: dict[str, int] = {}
    for entries in model.values():
        rollup.add(sums, live_rollups.contribution_of_entries(entries, course))
    return {"course_id": course.course_id,
            **analytics.course_stats(sums, [m.material_id for m in course.materials])}  # fmt: skip


def enrollment_writes(ctx: WorkerContext, course: Course) -> int:
    """How many rollup writes the enrollments of the course have taken (`rollup_rev` counts
    them, one per write)."""
    docs = ctx.mongo.enrollments.find({"course_id": course.course_id}, {"rollup_rev": 1})
    return sum(int(d.get("rollup_rev") or 0) for d in docs)


def test_flushes_write_no_enrollment_and_the_views_read_the_records(ctx: WorkerContext) -> None:
    course = new_course(ctx)
    v0, v1, _ = (m.material_id for m in course.materials)
    for s in STUDENTS:
        enrol(ctx, course, s)
    before = enrollment_writes(ctx, course)
    live = ctx.live
    now = 1_000.0
    # Three flushes of a0 on one video, one of a1 on two: nothing reaches `enrollments`.
    for version, progress in ((1, 10.0), (2, 40.0), (3, 90.0)):
        live.merge(ctx.mongo, course, {"a0": {v0: entry(version, progress)}}, now)
    live.merge(ctx.mongo, course, {"a1": {v0: entry(1, 50.0), v1: entry(1, 85.0)}}, now)
    assert enrollment_writes(ctx, course) == before

    model = {"a0": {v0: entry(3, 90.0)}, "a1": {v0: entry(1, 50.0), v1: entry(1, 85.0)},
             "a2": {}, "a3": {}}  # fmt: skip
    # Each row as the domain totals the model (a0: 1 of 3 complete, a1: 1 of 3).
    table = {r.student_id: r for r in teacher_views.class_table(ctx.mongo, course, live=live)}
    for s, entries in model.items():
        t = rollup.totals(entries, course)
        assert (table[s].completed_materials, table[s].watched_seconds) == (
            t.completed_materials, t.watched_seconds)  # fmt: skip
    assert teacher_views.stats(ctx.mongo, course, live=live) == expected_stats(course, model)
    assert teacher_views.stats(ctx.mongo, course, live=live) == counted(ctx, course)

    # A page sorted by watched seconds: a1 (135 s) then a0 (90 s), though MongoDB holds 0 for
    # both; then the cursor's next page holds the two others.
    rows, cursor = teacher_views.class_page(ctx.mongo, course, "-watched_seconds", 2, None,
                                            live=live)  # fmt: skip
    assert [r.student_id for r in rows] == ["a1", "a0"] and cursor is not None
    rest, end = teacher_views.class_page(ctx.mongo, course, "-watched_seconds", 2, cursor,
                                         live=live)  # fmt: skip
    assert [r.student_id for r in rest] == ["a3", "a2"] and end is None
    matrix, _ = teacher_views.matrix_page(ctx.mongo, course, "-progress", 1, None, live=live)
    assert matrix[0].row.student_id == "a1" and matrix[0].progress[:2] == [50.0, 85.0]
    assert teacher_views.summary(ctx.mongo, course, live=live)["enrolled"] == 4

    # Not due yet: nothing persisted. Then due: one write per enrollment for all its flushes.
    assert live.due(now + PERSIST_S - 1) == []
    assert live.due(now + PERSIST_S) == [course.course_id]
    assert live.persist(ctx.mongo, course, now + PERSIST_S) == 2
    assert enrollment_writes(ctx, course) == before + 2
    assert ctx.buffer.hlen(CourseKeys(course.course_id).records) == 0
    assert live.delta(course.course_id) == {}
    assert live.due(now + 10 * PERSIST_S) == []
    # The documents now hold it all, and the views read them alone the same.
    for s, entries in model.items():
        doc = ctx.mongo.enrollments.find_one({"student_id": s, "course_id": course.course_id})
        assert doc is not None and rollup.entries_of(doc) == entries
    assert teacher_views.stats(ctx.mongo, course) == expected_stats(course, model)
    assert teacher_views.class_table(ctx.mongo, course) == teacher_views.class_table(
        ctx.mongo, course, live=live
    )


def test_a_page_merges_moved_students_into_mongodbs_order(ctx: WorkerContext) -> None:
    """Persisted totals put s0 first by progress; live records move s2 and s3 past it: every
    page is the order of the current values, and the pages together list everyone once."""
    course = new_course(ctx)
    v0, v1, v2 = (m.material_id for m in course.materials)
    students = [f"s{i}" for i in range(6)]
    for s in students:
        enrol(ctx, course, s)
    live = ctx.live
    live.merge(ctx.mongo, course, {"s0": {v0: entry(1, 100.0)}, "s1": {v1: entry(1, 100.0)}}, 0)
    live.persist(ctx.mongo, course, PERSIST_S)
    live.merge(ctx.mongo, course, {"s2": {v0: entry(1, 100.0), v1: entry(1, 100.0)},
                                   "s3": {v0: entry(1, 90.0), v1: entry(1, 90.0),
                                          v2: entry(1, 90.0)}}, PERSIST_S)  # fmt: skip
    # By the model: s3 3 complete, s2 2, s0 and s1 1 each, s4 and s5 none (ties by id, desc).
    want = ["s3", "s2", "s1", "s0", "s5", "s4"]
    for limit in (1, 2, 4):
        seen, cursor = [], None
        while True:
            rows, cursor = teacher_views.class_page(
                ctx.mongo, course, "-progress", limit, cursor, live=live
            )
            seen += [r.student_id for r in rows]
            if cursor is None:
                break
        assert seen == want, limit
    whole, _ = analytics.page(
        teacher_views.class_table(ctx.mongo, course, live=live), "-progress", 6, None
    )
    assert [r.student_id for r in whole] == want


def test_a_flush_that_read_before_an_erasure_cannot_bring_the_erased_back(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "e0")
    live = ctx.live
    live.merge(ctx.mongo, course, {"e0": {v0: entry(1, 90.0)}}, 0)
    live.persist(ctx.mongo, course, PERSIST_S)  # MongoDB holds v0 complete; no record left
    read = live_rollups._documents

    def erased_meanwhile(*args: Any) -> dict[str, Any]:
        docs = read(*args)  # the flush has read the document: now the erasure runs
        monkeypatch.setattr(live_rollups, "_documents", read)
        erase_progress(ctx.mongo, ctx.buffer, ctx.key_schema, ctx.catalog(), "e0", v0,
                       outboxes=ctx.redis)  # fmt: skip
        return docs

    monkeypatch.setattr(live_rollups, "_documents", erased_meanwhile)
    # The flush in flight carries a state from before the erasure (version 2 < the tombstone).
    live.merge(ctx.mongo, course, {"e0": {v0: entry(2, 95.0)}}, PERSIST_S)
    [row] = teacher_views.class_table(ctx.mongo, course, live=live)
    assert (row.completed_materials, row.watched_seconds) == (0, 0.0)
    assert teacher_views.stats(ctx.mongo, course, live=live) == expected_stats(course, {"e0": {}})
    live.persist(ctx.mongo, course, 2 * PERSIST_S)
    doc = ctx.mongo.enrollments.find_one({"student_id": "e0", "course_id": course.course_id})
    assert doc is not None and not rollup.totals(rollup.entries_of(doc), course).watched_seconds


def test_the_completion_job_writes_nothing_while_the_record_holds_the_completion(
    ctx: WorkerContext,
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "c0")
    live = ctx.live
    live.merge(ctx.mongo, course, {"c0": {v0: entry(1, 90.0)}}, 0)
    # 1 of 3 materials: the domain's percentage of it.
    assert live.completed_progress(course, "c0", [v0]) == pytest.approx(100 / 3, abs=0.01)
    assert live.completed_progress(course, "c0", [course.materials[1].material_id]) is None
    live.persist(ctx.mongo, course, PERSIST_S)
    doc = ctx.mongo.enrollments.find_one({"student_id": "c0", "course_id": course.course_id})
    assert doc is not None and doc["completed_materials"] == [v0]
    assert live.completed_progress(course, "c0", [v0]) is None  # persisted: MongoDB's now


OPS = st.tuples(
    st.sampled_from(["flush", "flush", "persist", "killed persist", "unenroll", "enroll",
                     "rebuild"]),
    st.integers(0, len(STUDENTS) - 1),
    st.integers(0, 2),
    st.integers(1, 6),
    st.sampled_from([0.0, 12.5, 33.333, 80.0, 100.0]),
)  # fmt: skip


@hyp_settings(max_examples=25, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=st.lists(OPS, max_size=12))
def test_stats_equal_a_count_and_documents_end_equal_to_the_flushes(
    ctx: WorkerContext, ops: list[tuple[str, int, int, int, float]]
) -> None:
    """Whatever the interleaving, after each step the stats (the aggregate plus the records'
    delta) equal a count over the rows and the model; after a last persist, the documents hold
    exactly the model and no record or delta is left."""
    course = new_course(ctx)
    ids = [m.material_id for m in course.materials]
    live = ctx.live
    model: dict[str, Entries] = {}
    for s in STUDENTS[:3]:
        enrol(ctx, course, s)
        model[s] = {}
    now = time.time()  # the fences (un)enrolment puts up are timed by the system clock
    for kind, i, m, version, progress in ops:
        now += 10.0
        student = STUDENTS[i]
        if kind == "flush":
            incoming = {student: {ids[m]: entry(version, progress)}}
            live.merge(ctx.mongo, course, incoming, now)
            if student in model:
                model[student] = rollup.merge(model[student], incoming[student])
        elif kind == "persist":
            live.persist(ctx.mongo, course, now)
        elif kind == "killed persist":  # MongoDB written, the worker killed before Redis
            records = live.records(course.course_id)
            rollup_store.apply_entries(
                ctx.mongo,
                {(s, course.course_id): r.entries for s, r in records.items()},
                {course.course_id: course},
            )
            live.persist(ctx.mongo, course, now)  # the next tick repeats it
        elif kind == "unenroll" and student in model:
            enrol(ctx, course, student, False)
            del model[student]
        elif kind == "enroll" and student not in model:
            enrol(ctx, course, student)  # rebuilt from watch_progress: none in this test
            model[student] = {}
        elif kind == "rebuild":
            rollup_store.rebuild(ctx.mongo, course, sorted(model))
            live.settle_course(ctx.mongo, course, now)
        want = expected_stats(course, model)
        assert teacher_views.stats(ctx.mongo, course, live=live) == want
        assert counted(ctx, course) == want
    live.persist(ctx.mongo, course, now + 2 * live_rollups.FENCE_S)
    assert ctx.buffer.hlen(CourseKeys(course.course_id).records) == 0
    assert live.delta(course.course_id) == {}
    docs = ctx.mongo.enrollments.find({"course_id": course.course_id})
    assert {d["student_id"]: rollup.entries_of(d) for d in docs} == model
    assert teacher_views.stats(ctx.mongo, course) == expected_stats(course, model)
    assert not aggregate_store.recount(ctx.mongo, course.course_id)
