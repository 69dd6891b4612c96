"""Per-enrollment rollups on the `enrollments` documents (see shared/domain/rollup.py).

Fields an enrollment document gains:
- `rollup`, `rollup_ids`: the per-material versioned entries (binary columns, see
  shared/domain/rollup.py) and the material ids they are for;
- `rollup_rev`: moved on by every rollup write (`aggregate_store.next_rev`), the
  compare-and-set token;
- `rollup_course`: the fingerprint of the course's materials the totals were computed for;
- `completed_count`, `watched_seconds`, `unverified_seconds`, `last_active`: the totals;
- `agg_seq`: the batch that folded it into the course aggregate (aggregate_store.py);
- `completed_materials`, `progress_percentage` (the enrollment's own fields since the seed):
  set from the entries by the same write, so a completion costs no write of its own.

A write reads the documents (by `_id`), merges its entries (higher version wins), computes the
totals, commits their change to each course's aggregate (aggregate_store.py: the reads happen
inside the commit) and writes everything with one unordered bulk write whose filters name the
`rollup_rev` read. An update
that lost a race to another writer matched nothing; those documents are read and merged again
(at most `ATTEMPTS` rounds). Since merging is a join, a repeated, reordered or
concurrent write (a flush taken over after SIGKILL, a rebuild beside a flush) ends in the same
document. Students who are not enrolled have no document and get no rollup. An enrollment whose
document MongoDB refuses to update, or whose rollup cannot be read, is left as it is and
logged: the others are written (one student's document never holds up another's).
"""

from __future__ import annotations

import heapq
import logging
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure

from shared.domain import rollup
from shared.domain.catalog import Course
from shared.domain.course import course_progress
from shared.domain.rollup import Contribution, Entries, RollupEntry, RollupTotals
from shared.errors import Unavailable
from shared.storage import aggregate_store
from shared.storage.aggregate_store import CONTRIBUTION_FIELDS, Change
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import TRANSIENT_CODES, MongoStore, enrollment_id, progress_id

log = logging.getLogger(__name__)

# What only the rollups' own code reads (a student's export leaves these out; the materials'
# states it holds are the source of them).
INTERNAL_FIELDS = {"rollup": 0, "rollup_ids": 0, "rollup_rev": 0, "rollup_course": 0,
                   "agg_seq": 0}  # fmt: skip
ATTEMPTS = 8
READ_CHUNK = 500  # enrollment ids per `$in`
COMPLETION_FIELDS = {"completed_materials": 1, "progress_percentage": 1}
TOTAL_FIELDS = {"_id": 0, "student_id": 1, "rollup_course": 1, "completed_count": 1,
                "watched_seconds": 1, "unverified_seconds": 1, "last_active": 1,
                "name": 1}  # fmt: skip


@dataclass(frozen=True, slots=True)
class EnrollmentRollup:
    student_id: str
    totals: RollupTotals
    name: str | None = None  # the LMS roster's name for display (shared/lti/classes.py)


def scope(course: Course, class_id: str | None) -> dict[str, Any]:
    """The enrollments a view reads: the course's, or one LMS class's within it (an array
    element match on `classes`, indexed with each sort total)."""
    found: dict[str, Any] = {"course_id": course.course_id}
    if class_id is not None:
        found["classes"] = class_id
    return found


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def apply_entries(
    mongo: MongoStore, incoming: dict[tuple[str, str], Entries], courses: dict[str, Course]
) -> int:
    """Merge entries into the rollups of the (student_id, course_id) enrollments and store the
    recomputed totals, their courses' aggregates moving with them (exactly once, see
    shared/storage/aggregate_store.py). Idempotent and order-independent. Returns how many
    documents changed.

    Raises Unavailable when MongoDB is unreachable or the documents kept changing under us.
    """
    pending = {key: entries for key, entries in incoming.items() if key[1] in courses}
    changed = 0
    for _ in range(ATTEMPTS):
        if not pending:
            return changed
        writes, stamps = commit_rollups(mongo, pending, courses)
        if not writes:
            return changed
        result, refused = write_rollups(mongo, writes, stamps)
        changed += result
        for i in refused:
            log.error("rollup of %s not written: %s", enrollment_id(*writes[i].key), refused[i])
        if result + len(refused) == len(writes):
            return changed
        # Read again (who won, and merge); a refused document is not tried again now.
        pending = {w.key: pending[w.key] for i, w in enumerate(writes) if i not in refused}
    raise Unavailable("enrollment rollups kept changing; retry")


