"""Enrollment rollups and the course aggregates over real Redis and the MongoDB stand-in: a
flush keeps them, and they end the same whatever happens to the flush (repeated, concurrent,
taken over after a crash between its MongoDB writes), after an erasure, a re-enrollment, a
course change, and when rebuilt for data stored before rollups existed; the aggregate stays
equal to a recount from scratch (a property test drives random writers, crashes and late
writes). Expected numbers are worked out by hand from
the tests' course (phys-101: v-100 is 100 s, v-600 is 600 s, pdf-1, link-1)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from shared.clock import MockedClock
from shared.domain import analytics, rollup
from shared.domain.catalog import Course
from shared.domain.rollup import RollupEntry
from shared.ops import admin_ops, rollups, teacher_views
from shared.ops.erasure import erase_progress
from shared.ops.teacher_views import class_page, class_table, filtered_table
from shared.settings import Settings
from shared.storage import aggregate_store, rollup_store
from shared.storage.mongo_store import MongoStore, enrollment_id
from tests.helpers import COURSE, COURSE_ID, heartbeat, make_settings
from workers import flush as flush_module
from workers.context import WorkerContext, build_context
from workers.flush import flush_batch


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, claim_lease_s=1.0)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[WorkerContext]:
    context = build_context(settings)
    context.mongo.ensure_indexes()
    admin_ops.save_course(context.mongo, context.redis, course())
    for student in ("ana", "ben"):
        admin_ops.set_enrollment(
            context.mongo, context.redis, context.key_schema, student, COURSE_ID, True
        )
    yield context
    context.mongo.close()


def course(**changes: Any) -> Course:
    return Course.model_validate({"course_id": COURSE_ID, **COURSE, **changes})


def watch(
    settings: Settings, student: str, video: str, played: list[list[float]], total: float
) -> None:
    """Buffer one heartbeat through the API's own path (the ingest script)."""
    from fastapi.testclient import TestClient

    from ingest.app import create_app
    from tests.helpers import bearer

    with TestClient(create_app(settings)) as c:
        body = heartbeat(played[-1][1], total, played=played)
        r = c.post(f"/api/progress/video/{video}/watch-time", json=body,
                   headers=bearer(settings, student))  # fmt: skip
        assert r.status_code == 202, r.text


def rows(ctx: WorkerContext) -> dict[str, tuple[float, int, float]]:
    return {r.student_id: (r.progress_percentage, r.completed_materials, r.watched_seconds)
            for r in class_table(ctx.mongo, course())}  # fmt: skip


def stored_rollup(mongo: MongoStore, student: str) -> dict[str, Any]:
    doc = mongo.enrollments.find_one({"_id": enrollment_id(student, COURSE_ID)})
    assert doc is not None
    return doc


def test_a_flush_rolls_states_into_the_enrollment(ctx: WorkerContext, settings: Settings) -> None:
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    watch(settings, "ana", "v-600", [[0, 60]], 600)
    assert flush_batch(ctx, 500).written == 2
    doc = stored_rollup(ctx.mongo, "ana")
    # v-100 complete (100 of 100 s), v-600 at 10 %: 1 of 4 materials, 160 s watched
    assert (doc["completed_count"], doc["watched_seconds"], doc["unverified_seconds"]) == (
        1, 160.0, 0.0
    )  # fmt: skip
    assert doc["last_active"] is not None
    assert rows(ctx) == {"ana": (25.0, 1, 160.0), "ben": (0.0, 0, 0.0)}


def test_the_rollup_write_records_completions_and_the_completion_job_writes_nothing(
    ctx: WorkerContext, settings: Settings
) -> None:
    watch(settings, "ana", "v-100", [[0, 100]], 100)  # complete: 1 of the course's 4 materials
    watch(settings, "ana", "v-600", [[0, 60]], 600)  # 10 %: not complete
    assert flush_batch(ctx, 500).completions == 1
    doc = stored_rollup(ctx.mongo, "ana")
    assert (doc["completed_materials"], doc["progress_percentage"]) == (["v-100"], 25.0)
    [job] = [j for j in ctx.queue.jobs if j.func_name == "workers.completion.record_completions"]
    assert job.args == ([["ana", COURSE_ID, ["v-100"]]],)
    # The job's part: the enrollment holds the completion, so it writes nothing (a write of
    # its own would set `updated_at`).
    assert ctx.mongo.record_completion("ana", COURSE_ID, ["v-100"], course()) == 25.0
    assert stored_rollup(ctx.mongo, "ana") == doc
    # An enrollment the rollup write missed (written before 0.9.0) is still repaired by it.
    ctx.mongo.enrollments.update_one({"_id": enrollment_id("ana", COURSE_ID)},
                                     {"$set": {"completed_materials": [],
                                               "progress_percentage": 0.0}})  # fmt: skip
    assert ctx.mongo.record_completion("ana", COURSE_ID, ["v-100"], course()) == 25.0
    repaired = stored_rollup(ctx.mongo, "ana")
    assert (repaired["completed_materials"], repaired["progress_percentage"]) == (["v-100"], 25.0)


