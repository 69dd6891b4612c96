"""Teacher views over MongoDB: the class table (also as CSV), the progress matrix (both from
the enrollment rollups; a page of the table or the matrix reads one page of documents, sorted
and cut by MongoDB), course stats (the course's aggregate: one document), retention (watched
ranges)."""

from __future__ import annotations

import io
import math
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.domain import analytics, rollup
from shared.domain.analytics import ClassRow, class_row, course_stats, retention
from shared.domain.catalog import Course
from shared.domain.rollup import COMPLETED, LAST, PROGRESS, Columns, Contribution, RollupTotals
from shared.ops.safe_csv import SafeWriter
from shared.storage import rollup_store
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore

CSV_FIELDS = list(ClassRow.model_fields)  # the API's row, in its order


def class_table(
    mongo: MongoStore, course: Course, class_id: str | None = None, live: LiveRollups | None = None
) -> list[ClassRow]:
    """One row per enrolled student (of one LMS class with `class_id`), from the enrollments'
    rollups (one indexed find) and their live records."""
    total = len(course.materials)
    found = rollup_store.course_totals(mongo, course, class_id, live)
    return [_row(r.student_id, r.totals, total, r.name) for r in found]


def filtered_table(
    mongo: MongoStore,
    course: Course,
    inactive_before: float | None,
    q: str | None,
    class_id: str | None = None,
    live: LiveRollups | None = None,
) -> list[ClassRow]:
    """The class table narrowed to students inactive since `inactive_before` (or never active)
    and whose id or name contains `q`; MongoDB does the inactivity filter, so only those are
    read."""
    found = (
        rollup_store.inactive_totals(mongo, course, inactive_before, class_id, live)
        if inactive_before is not None
        else None
    )
    if found is None:
        rows = class_table(mongo, course, class_id, live)
    else:
        rows = [_row(r.student_id, r.totals, len(course.materials), r.name) for r in found]
    return analytics.keep_rows(rows, inactive_before, q)


def class_page(
    mongo: MongoStore,
    course: Course,
    sort: str,
    limit: int,
    cursor: str | None,
    class_id: str | None = None,
    live: LiveRollups | None = None,
) -> tuple[list[ClassRow], str | None]:
    """One page of the class table, sorted and cut by MongoDB (one page of documents read);
    the same rows and cursors as sorting the whole table (`analytics.page`), which it falls back
    to while some enrollment's totals are stale. Raises ValueError for a bad sort, BadCursor
    for a bad cursor."""
    field, descending, db_after = _db_position(course, sort, cursor)
    found = rollup_store.page_totals(
        mongo, course, field, descending, limit + 1, db_after, class_id, live
    )
    if found is None:
        return analytics.page(class_table(mongo, course, class_id, live), sort, limit, cursor)
    total = len(course.materials)
    return _cut([_row(r.student_id, r.totals, total, r.name) for r in found], sort, limit)


def _db_position(
    course: Course, sort: str, cursor: str | None
) -> tuple[str, bool, tuple[Any, str] | None]:
    """(rollup field MongoDB sorts on, descending, the cursor's position in stored values).
    Raises ValueError for a bad sort, BadCursor for a bad cursor."""
    key, descending = analytics.parse_sort(sort)
    after = analytics.decode_cursor(cursor, sort) if cursor else None
    field = rollup_store.SORT_FIELDS[key]
    if after is None:
        return field, descending, None
    value, student_id = after
    if key == "progress":  # the cursor holds the percentage, MongoDB sorts the count
        total = len(course.materials)
        try:
            value = round(float(value) * total / 100.0) if total else 0
        except (TypeError, ValueError):
            raise analytics.BadCursor("malformed cursor") from None
    elif key == "last_active" and value == float("-inf"):
        value = None
    return field, descending, (value, str(student_id))


def _cut(rows: list[ClassRow], sort: str, limit: int) -> tuple[list[ClassRow], str | None]:
    """The first `limit` of `limit + 1` rows read, and the next page's cursor if there is one."""
    chunk = rows[:limit]
    more = len(rows) > limit
    return chunk, analytics.encode_cursor(chunk[-1], sort) if more and chunk else None


