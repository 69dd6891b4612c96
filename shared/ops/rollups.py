"""Keeping enrollment rollups in step: after a flush, after an erasure, on (re-)enrollment, when
a course changes, and a rebuild for data written before rollups existed with a recount of the
course aggregates (`videoprogress rebuild-rollups`, and the maintenance job)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable

from shared.domain.catalog import Catalog, Course
from shared.domain.rollup import RollupEntry
from shared.errors import Unavailable
from shared.storage import aggregate_store, rollup_store
from shared.storage.clients import Buffer
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore, StateWrite

log = logging.getLogger(__name__)


def entry_of(write: StateWrite) -> RollupEntry:
    s = write.state
    return RollupEntry(
        version=write.version,
        watched_seconds=s.watched_seconds,
        unverified_seconds=s.unverified_seconds,
        progress=s.progress,
        completed=s.completed,
        last_watched=s.last_watched,
    )


def record_flushed(mongo: MongoStore, catalog: Catalog, writes: Iterable[StateWrite]) -> int:
    """Roll the states a flush just wrote (or found already written) into their enrollments:
    one read and one unordered bulk write on `enrollments`. Idempotent, so a repeated or
    taken-over flush is harmless. Raises Unavailable (the flush then releases its keys)."""
    grouped = rollup_store.entries_of_writes(
        (w.student_id, w.course_id, w.material_id, entry_of(w)) for w in writes
    )
    courses = {cid: c for (_, cid) in grouped if (c := catalog.courses.get(cid))}
    return rollup_store.apply_entries(mongo, grouped, courses) if grouped else 0


def rebuild_student(mongo: MongoStore, courses: Iterable[Course], student_id: str) -> int:
    """Recompute one student's rollups from watch_progress (after enrollment or erasure)."""
    return sum(rollup_store.rebuild(mongo, course, [student_id]) for course in courses)


def settle(r: Buffer, mongo: MongoStore, course: Course, students: Iterable[str]) -> None:
    """After a write of enrollment documents other than the persister's: the students' live
    records take what the documents now hold (shared/storage/live_rollups.py). Raises
    Unavailable."""
    LiveRollups(r).settle(mongo, course, students, now=time.time())


def settle_courses(r: Buffer, mongo: MongoStore, courses: Iterable[Course]) -> None:
    """After a rebuild of whole courses: every live record of theirs takes what the documents
    now hold (and a course holding records is scheduled: `LiveRollups.settle_course`)."""
    live = LiveRollups(r)
    for course in courses:
        live.settle_course(mongo, course, time.time())


def rebuild_all(mongo: MongoStore, catalog: Catalog, r: Buffer) -> int:
    """Rebuild every enrollment's rollup from watch_progress and settle its live record (after
    the buffer lost rollup records MongoDB did not hold yet). Returns how many changed."""
    changed = 0
    for course in catalog.courses.values():  # each course's records right after its rebuild
        changed += rollup_store.rebuild(mongo, course)
        settle_courses(r, mongo, [course])
    return changed


def rebuild_missing(mongo: MongoStore, catalog: Catalog, r: Buffer | None = None) -> int:
    """Rebuild every enrollment whose rollup is missing, made for another version of its
    course or not folded into the course's aggregate, then recount every course's aggregate
    from scratch (a difference is logged: it means a write bypassed the aggregates; a course
    whose flushes kept winning the compare-and-set is left to the next run). Returns how many
    enrollments changed. Idempotent; safe while workers flush."""
    changed = rollup_store.rebuild_missing(mongo, catalog.courses.values())
    if r is not None:  # the records of rebuilt enrollments (and any drift) follow the documents
        settle_courses(r, mongo, catalog.courses.values())
    for course_id in catalog.courses:
        try:
            if aggregate_store.recount(mongo, course_id):
                log.warning("course %s: aggregate differed from a recount; corrected", course_id)
        except Unavailable as exc:  # a course flushed on every tick: the next run recounts it
            log.warning("course %s: aggregate not recounted now (%s)", course_id, exc)
        except ValueError as exc:  # an enrollment whose rollup cannot be decoded: the others go on
            log.error("course %s: aggregate not recounted, an enrollment cannot be read (%s)",
                      course_id, exc)  # fmt: skip
    return changed
