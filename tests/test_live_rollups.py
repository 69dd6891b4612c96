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
from datetime import datetime
from typing import Any, cast

import pytest
from bson import Binary, ObjectId
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared.clock import MockedClock
from shared.domain import analytics, rollup
from shared.domain.catalog import Course
from shared.domain.rollup import Entries, RollupEntry
from shared.errors import Unavailable
from shared.ops import admin_ops, teacher_views
from shared.ops.erasure import erase_progress
from shared.ops.rollups import settle
from shared.settings import Settings
from shared.storage import aggregate_store, live_rollups, rollup_store
from shared.storage.live_rollups import CourseKeys, LiveRollups
from tests.helpers import make_settings
from workers import flush
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
    """The stats of the model, worked out from its entries with the domain's contribution of
    the columns a rollup write would store."""
    sums: dict[str, int] = {}
    for entries in model.values():
        ids, data = rollup.encode(entries, course)
        done = rollup.totals(entries, course).completed_materials
        rollup.add(
            sums, rollup.contribution(done, rollup.columns({"rollup": data, "rollup_ids": ids}))
        )
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
    # By the model: s3 3 complete, s2 2, s0 and s1 1 each, s4 and s5 none (ties by id).
    want = ["s3", "s2", "s1", "s0", "s5", "s4"]
    for sort, order in (("-progress", want), ("progress", want[::-1])):
        for limit in (1, 2, 4):
            seen, cursor = [], None
            while True:
                rows, cursor = teacher_views.class_page(
                    ctx.mongo, course, sort, limit, cursor, live=live
                )
                seen += [r.student_id for r in rows]
                if cursor is None:
                    break
            assert seen == order, (sort, limit)
    whole, _ = analytics.page(
        teacher_views.class_table(ctx.mongo, course, live=live), "-progress", 6, None
    )
    assert [r.student_id for r in whole] == want


FIELDS = ("student_id", "completed_count", "watched_seconds", "unverified_seconds", "last_active")
VALUES = st.one_of(st.none(), st.just(float("nan")), st.sampled_from([0.0, 1.0, 2.5]),
                   st.floats(-1e3, 1e3))  # fmt: skip


@hyp_settings(max_examples=300, deadline=None)
@given(
    values=st.lists(st.tuples(VALUES, VALUES), min_size=0, max_size=12),
    field=st.sampled_from(FIELDS),
    descending=st.booleans(),
    limit=st.integers(1, 5),
    cursor=st.one_of(st.none(), st.tuples(VALUES, st.integers(0, 12))),
)
def test_a_pages_order_is_mongodbs_whatever_the_values(
    values: list[tuple[Any, Any]],
    field: str,
    descending: bool,
    limit: int,
    cursor: tuple[Any, int] | None,
) -> None:
    """`_ordered` picks the page MongoDB's sort on (field, student_id) gives after the cursor:
    a missing value (never active) or NaN before every number; sorted here the plain way."""
    # a: last active (missing, NaN, numbers); b: watched seconds, and a count made of it; the
    # unverified seconds all equal: ties ordered by student id.
    rows = [rollup_store.EnrollmentRollup(f"s{i:02d}", rollup.RollupTotals(
                0 if b is None or b != b else int(b), 0.0 if b is None else b, 0.0, a))
            for i, (a, b) in enumerate(values)]  # fmt: skip

    def value_of(r: rollup_store.EnrollmentRollup) -> Any:
        t = r.totals
        return {"student_id": None, "completed_count": t.completed_materials,
                "watched_seconds": t.watched_seconds, "unverified_seconds": t.unverified_seconds,
                "last_active": t.last_active}[field]  # fmt: skip

    def mongo_key(value: Any, student_id: str) -> tuple[int, float, str]:
        if field == "student_id" or value is None or value != value:
            return (0, 0.0, student_id)
        return (1, float(value), student_id)

    after = None if cursor is None else (cursor[0], f"s{cursor[1]:02d}")
    ranked = sorted(rows, key=lambda r: mongo_key(value_of(r), r.student_id))
    if descending:
        ranked.reverse()
    if after is not None:
        mark = mongo_key(*after)
        ranked = [r for r in ranked
                  if (mongo_key(value_of(r), r.student_id) < mark if descending
                      else mongo_key(value_of(r), r.student_id) > mark)]  # fmt: skip
    got = rollup_store._ordered(rows, field, descending, limit, after)
    assert [r.student_id for r in got] == [r.student_id for r in ranked[:limit]]


