"""Course-level rules: a share as a percentage, and a course's progress. Pure."""

from __future__ import annotations

from shared.domain.catalog import Course


def percentage(part: float, whole: float) -> float:
    """`part` of `whole` in percent, to 3 decimals (0 for an empty whole)."""
    return round(100.0 * part / whole, 3) if whole else 0.0


def course_progress(completed: set[str], course: Course) -> float:
    """Completed materials / all materials of the course x 100 (0 for an empty course)."""
    ids = [m.material_id for m in course.materials]
    return percentage(sum(1 for m in ids if m in completed), len(ids))