def test_repeats_and_any_order_end_in_the_same_document(ctx: WorkerContext) -> None:
    c = course()
    older = RollupEntry(3, watched_seconds=30.0, progress=30.0, last_watched=10.0)
    newer = RollupEntry(5, watched_seconds=90.0, progress=90.0, completed=True, last_watched=20.0)
    other = RollupEntry(2, watched_seconds=60.0, progress=10.0, last_watched=15.0)
    batches: list[dict[str, RollupEntry]] = [
        {"v-100": newer},
        {"v-100": older, "v-600": other},
        {"v-100": newer},
        {"v-600": other},
    ]
    for student, order in (("ana", batches), ("ben", list(reversed(batches)))):
        for entries in order:
            rollup_store.apply_entries(ctx.mongo, {(student, COURSE_ID): entries}, {COURSE_ID: c})
    docs = [stored_rollup(ctx.mongo, s) for s in ("ana", "ben")]
    assert rollup.entries_of(docs[0]) == rollup.entries_of(docs[1]) == {
        "v-100": newer, "v-600": other,
    }  # fmt: skip
    for doc in docs:  # 90 + 60 s; v-100 complete; the latest activity of both
        assert (doc["watched_seconds"], doc["completed_count"], doc["last_active"]) == (
            150.0, 1, 20.0
        )  # fmt: skip
    # Applying what is already there writes nothing (the revision does not move).
    rev = docs[0]["rollup_rev"]
    assert rollup_store.apply_entries(ctx.mongo, {("ana", COURSE_ID): {"v-100": older}},
                                      {COURSE_ID: c}) == 0  # fmt: skip
    assert stored_rollup(ctx.mongo, "ana")["rollup_rev"] == rev


