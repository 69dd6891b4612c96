"""Periodic repair: completions whose job was lost still reach the enrollment; LTI scores the
grade outbox dropped are queued again; rollups and stored states of older versions are brought
up to date; expired erasure tombstones deleted."""

from __future__ import annotations

from shared.ops.rollups import rebuild_missing
from workers.context import get_context
from workers.grades import REPAIR_BATCH
from workers.grades import repair_grades as repair_grades_of
from workers.interop import announce_completions

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
    missing: dict[tuple[str, str], list[str]] = {}
    cursor = ctx.mongo.progress.find(
        {"completed": True, "written_at": {"$gte": since}},
        {"_id": 0, "student_id": 1, "course_id": 1, "material_id": 1},
    )
    completed: dict[tuple[str, str], list[str]] = {}
    for doc in cursor:
        completed.setdefault((doc["student_id"], doc["course_id"]), []).append(doc["material_id"])
    for (student_id, course_id), material_ids in completed.items():
        enrollment = ctx.mongo.enrollment(student_id, course_id)
        if enrollment is None:
            continue
        absent = set(material_ids) - set(enrollment.get("completed_materials", []))
        if absent:
            missing[(student_id, course_id)] = sorted(absent)
    for (student_id, course_id), material_ids in missing.items():
        course = catalog.courses.get(course_id)
        if course is not None:
            progress = ctx.mongo.record_completion(student_id, course_id, material_ids, course)
            announce_completions(ctx, student_id, course, material_ids, progress)
    return len(missing)


def migrate_states() -> int:
    """RQ job: rewrite stored states of the shape before 0.8.0 (readings keyed by session id,
    a client's string as a MongoDB field name). Idempotent; safe beside flushes. Returns how
    many documents it rewrote. Also `videoprogress migrate-states`."""
    return get_context().mongo.migrate_readings()


def rebuild_rollups() -> int:
    """RQ job: rebuild enrollment rollups that are missing (data from before rollups existed)
    or were computed for another version of their course. Idempotent; safe beside flushes.
    Returns how many enrollments changed. Also `videoprogress rebuild-rollups`."""
    ctx = get_context()
    return rebuild_missing(ctx.mongo, ctx.catalog())


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
