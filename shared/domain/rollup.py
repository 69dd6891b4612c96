"""Per-enrollment rollups: what the class table needs of one student's course, kept on the
enrollment document so a teacher's page never re-aggregates watch_progress. Pure.

An enrollment's rollup holds one entry per material, tagged with the version of the stored
state it was taken from. Merging keeps, per material, the entry of the highest version: a
join, so merging the same entries again, in any order or concurrently, gives the same result.
The totals are a function of the entries and the course alone, computed with the same
arithmetic, in the same order, as the student's own course view (`course_progress` in
ingest/progress_service.py), so the numbers are equal, not merely close.
"""

from __future__ import annotations

import hashlib
import math
import sys
from array import array
from dataclasses import dataclass
from typing import Any

from shared.domain.catalog import Course

# Stored per enrollment: `rollup_ids`, the course's material ids in catalog order joined by ","
# (ids never hold one), and `rollup`, bytes of little-endian doubles in FIELDS columns of one
# value per material (column-major). A material without an entry has version 0; a missing
# `last_watched` is NaN. Binary, because reading 2,000 of these as JSON took longer than the
# whole query; an array's column is then a slice.
VERSION, WATCHED, UNVERIFIED, PROGRESS, COMPLETED, LAST = range(6)
FIELDS = 6


@dataclass(frozen=True, slots=True)
class RollupEntry:
    """One material's stored state, as far as the teacher views need it."""

    version: int
    watched_seconds: float = 0.0
    unverified_seconds: float = 0.0
    progress: float = 0.0
    completed: bool = False
    last_watched: float | None = None  # None: never started (or erased)


def entry_from_document(doc: dict[str, Any]) -> RollupEntry:
    """The entry of a watch_progress document (a tombstone, which holds only `v`, gives an
    empty entry of its version)."""
    if "course_id" not in doc:
        return RollupEntry(int(doc["v"]))
    return RollupEntry(
        version=int(doc["v"]),
        watched_seconds=float(doc.get("watched_seconds") or 0.0),
        unverified_seconds=float(doc.get("unverified_seconds") or 0.0),
        progress=float(doc.get("progress_percentage") or 0.0),
        completed=bool(doc.get("completed")),
        last_watched=doc.get("last_watched"),
    )


Entries = dict[str, RollupEntry]


def _little_endian(values: array) -> array:  # type: ignore[type-arg]
    if sys.byteorder == "big":  # pragma: no cover - the machines here are little-endian
        values.byteswap()
    return values


def encode(entries: Entries, course: Course) -> tuple[str, bytes]:
    """(`rollup_ids`, `rollup`) of the course's materials; entries of other materials (taken
    out of the course) are dropped, and are rebuilt from watch_progress if they come back."""
    ids = [m.material_id for m in course.materials]
    n = len(ids)
    values = array("d", bytes(8 * FIELDS * n))
    for i, material_id in enumerate(ids):
        e = entries.get(material_id)
        if e is None:
            values[LAST * n + i] = math.nan
            continue
        values[VERSION * n + i] = float(e.version)
        values[WATCHED * n + i] = e.watched_seconds
        values[UNVERIFIED * n + i] = e.unverified_seconds
        values[PROGRESS * n + i] = e.progress
        values[COMPLETED * n + i] = 1.0 if e.completed else 0.0
        values[LAST * n + i] = math.nan if e.last_watched is None else e.last_watched
    return ",".join(ids), _little_endian(values).tobytes()


@dataclass(frozen=True, slots=True)
class Columns:
    """A decoded rollup: material ids and, per field, one value per material (in ids' order)."""

    ids: str
    values: array  # type: ignore[type-arg]

    @property
    def size(self) -> int:
        return len(self.values) // FIELDS

    def column(self, field: int) -> array:  # type: ignore[type-arg]
        n = self.size
        return self.values[field * n : (field + 1) * n]


def columns(doc: dict[str, Any]) -> Columns:
    """The rollup of an enrollment document (empty when it has none yet)."""
    data = doc.get("rollup")
    if not data or not isinstance(data, bytes | bytearray):
        return Columns("", array("d"))
    return Columns(str(doc.get("rollup_ids") or ""), _little_endian(array("d", bytes(data))))


def version_of(doc: dict[str, Any], material_id: str) -> int:
    """The version of a material's entry in an enrollment document's rollup (0: none, or a
    rollup that cannot be read)."""
    try:
        cols = columns(doc)
        ids = cols.ids.split(",") if cols.size else []
        version = cols.column(VERSION)[ids.index(material_id)] if material_id in ids else 0.0
    except (ValueError, IndexError):
        return 0
    return int(version) if math.isfinite(version) and version > 0 else 0


def entries_of(doc: dict[str, Any]) -> Entries:
    """The entries of an enrollment document's rollup (materials without one left out)."""
    return entries_of_columns(columns(doc))


