"""Periodic repair: completions whose job was lost still reach the enrollment; LTI scores the
grade outbox dropped are queued again; rollups and stored states of older versions are brought
up to date; expired erasure tombstones deleted."""

from __future__ import annotations

import logging

from shared.domain.catalog import Catalog
from shared.errors import Unavailable
from shared.ops import admin_ops
from shared.ops.rollups import rebuild_missing
from shared.storage.mongo_store import completed_ids
from workers.context import WorkerContext, get_context
from workers.grades import REPAIR_BATCH
from workers.grades import repair_grades as repair_grades_of
from workers.interop import announce_completions

log = logging.getLogger(__name__)

RECENT_S = 3600.0


def reconcile_completions(since_s: float = RECENT_S) -> int:
    """RQ job: re-record completions written in the last `since_s` seconds that an enrollment
    misses.

    Covers a completion job lost with its worker before RQ retried it. Idempotent.
    Returns how many enrollments were repaired.
    """
    ctx = get_context()
    catalog = ctx.catalog()
    since = ctx.clock.time() - since_s
    cursor = ctx.mongo.progress.find(
        {"completed": True, "written_at": {"$gte": since}},
        {"_id": 0, "student_id": 1, "course_id": 1, "material_id": 1},
    )
    completed: dict[tuple[str, str], list[str]] = {}
    for doc in cursor:
        sid, cid, mid = doc.get("student_id"), doc.get("course_id"), doc.get("material_id")
        if isinstance(sid, str) and isinstance(cid, str) and isinstance(mid, str):
            completed.setdefault((sid, cid), []).append(mid)  # (an odd document names none)
    missing = 0
    for (student_id, course_id), material_ids in completed.items():
        # Each enrollment apart: one that cannot be repaired (an odd document) is logged and
        # the others are; a MongoDB outage stops the job (the next run repairs them all).
        try:
            missing += _reconcile(ctx, catalog, student_id, course_id, material_ids)
        except Unavailable:
            raise
        except Exception:
            log.exception("completions of %s in %s not reconciled", student_id, course_id)
    return missing


def _reconcile(
    ctx: WorkerContext, catalog: Catalog, student_id: str, course_id: str, material_ids: list[str]
) -> int:
    """Record the completions the enrollment misses; 1 when there were some."""
    enrollment = ctx.mongo.enrollment(student_id, course_id)
    course = catalog.courses.get(course_id)
    if enrollment is None or course is None:
        return 0
    absent = sorted(set(material_ids) - completed_ids(enrollment))
    if not absent or ctx.live.completed_progress(course, student_id, absent) is not None:
        return 0  # nothing missing, or the live record holds it for the persister to write
    progress = ctx.mongo.record_completion(student_id, course_id, absent, course)
    announce_completions(ctx, student_id, course, absent, progress)
    return 1


def migrate_states() -> int:
    """RQ job: rewrite stored states of the shape before 0.8.0 (readings keyed by session id,
    a client's string as a MongoDB field name). Idempotent; safe beside flushes. Returns how
    many documents it rewrote. Also `videoprogress migrate-states`."""
    return get_context().mongo.migrate_readings()


def recalculate_course(course_id: str) -> int:
    """RQ job, enqueued by a course's replacement (`PUT /api/courses/{id}`): its enrollments'
    progress and rollups for the catalog's current version of it. Idempotent; the maintenance
    job's `rebuild_rollups` does the same for every course should this one be lost. Returns how
    many rollups changed."""
    ctx = get_context()
    course = ctx.catalog().courses.get(course_id)
    if course is None:
        return 0
    return admin_ops.recalculate_course(ctx.mongo, ctx.buffer, course)


def rebuild_rollups() -> int:
    """RQ job: rebuild enrollment rollups that are missing (data from before rollups existed)
    or were computed for another version of their course. Idempotent; safe beside flushes.
    Returns how many enrollments changed. Also `videoprogress rebuild-rollups`."""
    ctx = get_context()
    return rebuild_missing(ctx.mongo, ctx.catalog(), ctx.buffer)


def delete_expired_tombstones() -> int:
    """RQ job: delete MongoDB's erasure tombstones older than ERASURE_TOMBSTONE_TTL_S (those in
    Redis expire by themselves). Idempotent. Returns how many went."""
    ctx = get_context()
    before = ctx.clock.time() - ctx.settings.erasure_tombstone_ttl_s
    return ctx.mongo.delete_expired_tombstones(before)


def repair_grades(limit: int = REPAIR_BATCH) -> int:
    """RQ job: queue the LTI scores the platforms are behind on (the grade outbox dropped them
    when full, or a flush could not queue them), `limit` grade targets a run
    (workers/grades.py, `repair_grades`). Idempotent. Returns how many scores it queued."""
    return repair_grades_of(get_context(), limit)
