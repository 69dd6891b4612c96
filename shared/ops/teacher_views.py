"""Teacher views over MongoDB: the class table (also as CSV), the progress matrix, course
stats (all three from the enrollment rollups, one find), retention (watched ranges)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain import rollup
from shared.domain.analytics import ClassRow, class_row, course_stats, retention
from shared.domain.catalog import Course
from shared.domain.rollup import Entries, RollupEntry
from shared.storage import rollup_store
from shared.storage.mongo_store import MongoStore

CSV_FIELDS = ["student_id", "progress_percentage", "completed_materials", "watched_seconds",
              "unverified_seconds", "last_active"]  # fmt: skip


def iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z") if ts else None


def class_table(mongo: MongoStore, course: Course) -> list[ClassRow]:
    """One row per enrolled student, from the enrollments' rollups (one indexed find)."""
    total = len(course.materials)
    return [
        class_row(r.student_id, t.completed_materials, total, t.watched_seconds,
                  t.unverified_seconds, t.last_active)
        for r in rollup_store.course_totals(mongo, course)
        for t in [r.totals]
    ]  # fmt: skip


def row_dict(row: ClassRow) -> dict[str, Any]:
    return {
        "student_id": row.student_id,
        "progress_percentage": row.progress_percentage,
        "completed_materials": row.completed_materials,
        "watched_seconds": row.watched_seconds,
        "unverified_seconds": row.unverified_seconds,
        "last_active": iso(row.last_active),
    }


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
    """Course stats from the rollups' entries (one find): the same numbers the class table and
    the students' course views show."""
    entries = rollup_store.course_entries(mongo, course)
    total = len(course.materials)
    rows = [
        class_row(student_id, t.completed_materials, total, t.watched_seconds,
                  t.unverified_seconds, t.last_active)
        for student_id, e in entries.items()
        for t in [rollup.totals(e, course)]
    ]  # fmt: skip
    material_ids = [m.material_id for m in course.materials]
    return {
        "course_id": course.course_id,
        **course_stats(rows, material_ids, material_stats(entries.values(), material_ids)),
    }


def summary(mongo: MongoStore, course: Course) -> dict[str, Any]:
    """{enrolled, average_progress, completion_rate}, as in the stats route."""
    stats = course_stats(class_table(mongo, course), [], {})
    return {k: stats[k] for k in ("enrolled", "average_progress", "completion_rate")}


def material_stats(
    entries: Iterable[Entries], material_ids: list[str]
) -> dict[str, dict[str, float]]:
    """Material -> {started, completed, average progress over those who started}."""
    started: dict[str, list[RollupEntry]] = {m: [] for m in material_ids}
    for student in entries:
        for m in material_ids:
            e = student.get(m)
            if e is not None and e.last_watched is not None:
                started[m].append(e)
    return {
        m: {
            "started": len(es),
            "completed": sum(e.completed for e in es),
            "average": sum(e.progress for e in es) / len(es) if es else 0.0,
        }
        for m, es in started.items()
    }


def matrix(mongo: MongoStore, course: Course) -> tuple[list[dict[str, Any]], list[MatrixRow]]:
    """The course's materials and, per enrolled student, each material's progress and
    completion (in the materials' order), with the student's class-table row for sorting."""
    materials = course.materials
    total = len(materials)
    empty = RollupEntry(0)
    rows = []
    for student_id, e in rollup_store.course_entries(mongo, course).items():
        t = rollup.totals(e, course)
        cells = [e.get(m.material_id, empty) for m in materials]
        rows.append(
            MatrixRow(
                class_row(student_id, t.completed_materials, total, t.watched_seconds,
                          t.unverified_seconds, t.last_active),
                [c.progress for c in cells],
                [c.completed for c in cells],
            )
        )  # fmt: skip
    header = [{"material_id": m.material_id, "title": m.title, "type": m.type} for m in materials]
    return header, rows


@dataclass(frozen=True, slots=True)
class MatrixRow:
    row: ClassRow
    progress: list[float]
    completed: list[bool]


def matrix_csv_lines(material_ids: list[str], rows: Iterable[MatrixRow]) -> Iterator[str]:
    """`student_id,<material_id>...` with each material's progress percentage."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["student_id", *material_ids])
    yield buffer.getvalue()
    for r in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([r.row.student_id, *r.progress])
        yield buffer.getvalue()


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