def entries_of_columns(cols: Columns) -> Entries:
    """The entries of decoded rollup columns (materials without one left out)."""
    if not cols.size:
        return {}
    v, w, u, p, c, t = (cols.column(f) for f in range(FIELDS))
    return {
        m: RollupEntry(int(v[i]), w[i], u[i], p[i], c[i] == 1.0,
                       None if math.isnan(t[i]) else t[i])
        for i, m in enumerate(cols.ids.split(","))
        if v[i] > 0
    }  # fmt: skip


def merge(stored: Entries, incoming: Entries) -> Entries:
    """Per material, the entry of the higher version (idempotent, commutative, associative)."""
    merged = dict(stored)
    for material_id, entry in incoming.items():
        current = merged.get(material_id)
        if current is None or entry.version > current.version:
            merged[material_id] = entry
    return merged


@dataclass(frozen=True, slots=True)
class RollupTotals:
    completed_materials: int
    watched_seconds: float
    unverified_seconds: float
    last_active: float | None

    def as_fields(self) -> dict[str, Any]:
        return {
            "completed_count": self.completed_materials,
            "watched_seconds": self.watched_seconds,
            "unverified_seconds": self.unverified_seconds,
            "last_active": self.last_active,
        }


def totals(entries: Entries, course: Course) -> RollupTotals:
    """Over the course's current materials: completed count, watched and unverified seconds
    summed over its videos in catalog order (as the course view sums them), latest activity."""
    cells = [(m.type == "video", entries.get(m.material_id)) for m in course.materials]
    present = [(video, e) for video, e in cells if e is not None]
    last = [e.last_watched for _, e in present if e.last_watched is not None]
    # Sums start from int 0 and add in catalog order, as the course view's do (equal floats).
    return RollupTotals(
        completed_materials=sum(1 for _, e in present if e.completed),
        watched_seconds=round(sum(e.watched_seconds if e else 0.0 for video, e in cells
                                  if video), 3),
        unverified_seconds=round(sum(e.unverified_seconds if e else 0.0 for video, e in cells
                                     if video), 3),
        last_active=max(last) if last else None,
    )  # fmt: skip


def course_fingerprint(course: Course) -> str:
    """Changes whenever the course's materials (ids or types) change: the totals stored with
    another fingerprint were computed for another catalog and are recomputed on read."""
    text = "|".join(f"{m.material_id}:{m.type}" for m in course.materials)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# A course aggregate (the course stats' sums) is a sum of one contribution per enrollment,
# integers only, so that adding and taking away in any order ends exactly where a recount does:
# `h:<completed count>` 1; per material `s:<id>` 1 when started, `c:<id>` 1 when completed and
# `p:<id>` its progress in thousandths of a percent (states store it to 3 decimals).
Contribution = dict[str, int]
MILLI = 1000


def contribution(completed_count: int, cols: Columns) -> Contribution:
    """What one enrollment (its completed count and its rollup's columns) adds to its course's
    aggregate; zero entries are left out."""
    found: Contribution = {f"h:{completed_count}": 1}
    if not cols.size:
        return found
    last, done, percent = cols.column(LAST), cols.column(COMPLETED), cols.column(PROGRESS)
    for i, m in enumerate(cols.ids.split(",")):
        if not math.isnan(last[i]):
            found[f"s:{m}"] = 1
        if done[i] == 1.0:
            found[f"c:{m}"] = 1
        if milli := round(percent[i] * MILLI):
            found[f"p:{m}"] = milli
    return found


def contribution_of(doc: dict[str, Any]) -> Contribution:
    """The contribution of an enrollment document as stored (its totals and columns)."""
    return contribution(stored_count(doc.get("completed_count")), columns(doc))


# A stored total as the readers take it. The service writes plain numbers; a value that is not
# one, or not in range (a hand edit, another tool), counts as none, so that one odd document
# neither fails the readers of its class nor sorts as a number it is not. The student's next
# rollup write, or `rebuild-rollups`, writes the totals again (`plan_writes` compares them).
MAX_TOTAL = 1e15  # the largest value a page's cursor holds (shared/domain/analytics.py)
MAX_TIMESTAMP = 253402300799.0  # 9999-12-31T23:59:59Z, the last second a datetime holds


def stored_number(value: Any, low: float = -MAX_TOTAL, high: float = MAX_TOTAL) -> float | None:
    """`value` as a float when it is an int or a float (not a bool) within [low, high], else
    None (NaN and infinities included)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return float(value)
    return None


def stored_count(value: Any) -> int:
    number = stored_number(value, 0.0)
    return int(number) if number is not None else 0


def stored_time(value: Any) -> float | None:
    """A stored `last_active`: epoch seconds a datetime can hold, else None."""
    return stored_number(value, 0.0, MAX_TIMESTAMP)


def add(into: Contribution, delta: Contribution, sign: int = 1) -> Contribution:
    """`into` + sign x `delta`, in place; entries that reach zero are dropped."""
    for key, value in delta.items():
        total = into.get(key, 0) + sign * value
        if total:
            into[key] = total
        else:
            into.pop(key, None)
    return into


def difference(new: Contribution, old: Contribution) -> Contribution:
    """new - old (zero entries left out)."""
    return add(dict(new), old, -1)
