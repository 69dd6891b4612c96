"""Teacher views from stored progress: class rows, paging, course stats, audience retention.
Pure.

The inputs are the enrollment rollups' totals (one row per student, see shared/domain/rollup.py)
and per-material counts, never one row per watch_progress document, except retention, which
needs each viewer's watched ranges.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, PlainSerializer

from shared.domain.course import percentage

SortKey = Literal["student_id", "progress", "last_active", "watched_seconds", "unverified_seconds"]
SORT_KEYS: tuple[str, ...] = (
    "student_id", "progress", "last_active", "watched_seconds", "unverified_seconds",
)  # fmt: skip


def as_datetime(ts: float | None) -> datetime | None:
    """Epoch seconds as an aware UTC datetime (None, and 0, for never)."""
    return datetime.fromtimestamp(ts, UTC) if ts else None


# One enrolled student's row of the class table: the API's row and the CSV's line. (A comment,
# not a docstring: a docstring would become the OpenAPI schema's description.)
class ClassRow(BaseModel):
    model_config = ConfigDict(frozen=True)

    student_id: str
    progress_percentage: float
    completed_materials: int
    watched_seconds: float
    unverified_seconds: float  # claimed minus credited, summed over the course's videos
    # Epoch seconds of the latest accepted heartbeat (sorted and paged as a number); the API
    # shows it as a date-time.
    last_active: Annotated[
        float | None, PlainSerializer(as_datetime, return_type=datetime | None, when_used="json")
    ]
    name: str | None = None  # the LMS roster's name, for display (LTI classes)


def class_row(
    student_id: str,
    completed: int,
    total_materials: int,
    watched_seconds: float,
    unverified_seconds: float,
    last_active: float | None,
    name: str | None = None,
) -> ClassRow:
    """A student's row: progress is completed materials / materials of the course."""
    return ClassRow(
        student_id=student_id,
        progress_percentage=percentage(completed, total_materials),
        completed_materials=completed,
        watched_seconds=round(watched_seconds, 3),
        last_active=last_active,
        unverified_seconds=round(unverified_seconds, 3),
        name=name,
    )


def keep_rows(
    rows: list[ClassRow], inactive_before: float | None = None, q: str | None = None
) -> list[ClassRow]:
    """Rows of students inactive since `inactive_before` (epoch seconds; never started counts
    as inactive) and whose id or name (an LMS roster's) contains `q` (case-insensitive)."""
    needle = q.casefold() if q else None
    return [
        r
        for r in rows
        if (inactive_before is None or r.last_active is None or r.last_active < inactive_before)
        and (
            needle is None
            or needle in r.student_id.casefold()
            or (r.name is not None and needle in r.name.casefold())
        )
    ]


def _sort_value(row: ClassRow, key: str) -> tuple[str | float, str]:
    values: dict[str, str | float] = {
        "student_id": row.student_id,
        "progress": row.progress_percentage,
        "last_active": row.last_active if row.last_active is not None else float("-inf"),
        "watched_seconds": row.watched_seconds,
        "unverified_seconds": row.unverified_seconds,
    }
    value = values[key]
    return (value, row.student_id)  # the student id makes every order total and stable


def parse_sort(sort: str) -> tuple[str, bool]:
    """`progress` ascending, `-progress` descending; ValueError for an unknown key."""
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_KEYS:
        raise ValueError(f"sort must be one of {', '.join(SORT_KEYS)} (prefix - to reverse)")
    return key, descending


def encode_cursor(row: ClassRow, sort: str) -> str:
    position = [sort, list(_sort_value(row, parse_sort(sort)[0]))]
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


MAX_CURSOR_CHARS = 2048  # the service's own: a sort name, a number and a student id
MAX_POSITION = 1e15


class BadCursor(ValueError):
    """A cursor the service did not make for this sort: the client's mistake (a 4xx), told
    apart from a ValueError of the data, which is the service's."""