def completed_and_persisted(ctx: WorkerContext, student: str) -> tuple[Course, str]:
    """A new course whose first material `student` completed, persisted: MongoDB holds it and
    no record is left. Returns the course and that material."""
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, student)
    ctx.live.merge(ctx.mongo, course, {student: {v0: entry(1, 90.0)}}, 0)
    ctx.live.persist(ctx.mongo, course, PERSIST_S)
    assert not ctx.live.records(course.course_id)
    return course, v0


def erase(ctx: WorkerContext, student: str, material_id: str) -> None:
    erase_progress(ctx.mongo, ctx.buffer, ctx.key_schema, ctx.catalog(), student, material_id,
                   outboxes=ctx.redis)  # fmt: skip


def test_a_flush_that_read_before_an_erasure_cannot_bring_the_erased_back(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    course, v0 = completed_and_persisted(ctx, "e0")
    live = ctx.live
    read = live_rollups._documents

    def erased_meanwhile(*args: Any) -> dict[str, Any]:
        docs = read(*args)  # the flush has read the document: now the erasure runs
        monkeypatch.setattr(live_rollups, "_documents", read)
        erase(ctx, "e0", v0)
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
    now = time.time()
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
    live.persist(ctx.mongo, course, now + PERSIST_S)
    assert ctx.buffer.hlen(CourseKeys(course.course_id).records) == 0
    assert live.delta(course.course_id) == {}
    docs = ctx.mongo.enrollments.find({"course_id": course.course_id})
    assert {d["student_id"]: rollup.entries_of(d) for d in docs} == model
    assert teacher_views.stats(ctx.mongo, course) == expected_stats(course, model)
    assert not aggregate_store.recount(ctx.mongo, course.course_id)


# What a review found (each failed on the first version of the records).


def _doc(ctx: WorkerContext, course: Course, s: str) -> dict[str, Any]:
    doc = ctx.mongo.enrollments.find_one({"student_id": s, "course_id": course.course_id})
    assert doc is not None
    return doc


# One student's odd enrollment document (a rollup MongoDB holds but cannot be decoded, which
# rollup_store.plan_writes logs and skips) is left out alone: the others' entries are merged.
def test_one_odd_document_does_not_stop_the_others_merge(ctx: WorkerContext) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "a0")
    enrol(ctx, course, "a1")
    ctx.mongo.enrollments.update_one(
        {"student_id": "a0", "course_id": course.course_id}, {"$set": {"rollup": Binary(b"\0" * 7)}}
    )
    # The MongoDB protocol (the pre-change flush path) skips the odd one and writes the other:
    assert rollup_store.apply_entries(
        ctx.mongo, {("a0", course.course_id): {v0: entry(1, 50.0)},
                    ("a1", course.course_id): {v0: entry(1, 50.0)}}, {course.course_id: course}
    ) == 1  # fmt: skip
    course2 = new_course(ctx)
    w0 = course2.materials[0].material_id
    enrol(ctx, course2, "a0")
    enrol(ctx, course2, "a1")
    ctx.mongo.enrollments.update_one(
        {"student_id": "a0", "course_id": course2.course_id},
        {"$set": {"rollup": Binary(b"\0" * 7)}},
    )
    ctx.live.merge(ctx.mongo, course2, {"a0": {w0: entry(1, 50.0)}, "a1": {w0: entry(1, 50.0)}}, 0)
    assert "a1" in ctx.live.records(course2.course_id)