def completion_fields(entries: Entries, course: Course) -> dict[str, Any]:
    """The enrollment's completions (the course's completed materials, in catalog order) and
    course progress, as its entries say: written with the rollup, so a completion costs no
    write of its own. An entry stays complete (a fold never takes it back) until an erasure's
    tombstone, of a higher version, replaces it."""
    done = [m.material_id for m in course.materials
            if (e := entries.get(m.material_id)) is not None and e.completed]  # fmt: skip
    return {"completed_materials": done, "progress_percentage": course_progress(set(done), course)}


@dataclass(frozen=True, slots=True)
class RollupWrite:
    """One enrollment's rollup write: the `rollup_rev` read, the fields to set, and the change
    it makes to its course's aggregate."""

    key: tuple[str, str]
    rev: int | None
    fields: dict[str, Any]
    delta: Contribution

    @property
    def change(self) -> Change:
        return Change(enrollment_id(*self.key), self.rev, self.delta)


def plan_writes(
    mongo: MongoStore, pending: dict[tuple[str, str], Entries], courses: dict[str, Course]
) -> list[RollupWrite]:
    """Read the enrollments and merge `pending` into them (nothing written). An enrollment
    whose rollup and fold are already current needs no write."""
    writes: list[RollupWrite] = []
    for chunk in _chunks(sorted(pending), READ_CHUNK):
        ids = [enrollment_id(s, c) for s, c in chunk]
        found = {
            (doc["student_id"], doc["course_id"]): doc
            for doc in _find(mongo, {"_id": {"$in": ids}},
                             {"student_id": 1, "course_id": 1, "rollup": 1, "rollup_ids": 1,
                              "rollup_rev": 1, "rollup_course": 1, "agg_seq": 1,
                              **TOTAL_FIELDS, **COMPLETION_FIELDS})
        }  # fmt: skip
        for key in chunk:
            doc = found.get(key)
            if doc is None:  # not enrolled: nothing to roll up
                continue
            try:
                write = _planned(key, doc, pending[key], courses[key[1]])
            except (ValueError, TypeError, AttributeError) as exc:
                log.error("rollup of %s cannot be read: %s", enrollment_id(*key), exc)
                continue
            if write is not None:
                writes.append(write)
    return writes


def _planned(
    key: tuple[str, str], doc: dict[str, Any], incoming: Entries, course: Course
) -> RollupWrite | None:
    stored = rollup.entries_of(doc)
    merged = rollup.merge(stored, incoming)
    fingerprint = rollup.course_fingerprint(course)
    folded = "agg_seq" in doc
    completion = completion_fields(merged, course)
    totals = rollup.totals(merged, course).as_fields()
    if (
        merged == stored
        and doc.get("rollup_course") == fingerprint
        and folded
        and all(doc.get(name) == value for name, value in completion.items())
        and all(doc.get(name) == value for name, value in totals.items())
    ):
        return None  # a repeat: nothing to do (totals edited by hand are written again)
    ids, data = rollup.encode(merged, course)
    fields = {"rollup": data, "rollup_ids": ids, "rollup_course": fingerprint,
              **totals, **completion}  # fmt: skip
    before = rollup.contribution_of(doc) if folded else {}
    delta = rollup.difference(rollup.contribution_of(fields), before)
    return RollupWrite(key, doc.get("rollup_rev"), fields, delta)


def commit_rollups(
    mongo: MongoStore, pending: dict[tuple[str, str], Entries], courses: dict[str, Course]
) -> tuple[list[RollupWrite], dict[str, int]]:
    """Steps 1 and 2, one commit per course: each course's aggregate resolves the batch before
    this one, then `plan_writes` reads and merges, and the aggregate takes the deltas. Returns
    the writes to make and the stamp per course id. Raises Unavailable."""
    writes: list[RollupWrite] = []
    stamps: dict[str, int] = {}
    for course_id in sorted({cid for _, cid in pending}):
        part = {key: e for key, e in pending.items() if key[1] == course_id}

        def plan(part: dict[tuple[str, str], Entries] = part) -> list[tuple[Change, RollupWrite]]:
            return [(w.change, w) for w in plan_writes(mongo, part, courses)]

        stamps[course_id], planned = aggregate_store.commit(mongo, course_id, plan)
        writes += planned
    return writes, stamps