def row_dict(row: ClassRow) -> dict[str, Any]:
    """The row as the API shows it (`last_active` as an ISO date-time in UTC, `Z`)."""
    return row.model_dump(mode="json")


def csv_lines(rows: Iterable[ClassRow]) -> Iterator[str]:
    """The class table as CSV text, a few hundred lines at a time (for streaming)."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(CSV_FIELDS)
    return _chunked(buffer, (writer.writerow(row_dict(row).values()) for row in rows))


CSV_CHUNK_ROWS = 500  # one ASGI message per row cost more than writing the rows


def _chunked(buffer: io.StringIO, writes: Iterator[Any]) -> Iterator[str]:
    """Run `writes` (each writes a line into `buffer`), yielding the text every few hundred."""
    for i, _ in enumerate(writes, 1):
        if i % CSV_CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def stats(
    mongo: MongoStore, course: Course, class_id: str | None = None, live: LiveRollups | None = None
) -> dict[str, Any]:
    """Course stats from the course's aggregate (one document read), or, while some enrollment
    is stale or not folded into it, counted from every enrollment's rollup: the same numbers,
    and the same as the class table's and the students' course views. One LMS class's
    (`class_id`) are counted from its members' rollups (one find over the class)."""
    sums = None if class_id else rollup_store.course_sums(mongo, course, live)
    if sums is None:
        sums = class_sums(rollup_store.course_rollups(mongo, course, class_id, live), course)
    ids = [m.material_id for m in course.materials]
    return {"course_id": course.course_id, **course_stats(sums, ids)}


def class_sums(rollups: list[rollup_store.StudentRollup], course: Course) -> Contribution:
    """The sum of the contributions of `rollups` to the course's aggregate (what a recount from
    scratch gives), for the course's current materials."""
    ids = [m.material_id for m in course.materials]
    sums: Contribution = {}
    for count, n in Counter(r.totals.completed_materials for r in rollups).items():
        sums[f"h:{count}"] = n
    for m, (started, completed, milli) in material_sums([r.columns for r in rollups], ids).items():
        rollup.add(sums, {f"s:{m}": started, f"c:{m}": completed, f"p:{m}": milli})
    return sums


def _row(
    student_id: str, t: RollupTotals, total_materials: int, name: str | None = None
) -> ClassRow:
    return class_row(student_id, t.completed_materials, total_materials, t.watched_seconds,
                     t.unverified_seconds, t.last_active, name)  # fmt: skip


def summary(
    mongo: MongoStore, course: Course, class_id: str | None = None, live: LiveRollups | None = None
) -> dict[str, Any]:
    """{enrolled, average_progress, completion_rate}, the same numbers as the stats route, from
    the course's aggregate (its students by completed count) and the live records (all rows
    while some are stale); one LMS class's (`class_id`) from its rows (one find over the
    class, as its stats)."""
    sums = None if class_id else rollup_store.course_sums(mongo, course, live)
    if sums is None:
        return analytics.class_summary(
            Counter(r.progress_percentage for r in class_table(mongo, course, class_id, live))
        )
    return analytics.summary_of_sums(sums, len(course.materials))


def _cells(cols: Columns, course_ids: str, ids: list[str], field: int) -> list[float]:
    """One field's values in the course's material order (0.0, or NaN for the activity, where
    a rollup made for another version of the course has none)."""
    if cols.ids == course_ids:
        return cols.column(field).tolist()
    column = cols.column(field).tolist() if cols.size else []
    at = {m: i for i, m in enumerate(cols.ids.split(","))} if cols.size else {}
    absent = math.nan if field == LAST else 0.0
    return [column[at[m]] if m in at else absent for m in ids]


def material_sums(rollups: list[Columns], ids: list[str]) -> dict[str, tuple[int, int, int]]:
    """Material -> (started, completed, the sum of progress in thousandths of a percent) over
    the students (started: the stored state has an activity; an erased one has none, and a
    material nobody started has progress 0, so summing over all students adds only zeros).

    The class's columns are laid end to end, so each material's values are one strided slice
    summed in C rather than a Python loop over 2,000 x 100 cells; `fsum` is exact, so with
    progress stored to 3 decimals its thousandths are the sum of each one's."""
    n = len(ids)
    course_ids = ",".join(ids)
    last, done, percent = array("d"), array("d"), array("d")
    for cols in rollups:
        for whole, field in ((last, LAST), (done, COMPLETED), (percent, PROGRESS)):
            if cols.ids == course_ids:
                whole.extend(cols.column(field))
            else:
                whole.extend(array("d", _cells(cols, course_ids, ids, field)))
    found = {}
    for i, m in enumerate(ids):
        activity = last[i::n]
        found[m] = (
            len(activity) - sum(map(math.isnan, activity)),
            int(sum(done[i::n])),
            round(math.fsum(percent[i::n]) * rollup.MILLI),
        )
    return found