def test_concurrent_writers_lose_nothing(ctx: WorkerContext, settings: Settings) -> None:
    c = course()
    # 4 writers, each with its own materials and versions of one enrollment, at the same time.
    plans = [
        {"v-100": RollupEntry(v, watched_seconds=float(v), last_watched=float(v))}
        for v in (1, 4, 2, 3)
    ] + [{"v-600": RollupEntry(7, watched_seconds=7.0, last_watched=7.0)},
         {"pdf-1": RollupEntry(1, progress=100.0, completed=True, last_watched=1.0)}]  # fmt: skip
    stores = [MongoStore(settings.mongo_url) for _ in plans]
    barrier = threading.Barrier(len(plans))

    def write(store: MongoStore, entries: dict[str, RollupEntry]) -> None:
        barrier.wait()
        rollup_store.apply_entries(store, {("ana", COURSE_ID): entries}, {COURSE_ID: c})

    threads = [
        threading.Thread(target=write, args=(s, p)) for s, p in zip(stores, plans, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    doc = stored_rollup(ctx.mongo, "ana")
    entries = rollup.entries_of(doc)
    assert {m: e.version for m, e in entries.items()} == {"v-100": 4, "v-600": 7, "pdf-1": 1}
    # watched: v-100 at version 4 (4 s) + v-600 (7 s); completed: pdf-1; latest activity 7
    assert (doc["watched_seconds"], doc["completed_count"], doc["last_active"]) == (11.0, 1, 7.0)


class Crash(Exception):
    """Stands for the worker dying (SIGKILL) between its two MongoDB writes."""


def test_a_flush_that_died_after_its_progress_write_is_rolled_up_by_the_takeover(
    ctx: WorkerContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    watch(settings, "ben", "v-100", [[0, 40]], 100)

    def crash(*_: Any) -> int:
        raise Crash

    clock = MockedClock(time.time())  # the dead worker's lease runs out when the clock moves
    ctx = dataclasses.replace(ctx, clock=clock)
    monkeypatch.setattr(flush_module, "record_flushed", crash)
    with pytest.raises(Crash):
        flush_batch(ctx, 500)
    assert ctx.mongo.progress.count_documents({"student_id": "ben"}) == 1  # the state landed
    assert rollup.entries_of(stored_rollup(ctx.mongo, "ben")) == {}  # its rollup did not
    monkeypatch.undo()
    clock.advance(settings.claim_lease_s + 0.2)
    report = flush_batch(ctx, 500)
    assert report.takeovers == 1 and report.stale == 1  # its state was written already...
    assert rows(ctx)["ben"] == (0.0, 0, 40.0)  # ...and the takeover rolls it up


def test_erasure_empties_the_rollup_and_a_late_entry_cannot_refill_it(
    ctx: WorkerContext, settings: Settings
) -> None:
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    flush_batch(ctx, 500)
    before = rollup.entries_of(stored_rollup(ctx.mongo, "ana"))["v-100"]
    erase_progress(ctx.mongo, ctx.redis, ctx.key_schema, ctx.catalog(), "ana")
    assert rows(ctx)["ana"] == (0.0, 0, 0.0)
    # The flush that wrote `before` repeats its rollup write late: the tombstone's version wins.
    rollup_store.apply_entries(ctx.mongo, {("ana", COURSE_ID): {"v-100": before}},
                               {COURSE_ID: course()})  # fmt: skip
    assert rows(ctx)["ana"] == (0.0, 0, 0.0)
    assert stored_rollup(ctx.mongo, "ana")["last_active"] is None


def test_a_re_enrolled_student_counts_again_without_a_new_flush(
    ctx: WorkerContext, settings: Settings
) -> None:
    watch(settings, "ben", "v-600", [[0, 600]], 600)
    flush_batch(ctx, 500)
    admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, "ben", COURSE_ID, False)
    assert "ben" not in rows(ctx)
    admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, "ben", COURSE_ID, True)
    assert rows(ctx)["ben"] == (25.0, 1, 600.0)


def test_a_course_change_recomputes_the_totals(ctx: WorkerContext, settings: Settings) -> None:
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    watch(settings, "ana", "v-600", [[0, 600]], 600)
    flush_batch(ctx, 500)
    assert rows(ctx)["ana"] == (50.0, 2, 700.0)
    # v-600 leaves the course: ana has 1 of 3 materials and 100 s of its videos.
    modules = cast(list[dict[str, Any]], COURSE["modules"])
    smaller = course(modules=[{**modules[0], "materials": modules[0]["materials"][:1]}, modules[1]])
    # Read before the rebuild (another process's view): totals of the old course are not used.
    ctx.mongo.put_course(smaller)
    assert {r.student_id: r.watched_seconds for r in class_table(ctx.mongo, smaller)} == {
        "ana": 100.0, "ben": 0.0
    }  # fmt: skip
    # The stats and the matrix map the old rollup's columns onto the new list of materials.
    stats = teacher_views.stats(ctx.mongo, smaller)
    # (33.333 + 0) / 2 = 16.6665, a binary double just below it: 16.666 to 3 decimals
    assert (stats["enrolled"], stats["average_progress"]) == (2, 16.666)
    assert stats["materials"][0] == {"material_id": "v-100", "started": 1, "completed": 1,
                                     "average_watched_percentage": 100.0}  # fmt: skip
    assert [m["started"] for m in stats["materials"][1:]] == [0, 0]
    summary = {k: stats[k] for k in ("enrolled", "average_progress", "completion_rate")}
    assert teacher_views.summary(ctx.mongo, smaller) == summary  # the stale path
    _, matrix = teacher_views.matrix(ctx.mongo, smaller)
    cells = {r.row.student_id: (r.progress, r.completed) for r in matrix}
    assert cells["ana"] == ([100.0, 0.0, 0.0], [True, False, False])
    assert cells["ben"] == ([0.0, 0.0, 0.0], [False, False, False])
    admin_ops.save_course(ctx.mongo, ctx.redis, smaller)
    doc = stored_rollup(ctx.mongo, "ana")
    assert (doc["completed_count"], doc["watched_seconds"]) == (1, 100.0)
    assert teacher_views.summary(ctx.mongo, smaller) == summary  # the $group path
    assert doc["rollup_course"] == rollup.course_fingerprint(smaller)


def forget_rollups(mongo: MongoStore) -> None:
    """Make the enrollments look as an older release left them (no rollup fields)."""
    fields = ["rollup", "rollup_ids", "rollup_rev", "rollup_course", "completed_count",
              "watched_seconds", "unverified_seconds", "last_active"]  # fmt: skip
    mongo.enrollments.update_many({}, {"$unset": dict.fromkeys(fields, "")})


def test_rebuild_fills_enrollments_stored_before_rollups(
    ctx: WorkerContext, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flush_module, "record_flushed", lambda *_: 0)  # an older release
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    watch(settings, "ben", "v-100", [[0, 30]], 100)
    flush_batch(ctx, 500)
    forget_rollups(ctx.mongo)
    # Without rollups the totals are computed from nothing: zero, never wrong in other ways.
    assert rows(ctx) == {"ana": (0.0, 0, 0.0), "ben": (0.0, 0, 0.0)}
    changed = rollups.rebuild_missing(ctx.mongo, ctx.catalog())
    assert changed == 2
    assert rows(ctx) == {"ana": (25.0, 1, 100.0), "ben": (0.0, 0, 30.0)}
    assert rollups.rebuild_missing(ctx.mongo, ctx.catalog()) == 0  # idempotent


def test_the_cli_rebuilds_rollups(ctx: WorkerContext, settings: Settings,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    import os
    import subprocess
    import sys

    monkeypatch.setattr(flush_module, "record_flushed", lambda *_: 0)
    watch(settings, "ana", "v-600", [[0, 300]], 600)
    flush_batch(ctx, 500)
    forget_rollups(ctx.mongo)
    env = {**os.environ, "REDIS_URL": settings.redis_url, "MONGO_URL": settings.mongo_url,
           "APP_ENV": "development"}  # fmt: skip
    out = subprocess.run([sys.executable, "-m", "shared.devtools.cli", "rebuild-rollups"],
                         env=env, check=True, capture_output=True, text=True)  # fmt: skip
    assert "rebuilt 2 enrollment rollups" in out.stdout
    assert rows(ctx)["ana"] == (0.0, 0, 300.0)


def test_a_redis_only_student_has_no_rollup_document(ctx: WorkerContext) -> None:
    # Not enrolled: nothing is created (the class table counts enrolled students only).
    entries = {("zed", COURSE_ID): {"v-100": RollupEntry(1, watched_seconds=5.0)}}
    assert rollup_store.apply_entries(ctx.mongo, entries, {COURSE_ID: course()}) == 0
    assert ctx.mongo.enrollments.count_documents({"student_id": "zed"}) == 0


def test_pages_sorted_by_mongodb_equal_pages_of_the_whole_table(ctx: WorkerContext) -> None:
    """The class table's and the matrix's fast path (MongoDB sorts and cuts one page) against
    sorting all rows in Python, for every sort key, both directions, several page sizes, with
    ties and students who never started; and again while one enrollment's totals are stale
    (the fallback)."""
    c = course()
    plan: dict[str, dict[str, RollupEntry]] = {  # ties on every key; cal and dee never active
        "ana": {"v-100": RollupEntry(1, 50.0, 5.0, 50.0, False, 30.0)},
        "ben": {"v-100": RollupEntry(1, 50.0, 0.0, 50.0, False, 30.0),
                "pdf-1": RollupEntry(1, 0.0, 0.0, 100.0, True, 20.0)},
        "cal": {},
        "dee": {},
        "eli": {"v-600": RollupEntry(1, 600.0, 5.0, 100.0, True, 10.0)},
        "fox": {"v-100": RollupEntry(1, 100.0, 0.0, 100.0, True, 40.0),
                "v-600": RollupEntry(1, 0.5, 0.0, 0.1, False, 40.0)},
        "gus": {"link-1": RollupEntry(1, 0.0, 0.0, 100.0, True, 10.0)},
    }  # fmt: skip
    for student in plan:
        if student not in ("ana", "ben"):
            admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, student, COURSE_ID, True)
    rollup_store.apply_entries(
        ctx.mongo, {(s, COURSE_ID): e for s, e in plan.items()}, {COURSE_ID: c}
    )

    def walk(sort: str, limit: int) -> list[str]:
        seen, cursor = [], None
        for _ in range(20):
            chunk, cursor = class_page(ctx.mongo, c, sort, limit, cursor)
            seen += [r.student_id for r in chunk]
            if cursor is None:
                return seen
        raise AssertionError("did not end")

    def walk_matrix(sort: str, limit: int) -> list[str]:
        seen, cursor = [], None
        cells = {r.row.student_id: r for r in teacher_views.matrix(ctx.mongo, c)[1]}
        for _ in range(20):
            chunk, cursor = teacher_views.matrix_page(ctx.mongo, c, sort, limit, cursor)
            assert all(r == cells[r.row.student_id] for r in chunk)  # the whole matrix's rows
            seen += [r.row.student_id for r in chunk]
            if cursor is None:
                return seen
        raise AssertionError("did not end")

    whole = class_table(ctx.mongo, c)
    for stale in (False, True):
        if stale:
            ctx.mongo.enrollments.update_one({"student_id": "gus"},
                                             {"$set": {"rollup_course": "other"}})  # fmt: skip
        for key in analytics.SORT_KEYS:
            for sort in (key, f"-{key}"):
                expected = [r.student_id for r in analytics.page(whole, sort, 100, None)[0]]
                for limit in (1, 2, 3, 100):
                    assert walk(sort, limit) == expected, (sort, limit, stale)
                    assert walk_matrix(sort, limit) == expected, (sort, limit, stale)
        # The inactivity filter done by MongoDB keeps the rows the whole table's filter keeps.
        for before in (5.0, 10.0, 15.0, 30.0, 35.0, 50.0):
            for q in (None, "a", "E"):
                kept = {r.student_id for r in analytics.keep_rows(whole, before, q)}
                got = {r.student_id for r in filtered_table(ctx.mongo, c, before, q)}
                assert got == kept, (before, q, stale)
    # By hand: last active before 15 or never: cal, dee (never), eli, gus (10)
    assert sorted(r.student_id for r in filtered_table(ctx.mongo, c, 15.0, None)) == [
        "cal", "dee", "eli", "gus"
    ]  # fmt: skip
    # By hand: one completed material each for ben, eli, fox, gus (25 %), none for the others;
    # ties by student id in the same direction.
    assert walk("-progress", 2) == ["gus", "fox", "eli", "ben", "dee", "cal", "ana"]
    # never active first, then 10 (eli, gus), 30 (ana, ben; ben's latest is 30), 40
    assert walk("last_active", 3) == ["cal", "dee", "eli", "gus", "ana", "ben", "fox"]


def test_a_students_export_leaves_the_rollup_internals_out(
    ctx: WorkerContext, settings: Settings
) -> None:
    from fastapi.testclient import TestClient

    from ingest.app import create_app
    from tests.helpers import bearer

    watch(settings, "ana", "v-100", [[0, 100]], 100)
    flush_batch(ctx, 500)
    with TestClient(create_app(settings)) as c:
        r = c.get("/api/progress/export", headers=bearer(settings, "ana"))
    assert r.status_code == 200, r.text
    [enrollment] = r.json()["enrollments"]
    internals = {"rollup", "rollup_ids", "rollup_rev", "rollup_course", "agg_seq"}
    assert not internals & set(enrollment)
    assert (enrollment["completed_count"], enrollment["watched_seconds"]) == (1, 100.0)
    assert enrollment["last_active"].endswith("Z") or "+00:00" in enrollment["last_active"]


def recounted_stats(mongo: MongoStore, c: Course) -> dict[str, Any]:
    """The course stats counted from scratch from every enrollment (what the aggregate must
    equal)."""
    sums = teacher_views.class_sums(rollup_store.course_rollups(mongo, c), c)
    return {"course_id": c.course_id,
            **analytics.course_stats(sums, [m.material_id for m in c.materials])}  # fmt: skip


def aggregate_stats(mongo: MongoStore, c: Course) -> dict[str, Any]:
    sums = rollup_store.course_sums(mongo, c)
    assert sums is not None, "the stats would not read the aggregate"
    return {"course_id": c.course_id,
            **analytics.course_stats(sums, [m.material_id for m in c.materials])}  # fmt: skip


def test_the_aggregate_follows_flushes_enrolment_erasure_unenrolment_and_course_changes(
    ctx: WorkerContext, settings: Settings
) -> None:
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    watch(settings, "ben", "v-600", [[0, 60]], 600)
    flush_batch(ctx, 500)
    c = course()
    # By hand: ana completed v-100 (1 of 4: 25 %), ben is at 10 % of v-600 (0 %).
    stats = aggregate_stats(ctx.mongo, c)
    assert (stats["enrolled"], stats["average_progress"], stats["completion_rate"]) == (
        2, 12.5, 0.0
    )  # fmt: skip
    assert [(m["started"], m["completed"], m["average_watched_percentage"])
            for m in stats["materials"]] == [(1, 1, 100.0), (1, 0, 10.0), (0, 0, 0.0),
                                             (0, 0, 0.0)]  # fmt: skip
    assert teacher_views.stats(ctx.mongo, c) == stats == recounted_stats(ctx.mongo, c)
    steps: list[Callable[[], object]] = [
        lambda: admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, "cal",
                                         COURSE_ID, True),
        lambda: erase_progress(ctx.mongo, ctx.redis, ctx.key_schema, ctx.catalog(), "ana"),
        lambda: admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, "ben",
                                         COURSE_ID, False),
        lambda: admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, "ben",
                                         COURSE_ID, True),
    ]  # fmt: skip
    for step in steps:
        step()
        assert aggregate_stats(ctx.mongo, c) == recounted_stats(ctx.mongo, c)
    # cal new, ana erased, ben back with his 10 %: 3 enrolled, nobody at a completed material.
    stats = aggregate_stats(ctx.mongo, c)
    assert (stats["enrolled"], stats["average_progress"]) == (3, 0.0)
    assert [m["started"] for m in stats["materials"]] == [0, 1, 0, 0]
    modules = cast(list[dict[str, Any]], COURSE["modules"])
    smaller = course(modules=[{**modules[0], "materials": modules[0]["materials"][1:]},
                              modules[1]])  # fmt: skip
    admin_ops.save_course(ctx.mongo, ctx.redis, smaller)  # v-100 leaves the course
    assert aggregate_stats(ctx.mongo, smaller) == recounted_stats(ctx.mongo, smaller)
    assert not rollups.rebuild_missing(ctx.mongo, ctx.catalog())  # the job: nothing to change
    assert not aggregate_store.recount(ctx.mongo, COURSE_ID)  # and nothing to correct


