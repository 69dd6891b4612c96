"""MongoDB: the stored state (`watch_progress`, `enrollments`, `courses`, and the course
aggregates of shared/storage/aggregate_store.py).

Only operators that behave the same on MongoDB 6+ and on the nx-27017 stand-in are used
(pinned in tests/test_mongo_conformance.py). Times are stored as epoch seconds (floats): the
stand-in does not round-trip `datetime` values.

Documents of `watch_progress` and `enrollments` have deterministic `_id`s ("<material>|<student>",
"<course>|<student>": material and course ids never hold '|'), and every write and point read
goes by `_id`: MongoDB's own unique index serves it, and on the stand-in an `_id` lookup stays
constant-time where any other filter scans the collection (5 ms per upsert at 10,000 documents,
0.1 ms by `_id`). The (student, material) and (student, course) indexes serve the other queries.

`watch_progress` documents carry `v`, the version of the hot state they were written from; a
write only lands when its `v` is higher than the stored one (a stale conditional upsert fails with
duplicate key 11000), so concurrent or repeated flushes can never move a document backwards.

No string a client sends is a field name here: ids and session ids are values only.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, ParamSpec, TypeVar

import pymongo
from bson.errors import BSONError
from pymongo import ASCENDING, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, ConnectionFailure, PyMongoError
from pymongo.monitoring import CommandListener

from shared.domain import rollup
from shared.domain.catalog import Course
from shared.domain.course import course_progress
from shared.domain.progress import WatchState
from shared.errors import Unavailable
from shared.storage.set_aside import (
    INVALID_DOCUMENT,
    MAX_ERROR_CHARS,
    UNREADABLE,
    WRITE_ERROR,
    SetAside,
    describe,
)

log = logging.getLogger(__name__)

DUPLICATE_KEY = 11000
ATTEMPTS = 8  # rounds of a compare-and-set on an enrollment before giving up (Unavailable)
# Write errors that mean "not now" rather than "not this document": the retryable writes spec's
# codes (pymongo's list: not primary, shutting down, network), timeouts and write conflicts.
TRANSIENT_CODES = frozenset(
    {6, 7, 50, 64, 89, 91, 112, 134, 189, 262, 9001, 10058, 10107, 11600, 11602, 13435, 13436}
)
# What pymongo raises while encoding one document (before anything of its batch is sent).
ENCODING_ERRORS = (BSONError, OverflowError, UnicodeError)

P = ParamSpec("P")
R = TypeVar("R")


def _unavailable_on_outage(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a MongoDB outage into `Unavailable` (a 503 for the API, a retry for workers)."""

    @wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except ConnectionFailure as exc:  # includes timeouts and server selection failures
            raise Unavailable("MongoDB is unavailable", retry_after_s=5) from exc

    return wrapper


unavailable_on_outage = _unavailable_on_outage  # for the stores of other collections (shared/lti/)


@dataclass(frozen=True, slots=True)
class StateWrite:
    student_id: str
    material_id: str
    course_id: str
    duration: float | None
    state: WatchState
    version: int


@dataclass
class WriteOutcome:
    """Indexes of writes that did not land: `stale` (a newer version is stored: fine),
    `retry` (lost an insert race: write again), `transient` (MongoDB could not take it now: a
    later flush writes it), `refused` (this document cannot be stored, and why)."""

    stale: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    transient: list[int] = field(default_factory=list)
    refused: dict[int, SetAside] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredState:
    course_id: str | None
    state: WatchState | None  # None: erased (a tombstone that only holds the version)
    version: int
    unreadable: SetAside | None = None  # the document is there, but cannot be read