@dataclass(frozen=True, slots=True)
class MatrixRow:
    row: ClassRow
    progress: list[float]
    completed: list[bool]


def matrix(
    mongo: MongoStore, course: Course, class_id: str | None = None, live: LiveRollups | None = None
) -> tuple[list[dict[str, Any]], list[MatrixRow]]:
    """The course's materials and, per enrolled student (of one LMS class with `class_id`),
    each material's progress and completion (in the materials' order), with the student's
    class-table row for sorting."""
    found = rollup_store.course_rollups(mongo, course, class_id, live)
    return matrix_header(course), _matrix_rows(found, course)


def matrix_page(
    mongo: MongoStore,
    course: Course,
    sort: str,
    limit: int,
    cursor: str | None,
    class_id: str | None = None,
    live: LiveRollups | None = None,
) -> tuple[list[MatrixRow], str | None]:
    """One page of the matrix in the class table's order, sorted and cut by MongoDB (one page
    of documents read); the same rows and cursors as paging the whole matrix, which it falls
    back to while some enrollment's totals are stale. Raises BadCursor for a bad cursor."""
    field, descending, db_after = _db_position(course, sort, cursor)
    found = rollup_store.page_rollups(
        mongo, course, field, descending, limit + 1, db_after, class_id, live
    )
    rows = (
        _matrix_rows(found, course)
        if found is not None
        else matrix(mongo, course, class_id, live)[1]
    )
    by_student = {r.row.student_id: r for r in rows}
    if found is not None:
        chunk, next_cursor = _cut([r.row for r in rows], sort, limit)
    else:
        chunk, next_cursor = analytics.page([r.row for r in rows], sort, limit, cursor)
    return [by_student[r.student_id] for r in chunk], next_cursor


def matrix_header(course: Course) -> list[dict[str, Any]]:
    return [{"material_id": m.material_id, "title": m.title, "type": m.type}
            for m in course.materials]  # fmt: skip


def _matrix_rows(found: Iterable[rollup_store.StudentRollup], course: Course) -> list[MatrixRow]:
    ids = [m.material_id for m in course.materials]
    course_ids = ",".join(ids)
    return [_matrix_row(r, ids, course_ids) for r in found]


def _matrix_row(r: rollup_store.StudentRollup, ids: list[str], course_ids: str) -> MatrixRow:
    return MatrixRow(
        _row(r.student_id, r.totals, len(ids), r.name),
        _cells(r.columns, course_ids, ids, PROGRESS),
        [c == 1.0 for c in _cells(r.columns, course_ids, ids, COMPLETED)],
    )


def matrix_csv_lines(material_ids: list[str], rows: Iterable[MatrixRow]) -> Iterator[str]:
    """`student_id,name,<material_id>...` with each material's progress percentage (`name`:
    the LMS roster's, empty for a student outside LTI classes)."""
    buffer = io.StringIO()
    writer = SafeWriter(buffer)
    writer.writerow(["student_id", "name", *material_ids])
    lines = ([r.row.student_id, r.row.name or "", *r.progress] for r in rows)
    return _chunked(buffer, (writer.writerow(line) for line in lines))


def retention_curve(
    mongo: MongoStore,
    course: Course,
    material_id: str,
    duration: float,
    buckets: int,
    class_id: str | None = None,
) -> dict[str, Any]:
    """The curve over the course's viewers (one LMS class's with `class_id`)."""
    students = mongo.enrolled_students(course.course_id, class_id)
    viewers = mongo.watched_ranges(course.course_id, material_id, students) if students else []
    return {
        "material_id": material_id,
        "duration": duration,
        "viewers": len(viewers),
        "buckets": retention(duration, viewers, buckets),
    }