def test_stats_fall_back_to_the_class_while_an_enrollment_is_not_folded(
    ctx: WorkerContext, settings: Settings
) -> None:
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    flush_batch(ctx, 500)
    ctx.mongo.enroll("cal", COURSE_ID)  # as an enrolment that died before its rebuild
    assert rollup_store.course_sums(ctx.mongo, course()) is None
    assert teacher_views.stats(ctx.mongo, course())["enrolled"] == 3
    rollups.rebuild_missing(ctx.mongo, ctx.catalog())  # the maintenance job folds it
    assert aggregate_stats(ctx.mongo, course()) == recounted_stats(ctx.mongo, course())
    assert aggregate_stats(ctx.mongo, course())["enrolled"] == 3


@pytest.fixture
def no_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dead writer's batch is fenced at once (the tests kill writers on purpose)."""
    monkeypatch.setattr(aggregate_store, "LANDING_GRACE_S", 0.0)


def test_a_flush_killed_between_the_aggregate_and_the_enrollments_counts_once(
    ctx: WorkerContext, settings: Settings, monkeypatch: pytest.MonkeyPatch, no_grace: None
) -> None:
    watch(settings, "ben", "v-100", [[0, 100]], 100)

    def crash(*_: Any) -> Any:
        raise Crash

    clock = MockedClock(time.time())
    ctx = dataclasses.replace(ctx, clock=clock)
    monkeypatch.setattr(rollup_store, "write_rollups", crash)
    with pytest.raises(Crash):
        flush_batch(ctx, 500)
    # The aggregate took ben's completion, his enrollment did not: the stats count it early.
    assert aggregate_stats(ctx.mongo, course())["materials"][0]["completed"] == 1
    assert rows(ctx)["ben"] == (0.0, 0, 0.0)
    monkeypatch.undo()
    clock.advance(settings.claim_lease_s + 0.2)
    assert flush_batch(ctx, 500).takeovers == 1
    assert rows(ctx)["ben"] == (25.0, 1, 100.0)
    stats = aggregate_stats(ctx.mongo, course())
    assert stats == recounted_stats(ctx.mongo, course())
    assert stats["materials"][0]["completed"] == 1  # once, not twice