def _numeric(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _version(value: Any) -> int:
    """A stored document's `v` as a version; one that is no finite number (an odd document)
    counts as 0 (an erasure's tombstone goes beyond the hot state's version anyway)."""
    return int(value) if _numeric(value) and math.isfinite(value) else 0


def _viewer(doc: dict[str, Any]) -> tuple[list[list[float]], float]:
    """A document's watched ranges (pairs of finite numbers) and the share of them verified
    watching credited; TypeError or ValueError for an odd one."""
    ranges = []
    for pair in doc.get("watched_ranges") or []:
        start, end = pair  # ValueError unless a pair
        if not (_numeric(start) and _numeric(end) and math.isfinite(start + end)):
            raise TypeError(f"a watched range of {pair!r}")
        ranges.append([float(start), float(end)])
    credited = float(doc.get("watched_seconds") or 0.0)
    claimed = credited + float(doc.get("unverified_seconds") or 0.0)
    if not math.isfinite(claimed):
        raise ValueError("watched seconds that are not finite")
    return ranges, credited / claimed if claimed else 1.0


def completed_ids(enrollment: Mapping[str, Any]) -> set[str]:
    """An enrollment's completed material ids (none when the field is missing or odd)."""
    found = enrollment.get("completed_materials")
    return {m for m in found if isinstance(m, str)} if isinstance(found, list) else set()


def _stored_state(doc: dict[str, Any]) -> StoredState:
    """A `watch_progress` document as read back; an odd one (a value of the wrong type, a state
    no version wrote) is reported as unreadable instead of raising."""
    try:
        state = WatchState.from_dict(doc["state"]) if "state" in doc else None
        return StoredState(doc.get("course_id"), state, int(doc["v"]))
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        why = SetAside(UNREADABLE, "its stored document: " + describe(exc))
        return StoredState(None, None, -1, why)


# Material and course ids never hold "|" (catalog.ID_PATTERN), a student id may: with the
# catalog id first, two different pairs never share an `_id`.
def progress_id(student_id: str, material_id: str) -> str:
    return f"{_catalog_part(material_id)}|{student_id}"


def enrollment_id(student_id: str, course_id: str) -> str:
    return f"{_catalog_part(course_id)}|{student_id}"


def _catalog_part(catalog_id: str) -> str:
    if "|" in catalog_id:
        raise ValueError(f"a catalog id cannot hold '|': {catalog_id!r}")
    return catalog_id


# Write filters name `student_id` beside the `_id`: sharded on {student_id: "hashed"} (see
# docs/operations.md, "MongoDB in production"), MongoDB routes a write, and accepts an
# upsert, only with the shard key.
def _progress_key(student_id: str, material_id: str) -> dict[str, Any]:
    return {"_id": progress_id(student_id, material_id), "student_id": student_id}


def _enrollment_key(student_id: str, course_id: str) -> dict[str, Any]:
    return {"_id": enrollment_id(student_id, course_id), "student_id": student_id}


def _new_enrollment(
    student_id: str, course_id: str, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "$setOnInsert": {
            **(extra or {}),
            "student_id": student_id,
            "course_id": course_id,
            "completed_materials": [],
            "progress_percentage": 0.0,
            "enrolled_at": time.time(),
        }
    }


def progress_document(w: StateWrite) -> dict[str, Any]:
    """The flat, queryable fields of a watch_progress document, plus the full state."""
    s = w.state
    return {
        "student_id": w.student_id,
        "material_id": w.material_id,
        "course_id": w.course_id,
        "watch_time": s.position,
        "total_duration": w.duration,
        "progress_percentage": s.progress,
        "watched_seconds": s.watched_seconds,  # credited (verified watching)
        "unverified_seconds": s.unverified_seconds,
        "watched_ranges": s.covered,
        "completed": s.completed,
        "completed_at": s.completed_at,
        "last_watched": s.last_watched,
        "v": w.version,
        "state": s.to_dict(),
    }


class MongoStore:
    def __init__(
        self, url: str, timeout_ms: int = 5000, listeners: Sequence[CommandListener] = ()
    ) -> None:
        """`listeners`: pymongo command listeners (a test counts the documents read)."""
        self.client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
            url,
            event_listeners=list(listeners),
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=timeout_ms * 2,  # unlimited by default: a hung server would hang us
            appname="videoprogress",
        )
        self.db = self.client.get_default_database(default="videoprogress")
        self.progress = self.db["watch_progress"]
        self.enrollments = self.db["enrollments"]
        self.courses = self.db["courses"]
        self.aggregates = self.db["course_aggregates"]  # see shared/storage/aggregate_store.py

    def close(self) -> None:
        self.client.close()

    @_unavailable_on_outage
    def ping(self) -> bool:
        self.db.command("ping")
        return True

    @_unavailable_on_outage
    def ensure_indexes(self) -> None:
        """Create the indexes the queries need; idempotent, safe at every start-up."""
        self.progress.create_index(
            [("student_id", ASCENDING), ("material_id", ASCENDING)], unique=True
        )
        self.progress.create_index([("course_id", ASCENDING), ("student_id", ASCENDING)])
        self.progress.create_index([("material_id", ASCENDING)])
        self.progress.create_index([("written_at", ASCENDING)])
        self.progress.create_index([("erased_at", ASCENDING)])
        self.enrollments.create_index(
            [("student_id", ASCENDING), ("course_id", ASCENDING)], unique=True
        )
        self.enrollments.create_index([("course_id", ASCENDING), ("student_id", ASCENDING)])
        # The class table's and the matrix's pages: MongoDB sorts and cuts on these (walked
        # backwards for a descending sort); docs/teacher-views.md lists the queries.
        for total in ("completed_count", "last_active", "watched_seconds", "unverified_seconds"):
            self.enrollments.create_index(
                [("course_id", ASCENDING), (total, ASCENDING), ("student_id", ASCENDING)]
            )
        # Whether some enrollment's totals are stale: only the stale ones are in the range.
        self.enrollments.create_index([("course_id", ASCENDING), ("rollup_course", ASCENDING)])
        # One LMS class's page (shared/lti/classes.py): its id in `classes`, then the sort.
        self.enrollments.create_index([("classes", ASCENDING), ("student_id", ASCENDING)])
        for total in ("completed_count", "last_active", "watched_seconds", "unverified_seconds"):
            self.enrollments.create_index(
                [("classes", ASCENDING), (total, ASCENDING), ("student_id", ASCENDING)]
            )
        # Whether some enrollment is not folded into its course's aggregate yet (`agg_seq`
        # missing), and the aggregate's recount of the folded ones.
        self.enrollments.create_index([("course_id", ASCENDING), ("agg_seq", ASCENDING)])

    # -- watch progress -------------------------------------------------------------------

    @_unavailable_on_outage
    def write_states(self, writes: list[StateWrite]) -> WriteOutcome:
        """One unordered bulk upsert of versioned states (see WriteOutcome): every document
        that can be stored is, whatever the others hold.

        A write not newer than the stored version changes nothing, so repeating one is harmless.
        Raises Unavailable when MongoDB cannot be reached, did not confirm the write concern, or
        failed the whole write (no document is to blame then).
        """
        outcome = WriteOutcome()
        if not writes:
            return outcome
        ops = [
            UpdateOne(
                {**_progress_key(w.student_id, w.material_id), "v": {"$lt": w.version}},
                {
                    "$set": {**progress_document(w), "written_at": time.time()},
                    "$inc": {"flushes": 1},
                },
                upsert=True,
            )
            for w in writes
        ]
        duplicates: list[int] = []
        self._bulk(ops, list(range(len(ops))), outcome, duplicates)
        self._classify_duplicates(writes, duplicates, outcome)
        return outcome

    def _bulk(
        self, ops: list[UpdateOne], indexes: list[int], outcome: WriteOutcome, dup: list[int]
    ) -> None:
        """Write `ops[i]` for each i in `indexes`, sorting each write error into `outcome` (or
        `dup`). pymongo refuses a whole batch when it cannot encode one of its documents: then
        the batch is halved until that document is alone (sending a versioned write again is
        harmless)."""
        try:
            self.progress.bulk_write([ops[i] for i in indexes], ordered=False)
        except ENCODING_ERRORS as exc:
            if len(indexes) == 1:
                outcome.refused[indexes[0]] = SetAside(INVALID_DOCUMENT, describe(exc))
                return
            half = len(indexes) // 2
            self._bulk(ops, indexes[:half], outcome, dup)
            self._bulk(ops, indexes[half:], outcome, dup)
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise Unavailable("MongoDB did not confirm the write concern") from exc
            if exc.has_error_label("RetryableWriteError"):
                raise Unavailable(f"MongoDB could not write now: {describe(exc)}") from exc
            for error in exc.details.get("writeErrors", []):
                i, code = indexes[error["index"]], error.get("code")
                if code == DUPLICATE_KEY:
                    dup.append(i)
                elif code in TRANSIENT_CODES:
                    outcome.transient.append(i)
                else:
                    text = f"MongoDB error {code}: {error.get('errmsg', '')}"
                    outcome.refused[i] = SetAside(WRITE_ERROR, text[:MAX_ERROR_CHARS])
        except PyMongoError as exc:
            if isinstance(exc, ConnectionFailure):
                raise  # Unavailable, by the decorator
            raise Unavailable(f"MongoDB failed the whole bulk write: {describe(exc)}") from exc

    def _classify_duplicates(
        self, writes: list[StateWrite], indexes: list[int], outcome: WriteOutcome
    ) -> None:
        """A duplicate key means stale only when the stored version is at least ours; two
        upserts racing to insert the same new document also end in one, and the loser must be
        written again."""
        if not indexes:
            return
        stored = self.find_states((writes[i].student_id, writes[i].material_id) for i in indexes)
        for i in indexes:
            found = stored.get((writes[i].student_id, writes[i].material_id))
            if found is not None and found.unreadable is not None:
                outcome.refused[i] = found.unreadable
            elif found is not None and found.version >= writes[i].version:
                outcome.stale.append(i)
            else:
                outcome.retry.append(i)

    @_unavailable_on_outage
    def find_states(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredState]:
        """Stored states by (student_id, material_id); absent keys are left out, unreadable
        ones say why."""
        ids = [progress_id(student_id, material_id) for student_id, material_id in keys]
        found: dict[tuple[str, str], StoredState] = {}
        if not ids:
            return found
        cursor = self.progress.find(
            {"_id": {"$in": ids}},
            {"_id": 0, "student_id": 1, "material_id": 1, "course_id": 1, "state": 1, "v": 1},
        )
        for doc in cursor:
            found[(doc["student_id"], doc["material_id"])] = _stored_state(doc)
        return found

    @_unavailable_on_outage
    def rolled_up_versions(
        self, keys: Iterable[tuple[str, str, str]]
    ) -> dict[tuple[str, str], int]:
        """(student_id, material_id) -> the version their enrollment's rollup holds for the
        material, for (student_id, course_id, material_id) keys; absent or 0 when none."""
        wanted: dict[str, list[tuple[str, str]]] = {}
        for student_id, course_id, material_id in keys:
            eid = enrollment_id(student_id, course_id)
            wanted.setdefault(eid, []).append((student_id, material_id))
        found: dict[tuple[str, str], int] = {}
        if not wanted:
            return found
        fields = {"rollup": 1, "rollup_ids": 1}
        for doc in self.enrollments.find({"_id": {"$in": list(wanted)}}, fields):
            for student_id, material_id in wanted.get(doc["_id"], []):
                if version := rollup.version_of(doc, material_id):
                    found[(student_id, material_id)] = version
        return found

    @_unavailable_on_outage
    def migrate_readings(self, batch: int = 500) -> int:
        """Rewrite stored states whose `readings` have the shape before 0.8.0 (an object keyed by
        session id: a client's string as a field name) as [session, readings] pairs. Each
        update names the version it read, so a state a flush wrote meanwhile is left as that
        flush wrote it (in the new shape). Idempotent; safe while workers run. Returns how many
        documents it rewrote."""
        cursor = self.progress.find(
            {"state.readings": {"$type": "object"}}, {"_id": 1, "student_id": 1, "v": 1, "state": 1}
        )
        rewritten, ops = 0, []
        for doc in cursor:
            state = _stored_state(doc).state
            if state is None:  # unreadable: a flush sets such a key aside when it comes by
                continue
            flt = {"_id": doc["_id"], "student_id": doc.get("student_id"), "v": doc["v"]}
            ops.append(UpdateOne(flt, {"$set": {"state.readings": state.to_dict()["readings"]}}))
            if len(ops) == batch:
                rewritten, ops = rewritten + self._rewrite(ops), []
        return rewritten + self._rewrite(ops)

    def _rewrite(self, ops: list[UpdateOne]) -> int:
        """Documents the updates changed; one MongoDB refuses is logged and left as it is."""
        if not ops:
            return 0
        try:
            return self.progress.bulk_write(ops, ordered=False).modified_count
        except BulkWriteError as exc:
            if exc.details.get("writeConcernErrors"):
                raise Unavailable("MongoDB did not confirm the write concern") from exc
            for error in exc.details.get("writeErrors", []):
                log.error("state not rewritten: MongoDB error %s", error.get("errmsg"))
            return int(exc.details.get("nModified", 0))

    @_unavailable_on_outage
    def erase_states(self, student_id: str, versions: dict[str, int], now: float) -> None:
        """Replace each material's document by a tombstone holding only a version beyond any
        write still in flight, so that a late flush fails as stale instead of resurrecting the
        erased progress (and a later heartbeat continues from that version). A document a
        later write already holds beyond the tombstone is kept (heartbeats accepted after the
        erasure's cut). The tombstone is deleted once expired (`delete_expired_tombstones`).
        Idempotent."""
        if not versions:
            return
        ops = [
            ReplaceOne(
                {**_progress_key(student_id, material_id), "v": {"$lt": version}},
                {
                    **_progress_key(student_id, material_id),
                    "material_id": material_id,
                    "v": version,
                    "erased_at": now,
                },
                upsert=True,
            )
            for material_id, version in versions.items()
        ]
        try:
            self.progress.bulk_write(ops, ordered=False)
        except BulkWriteError as exc:  # duplicate key: a newer (or the same) version is stored
            if exc.details.get("writeConcernErrors"):
                raise Unavailable("MongoDB did not confirm the write concern") from exc
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != DUPLICATE_KEY for e in errors):
                raise
            kept = [list(versions)[e["index"]] for e in errors]
            self._erase_unversioned(student_id, {m: versions[m] for m in kept}, now)

    def _erase_unversioned(self, student_id: str, versions: dict[str, int], now: float) -> None:
        """The documents `erase_states` kept whose `v` is no number (none, null, a string: an odd
        document, which flushes set aside and so never write): replaced by their tombstone all
        the same, each only if its `v` is still the one read. A document holding a numeric
        version at or beyond the tombstone's is a later write's: it stays."""
        ids = {progress_id(student_id, m): m for m in versions}
        for doc in self.progress.find({"_id": {"$in": list(ids)}}, {"v": 1}):
            if "v" in doc and _numeric(doc["v"]):
                continue
            material_id = ids[doc["_id"]]
            as_read = {"v": doc["v"]} if "v" in doc else {"v": {"$exists": False}}
            self.progress.replace_one(
                {**_progress_key(student_id, material_id), **as_read},
                {**_progress_key(student_id, material_id), "material_id": material_id,
                 "v": versions[material_id], "erased_at": now},
            )  # fmt: skip

    @_unavailable_on_outage
    def delete_expired_tombstones(self, before: float) -> int:
        """Delete the tombstones of erasures made before `before` (documents that got a state
        from a later write are no tombstones). Idempotent. Returns how many went."""
        query = {"erased_at": {"$lt": before}, "state": {"$exists": False}}
        return int(self.progress.delete_many(query).deleted_count)

    @_unavailable_on_outage
    def stored_versions(
        self, student_id: str, material_id: str | None = None
    ) -> dict[str, tuple[int, bool]]:
        """Material id -> (stored version, holds progress) for a student's documents
        (tombstones hold none)."""
        query: dict[str, Any] = {"student_id": student_id}
        if material_id is not None:
            query = _progress_key(student_id, material_id)
        cursor = self.progress.find(query, {"_id": 0, "material_id": 1, "v": 1, "course_id": 1})
        return {
            doc["material_id"]: (_version(doc.get("v")), "course_id" in doc)
            for doc in cursor
            if isinstance(doc.get("material_id"), str)
        }

    # -- teacher views --------------------------------------------------------------------

    @_unavailable_on_outage
    def enrolled_students(self, course_id: str, class_id: str | None = None) -> list[str]:
        """The course's students (one LMS class's with `class_id`: shared/lti/classes.py)."""
        query = {"course_id": course_id} | ({"classes": class_id} if class_id else {})
        cursor = self.enrollments.find(query, {"_id": 0, "student_id": 1})
        return [doc["student_id"] for doc in cursor]

    @_unavailable_on_outage
    def enrolled_name(
        self, student_id: str, course_id: str, class_id: str | None = None
    ) -> tuple[bool, str | None]:
        """(whether the student is enrolled in the course, in the LMS class `class_id` when
        given; the roster's name on that enrollment): one enrollment read, by `_id`."""
        key = {"_id": enrollment_id(student_id, course_id)} | (
            {"classes": class_id} if class_id else {}
        )
        doc = self.enrollments.find_one(key, {"_id": 0, "name": 1})
        return doc is not None, doc.get("name") if doc else None

    @_unavailable_on_outage
    def watched_ranges(
        self, course_id: str, material_id: str, student_ids: list[str]
    ) -> list[tuple[list[list[float]], float]]:
        """The watched ranges of each of the given students who started the material, with the
        share of them that verified watching credited (credited / claimed seconds)."""
        cursor = self.progress.find(
            {
                "course_id": course_id,
                "material_id": material_id,
                "student_id": {"$in": student_ids},
            },
            {"_id": 0, "watched_ranges": 1, "watched_seconds": 1, "unverified_seconds": 1},
        )
        viewers = []
        for doc in cursor:
            try:
                viewers.append(_viewer(doc))
            except (TypeError, ValueError) as exc:  # one odd document: that student is left out
                log.warning("watch_progress document left out of a retention curve: %s", exc)
        return viewers

    # -- enrollments ----------------------------------------------------------------------

    @_unavailable_on_outage
    def enroll(self, student_id: str, course_id: str) -> bool:
        """Enroll (idempotent); True when the enrollment is new."""
        result = self.enrollments.update_one(
            _enrollment_key(student_id, course_id),
            _new_enrollment(student_id, course_id),
            upsert=True,
        )
        return result.upserted_id is not None

    @_unavailable_on_outage
    def enroll_many(
        self,
        student_ids: list[str],
        course_id: str,
        extra: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> list[str]:
        """Enroll each (idempotent), with unordered bulk upserts, a new enrollment holding the
        student's `extra` fields too; returns the students newly enrolled."""
        new: list[str] = []
        for i in range(0, len(student_ids), 1000):
            chunk = student_ids[i : i + 1000]
            ops = [
                UpdateOne(
                    _enrollment_key(s, course_id),
                    _new_enrollment(s, course_id, (extra or {}).get(s, {})),
                    upsert=True,
                )
                for s in chunk
            ]
            result = self.enrollments.bulk_write(ops, ordered=False)
            new += [chunk[index] for index in result.upserted_ids or {}]
        return new

    @_unavailable_on_outage
    def enrolled_courses(self, student_id: str) -> list[str]:
        cursor = self.enrollments.find({"student_id": student_id}, {"_id": 0, "course_id": 1})
        return [doc["course_id"] for doc in cursor]

    @_unavailable_on_outage
    def enrollment(self, student_id: str, course_id: str) -> dict[str, Any] | None:
        return self.enrollments.find_one(_enrollment_key(student_id, course_id), {"_id": 0})

    @_unavailable_on_outage
    def record_completion(
        self, student_id: str, course_id: str, material_ids: list[str], course: Course
    ) -> float:
        """Add completed materials to the enrollment and raise its course progress to match.

        The flush's rollup write records completions already (rollup_store.completion_fields);
        this writes only what an enrollment misses (one its rollup write did not reach, or
        written before 0.9.0). Idempotent ($addToSet, $max): repeating it changes nothing.
        Only materials whose stored state is complete count, and both updates name the
        enrollment's `erasures` count as read before that check: an erasure counts itself there
        only after it erased the states, so an erasure in between makes them match nothing and
        the attempt is made again: what an erasure removed never comes back. Returns the new
        progress (0.0 when not enrolled). Raises Unavailable when erasures kept coming in
        between (RQ retries the job)."""
        key = _enrollment_key(student_id, course_id)
        fields = {"_id": 0, "erasures": 1, "completed_materials": 1, "progress_percentage": 1}
        for _ in range(ATTEMPTS):
            doc = self.enrollments.find_one(key, fields)
            if doc is None:
                return 0.0
            guard = {**key, "erasures": doc.get("erasures", {"$exists": False})}
            confirmed = self._completed(student_id, material_ids)
            held = completed_ids(doc)
            progress = course_progress(held, course)
            if held.issuperset(confirmed) and doc.get("progress_percentage") == progress:
                return progress  # the flush's rollup write recorded them: nothing to write
            add: dict[str, Any] = {"$addToSet": {"completed_materials": {"$each": confirmed}}}
            if not isinstance(doc.get("completed_materials"), list):  # odd: no list to add to
                guard["completed_materials"] = doc.get("completed_materials")
                add = {"$set": {"completed_materials": sorted(held | set(confirmed))}}
            if confirmed and not self.enrollments.update_one(guard, add).matched_count:
                continue
            doc = self.enrollments.find_one(key, {"_id": 0, "completed_materials": 1}) or {}
            progress = course_progress(completed_ids(doc), course)
            raise_to = {
                "$max": {"progress_percentage": progress},
                "$set": {"updated_at": time.time()},
            }
            if self.enrollments.update_one(guard, raise_to).matched_count:
                return progress
        raise Unavailable("the enrollment kept being erased meanwhile; retry", retry_after_s=5)

    def _completed(self, student_id: str, material_ids: list[str]) -> list[str]:
        """Those of the materials whose stored state is complete (erased ones are not)."""
        ids = [progress_id(student_id, m) for m in material_ids]
        return [
            doc["material_id"]
            for doc in self.progress.find(
                {"_id": {"$in": ids}, "student_id": student_id, "completed": True},
                {"_id": 0, "material_id": 1},
            )
        ]

    @_unavailable_on_outage
    def recalculate_course(self, course: Course) -> int:
        """Set every enrollment's progress from its completions and the course's current
        materials (after the course changed). Returns how many enrollments changed."""
        ops = []
        for doc in self.enrollments.find(
            {"course_id": course.course_id},
            {"_id": 0, "student_id": 1, "completed_materials": 1, "progress_percentage": 1},
        ):
            progress = course_progress(completed_ids(doc), course)
            if progress != doc.get("progress_percentage"):
                ops.append(
                    UpdateOne(
                        _enrollment_key(doc["student_id"], course.course_id),
                        {"$set": {"progress_percentage": progress, "updated_at": time.time()}},
                    )
                )
        if ops:
            self.enrollments.bulk_write(ops, ordered=False)
        return len(ops)

    @_unavailable_on_outage
    def forget_completions(
        self, student_id: str, material_ids: set[str] | None, course: Course
    ) -> bool:
        """Remove materials (all when None) from an enrollment's completions, count the
        erasure in its `erasures` in the same update (a completion job that read the count
        before then changes nothing: see record_completion), and recalculate its progress.
        Call it after the states are erased. Idempotent. Returns False when not enrolled."""
        key = _enrollment_key(student_id, course.course_id)
        change: dict[str, Any] = {"$inc": {"erasures": 1}, "$set": {"updated_at": time.time()}}
        if material_ids is None:
            change["$set"]["completed_materials"] = []
        else:
            change["$pull"] = {"completed_materials": {"$in": sorted(material_ids)}}
        if not self.enrollments.update_one(key, change).matched_count:
            return False
        self._settle_progress(key, course)
        return True

    def _settle_progress(self, key: dict[str, Any], course: Course) -> None:
        """Set the progress from the completions (it may go down), again while a completion
        job added one in between (after its own addition, such a job raises it with `$max`)."""
        seen: list[str] | None = None
        for _ in range(ATTEMPTS):
            doc = self.enrollments.find_one(key, {"_id": 0, "completed_materials": 1})
            completed = None if doc is None else sorted(completed_ids(doc))
            if completed is None or completed == seen:
                return
            progress = course_progress(set(completed), course)
            self.enrollments.update_one(key, {"$set": {"progress_percentage": progress}})
            seen = completed

    # -- courses --------------------------------------------------------------------------

    @_unavailable_on_outage
    def put_course(self, course: Course) -> bool:
        """Create or replace a course; True when it is new."""
        # The _id goes in the document too: the stand-in does not take it from the filter.
        doc = {"_id": course.course_id, **course.model_dump(mode="json")}
        result = self.courses.replace_one({"_id": course.course_id}, doc, upsert=True)
        return result.matched_count == 0

    @_unavailable_on_outage
    def course(self, course_id: str) -> Course | None:
        doc = self.courses.find_one({"_id": course_id}, {"_id": 0})
        return Course.from_stored(doc) if doc else None

    @_unavailable_on_outage
    def all_courses(self) -> list[Course]:
        return [Course.from_stored(doc) for doc in self.courses.find({}, {"_id": 0})]