def write_rollups(
    mongo: MongoStore, writes: list[RollupWrite], stamps: dict[str, int]
) -> tuple[int, dict[int, str]]:
    """Step 3: one unordered bulk write of the enrollments, each naming the `rollup_rev` read.
    Returns how many landed, and the indexes MongoDB refused for good, with why."""
    if not writes:
        return 0, {}
    ops = [
        UpdateOne(
            {"_id": enrollment_id(*w.key), "student_id": w.key[0],
             "rollup_rev": aggregate_store.rev_token(w.rev)},
            {"$set": {**w.fields, "agg_seq": stamps[w.key[1]],
                      "rollup_rev": aggregate_store.next_rev(w.rev)}},
        )
        for w in writes
    ]  # fmt: skip
    return _bulk(mongo, ops)


def remove_enrollment(mongo: MongoStore, student_id: str, course_id: str) -> bool:
    """Unenrol: delete the enrollment, its contribution leaving the course's aggregate by the
    same protocol as a rollup write. True when it was enrolled. Raises Unavailable."""
    key = {"_id": enrollment_id(student_id, course_id)}
    fields = {"rollup_rev": 1, "agg_seq": 1, **CONTRIBUTION_FIELDS}

    def plan() -> list[tuple[Change, int | None]]:
        found = _find(mongo, key, fields)
        if not found or "agg_seq" not in found[0]:
            return []
        doc = found[0]
        delta = rollup.difference({}, rollup.contribution_of(doc))
        return [
            (Change(key["_id"], doc.get("rollup_rev"), delta, delete=True), doc.get("rollup_rev"))
        ]

    for _ in range(ATTEMPTS):
        found = _find(mongo, key, fields)
        if not found:
            return False
        if "agg_seq" not in found[0]:  # not folded: the aggregate holds nothing of it
            if _delete(mongo, {**key, "agg_seq": {"$exists": False}}):
                return True
            continue
        _, planned = aggregate_store.commit(mongo, course_id, plan)
        if planned and _delete(mongo, {**key, "rollup_rev": aggregate_store.rev_token(planned[0])}):
            return True
        # Gone, unfolded or lost meanwhile: read again (a commit takes a lost delta back).
    raise Unavailable("the enrollment kept changing; retry")


def _delete(mongo: MongoStore, query: dict[str, Any]) -> bool:
    try:
        return mongo.enrollments.delete_one(query).deleted_count > 0
    except ConnectionFailure as exc:
        raise Unavailable("MongoDB is unavailable (enrollments)", retry_after_s=5) from exc


def _bulk(mongo: MongoStore, ops: list[UpdateOne]) -> tuple[int, dict[int, str]]:
    """Documents updated, and the indexes of those MongoDB refused for good, with why.
    Raises Unavailable for an outage or a transient error (the flush is retried)."""
    try:
        result = mongo.enrollments.bulk_write(ops, ordered=False)
    except ConnectionFailure as exc:
        raise Unavailable("MongoDB is unavailable (enrollment rollups)", retry_after_s=5) from exc
    except BulkWriteError as exc:
        errors = exc.details.get("writeErrors", [])
        if (
            exc.details.get("writeConcernErrors")
            or exc.has_error_label("RetryableWriteError")
            or any(e.get("code") in TRANSIENT_CODES for e in errors)
        ):
            raise Unavailable("MongoDB could not write the enrollment rollups now") from exc
        refused = {e["index"]: f"MongoDB error {e.get('code')}: {e.get('errmsg')}" for e in errors}
        return int(exc.details.get("nMatched", 0)), refused
    return int(result.matched_count), {}


def _find(mongo: MongoStore, query: dict[str, Any], fields: dict[str, Any]) -> list[dict[str, Any]]:
    try:
        return list(mongo.enrollments.find(query, {"_id": 0, **fields} if fields else None))
    except ConnectionFailure as exc:
        raise Unavailable("MongoDB is unavailable (enrollment rollups)", retry_after_s=5) from exc