def test_a_commit_lets_the_batch_before_it_land_instead_of_fencing_it(
    ctx: WorkerContext,
) -> None:
    c = course()
    entry = RollupEntry(1, 30.0, 0.0, 30.0, False, 5.0)
    first, stamps = rollup_store.commit_rollups(ctx.mongo, {("ana", COURSE_ID): {"v-100": entry}},
                                                {COURSE_ID: c})  # fmt: skip
    landed: list[tuple[int, dict[int, str]]] = []
    # The first writer is still writing when a second one commits: it lands 0.3 s later.
    writer = threading.Timer(
        0.3, lambda: landed.append(rollup_store.write_rollups(ctx.mongo, first, stamps))
    )
    writer.start()
    second, stamps2 = rollup_store.commit_rollups(ctx.mongo,
                                                  {("ben", COURSE_ID): {"v-600": entry}},
                                                  {COURSE_ID: c})  # fmt: skip
    rollup_store.write_rollups(ctx.mongo, second, stamps2)
    writer.join(10)
    assert landed == [(1, {})]  # not fenced: ana's write landed after the second commit
    assert rollup.entries_of(stored_rollup(ctx.mongo, "ana")) == {"v-100": entry}
    assert aggregate_stats(ctx.mongo, c) == recounted_stats(ctx.mongo, c)
    assert [m["started"] for m in aggregate_stats(ctx.mongo, c)["materials"]] == [1, 1, 0, 0]


