"""Teacher views over MongoDB: the class table (also as CSV), course stats, retention."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Any

from shared.domain.analytics import ClassRow, class_rows, course_stats, retention
from shared.domain.catalog import Course
from shared.storage.mongo_store import MongoStore

CSV_FIELDS = list(ClassRow.model_fields)  # the API's row, in its order


def class_table(mongo: MongoStore, course: Course) -> list[ClassRow]:
    """One row per enrolled student, from three indexed queries (enrollments by course, two
    aggregations of watch_progress by course)."""
    material_ids = [m.material_id for m in course.materials]
    return class_rows(
        mongo.enrolled_students(course.course_id),
        mongo.watched_by_student(course.course_id),
        mongo.completed_by_student(course.course_id, material_ids),
        len(material_ids),
    )


def row_dict(row: ClassRow) -> dict[str, Any]:
    """The row as the API shows it (`last_active` as an ISO date-time in UTC, `Z`)."""
    return row.model_dump(mode="json")


def csv_lines(rows: Iterable[ClassRow]) -> Iterator[str]:
    """The class table as CSV text, one line at a time (for streaming)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in [None, *rows]:
        if row is not None:
            writer.writerow(row_dict(row))
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()


def stats(mongo: MongoStore, course: Course) -> dict[str, Any]:
    rows = class_table(mongo, course)
    students = [r.student_id for r in rows]
    per_material = mongo.material_stats(course.course_id, students) if students else {}
    return {
        "course_id": course.course_id,
        **course_stats(rows, [m.material_id for m in course.materials], per_material),
    }


def retention_curve(
    mongo: MongoStore, course: Course, material_id: str, duration: float, buckets: int
) -> dict[str, Any]:
    students = mongo.enrolled_students(course.course_id)
    viewers = mongo.watched_ranges(course.course_id, material_id, students) if students else []
    return {
        "material_id": material_id,
        "duration": duration,
        "viewers": len(viewers),
        "buckets": retention(duration, viewers, buckets),
    }