def rebuild(mongo: MongoStore, course: Course, student_ids: Iterable[str] | None = None) -> int:
    """Recompute the rollups of a course's enrollments (all, or `student_ids`) from the stored
    states in watch_progress (tombstones included), merged with what they hold. Idempotent; safe
    beside running flushes. Returns how many documents changed."""
    students = (
        sorted(student_ids)
        if student_ids is not None
        else mongo.enrolled_students(course.course_id)
    )
    changed = 0
    materials = [m.material_id for m in course.materials]
    for chunk in _chunks(students, max(1, 2000 // max(1, len(materials)))):
        ids = [progress_id(s, m) for s in chunk for m in materials]
        incoming: dict[tuple[str, str], Entries] = {(s, course.course_id): {} for s in chunk}
        for doc in mongo.progress.find(
            {"_id": {"$in": ids}},
            {"_id": 0, "student_id": 1, "material_id": 1, "course_id": 1, "v": 1,
             "watched_seconds": 1, "unverified_seconds": 1, "progress_percentage": 1,
             "completed": 1, "last_watched": 1},
        ):  # fmt: skip
            incoming[(doc["student_id"], course.course_id)][doc["material_id"]] = (
                rollup.entry_from_document(doc)
            )
        changed += apply_entries(mongo, incoming, {course.course_id: course})
    return changed


def rebuild_missing(mongo: MongoStore, courses: Iterable[Course]) -> int:
    """Rebuild the rollups of enrollments that have none (data written before rollups existed),
    whose totals were computed for another version of the course, or that are not folded into
    the course's aggregate yet. Idempotent."""
    changed = 0
    for course in courses:
        fingerprint = rollup.course_fingerprint(course)
        stale = [
            doc["student_id"]
            for doc in _find(mongo, {"course_id": course.course_id},
                             {"student_id": 1, "rollup_course": 1, "agg_seq": 1})
            if doc.get("rollup_course") != fingerprint or "agg_seq" not in doc
        ]  # fmt: skip
        if stale:
            changed += rebuild(mongo, course, stale)
    return changed


@dataclass(frozen=True, slots=True)
class StudentRollup:
    """An enrolled student's totals and per-material columns."""

    student_id: str
    totals: RollupTotals
    columns: rollup.Columns
    name: str | None = None


EMPTY = rollup.Columns("", array("d"))  # no per-material column


def course_rollups(
    mongo: MongoStore, course: Course, class_id: str | None = None, live: LiveRollups | None = None
) -> list[StudentRollup]:
    """Every enrolled student's rollup, from one find (whole documents: on the stand-in a
    projection costs more than it saves), with the live records laid over it. Totals computed
    for another version of the course are recomputed from the entries; an enrollment without a
    rollup yet reads as empty. `class_id`: one LMS class's students only."""
    fingerprint = rollup.course_fingerprint(course)
    records = live.records(course.course_id) if live is not None else {}
    found = []
    for doc in _find(mongo, scope(course, class_id), {}):
        record = records.get(doc["student_id"])
        if record is not None:
            found.append(_live_rollup(doc["student_id"], record.entries, course, doc.get("name")))
            continue
        fresh = doc.get("rollup_course") == fingerprint
        cols = _columns(doc)
        totals = _totals_of(doc) if fresh or cols is None else rollup.totals(
            rollup.entries_of_columns(cols), course)  # fmt: skip
        found.append(StudentRollup(doc["student_id"], totals, cols or EMPTY, doc.get("name")))
    return found


def _columns(doc: dict[str, Any]) -> rollup.Columns | None:
    """The document's rollup columns, None (logged) when they cannot be decoded: the row then
    shows its stored totals and no per-material column, and the course's other rows are read
    as ever (the write path leaves such a document alone too)."""
    try:
        return rollup.columns(doc)
    except ValueError as exc:
        log.error("rollup of %s cannot be read: %s", doc.get("_id", doc.get("student_id")), exc)
        return None


def _live_rollup(
    student_id: str, entries: Entries, course: Course, name: str | None
) -> StudentRollup:
    ids, data = rollup.encode(entries, course)
    cols = rollup.columns({"rollup": data, "rollup_ids": ids})
    return StudentRollup(student_id, rollup.totals(entries, course), cols, name)


def course_totals(
    mongo: MongoStore, course: Course, class_id: str | None = None, live: LiveRollups | None = None
) -> list[EnrollmentRollup]:
    """Each enrolled student's totals (of one LMS class with `class_id`) from one find of small
    fields, with the live records laid over it; a document whose totals were computed for
    another version of the course is recomputed from its entries."""
    return _overlaid(course, _stored_totals(mongo, course, class_id), live)


def _overlaid(
    course: Course, rows: list[EnrollmentRollup], live: LiveRollups | None
) -> list[EnrollmentRollup]:
    """`rows` with the totals of the students' live records (their small totals; the whole
    records while some totals were computed for another version of the course)."""
    if live is None or not rows:
        return rows
    fresh = live.fresh(course)
    if fresh is not None:
        totals = {s: f.totals for s, f in fresh.items()}
    else:
        totals = {s: rollup.totals(r.entries, course)
                  for s, r in live.records(course.course_id).items()}  # fmt: skip
    return [
        EnrollmentRollup(r.student_id, totals.get(r.student_id, r.totals), r.name) for r in rows
    ]


def _stored_totals(
    mongo: MongoStore, course: Course, class_id: str | None
) -> list[EnrollmentRollup]:
    fingerprint = rollup.course_fingerprint(course)
    rows: list[EnrollmentRollup] = []
    stale: list[str] = []
    for doc in _find(mongo, scope(course, class_id), TOTAL_FIELDS):
        if doc.get("rollup_course") != fingerprint:
            stale.append(doc["student_id"])
            continue
        rows.append(EnrollmentRollup(doc["student_id"], _totals_of(doc), doc.get("name")))
    for chunk in _chunks(stale, READ_CHUNK):
        ids = [enrollment_id(s, course.course_id) for s in chunk]
        fields = {"student_id": 1, "rollup": 1, "rollup_ids": 1, "name": 1}
        for doc in _find(mongo, {"_id": {"$in": ids}}, fields):
            totals = rollup.totals(rollup.entries_of(doc), course)
            rows.append(EnrollmentRollup(doc["student_id"], totals, doc.get("name")))
    return rows


def inactive_totals(
    mongo: MongoStore,
    course: Course,
    before: float,
    class_id: str | None = None,
    live: LiveRollups | None = None,
) -> list[EnrollmentRollup] | None:
    """The totals of students last active before `before` or never, read by MongoDB's filter
    (two finds, only the matching documents); None while some enrollment's totals are stale.
    With live records laid over, some may be active since: activity only grows, so MongoDB's
    answer holds every student inactive now, and the caller filters again."""
    if _any_stale(mongo, course):
        return None
    found = []
    for condition in (None, {"$lt": before}):  # never active; active before
        query = {**scope(course, class_id), "last_active": condition}
        found += [EnrollmentRollup(d["student_id"], _totals_of(d), d.get("name"))
                  for d in _find(mongo, query, TOTAL_FIELDS)]  # fmt: skip
    return _overlaid(course, found, live)


def _totals_of(doc: dict[str, Any]) -> RollupTotals:
    """A document's stored totals, each read by `rollup.stored_number` and its kin."""
    return RollupTotals(
        completed_materials=rollup.stored_count(doc.get("completed_count")),
        watched_seconds=rollup.stored_number(doc.get("watched_seconds")) or 0.0,
        unverified_seconds=rollup.stored_number(doc.get("unverified_seconds")) or 0.0,
        last_active=rollup.stored_time(doc.get("last_active")),
    )


def entries_of_writes(
    writes: Iterable[tuple[str, str, str, RollupEntry]],
) -> dict[tuple[str, str], Entries]:
    """(student_id, course_id, material_id, entry) -> entries grouped by enrollment."""
    grouped: dict[tuple[str, str], Entries] = {}
    for student_id, course_id, material_id, entry in writes:
        grouped.setdefault((student_id, course_id), {})[material_id] = entry
    return grouped


def student_activity(
    mongo: MongoStore, student_id: str, live: LiveRollups | None = None
) -> dict[str, float | None]:
    """Course id -> latest activity (from the rollup, or its live record) of each of the
    student's enrollments."""
    docs = _find(mongo, {"student_id": student_id}, {"course_id": 1, "last_active": 1})
    found = {doc["course_id"]: rollup.stored_time(doc.get("last_active")) for doc in docs}
    if live is not None and found:
        found.update(live.last_active(student_id, sorted(found)))
    return found


# Class-table sort keys -> the rollup field MongoDB sorts on (progress grows with the count).
SORT_FIELDS = {"student_id": "student_id", "progress": "completed_count",
               "last_active": "last_active", "watched_seconds": "watched_seconds",
               "unverified_seconds": "unverified_seconds"}  # fmt: skip


def page_totals(
    mongo: MongoStore,
    course: Course,
    field: str,
    descending: bool,
    limit: int,
    after: tuple[Any, str] | None,
    class_id: str | None = None,
    live: LiveRollups | None = None,
) -> list[EnrollmentRollup] | None:
    """Up to `limit` students' totals in (field, student_id) order after `after`, sorted and
    cut by MongoDB, so only one page of documents is read. None when some enrollment's totals
    are stale (another version of the course, or no rollup yet): the caller then sorts all.

    `after` is (field value, student_id) of the last row shown; a None value (never active)
    sorts before every number, as in MongoDB. With `live`, the students with a live record are
    ordered by its totals (read from Redis, never from MongoDB) and merged into MongoDB's page
    of the others."""
    if _any_stale(mongo, course):
        return None
    fresh = _live_members(live, course, class_id)
    if fresh is None:
        return None
    docs = _page_docs(mongo, course, field, descending, limit, after, TOTAL_FIELDS, class_id,
                      exclude=sorted(fresh))  # fmt: skip
    rows = [EnrollmentRollup(d["student_id"], _totals_of(d), d.get("name")) for d in docs]
    page = _ordered([*rows, *fresh.values()], field, descending, limit, after)
    return [EnrollmentRollup(r.student_id, r.totals, r.name) for r in page]


def page_rollups(
    mongo: MongoStore,
    course: Course,
    field: str,
    descending: bool,
    limit: int,
    after: tuple[Any, str] | None,
    class_id: str | None = None,
    live: LiveRollups | None = None,
) -> list[StudentRollup] | None:
    """As `page_totals`, with each student's per-material columns (the matrix's page): one
    page of documents read, or None while some enrollment's totals are stale."""
    if _any_stale(mongo, course):
        return None
    fresh = _live_members(live, course, class_id)
    if fresh is None:
        return None
    fields = {**TOTAL_FIELDS, "rollup": 1, "rollup_ids": 1}
    docs = _page_docs(mongo, course, field, descending, limit, after, fields, class_id,
                      exclude=sorted(fresh))  # fmt: skip
    stored = [StudentRollup(d["student_id"], _totals_of(d), _columns(d) or EMPTY, d.get("name"))
              for d in docs]  # fmt: skip
    page = _ordered([*stored, *fresh.values()], field, descending, limit, after)
    by_id = {r.student_id: r for r in stored}
    wanted = [r.student_id for r in page if r.student_id not in by_id]
    records = live.records(course.course_id, wanted) if live is not None and wanted else {}
    for student_id, record in records.items():
        by_id[student_id] = _live_rollup(student_id, record.entries, course,
                                         fresh[student_id].name)  # fmt: skip
    # A record persisted (and gone) since its totals were read: MongoDB holds all of it now.
    if gone := [enrollment_id(s, course.course_id) for s in wanted if s not in records]:
        for d in _find(mongo, {"_id": {"$in": gone}}, fields):
            entries = rollup.entries_of(d)
            by_id[d["student_id"]] = _live_rollup(d["student_id"], entries, course, d.get("name"))
    if any(r.student_id not in by_id for r in page):
        return None  # unenrolled between the two reads: the caller reads the whole class
    return [by_id[r.student_id] for r in page]


def _live_members(
    live: LiveRollups | None, course: Course, class_id: str | None
) -> dict[str, Any] | None:
    """The live records' totals of the course's students (of one LMS class), {} without
    `live`; None when one was computed for another version of the course."""
    if live is None:
        return {}
    fresh = live.fresh(course)
    if fresh is None:
        return None
    return {s: f for s, f in fresh.items() if class_id is None or class_id in f.classes}


_TOTAL_OF = {"completed_count": "completed_materials", "watched_seconds": "watched_seconds",
             "unverified_seconds": "unverified_seconds", "last_active": "last_active"}  # fmt: skip


class Ranked(Protocol):
    """A row `_ordered` ranks: a stored one, or a live record's totals (`Fresh`)."""

    @property
    def student_id(self) -> str: ...
    @property
    def totals(self) -> RollupTotals: ...
    @property
    def name(self) -> str | None: ...


R = TypeVar("R", bound=Ranked)


def _ordered(
    rows: list[R], field: str, descending: bool, limit: int, after: tuple[Any, str] | None
) -> list[R]:
    """The first `limit` of `rows` after `after` in MongoDB's (field, student_id) order. Each
    row's key is computed once and only the page is picked out (`heapq`), not the rows sorted:
    with a whole class active that is 20,000 rows for a page of 50."""
    attr = None if field == "student_id" else _TOTAL_OF[field]
    # (rank, value, student_id, index, row): MongoDB's order of (field, student_id), a missing
    # value (never active) or NaN first; the index keeps comparisons off the rows.
    keyed: list[tuple[int, float, str, int, R]] = []
    for i, r in enumerate(rows):
        value = None if attr is None else getattr(r.totals, attr)
        if value is None or value != value:
            keyed.append((0, 0.0, r.student_id, i, r))
        else:
            keyed.append((1, float(value), r.student_id, i, r))
    if after is not None:
        value, student_id = after
        missing = attr is None or value is None or value != value
        mark = (0, 0.0, student_id) if missing else (1, float(value), student_id)
        # A row's first three against the mark, without slicing each: (a, b, c, ...) < mark
        # iff (a, b, c) < mark; it is > mark iff (a, b, c) >= mark, equal only for that student.
        if descending:
            keyed = [k for k in keyed if k < mark]
        else:
            keyed = [k for k in keyed if k > mark and (k[2] != student_id or k[:3] != mark)]
    pick = heapq.nlargest if descending else heapq.nsmallest
    return [k[4] for k in pick(limit, keyed)]


def course_sums(
    mongo: MongoStore, course: Course, live: LiveRollups | None = None
) -> Contribution | None:
    """The course's aggregate sums (one document read) plus what the live records add (one
    hash), or None while some enrollment's totals are stale or it is not folded yet (then only
    a count of the class is right)."""
    unfolded = {"course_id": course.course_id, "agg_seq": {"$exists": False}}
    if _any_stale(mongo, course) or mongo.enrollments.find_one(unfolded, {"_id": 1}):
        return None
    sums = aggregate_store.sums(mongo, course.course_id)
    if live is not None and sums is not None:
        return rollup.add(dict(sums), live.delta(course.course_id))
    return sums


def _any_stale(mongo: MongoStore, course: Course) -> bool:
    """Whether some enrollment's totals were computed for another version of the course (or
    it has no rollup yet); served by the (course_id, rollup_course) index."""
    stale = {"course_id": course.course_id,
             "rollup_course": {"$ne": rollup.course_fingerprint(course)}}  # fmt: skip
    return mongo.enrollments.find_one(stale, {"_id": 1}) is not None


def _page_docs(
    mongo: MongoStore,
    course: Course,
    field: str,
    descending: bool,
    limit: int,
    after: tuple[Any, str] | None,
    fields: dict[str, Any],
    class_id: str | None = None,
    exclude: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The page's documents (see `page_totals`) but those of `exclude`, each query served by
    the (course_id, field, student_id) index (with `class_id`, the (classes, field,
    student_id) one)."""
    d = -1 if descending else 1
    beyond = "$lt" if descending else "$gt"
    order = [(field, d), ("student_id", d)] if field != "student_id" else [("student_id", d)]
    queries: list[tuple[dict[str, Any], list[tuple[str, int]]]] = []
    if after is None:
        queries.append(({}, order))
    elif field == "student_id":
        queries.append(({"student_id": {beyond: after[1]}}, order))
    else:
        value, student_id = after
        queries.append(({field: value, "student_id": {beyond: student_id}}, [("student_id", d)]))
        if value is not None:
            queries.append(({field: {beyond: value}}, order))  # never matches a None
            if descending and field == "last_active":  # the never-active come last
                queries.append(({field: None}, [("student_id", d)]))
        elif not descending:  # after the never-active students come all the others
            queries.append(({field: {"$gte": 0}}, order))
    found: list[dict[str, Any]] = []
    for query, sort in queries:
        if len(found) >= limit:
            break
        if exclude:
            bound = query.get("student_id", {})
            query = {**query, "student_id": {**bound, "$nin": exclude}}
        cursor = mongo.enrollments.find({**scope(course, class_id), **query}, fields)
        found += cursor.sort(sort).limit(limit - len(found))
    return found