def committed(ctx: WorkerContext, student: str, material: str, entry: RollupEntry) -> Any:
    """A writer's commit of one entry (step 2), its enrollment write (step 3) not made yet:
    (writes, stamps), for `rollup_store.write_rollups`."""
    incoming = {(student, COURSE_ID): {material: entry}}
    return rollup_store.commit_rollups(ctx.mongo, incoming, {COURSE_ID: course()})


def written(ctx: WorkerContext, student: str, material: str, entry: RollupEntry) -> None:
    """One entry committed and written at once: it lands on the first try."""
    assert rollup_store.write_rollups(ctx.mongo, *committed(ctx, student, material, entry)) == (
        1, {})  # fmt: skip


@pytest.mark.parametrize(
    "odd",
    [float(2**53), "7", float("nan")],
    ids=[
        "a double past 2**53 ($inc leaves it)",
        "a string ($inc refuses it)",
        "NaN (the stand-in cannot store one: real on MongoDB only)",
    ],
)
def test_a_dead_writers_batch_is_fenced_whatever_rollup_rev_holds(
    ctx: WorkerContext, no_grace: None, odd: Any
) -> None:
    """Another tool, or a hand edit, left ana's `rollup_rev` odd; a writer then commits her
    change and dies before writing it. The next commit must fence it for good (its late write
    lands nowhere) and the aggregate stay equal to a recount."""
    c = course()
    first = RollupEntry(1, 30.0, 0.0, 30.0, False, 5.0)
    written(ctx, "ana", "v-100", first)
    ana = {"_id": enrollment_id("ana", COURSE_ID)}
    ctx.mongo.enrollments.update_one(ana, {"$set": {"rollup_rev": odd}})
    later = RollupEntry(2, 100.0, 0.0, 100.0, True, 9.0)
    dead = committed(ctx, "ana", "v-100", later)
    written(ctx, "ben", "v-600", RollupEntry(1, 60.0, 0.0, 60.0, False, 7.0))
    assert rollup_store.write_rollups(ctx.mongo, *dead)[0] == 0  # fenced
    assert rollup.entries_of(stored_rollup(ctx.mongo, "ana")) == {"v-100": first}
    assert aggregate_stats(ctx.mongo, c) == recounted_stats(ctx.mongo, c)
    assert [m["completed"] for m in aggregate_stats(ctx.mongo, c)["materials"]] == [0, 0, 0, 0]
    # And her next write lands, its token a plain number again.
    written(ctx, "ana", "v-100", later)
    assert rollup.entries_of(stored_rollup(ctx.mongo, "ana")) == {"v-100": later}
    assert isinstance(stored_rollup(ctx.mongo, "ana")["rollup_rev"], int)
    assert aggregate_stats(ctx.mongo, c) == recounted_stats(ctx.mongo, c)
    assert [m["completed"] for m in aggregate_stats(ctx.mongo, c)["materials"]] == [1, 0, 0, 0]