# Records written by the previous release's encoder (json.dumps, sorted keys) decode to the
# same record as this one's (pydantic_core), and back: workers of both can share a buffer
# during a rolling upgrade.
def test_records_of_both_encoders_decode_alike() -> None:
    import json

    record = live_rollups.Record(
        {"v-1": RollupEntry(3, 12.5, 0.0, 0.00001, False, None),
         "v-2": RollupEntry(7, 1e16, 2.25, 100.0, True, 1796643198.156)},
        {"h:0": 1}, {"h:1": 1, "p:v-2": 100000, "c:v-2": 1}, "Zoë", ("c-1", "c-2"), "fp",
        [4, 2, ["c-1"], "Zoë"],
    )  # fmt: skip
    old = json.dumps(
        {"e": {m: live_rollups._entry_list(e) for m, e in sorted(record.entries.items())},
         "h": record.held, "d": record.added, "n": record.name, "c": list(record.classes),
         "f": record.course, "k": record.check},
        separators=(",", ":"), sort_keys=True,
    )  # fmt: skip
    assert live_rollups.Record.decode(old) == record
    assert live_rollups.Record.decode(record.encode()) == record
    assert json.loads(record.encode()) == json.loads(old)


# A document whose version fields hold odd types (written by hand, or by another tool): the
# record keeps them in its JSON only as their text, and the others' records still land (the
# first version of the records raised for the whole course while encoding the record). The
# persister's write sets a fresh `rollup_rev` in place of an odd one on MongoDB, but the
# stand-in cannot match an ObjectId or bytes in a filter and retries the course, so only the
# odd `agg_seq` is persisted here.
@pytest.mark.parametrize(
    "odd", [{"rollup_rev": ObjectId()}, {"agg_seq": datetime(2026, 1, 1)}, {"rollup_rev": b"x"}]
)
def test_odd_version_fields_do_not_stop_the_courses_merge(
    ctx: WorkerContext, odd: dict[str, Any]
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    for s in ("o0", "o1"):
        enrol(ctx, course, s)
    ctx.mongo.enrollments.update_one({"student_id": "o0", "course_id": course.course_id},
                                     {"$set": odd})  # fmt: skip
    ctx.live.merge(ctx.mongo, course, {"o0": {v0: entry(1, 50.0)}, "o1": {v0: entry(1, 50.0)}}, 0)
    records = ctx.live.records(course.course_id)
    assert set(records) == {"o0", "o1"}
    assert records["o0"].entries[v0].watched_seconds == 50.0
    if "agg_seq" in odd:
        ctx.live.persist(ctx.mongo, course, time.time())
        assert [_doc(ctx, course, s)["watched_seconds"] for s in ("o0", "o1")] == [50.0, 50.0]
        assert ctx.live.records(course.course_id) == {}


# A document whose rollup cannot be decoded (7 bytes) stopped readers of the whole course: the
# matrix answered 500 for everyone, and the maintenance job's recount raised out of the run,
# leaving every course after it unrecounted. The row now shows its stored totals without
# per-material columns, and the recount goes on to the other courses.
def test_an_undecodable_rollup_stops_neither_the_matrix_nor_other_courses_recount(
    ctx: WorkerContext,
) -> None:
    from shared.ops.rollups import rebuild_missing

    odd, other = new_course(ctx), new_course(ctx)
    v0, w0 = odd.materials[0].material_id, other.materials[0].material_id
    for course, m in ((odd, v0), (other, w0)):
        for s in ("u0", "u1"):
            enrol(ctx, course, s)
        rollup_store.apply_entries(ctx.mongo, {(s, course.course_id): {m: entry(1, 50.0)}
                                               for s in ("u0", "u1")},
                                   {course.course_id: course})  # fmt: skip
    ctx.mongo.enrollments.update_one({"student_id": "u0", "course_id": odd.course_id},
                                     {"$set": {"rollup": Binary(b"\0" * 7)}})  # fmt: skip
    _, rows = teacher_views.matrix(ctx.mongo, odd, None, ctx.live)
    by_student = {r.row.student_id: r for r in rows}
    assert set(by_student) == {"u0", "u1"}
    assert by_student["u0"].row.watched_seconds == 50.0  # its stored totals
    assert by_student["u1"].progress[0] == 50.0
    # The other course's aggregate, made wrong by hand, is recounted past the odd course:
    ctx.mongo.aggregates.update_one({"_id": other.course_id}, {"$set": {"sums": []}})
    listed = list(ctx.catalog().courses)
    assert listed.index(odd.course_id) < listed.index(other.course_id)
    rebuild_missing(ctx.mongo, ctx.catalog(), ctx.buffer)
    assert aggregate_store.sums(ctx.mongo, other.course_id) == aggregate_store.count(
        ctx.mongo, other.course_id
    )


# The same odd document in a course that already has a record, the oldest due: the persister
# goes on to the other courses (it once died on the first and never got past it).
def test_one_odd_document_does_not_stop_other_courses_persist(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flush, "get_context", lambda: ctx)
    bad, good = new_course(ctx), new_course(ctx)
    enrol(ctx, bad, "b0")
    enrol(ctx, good, "g0")
    t = time.time() - 2 * PERSIST_S
    ctx.live.merge(ctx.mongo, bad, {"b0": {bad.materials[0].material_id: entry(1, 50.0)}}, t)
    ctx.live.merge(ctx.mongo, good, {"g0": {good.materials[0].material_id: entry(1, 50.0)}}, t + 1)
    ctx.mongo.enrollments.update_one(
        {"student_id": "b0", "course_id": bad.course_id}, {"$set": {"rollup": Binary(b"\0" * 7)}}
    )
    flush.persist_rollups()
    assert ctx.buffer.hlen(CourseKeys(good.course_id).records) == 0, "good course not persisted"


# A record holding an entry of a material the course no longer has (the course edited while
# the record was live) settles: MongoDB's rollup keeps only the course's materials, so the
# record compares them alone (it once stayed for good, each persist rewriting the document).
def test_a_record_of_a_removed_material_settles(ctx: WorkerContext) -> None:
    course = new_course(ctx)
    v0, v1, v2 = (m.material_id for m in course.materials)
    enrol(ctx, course, "a0")
    ctx.live.merge(ctx.mongo, course, {"a0": {v0: entry(1, 90.0), v2: entry(1, 50.0)}}, 0)
    data = course.model_dump()
    data["modules"][0]["materials"] = [m for m in data["modules"][0]["materials"]
                                       if m["material_id"] != v2]  # fmt: skip
    smaller = Course.model_validate(data)
    admin_ops.save_course(ctx.mongo, ctx.redis, smaller, recalculate=False)
    admin_ops.recalculate_course(
        ctx.mongo, ctx.buffer, smaller
    )  # workers.maintenance.recalculate_course
    ctx.live.settle_course(ctx.mongo, smaller, PERSIST_S)
    before = enrollment_writes(ctx, smaller)
    written = [ctx.live.persist(ctx.mongo, smaller, PERSIST_S * k) for k in range(1, 5)]
    print(
        "written per persist:", written, "rollup writes:", enrollment_writes(ctx, smaller) - before
    )
    assert ctx.buffer.hlen(CourseKeys(course.course_id).records) == 0


# A flush that read a new enrollment's document between set_enrollment's insert and its
# rebuild (not folded: h = {}) makes its record after the rebuild's settle, which had none to
# settle: the record is settled again (it once counted the student twice, aggregate and delta).
def test_a_flush_during_enrolment_does_not_count_the_student_twice(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "a0")
    # set_enrollment up to its document write (its rebuild and settle come later, below)
    monkeypatch.setattr(rollup_store, "rebuild", lambda *a, **k: 0)
    monkeypatch.setattr(admin_ops, "settle", lambda *a, **k: None)
    enrol(ctx, course, "a1")
    monkeypatch.undo()
    read = live_rollups._documents

    def enrolment_finishes_meanwhile(*args: Any) -> dict[str, Any]:
        docs = read(*args)
        monkeypatch.setattr(live_rollups, "_documents", read)
        rollup_store.rebuild(ctx.mongo, course, ["a1"])  # set_enrollment's last two steps
        settle(ctx.buffer, ctx.mongo, course, ["a1"])
        return docs

    monkeypatch.setattr(live_rollups, "_documents", enrolment_finishes_meanwhile)
    ctx.live.merge(ctx.mongo, course, {"a1": {v0: entry(1, 90.0)}}, 0)
    stats = teacher_views.stats(ctx.mongo, course, live=ctx.live)
    assert stats == counted(ctx, course)


# load-catalog (admin_ops.save_course with recalculate=True, the CLI's path) rebuilds the
# enrollments and settles the records on them: the stats stay equal to the count.
def test_a_course_change_by_load_catalog_keeps_stats_equal_to_the_count(
    ctx: WorkerContext,
) -> None:
    course = new_course(ctx)
    v0, v1, v2 = (m.material_id for m in course.materials)
    enrol(ctx, course, "a0")
    ctx.live.merge(ctx.mongo, course, {"a0": {v0: entry(1, 90.0), v2: entry(1, 90.0)}}, 0)
    data = course.model_dump()
    data["modules"][0]["materials"] = [m for m in data["modules"][0]["materials"]
                                       if m["material_id"] != v2]  # fmt: skip
    smaller = Course.model_validate(data)
    admin_ops.save_course(ctx.mongo, ctx.redis, smaller)  # recalculate=True
    stats = teacher_views.stats(ctx.mongo, smaller, live=ctx.live)
    assert stats == counted(ctx, smaller)


# A flush landing during a re-enrolment, after its rebuild read watch_progress and before its
# settle, reaches the enrollment's rollup (an unenrolment's fence once dropped it for good).
def test_a_flush_during_re_enrolment_is_not_lost(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "a0")
    enrol(ctx, course, "a0", False)
    real_settle = settle

    def flush_lands_before_settle(*args: Any, **kwargs: Any) -> None:
        ctx.live.merge(ctx.mongo, course, {"a0": {v0: entry(7, 90.0)}}, time.time())
        real_settle(*args, **kwargs)

    monkeypatch.setattr(admin_ops, "settle", flush_lands_before_settle)
    enrol(ctx, course, "a0")
    monkeypatch.undo()
    ctx.live.persist(ctx.mongo, course, time.time() + PERSIST_S)
    assert v0 in rollup.entries_of(_doc(ctx, course, "a0"))


# A flush that read the document before the roster released the student from class C1
# ($pull, then a settle that found no record) makes its record with the old classes: it is
# settled again, so C1's page lists whom C1's table lists.
def test_a_class_page_lists_only_the_class_after_a_roster_release(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    for s in ("a0", "a1"):
        enrol(ctx, course, s)
    ctx.mongo.enrollments.update_many({"course_id": course.course_id},
                                      {"$set": {"classes": ["C1", "C2"]}})  # fmt: skip
    read = live_rollups._documents

    def released_meanwhile(*args: Any) -> dict[str, Any]:
        docs = read(*args)
        monkeypatch.setattr(live_rollups, "_documents", read)
        key = {"student_id": "a0", "course_id": course.course_id}  # ClassStore._release
        ctx.mongo.enrollments.update_one(key, {"$pull": {"classes": "C1"}})
        settle(ctx.buffer, ctx.mongo, course, ["a0"])
        return docs

    monkeypatch.setattr(live_rollups, "_documents", released_meanwhile)
    ctx.live.merge(ctx.mongo, course, {"a0": {v0: entry(1, 50.0)}}, 0)
    table = [r.student_id for r in teacher_views.class_table(ctx.mongo, course, "C1", ctx.live)]
    page, _ = teacher_views.class_page(ctx.mongo, course, "student_id", 10, None, "C1", ctx.live)
    assert [r.student_id for r in page] == table == ["a1"]


# The same at the flush, in both modes: an odd document is logged and the flush goes on (with
# the records it once raised for the whole batch, whose keys then stayed leased).
# (An odd `rollup_rev` with the records: see above for why not with ROLLUP_PERSIST_S=0.)
@pytest.mark.parametrize(
    ("persist_s", "odd"),
    [(0.0, {"rollup": Binary(b"\0" * 7)}), (PERSIST_S, {"rollup": Binary(b"\0" * 7)}),
     (PERSIST_S, {"rollup_rev": ObjectId()})],
)  # fmt: skip
def test_a_flush_goes_on_past_one_odd_enrollment(
    redis_url: str, mongo_url: str, persist_s: float, odd: dict[str, Any]
) -> None:
    from tests.helpers import COURSE_ID, make_settings
    from tests.test_rollups import course as phys
    from tests.test_rollups import watch

    s = make_settings(redis_url, mongo_url, claim_lease_s=1.0, rollup_persist_s=persist_s)
    from workers.context import build_context

    c = build_context(s)
    c.mongo.ensure_indexes()
    admin_ops.save_course(c.mongo, c.redis, phys())
    for student in ("ana", "ben"):
        admin_ops.set_enrollment(c.mongo, c.redis, c.key_schema, student, COURSE_ID, True)
    c.mongo.enrollments.update_one({"student_id": "ben", "course_id": COURSE_ID},
                                   {"$set": odd})  # fmt: skip
    watch(s, "ana", "v-100", [[0, 60]], 100)
    watch(s, "ben", "v-100", [[0, 60]], 100)
    report = flush.flush_batch(c, 500)
    assert report.written == 2 and not report.errors
    c.mongo.close()


def test_rebuild_all_restores_what_a_lost_buffer_held(ctx: WorkerContext) -> None:
    """The records were the only copy of a rollup (the buffer lost them): `rebuild-rollups
    --all` brings every enrollment back to watch_progress."""
    from shared.domain.catalog import Catalog
    from shared.domain.progress import Heartbeat, WatchState, fold_into
    from shared.ops import rollups
    from shared.storage.mongo_store import StateWrite

    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "b0")
    state = WatchState()
    fold_into(state, [Heartbeat(received_at=1000.0, watch_time=60.0, played=((0.0, 60.0),))],
              duration=100.0, threshold=80.0)  # fmt: skip
    ctx.mongo.write_states([StateWrite("b0", v0, course.course_id, 100.0, state, 3)])
    ctx.live.merge(ctx.mongo, course, {"b0": {v0: rollups.entry_of(
        StateWrite("b0", v0, course.course_id, 100.0, state, 3))}}, 0)  # fmt: skip
    ctx.buffer.delete(CourseKeys(course.course_id).records)  # lost
    assert rollups.rebuild_all(ctx.mongo, Catalog([course]), ctx.buffer) == 1
    [row] = teacher_views.class_table(ctx.mongo, course, live=ctx.live)
    assert row.watched_seconds == state.watched_seconds == 60.0


def test_the_persister_takes_every_due_course_with_follow_up_jobs(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flush, "get_context", lambda: ctx)
    courses = [new_course(ctx), new_course(ctx)]
    for c in courses:
        enrol(ctx, c, "f0")
        ctx.live.merge(ctx.mongo, c, {"f0": {c.materials[0].material_id: entry(1, 50.0)}},
                       time.time() - 2 * PERSIST_S)  # fmt: skip
    ctx.queue.empty()  # type: ignore[no-untyped-call]  # rq
    assert flush.persist_due(ctx, limit=1) == 1  # one course (in a flush job)...
    [job] = ctx.queue.get_jobs()  # ...and a follow-up for the next
    assert job.func_name == "workers.flush.persist_rollups"
    assert flush.persist_rollups(*job.args) == 1
    for c in courses:
        doc = ctx.mongo.enrollments.find_one({"student_id": "f0", "course_id": c.course_id})
        assert doc is not None and doc["watched_seconds"] == 50.0
        assert ctx.buffer.hlen(CourseKeys(c.course_id).records) == 0


COURSE3 = Course.model_validate({"course_id": "c3", "title": "C", "teacher_ids": [],
                                 "modules": [{"module_id": "m", "title": "M", "materials": [
                                     {"material_id": f"m{i}", "title": "T", "type": "video",
                                      "duration": 100} for i in range(3)]}]})  # fmt: skip
ENTRIES = st.dictionaries(
    st.sampled_from(["m0", "m1", "m2", "gone"]),  # "gone": a material the course no longer has
    st.builds(RollupEntry, st.integers(1, 9), st.floats(0, 100), st.floats(0, 100),
              st.floats(0, 100).map(lambda p: round(p, 3)), st.booleans(),
              st.one_of(st.none(), st.floats(0, 2e9))),
)  # fmt: skip


@given(entries=ENTRIES)
def test_a_records_contribution_is_the_documents(entries: Entries) -> None:
    """What a record adds to the delta is what the document the persister writes adds to the
    aggregate (the domain's contribution of its encoded columns)."""
    ids, data = rollup.encode(entries, COURSE3)
    done = rollup.totals(entries, COURSE3).completed_materials
    stored = rollup.contribution(done, rollup.columns({"rollup": data, "rollup_ids": ids}))
    assert live_rollups.contribution_of_entries(entries, COURSE3) == stored


def test_a_record_changed_under_a_merge_is_merged_again_and_the_others_land(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Between a merge's read and its compare-and-set another worker changes one student's
    record: that student is read and merged again, the others land at once, and the delta
    counts each change once."""
    course = new_course(ctx)
    v0, v1, _ = (m.material_id for m in course.materials)
    for s in ("r0", "r1", "r2"):
        enrol(ctx, course, s)
    live, other = ctx.live, LiveRollups(ctx.buffer, PERSIST_S)
    live.merge(ctx.mongo, course, {s: {v0: entry(1, 10.0)} for s in ("r0", "r1", "r2")}, 0)
    script, calls = live._cas, cast(list[dict[str, Any]], [])

    def raced(**kwargs: Any) -> Any:
        if not calls:  # another worker's flush of r1's other video lands first
            other.merge(ctx.mongo, course, {"r1": {v1: entry(1, 85.0)}}, 0)
        calls.append(kwargs)
        return script(**kwargs)

    monkeypatch.setattr(live, "_cas", raced)
    live.merge(ctx.mongo, course, {s: {v0: entry(2, 40.0)} for s in ("r0", "r1", "r2")}, 0)
    assert len(calls) == 3  # refused for r1 alone; r0 and r2 at once; then r1 again
    model = {"r0": {v0: entry(2, 40.0)}, "r1": {v0: entry(2, 40.0), v1: entry(1, 85.0)},
             "r2": {v0: entry(2, 40.0)}}  # fmt: skip
    assert {s: r.entries for s, r in live.records(course.course_id).items()} == model
    assert teacher_views.stats(ctx.mongo, course, live=live) == expected_stats(course, model)


# What a second review found (each failed before its fix).


class Killed(Exception):
    """The worker dies here."""


# A flush killed after its compare-and-set: the takeover finds its entries merged (a repeat),
# and the course must already be due, or the record would never reach MongoDB.
def test_a_flush_killed_after_its_compare_and_set_leaves_its_course_scheduled(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flush, "get_context", lambda: ctx)
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "k0")
    live = ctx.live
    real = LiveRollups._apply

    def killed_after_cas(self: LiveRollups, *args: Any) -> Any:
        real(self, *args)
        raise Killed

    monkeypatch.setattr(LiveRollups, "_apply", killed_after_cas)
    with pytest.raises(Killed):
        live.merge(ctx.mongo, course, {"k0": {v0: entry(1, 90.0)}}, 0.0)
    monkeypatch.setattr(LiveRollups, "_apply", real)
    live.merge(ctx.mongo, course, {"k0": {v0: entry(1, 90.0)}}, 0.0)  # the takeover
    assert "k0" in live.records(course.course_id)
    for _ in range(3):  # ticks, long after ROLLUP_PERSIST_S
        flush.persist_due(ctx)
    doc = ctx.mongo.enrollments.find_one({"student_id": "k0", "course_id": course.course_id})
    assert doc is not None and v0 in rollup.entries_of(doc), (
        f"never persisted; due: {live.due(1e12)}"
    )


# A persist of the course running between a flush's ZADD NX (a no-op: the course was due) and
# its compare-and-set sees no record, takes the course off the schedule, and the flush's new
# record is then never persisted (until the maintenance job's settle put the course back).
def test_a_record_made_while_a_persist_unschedules_its_course_is_persisted(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flush, "get_context", lambda: ctx)
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    enrol(ctx, course, "a0")
    enrol(ctx, course, "a1")
    live = ctx.live
    live.merge(ctx.mongo, course, {"a0": {v0: entry(1, 50.0)}}, 0.0)  # due at PERSIST_S
    real = LiveRollups._apply
    first = [True]

    def persist_runs_first(self: LiveRollups, *args: Any) -> Any:
        if first[0]:  # after the second flush's ZADD NX, before its compare-and-set
            first[0] = False
            live.persist(ctx.mongo, course, PERSIST_S)
        return real(self, *args)

    monkeypatch.setattr(LiveRollups, "_apply", persist_runs_first)
    live.merge(ctx.mongo, course, {"a1": {v0: entry(1, 60.0)}}, PERSIST_S)
    monkeypatch.setattr(LiveRollups, "_apply", real)
    assert set(live.records(course.course_id)) == {"a1"}  # a0's persisted, a1's made after
    for k in range(2, 6):  # ticks, each past the course's due time
        monkeypatch.setattr(ctx, "clock", MockedClock(k * PERSIST_S))
        flush.persist_due(ctx)
    doc = ctx.mongo.enrollments.find_one({"student_id": "a1", "course_id": course.course_id})
    assert doc is not None and doc.get("watched_seconds") == 60.0, (
        f"a1's record never persisted; due: {live.due(1e12)}"
    )


# A matrix page reads its order from `tot`, then the chosen students' records. One persisted
# in between (record gone) is read from its document; one unenrolled in between (neither) makes
# the page be read again, whole. Either way the page is full and the paging goes on (the first
# once fell off the page, and the second ended the paging).
@pytest.mark.parametrize(
    ("meanwhile", "want"), [("persisted", ["s3", "s2"]), ("unenrolled", ["s2", "s1"])]
)
def test_a_change_between_the_two_reads_of_a_matrix_page_drops_no_one(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch, meanwhile: str, want: list[str]
) -> None:
    course = new_course(ctx)
    v0 = course.materials[0].material_id
    students = ["s0", "s1", "s2", "s3"]
    for s in students:
        enrol(ctx, course, s)
    live = ctx.live
    live.merge(ctx.mongo, course, {s: {v0: entry(1, 10.0 * (i + 1))}
                                   for i, s in enumerate(students)}, 0)  # fmt: skip
    original = live.records

    def changed_meanwhile(course_id: str, wanted: list[str] | None = None) -> Any:
        if wanted is not None:
            monkeypatch.setattr(live, "records", original)
            if meanwhile == "persisted":
                live.persist(ctx.mongo, course, PERSIST_S)
            else:
                enrol(ctx, course, "s3", False)
        return original(course_id, wanted)

    monkeypatch.setattr(live, "records", changed_meanwhile)
    rows, cursor = teacher_views.matrix_page(ctx.mongo, course, "-watched_seconds", 2, None,
                                             live=live)  # fmt: skip
    assert [r.row.student_id for r in rows] == want
    assert cursor is not None, "the paging ended"


# A flush made a record from the document read before an erasure, and its re-check could not
# read MongoDB: the record says it is unchecked, so the retried flush (a repeat) checks it, and
# nothing erased shows in the teacher table or the export.
def test_a_recheck_that_failed_is_made_by_the_next_merge(
    ctx: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shared.ops.export import student_export

    course, v0 = completed_and_persisted(ctx, "e0")
    live = ctx.live
    read = live_rollups._documents
    step = ["flush reads"]

    def erasure_then_blip(*args: Any) -> dict[str, Any]:
        if step[0] == "flush reads":  # the flush read the document: the erasure runs now
            step[0] = "erasing"
            docs = read(*args)
            erase(ctx, "e0", v0)
            step[0] = "recheck"
            return docs
        if step[0] == "recheck":  # the recheck's read: MongoDB away for a moment
            step[0] = "back"
            raise Unavailable("MongoDB is unavailable (enrollments)")
        return read(*args)

    monkeypatch.setattr(live_rollups, "_documents", erasure_then_blip)
    with pytest.raises(Unavailable):
        live.merge(ctx.mongo, course, {"e0": {v0: entry(2, 95.0)}}, PERSIST_S)
    live.merge(ctx.mongo, course, {"e0": {v0: entry(2, 95.0)}}, PERSIST_S)  # the flush retried
    [row] = teacher_views.class_table(ctx.mongo, course, live=live)
    export = student_export(ctx.settings, ctx.mongo, ctx.buffer, ctx.key_schema, ctx.redis,
                            ctx.catalog(), "e0")  # fmt: skip
    [enrollment] = export["enrollments"]
    assert (row.completed_materials, enrollment["completed_materials"]) == (0, [])