def decode_cursor(cursor: str, sort: str) -> tuple[Any, ...]:
    """The position a cursor points after; BadCursor when malformed or made for another sort."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise BadCursor("malformed cursor")
    try:
        made_for, value = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError, RecursionError) as exc:
        raise BadCursor("malformed cursor") from exc
    if made_for != sort or not isinstance(value, list) or len(value) != 2:
        raise BadCursor("the cursor belongs to another sort order")
    if not _position_of(parse_sort(sort)[0], *value):
        raise BadCursor("malformed cursor")
    return tuple(value)


def _position_of(key: str, value: Any, student_id: Any) -> bool:
    """Whether (value, student_id) is a position `encode_cursor` can make for `key`: only such
    values reach a query (a client's `{"$gt": ...}` or Infinity never does)."""
    if not isinstance(student_id, str):
        return False
    if key == "student_id":
        return bool(value == student_id)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if key == "last_active" and value == float("-inf"):
        return True
    # Every total a row holds (seconds, a percentage, a time) is far inside this: a larger
    # number could overflow a float, MongoDB's 8-byte integers, or the progress conversion.
    return -MAX_POSITION <= value <= MAX_POSITION


def page(
    rows: list[ClassRow], sort: str, limit: int, cursor: str | None
) -> tuple[list[ClassRow], str | None]:
    """Sort, then return the rows after `cursor` and the cursor of the next page (or None)."""
    key, descending = parse_sort(sort)
    ordered = sorted(rows, key=lambda r: _sort_value(r, key), reverse=descending)
    if cursor:
        after = decode_cursor(cursor, sort)
        if descending:
            ordered = [r for r in ordered if _sort_value(r, key) < after]
        else:
            ordered = [r for r in ordered if _sort_value(r, key) > after]
    chunk = ordered[:limit]
    more = len(ordered) > limit
    return chunk, encode_cursor(chunk[-1], sort) if more and chunk else None


@dataclass(frozen=True, slots=True)
class MaterialStats:
    material_id: str
    started: int
    completed: int
    average_watched_percentage: float


def class_summary(students_at: Mapping[float, int]) -> dict[str, Any]:
    """{enrolled, average_progress, completion_rate} from how many students are at each course
    progress. Summed in ascending progress order, so any reader of the same class, row by row
    or from a `$group` by completed count, gets the same floats."""
    enrolled = sum(students_at.values())
    if not enrolled:
        return {"enrolled": 0, "average_progress": 0.0, "completion_rate": 0.0}
    total = sum(p * n for p, n in sorted(students_at.items()))
    done = sum(n for p, n in students_at.items() if p >= 100.0)
    return {
        "enrolled": enrolled,
        "average_progress": round(total / enrolled, 3),
        "completion_rate": round(done / enrolled, 4),
    }


def course_stats(sums: Mapping[str, int], materials: list[str]) -> dict[str, Any]:
    """Enrolled, average course progress, share at 100 %, and per material counts, from the
    sums of the enrolled students' contributions (shared/domain/rollup.py: `h:<completed>`,
    `s:`/`c:`/`p:<material>`), whether read from the course's aggregate or counted from the
    class: integers, so both give the same floats."""
    return {
        **summary_of_sums(sums, len(materials)),
        "materials": [asdict(_material_stats(sums, m)) for m in materials],
    }


def summary_of_sums(sums: Mapping[str, int], total_materials: int) -> dict[str, Any]:
    """`class_summary` from the sums' students by completed count (`h:<completed>`)."""
    students_at: Counter[float] = Counter()
    for key, n in sums.items():
        if key.startswith("h:"):
            students_at[percentage(int(key[2:]), total_materials)] += n
    return class_summary(students_at)


def _material_stats(sums: Mapping[str, int], material_id: str) -> MaterialStats:
    started = sums.get(f"s:{material_id}", 0)
    milli = sums.get(f"p:{material_id}", 0)  # thousandths of a percent
    return MaterialStats(
        material_id=material_id,
        started=started,
        completed=sums.get(f"c:{material_id}", 0),
        average_watched_percentage=round(milli / 1000 / started, 3) if started else 0.0,
    )


def retention(
    duration: float, viewers: list[tuple[list[list[float]], float]], buckets: int
) -> list[dict[str, float]]:
    """For each of `buckets` equal slices of the video, the share of viewers who watched at
    least half of that slice's seconds. Each viewer's ranges are a union (rewatching a slice
    counts once), weighted by the share of them verified watching credited: a viewer who
    claims more than they could have watched counts only that share of each slice, so forged
    ranges move no slice past half.

    A viewer's ranges go only to the slices they touch (the same sums, in the same order, as
    adding each range's overlap with every slice): viewers x (ranges + slices touched), not
    viewers x ranges x slices."""
    width = duration / buckets
    edges = [(i * width, (i + 1) * width) for i in range(buckets)]
    counted = [0] * buckets
    for ranges, credited_share in viewers:
        watched: dict[int, float] = {}
        for a, b in ranges:
            first = max(0, int(a // width) - 1)  # a slice either side: float division's edges
            last = min(buckets - 1, int(b // width) + 1)
            for i in range(first, last + 1):
                start, end = edges[i]
                watched[i] = watched.get(i, 0.0) + max(0.0, min(b, end) - max(a, start))
        for i, seconds in watched.items():
            start, end = edges[i]
            if credited_share * seconds >= (end - start) / 2:
                counted[i] += 1
    return [
        {
            "start": round(start, 3),
            "end": round(end, 3),
            "share": round(counted[i] / len(viewers), 4) if viewers else 0.0,
        }
        for i, (start, end) in enumerate(edges)
    ]