@pytest.mark.parametrize("odd", ["x", "5", 1e20])
def test_an_odd_stored_total_neither_fails_its_readers_nor_sorts_as_a_number(
    ctx: WorkerContext, settings: Settings, odd: Any
) -> None:
    """Ben's stored totals were edited by hand to values that are not numbers, or out of any
    range: his class's pages answer (a text raised ValueError, which the route reported as a bad
    cursor; 1e20 overflowed a datetime), his row shows no activity, his own activity reads none,
    his unenrolment goes through, and his next rollup write puts numbers back (reviews)."""
    watch(settings, "ana", "v-100", [[0, 100]], 100)
    flush_batch(ctx, 500)
    ben = {"_id": enrollment_id("ben", COURSE_ID)}
    odd_totals = {"last_active": odd, "watched_seconds": odd, "completed_count": odd}
    ctx.mongo.enrollments.update_one(ben, {"$set": odd_totals})
    for sort, order in (("last_active", ["ben", "ana"]), ("-last_active", ["ana", "ben"])):
        rows, cursor = class_page(ctx.mongo, course(), sort, 10, None)
        assert [r.student_id for r in rows] == order and cursor is None, sort
        [row] = [r for r in rows if r.student_id == "ben"]
        assert (row.last_active, row.watched_seconds, row.completed_materials) == (None, 0.0, 0)
    assert rollup_store.student_activity(ctx.mongo, "ben") == {COURSE_ID: None}
    watch(settings, "ben", "v-600", [[0, 60]], 600)
    flush_batch(ctx, 500)
    stored = stored_rollup(ctx.mongo, "ben")
    assert (stored["watched_seconds"], stored["completed_count"]) == (60.0, 0)
    assert isinstance(stored["last_active"], float)
    ctx.mongo.enrollments.update_one(ben, {"$set": odd_totals})
    assert rollup_store.remove_enrollment(ctx.mongo, "ben", COURSE_ID)
    assert aggregate_stats(ctx.mongo, course()) == recounted_stats(ctx.mongo, course())


def test_a_stalled_write_cannot_land_on_the_students_next_enrollment(
    ctx: WorkerContext, no_grace: None
) -> None:
    """A writer reads ana's enrollment, commits and stalls; she is unenrolled (her enrollment
    fenced and deleted) and enrolled again, and written once more. The stalled write must land
    nowhere: when each new enrollment counted its token from 1 again, the stalled writer's token
    named the new enrollment, and the old entries overwrote the new ones (found by a review)."""
    c = course()
    written(ctx, "ana", "v-100", RollupEntry(1, 100.0, 0.0, 100.0, True, 5.0))
    stalled = committed(ctx, "ana", "v-100", RollupEntry(2, 100.0, 0.0, 100.0, True, 9.0))
    for enrolled in (False, True):
        admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, "ana", COURSE_ID, enrolled)
    started = RollupEntry(1, 10.0, 0.0, 60.0, False, 20.0)
    written(ctx, "ana", "v-600", started)
    assert rollup_store.write_rollups(ctx.mongo, *stalled)[0] == 0
    assert rollup.entries_of(stored_rollup(ctx.mongo, "ana")) == {"v-600": started}
    assert aggregate_stats(ctx.mongo, c) == recounted_stats(ctx.mongo, c)
    assert [m["started"] for m in aggregate_stats(ctx.mongo, c)["materials"]] == [0, 1, 0, 0]


