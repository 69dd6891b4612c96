"""The completion job: a material crossed the threshold -> enrollment and course progress."""

from __future__ import annotations

import logging
from typing import Any

from workers.context import get_context
from workers.interop import announce_completions

log = logging.getLogger(__name__)


def record_completions(items: list[list[Any]]) -> int:
    """RQ job: for each [student_id, course_id, [material_id, ...]], add the materials to
    `enrollments.completed_materials` and recalculate the course progress; then queue the
    `completed` xAPI statements and completion webhooks (workers/interop.py).

    Idempotent (a repeat is a no-op), so RQ's retries and duplicate enqueues are harmless.
    Returns how many enrollments were updated.
    """
    ctx = get_context()
    catalog = ctx.catalog()
    updated = 0
    for student_id, course_id, material_ids in items:
        course = catalog.courses.get(course_id)
        if course is None:
            log.error("completion for unknown course %s skipped", course_id)
            continue
        progress = ctx.live.completed_progress(course, student_id, list(material_ids))
        if progress is None:  # not in a live record (ROLLUP_PERSIST_S=0, or persisted since)
            progress = ctx.mongo.record_completion(
                student_id, course_id, list(material_ids), course
            )
        announce_completions(ctx, student_id, course, list(material_ids), progress)
        updated += 1
    return updated
