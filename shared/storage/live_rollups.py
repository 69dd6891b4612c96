"""Enrollment rollups kept fresh in Redis, written to MongoDB every ROLLUP_PERSIST_S.

Why: a student watches one video at a time, so a rollup written with every flush is one more
MongoDB document per progress document (0.67 documents per heartbeat instead of 0.34). Here the
flush merges its entries into a record per enrollment in Redis, and the enrollment document is
written once per ROLLUP_PERSIST_S of activity (default 600 s, twenty flush intervals). The
teacher views read MongoDB and lay the records over it, so they still lag ingest by at most one
flush interval.

Per course, in one hash slot (`{<digest of the course id>}`, so one script serves a course on a
Redis Cluster too):
- `rec`: student id -> the record, JSON `{e, h, d, n, c, f, k}`: `e` the enrollment's entries as
  they are now (what MongoDB holds merged with what the flushes added since), `h` the
  contribution MongoDB's course aggregate holds of the enrollment (nothing when it is not
  folded), `d` what this record adds to `delta` (the contribution of `e` minus `h`), `n` and `c`
  the roster name and classes of the document, `f` the course version `d` was computed for,
  `k` the document a flush made it from, until it is checked again (`_recheck`);
- `tot`: student id -> `[completed count, watched, unverified, last active, course fingerprint,
  name, classes]`, the totals of `e`, small, for the pages' order;
- `delta`: contribution key -> the sum of the records' `d`: the course stats are the aggregate
  plus this, one document and one hash;
- `vp:live:due` (its own slot): course id -> when its records are due for MongoDB.

Records change by one compare-and-set script per course and batch (`CAS`) on the values read:
records, their totals and `delta` move together, so `delta` is always the sum of the records'
`d`; a record changed meanwhile is left out, read and merged again.
- The flush (`merge`) merges its entries into the records (a new record starts from the
  enrollment document; a student without one is not enrolled and gets none). Merging is a join,
  so a repeated or taken-over flush changes nothing.
- The persister (`persist`, from each flush job, for the courses due) writes the records'
  entries with the MongoDB protocol of shared/storage/rollup_store.py (the aggregate exactly
  once), then
  `settle`s them: each record takes the document's entries and contribution as `h`, and goes
  when MongoDB holds everything it had. A crash between the two leaves the written delta counted
  twice (in the aggregate and in `delta`) until the next tick repeats the persist, which writes
  nothing and settles.
- Every other writer of an enrollment document (erasure, (un)enrolment, a rebuild, the roster)
  `settle`s the students' records after its write. A flush that read a document before such a
  write and made a new record after its settle (which found none) reads the document again
  after its compare-and-set and settles what changed (`_recheck`): an erasure's tombstones then
  win by their versions, an unenrolled student's record goes.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, cast

from pydantic_core import from_json, to_json
from pymongo.errors import ConnectionFailure

from shared.domain import rollup
from shared.domain.catalog import Course
from shared.domain.course import course_progress
from shared.domain.rollup import Contribution, Entries, RollupEntry, RollupTotals
from shared.errors import Unavailable
from shared.storage.clients import Buffer
from shared.storage.mongo_store import MongoStore, enrollment_id

log = logging.getLogger(__name__)

DUE = "vp:live:due"
ATTEMPTS = 16
CAS_CHUNK = 500  # records per compare-and-set script
READ_CHUNK = 500
DOC_FIELDS = {"_id": 0, "student_id": 1, "rollup": 1, "rollup_ids": 1, "completed_count": 1,
              "agg_seq": 1, "rollup_rev": 1, "name": 1, "classes": 1}  # fmt: skip

# KEYS: rec, tot, delta. ARGV: n, then n x (student, the value read ('' = none), the new value
# ('' = delete), its totals ('' = none)), then m, then m x (delta key, change): the sum of the
# changes' moves. All or nothing: when some record changed since it was read, nothing is done
# and those students are returned. A few commands a call (HMGET, HSET, HDEL, one HINCRBY per
# delta key), not a few per record: it runs once per course per flush batch.
CAS = """
local n = tonumber(ARGV[1])
local students = {}
for j = 1, n do students[j] = ARGV[4 * j - 2] end
local current = redis.call('HMGET', KEYS[1], unpack(students))
local failed = {}
for j = 1, n do
  if (current[j] or '') ~= ARGV[4 * j - 1] then failed[#failed + 1] = students[j] end
end
if #failed > 0 then return failed end
local sets = {{}, {}}
local dels = {{}, {}}
for j = 1, n do
  for k = 1, 2 do
    local value = ARGV[4 * j - 1 + k]
    if value == '' then
      dels[k][#dels[k] + 1] = students[j]
    else
      sets[k][#sets[k] + 1] = students[j]
      sets[k][#sets[k] + 1] = value
    end
  end
end
for k = 1, 2 do
  if #sets[k] > 0 then redis.call('HSET', KEYS[k], unpack(sets[k])) end
  if #dels[k] > 0 then redis.call('HDEL', KEYS[k], unpack(dels[k])) end
end
local i = 4 * n + 2
for k = 1, tonumber(ARGV[i]) do
  local name, change = ARGV[i + 2 * k - 1], ARGV[i + 2 * k]
  if redis.call('HINCRBY', KEYS[3], name, change) == 0 then
    redis.call('HDEL', KEYS[3], name)
  end
end
return {}
"""


def _tag(course_id: str) -> str:
    return hashlib.sha256(course_id.encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class CourseKeys:
    course_id: str

    @property
    def records(self) -> str:
        return f"vp:live:{{{_tag(self.course_id)}}}:rec"

    @property
    def totals(self) -> str:
        return f"vp:live:{{{_tag(self.course_id)}}}:tot"

    @property
    def delta(self) -> str:
        return f"vp:live:{{{_tag(self.course_id)}}}:delta"


def _entry_list(e: RollupEntry) -> list[Any]:
    return [e.version, e.watched_seconds, e.unverified_seconds, e.progress, e.completed,
            e.last_watched]  # fmt: skip


def _entry(values: list[Any]) -> RollupEntry:
    v, w, u, p, c, t = values
    return RollupEntry(int(v), float(w), float(u), float(p), bool(c),
                       None if t is None else float(t))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Record:
    """One enrollment's record (see the module's docstring)."""

    entries: Entries = field(default_factory=dict)
    held: Contribution = field(default_factory=dict)
    added: Contribution = field(default_factory=dict)  # `d`: what it adds to `delta`
    name: str | None = None
    classes: tuple[str, ...] = ()
    course: str = ""  # `f`: the fingerprint of the course version `added` was computed for
    # `k`: made by a flush from its document as `_signature` says, not yet checked against it
    # again (`LiveRollups._recheck`); None once checked, or made by a settle.
    check: list[Any] | None = None

    def encode(self) -> bytes:
        # pydantic_core's JSON: 5-7 times json's speed here (the record is encoded and decoded
        # on every merge); the value is compared as read, never re-encoded, so its form is free.
        return to_json(
            {"e": {m: _entry_list(e) for m, e in sorted(self.entries.items())},
             "h": self.held, "d": self.added, "n": self.name, "c": list(self.classes),
             "f": self.course, "k": self.check},
        )  # fmt: skip

    @classmethod
    def decode(cls, raw: bytes | str) -> Record:
        data = from_json(raw)
        return cls(
            {m: _entry(v) for m, v in data["e"].items()},
            {str(k): int(v) for k, v in data["h"].items()},
            {str(k): int(v) for k, v in data["d"].items()},
            data.get("n"),
            tuple(data.get("c") or ()),
            str(data.get("f") or ""),
            data.get("k"),
        )


def contribution_of_entries(entries: Entries, course: Course) -> Contribution:
    """What an enrollment holding `entries` adds to its course's aggregate: the same as
    `rollup.contribution_of` of the document the rollup write would make (its columns keep the
    course's materials; an absent activity is NaN there, None here), without encoding it."""
    done = 0
    found: Contribution = {}
    for m in course.materials:
        e = entries.get(m.material_id)
        if e is None:
            continue
        if e.last_watched is not None:
            found[f"s:{m.material_id}"] = 1
        if e.completed:
            found[f"c:{m.material_id}"] = 1
            done += 1
        if milli := round(e.progress * rollup.MILLI):
            found[f"p:{m.material_id}"] = milli
    found[f"h:{done}"] = 1
    return found


def _classes(doc: dict[str, Any]) -> tuple[str, ...]:
    found = doc.get("classes")
    return tuple(c for c in found if isinstance(c, str)) if isinstance(found, list) else ()


def _name(doc: dict[str, Any]) -> str | None:
    name = doc.get("name")
    return name if isinstance(name, str) else None


def _signature(doc: dict[str, Any] | None) -> list[Any] | None:
    """What a record takes from its document: another writer changed the document when this
    differs (a rollup write moves `rollup_rev`; the roster, the classes and the name). A list,
    as the record's JSON keeps it."""
    if doc is None:
        return None
    return [_plain(doc.get("rollup_rev")), _plain(doc.get("agg_seq")), list(_classes(doc)),
            _name(doc)]  # fmt: skip


def _plain(value: Any) -> Any:
    """A document's field as the record's JSON can keep it and give back equal: an odd type
    (written by hand or another tool) as its text, so one odd document cannot stop the
    course's compare-and-set."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return f"{type(value).__name__}:{value!r}"


def _of_course(entries: Entries, course: Course) -> Entries:
    """The entries of the course's current materials (the documents keep only those)."""
    ids = {m.material_id for m in course.materials}
    return {m: e for m, e in entries.items() if m in ids}


def from_document(doc: dict[str, Any], entries: Entries, course: Course) -> Record:
    """A record of `entries` (the course's materials') for an enrollment document as MongoDB
    holds it."""
    held = rollup.contribution_of(doc) if "agg_seq" in doc else {}
    entries = _of_course(entries, course)
    added = rollup.difference(contribution_of_entries(entries, course), held)
    return Record(entries, held, added, _name(doc), _classes(doc),
                  rollup.course_fingerprint(course))  # fmt: skip


def _totals_value(record: Record, course: Course) -> bytes:
    t = rollup.totals(record.entries, course)
    return to_json([t.completed_materials, t.watched_seconds, t.unverified_seconds,
                       t.last_active, record.course, record.name,
                       list(record.classes)])  # fmt: skip


@dataclass(frozen=True, slots=True)
class Fresh:
    """A student's totals as the record says (for a page's order and its rows)."""

    student_id: str
    totals: RollupTotals
    name: str | None
    classes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Change:
    student_id: str
    expected: Any
    new: Record | None  # None: delete
    old: Record | None


class LiveRollups:
    """The records of every course (see the module's docstring), on the buffer's Redis."""

    def __init__(self, r: Buffer, persist_after_s: float = 600.0) -> None:
        self.r = r
        self.persist_after_s = persist_after_s
        self._cas = r.register_script(CAS)

    # -- writing -----------------------------------------------------------------------------

    def merge(
        self, mongo: MongoStore, course: Course, incoming: dict[str, Entries], now: float
    ) -> int:
        """The flush's step: merge each student's entries into their record. Returns how many
        records changed. A student whose document or record cannot be read is logged and left
        out (their progress is in watch_progress; the others go on). Raises Unavailable when
        MongoDB cannot be read (the flush then gives its keys back) or the records kept
        changing."""
        keys = CourseKeys(course.course_id)
        pending = {s: _of_course(e, course) for s, e in incoming.items()}
        changed = 0
        for _ in range(ATTEMPTS):
            if not pending:
                return changed
            students = sorted(pending)
            raw: dict[str, Any] = dict(
                zip(students, self.r.hmget(keys.records, students), strict=True)
            )
            docs = _documents(mongo, course, [s for s in students if raw[s] is None])
            changes, unchecked = [], []
            for s in students:
                try:
                    change = _merged(s, raw[s], docs.get(s), pending[s], course)
                    held = change.new if change is not None else _decoded(raw[s])
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    log.error("live rollup of %s not merged: %s", _id(s, course), exc)
                    continue
                if change is not None:
                    changes.append(change)
                if held is not None and held.check is not None:
                    unchecked.append(s)
            if changes:  # first: a worker killed after the script leaves its course scheduled
                self.r.zadd(DUE, {course.course_id: now + self.persist_after_s}, nx=True)
            failed = set(self._apply(course, changes))
            if len(failed) < len(changes):  # again: a persist may have taken the course off the
                # schedule between the first ZADD and the script (`reschedule` saw no record)
                self.r.zadd(DUE, {course.course_id: now + self.persist_after_s}, nx=True)
            changed += len(changes) - len(failed)
            self._recheck(mongo, course, [s for s in unchecked if s not in failed], now)
            pending = {s: pending[s] for s in failed}
        raise Unavailable("live rollups kept changing; retry")

    def _recheck(self, mongo: MongoStore, course: Course, students: list[str], now: float) -> None:
        """Records a flush made from documents read before its compare-and-set: a writer that
        changed a document in between found no record to settle, so those are settled now (a
        record made after a writer's settle is thus never left with what it replaced), and the
        others marked checked. Until this succeeds, the record says it is unchecked, and the
        next merge of the student (or the persist) checks it again."""
        if not students:
            return
        keys = CourseKeys(course.course_id)
        raw = dict(zip(students, self.r.hmget(keys.records, students), strict=True))
        docs = _documents(mongo, course, students)
        moved, checked = [], []
        for s in students:
            record = _decoded(raw[s])
            if record is None or record.check is None:
                continue
            if _signature(docs.get(s)) != record.check:
                moved.append(s)
            else:
                checked.append(_Change(s, raw[s], replace(record, check=None), record))
        self._apply(course, checked)  # one changed meanwhile stays unchecked: checked next time
        if moved:
            self.settle(mongo, course, moved, now=now)

    def settle(
        self, mongo: MongoStore, course: Course, students: Iterable[str], now: float
    ) -> None:
        """After a write of enrollment documents: each student's existing record takes what the
        document holds (entries merged, the aggregate's contribution as `h`, the name and
        classes), and goes when the document holds all of it (or is gone). Raises
        Unavailable."""
        keys = CourseKeys(course.course_id)
        pending = sorted(set(students))
        for _ in range(ATTEMPTS):
            if not pending:
                return
            raw: dict[str, Any] = dict(
                zip(pending, self.r.hmget(keys.records, pending), strict=True)
            )
            held = [s for s in pending if raw[s] is not None]
            docs = _documents(mongo, course, held)
            changes = []
            for s in held:
                try:
                    old = Record.decode(raw[s])
                    new = _settled(old, docs.get(s), course)
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    log.error("live rollup of %s not settled: %s", _id(s, course), exc)
                    continue
                if new != old:
                    changes.append(_Change(s, raw[s], new, old))
            pending = self._apply(course, changes)
        raise Unavailable("live rollups kept changing; retry")

    def settle_course(self, mongo: MongoStore, course: Course, now: float) -> None:
        """`settle` every record of the course (after a rebuild of its enrollments; and by the
        maintenance job, which so also schedules a course whose schedule entry was lost)."""
        students = [_text(s) for s in self.r.hkeys(CourseKeys(course.course_id).records)]
        self.settle(mongo, course, students, now=now)
        if self.r.hlen(CourseKeys(course.course_id).records):
            self.r.zadd(DUE, {course.course_id: now + self.persist_after_s}, nx=True)

    def _apply(self, course: Course, changes: list[_Change]) -> list[str]:
        """The changes, by compare-and-set scripts of CAS_CHUNK records (so a large course never
        holds Redis long); returns the students whose record had changed since it was read
        (theirs are left out and the others applied)."""
        keys = CourseKeys(course.course_id)
        failed: list[str] = []
        for i in range(0, len(changes), CAS_CHUNK):
            chunk = changes[i : i + CAS_CHUNK]
            while chunk:
                moved = set(map(_text, self._cas(keys=[keys.records, keys.totals, keys.delta],
                                                 args=self._cas_args(course, chunk))))  # fmt: skip
                if not moved:
                    break
                failed += sorted(moved)
                chunk = [c for c in chunk if c.student_id not in moved]
        return failed

    @staticmethod
    def _cas_args(course: Course, chunk: list[_Change]) -> list[Any]:
        args: list[Any] = [len(chunk)]
        total: Contribution = {}
        for c in chunk:
            args += [c.student_id, c.expected or b"", c.new.encode() if c.new else "",
                     _totals_value(c.new, course) if c.new else ""]  # fmt: skip
            rollup.add(total, c.new.added if c.new is not None else {})
            rollup.add(total, c.old.added if c.old is not None else {}, -1)
        args.append(len(total))
        for name, n in sorted(total.items()):
            args += [name, n]
        return args

    def due(self, now: float, limit: int = 100) -> list[str]:
        found = self.r.zrangebyscore(DUE, "-inf", now, start=0, num=limit)
        return [c.decode() if isinstance(c, bytes) else str(c) for c in found]

    def persist(self, mongo: MongoStore, course: Course, now: float) -> int:
        """Write a course's records to MongoDB (rollup_store's protocol) and settle them, about
        CAS_CHUNK records at a time (HSCAN), so a large course never needs one huge read.
        Returns how many enrollment documents changed. Raises Unavailable."""
        from shared.storage import rollup_store  # the protocol uses this module's readers

        keys = CourseKeys(course.course_id)
        written = 0
        cursor = 0
        while True:
            cursor, found = self.r.hscan(keys.records, cursor, count=CAS_CHUNK)
            records = {}
            for s, v in cast(dict[Any, Any], found).items():  # no NOVALUES: field -> value
                try:
                    records[_text(s)] = Record.decode(v)
                except (ValueError, TypeError, AttributeError, KeyError) as exc:
                    log.error("live rollup of %s unreadable: %s", _id(_text(s), course), exc)
            incoming = {(s, course.course_id): r.entries for s, r in records.items()}
            written += rollup_store.apply_entries(mongo, incoming, {course.course_id: course})
            self.settle(mongo, course, records, now=now)
            if not cursor:
                break
        self.reschedule(course.course_id, now)
        return written

    def forget(self, course_id: str, now: float) -> None:
        """A course gone from the catalog: its records go (the documents stay as written)."""
        keys = CourseKeys(course_id)
        self.r.delete(keys.records, keys.totals, keys.delta)
        self.reschedule(course_id, now)

    def postpone(self, course_id: str, now: float) -> None:
        """A course whose persist failed for a reason of its own: due again in
        ROLLUP_PERSIST_S, so it never stands before the others."""
        self.r.zadd(DUE, {course_id: now + self.persist_after_s}, xx=True)

    def reschedule(self, course_id: str, now: float) -> None:
        """After a persist: due again in ROLLUP_PERSIST_S while records remain, else off the
        schedule (checked again after; and a flush adds the course again after its record, so
        a record made meanwhile is never left unscheduled)."""
        records = CourseKeys(course_id).records
        if self.r.hlen(records):
            self.r.zadd(DUE, {course_id: now + self.persist_after_s})
            return
        self.r.zrem(DUE, course_id)
        if self.r.hlen(records):
            self.r.zadd(DUE, {course_id: now + self.persist_after_s}, nx=True)

    # -- reading -----------------------------------------------------------------------------

    def fresh(self, course: Course) -> dict[str, Fresh] | None:
        """The totals of every student with a record, or None when one was computed for
        another version of the course (the caller then reads the whole class)."""
        fingerprint = rollup.course_fingerprint(course)
        found = {}
        for student, value in self.r.hgetall(CourseKeys(course.course_id).totals).items():
            done, watched, unverified, last, made_for, name, classes = from_json(value)
            if made_for != fingerprint:
                return None
            totals = RollupTotals(int(done), float(watched), float(unverified),
                                  None if last is None else float(last))  # fmt: skip
            student_id = _text(student)
            found[student_id] = Fresh(student_id, totals, name, tuple(classes))
        return found

    def records(self, course_id: str, students: list[str] | None = None) -> dict[str, Record]:
        """The records of `students` (all the course's when None)."""
        keys = CourseKeys(course_id)
        raw: dict[str, Any] = {}
        if students is None:
            raw = {_text(s): v for s, v in self.r.hgetall(keys.records).items()}
        elif students:
            raw = dict(zip(students, self.r.hmget(keys.records, students), strict=True))
        return {s: Record.decode(v) for s, v in raw.items() if v is not None}

    def completed_progress(
        self, course: Course, student_id: str, material_ids: list[str]
    ) -> float | None:
        """The course progress of the student's live record when it holds every one of
        `material_ids` complete (the persister then writes them, with the rollup), else None."""
        record = self.records(course.course_id, [student_id]).get(student_id)
        if record is None:
            return None
        done = {m for m, e in record.entries.items() if e.completed}
        return course_progress(done, course) if done.issuperset(material_ids) else None

    def delta(self, course_id: str) -> Contribution:
        """What the records add to the course's aggregate."""
        return {_text(k): int(v) for k, v in self.r.hgetall(CourseKeys(course_id).delta).items()}

    def last_active(self, student_id: str, course_ids: list[str]) -> dict[str, float | None]:
        """Course -> the latest activity the student's record in it says (courses without a
        record left out)."""
        pipe = self.r.pipeline(transaction=False)
        for course_id in course_ids:
            pipe.hget(CourseKeys(course_id).totals, student_id)
        found = {}
        for course_id, value in zip(course_ids, pipe.execute(), strict=True):
            if value is not None:
                last = from_json(value)[3]
                found[course_id] = None if last is None else float(last)
        return found


def _id(student_id: str, course: Course) -> str:
    return enrollment_id(student_id, course.course_id)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _merged(
    student_id: str, raw: Any, doc: dict[str, Any] | None, incoming: Entries, course: Course
) -> _Change | None:
    """The change merging `incoming` into the student's record (made from the document when
    there is none; None when not enrolled, or nothing changes)."""
    if raw is None:
        if doc is None:
            return None  # not enrolled: no rollup
        base = replace(from_document(doc, rollup.entries_of(doc), course), check=_signature(doc))
    else:
        base = Record.decode(raw)
    entries = rollup.merge(base.entries, incoming)
    if raw is not None and entries == base.entries:
        return None  # a repeat
    added = rollup.difference(contribution_of_entries(entries, course), base.held)
    new = Record(entries, base.held, added, base.name, base.classes,
                 rollup.course_fingerprint(course), base.check)  # fmt: skip
    return _Change(student_id, raw, new, None if raw is None else base)


def _decoded(raw: Any) -> Record | None:
    return Record.decode(raw) if raw is not None else None


def _settled(old: Record, doc: dict[str, Any] | None, course: Course) -> Record | None:
    if doc is None:  # not enrolled (any more): nothing to roll up
        return None
    stored = _of_course(rollup.entries_of(doc), course)
    entries = rollup.merge(stored, _of_course(old.entries, course))
    if entries == stored:
        return None  # MongoDB holds it all
    return from_document(doc, entries, course)


def _documents(mongo: MongoStore, course: Course, students: list[str]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for i in range(0, len(students), READ_CHUNK):
        ids = [enrollment_id(s, course.course_id) for s in students[i : i + READ_CHUNK]]
        try:
            for doc in mongo.enrollments.find({"_id": {"$in": ids}}, DOC_FIELDS):
                found[doc["student_id"]] = doc
        except ConnectionFailure as exc:
            raise Unavailable("MongoDB is unavailable (enrollments)", retry_after_s=5) from exc
    return found