# The property test's operations: (kind, student, material, version, progress).
STUDENTS = ("p0", "p1", "p2")
OPS = st.tuples(
    st.sampled_from(["apply", "crash", "partial", "late", "enroll", "unenroll", "shrink",
                     "grow", "recount"]),
    st.integers(0, len(STUDENTS) - 1),
    st.integers(0, 3),
    st.integers(1, 6),
    st.sampled_from([0.0, 12.5, 33.333, 80.0, 100.0]),
)  # fmt: skip
EXAMPLES = iter(range(10**6))


@hyp_settings(max_examples=30, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(ops=st.lists(OPS, max_size=14))
# A writer killed after its commit, then an unenrolment that found the enrollment fenced.
@example(ops=[("crash", 0, 1, 5, 0.0), ("unenroll", 0, 3, 3, 33.333), ("shrink", 1, 2, 5, 0.0)])
def test_the_aggregate_equals_a_recount_whatever_the_writers_do(
    ctx: WorkerContext, ops: list[tuple[str, int, int, int, float]], no_grace: None
) -> None:
    """Random rollup writes, writers killed after their aggregate commit (some of their
    enrollment writes never made, or made late, after another writer fenced them),
    enrolments, unenrolments, course changes and recounts: once the next writer has resolved
    the last batch, the aggregate equals a recount from scratch and the stats read it."""
    n = next(EXAMPLES)
    ids = [f"h{n}-v{i}" for i in range(4)]
    materials = [{"material_id": m, "title": m, "type": "video", "duration": 100} for m in ids]
    full = Course.model_validate({"course_id": f"prop-{n}", "title": "P", "teacher_ids": [],
                                  "modules": [{"module_id": "m", "title": "M",
                                               "materials": materials}]})  # fmt: skip
    current = full
    admin_ops.save_course(ctx.mongo, ctx.redis, full)
    cid = full.course_id
    stalled: list[tuple[list[rollup_store.RollupWrite], dict[str, int]]] = []

    def enrol(student: str, yes: bool) -> None:
        admin_ops.set_enrollment(ctx.mongo, ctx.redis, ctx.key_schema, student, cid, yes)

    for student in STUDENTS:
        enrol(student, True)
    for kind, s, m, version, progress in ops:
        student, material = STUDENTS[s], ids[m]
        entry = RollupEntry(version, progress, 0.0, progress, progress == 100.0,
                            None if progress == 0.0 else float(version))  # fmt: skip
        incoming = {(student, cid): {material: entry},
                    (STUDENTS[(s + 1) % 3], cid): {ids[(m + 1) % 4]: entry}}  # fmt: skip
        if kind == "apply":
            rollup_store.apply_entries(ctx.mongo, incoming, {cid: current})
        elif kind in ("crash", "partial"):  # killed after its commit, before or in its write
            writes, stamps = rollup_store.commit_rollups(ctx.mongo, incoming, {cid: current})
            if kind == "partial":
                rollup_store.write_rollups(ctx.mongo, writes[:1], stamps)
            stalled.append((writes, stamps))
        elif kind == "late" and stalled:  # the stalled writer wakes up
            rollup_store.write_rollups(ctx.mongo, *stalled.pop(0))
        elif kind in ("enroll", "unenroll"):
            enrol(student, kind == "enroll")
        elif kind in ("shrink", "grow"):
            current = course_with(full, ids[: m + 1] if kind == "shrink" else ids)
            admin_ops.save_course(ctx.mongo, ctx.redis, current)
        elif kind == "recount":
            aggregate_store.recount(ctx.mongo, cid)
    aggregate_store.commit(ctx.mongo, cid, list)  # the next writer resolves the last batch
    counted = recounted_stats(ctx.mongo, current)
    assert aggregate_stats(ctx.mongo, current) == counted
    assert teacher_views.stats(ctx.mongo, current) == counted
    assert rollup_store.course_sums(ctx.mongo, current) == aggregate_store.count(ctx.mongo, cid)
    assert not aggregate_store.recount(ctx.mongo, cid)


def course_with(full: Course, ids: list[str]) -> Course:
    data = full.model_dump()
    module = data["modules"][0]
    module["materials"] = [x for x in module["materials"] if x["material_id"] in ids]
    return Course.model_validate(data)
