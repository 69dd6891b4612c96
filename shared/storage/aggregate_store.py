"""Per-course aggregates (`course_aggregates`, one document per course): the sums the course
stats are made of, kept equal to the sum of the contributions (shared/domain/rollup.py) of the
course's folded enrollments, exactly once, by every writer of an enrollment rollup (a flush, a
rebuild after erasure, enrolment or a course change, an unenrolment). Stats read one document.

An aggregate: `{_id: course_id, seq, sums: [[key, n], ...], pending: [{e, rev, del, d}]}`. An
enrollment written by the protocol carries `agg_seq` (it is folded: the aggregate holds its
contribution as stored). Only folded enrollments are deleted by the protocol, and those always
hold a `rollup_rev`; a new enrollment has none until the protocol writes it.

A batch of enrollment writes of one course goes in three steps (`commit` runs the first two):
1. read the aggregate (`seq` q) and resolve its pending batch (below);
2. read the enrollments (`rollup_rev`), compute each one's delta (its new contribution minus
   the stored one; nothing for an enrollment not folded yet), and write the aggregate back with
   the filter `{seq: q}`: the sums plus this batch's deltas minus the deltas of the pending
   writes that never landed, `seq` q + 1, `pending` = this batch (id, `rollup_rev` read, delta);
3. write each enrollment with the filter `{rollup_rev: read}`, stamping `agg_seq: q + 1`.
Reading the enrollments after the resolution means that, when the compare-and-set wins, no
other write can have reached them since: the batch's writes lose no race (but to a hand edit).

Resolving batch q: an enrollment it named landed when it holds `agg_seq` q (a delete: when it
is gone, or is a new enrollment, without `rollup_rev`). A batch committed less than
LANDING_GRACE_S ago is given that long to land (its writer is most likely writing it). One that
did not is then fenced (`rollup_rev` moved on, `next_rev`, where it still holds the one read),
so that a stalled writer's late write cannot land any more, and read again; the deltas of those
that did not land are taken back.
Writers of a course are serialised by the compare-and-set on `seq`, and a batch writes
enrollments only after its commit, which resolved the batch before it: so whatever step a
writer dies in (SIGKILL between its commit and 3, or inside 3), no delta is counted twice, and
one that did not land is taken back by the next commit of the course (the takeover of the dead
flush, the next flush, the maintenance job's `recount`). Until then the stats may count a batch
still in flight; they fall back to reading the class while an enrollment is unfolded or stale.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterable
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, TypeVar

from pymongo.errors import ConnectionFailure, DuplicateKeyError

from shared.domain import rollup
from shared.domain.rollup import Contribution
from shared.errors import Unavailable
from shared.storage.mongo_store import MongoStore

T = TypeVar("T")
ATTEMPTS = 16  # commits of one course lost to other writers before giving up (Unavailable)
# How long a commit lets the batch before it land before fencing what has not: a live writer
# writes its enrollments right after its commit (milliseconds on MongoDB, a few hundred on the
# stand-in), so only a dead or stalled one is fenced. Polled every LANDING_POLL_S.
LANDING_GRACE_S = 2.0
LANDING_POLL_S = 0.02
CONTRIBUTION_FIELDS = {"completed_count": 1, "rollup": 1, "rollup_ids": 1}


@dataclass(frozen=True, slots=True)
class Change:
    """One enrollment's write in a batch: its id, the `rollup_rev` read (None: it had none),
    the delta its write makes to the aggregate, and whether the write deletes it."""

    enrollment_id: str
    rev: int | None
    delta: Contribution
    delete: bool = False

    def as_doc(self) -> dict[str, Any]:
        return {"e": self.enrollment_id, "rev": self.rev, "del": self.delete,
                "d": sorted(map(list, self.delta.items()))}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Aggregate:
    course_id: str
    seq: int
    sums: Contribution
    pending: list[dict[str, Any]]
    pending_at: float  # when the pending batch was committed (its writer's clock)


def rev_token(rev: int | None) -> dict[str, Any] | int:
    """The filter value naming `rollup_rev` as read."""
    return {"$exists": False} if rev is None else rev


MAX_REV = 2**53  # past it a double's +1 is itself: `$inc` would leave the token where it was


def next_rev(rev: Any) -> int:
    """The `rollup_rev` a write that read `rev` sets: one more, or a random start.

    A random start (below 2**52, so the count has room) for a document that has none yet: a
    new enrollment, perhaps of a student unenrolled a moment ago, whose old document's tokens a
    stalled writer may still hold (counting again from 1 would let that writer's late write
    land on the new enrollment). And one in place of a value that is not a whole number below
    MAX_REV (NaN, a huge or fractional double, a string: another tool's or a hand edit): `$inc`
    refused those (a type error: the write, or a fence, failed for good) or left them as they
    were (the token did not move, and a fenced writer's late write landed)."""
    counted = isinstance(rev, int | float) and not isinstance(rev, bool)
    if counted and 0 <= rev < MAX_REV - 1 and float(rev).is_integer():
        return int(rev) + 1
    return secrets.randbits(52) + 1


def commit(
    mongo: MongoStore, course_id: str, plan: Callable[[], list[tuple[Change, T]]]
) -> tuple[int, list[T]]:
    """Step 2: resolve the batch before this one, then run `plan` (step 1: it reads the
    enrollments, which now hold every write of that batch that will ever land) and add its
    deltas to the course's aggregate, recording them as the pending batch. Returns the stamp
    the planned writes carry, and what `plan` returned beside each change. Raises Unavailable
    when MongoDB is unreachable or other writers kept winning."""
    try:
        for _ in range(ATTEMPTS):
            agg = read(mongo, course_id)
            back = resolve(mongo, agg)
            planned = plan()
            if not planned and not back:
                return agg.seq, []  # nothing to add, nothing to take back
            sums = rollup.add(dict(agg.sums), back, -1)
            for change, _ in planned:
                rollup.add(sums, change.delta)
            if _swap(mongo, agg, sums, [c.as_doc() for c, _ in planned]):
                return agg.seq + 1, [item for _, item in planned]
    except ConnectionFailure as exc:
        raise Unavailable("MongoDB is unavailable (course aggregates)", retry_after_s=5) from exc
    raise Unavailable("the course aggregate kept changing; retry")


def recount(mongo: MongoStore, course_id: str) -> bool:
    """Set the course's aggregate to the sum over its folded enrollments, counted from scratch
    (after resolving its pending batch). True when that changed the sums (it never should: the
    maintenance job logs it). Safe beside running writers."""
    try:
        for _ in range(ATTEMPTS):
            agg = read(mongo, course_id)
            held = rollup.add(dict(agg.sums), resolve(mongo, agg), -1)
            counted = count(mongo, course_id)
            if _swap(mongo, agg, counted, []):
                return counted != held
    except ConnectionFailure as exc:
        raise Unavailable("MongoDB is unavailable (course aggregates)", retry_after_s=5) from exc
    raise Unavailable("the course aggregate kept changing; retry")


def count(mongo: MongoStore, course_id: str) -> Contribution:
    """The sum of the contributions of the course's folded enrollments, from their documents."""
    found: Contribution = {}
    query = {"course_id": course_id, "agg_seq": {"$exists": True}}
    for doc in mongo.enrollments.find(query, {"_id": 0, **CONTRIBUTION_FIELDS}):
        rollup.add(found, rollup.contribution_of(doc))
    return found


def sums(mongo: MongoStore, course_id: str) -> Contribution | None:
    """The course's sums as stored (one document), None when it has no aggregate."""
    doc = mongo.aggregates.find_one({"_id": course_id}, {"sums": 1})
    return None if doc is None else _pairs(doc.get("sums"))


def read(mongo: MongoStore, course_id: str) -> Aggregate:
    """The course's aggregate, made (empty) when it has none."""
    doc = mongo.aggregates.find_one({"_id": course_id})
    if doc is None:
        with suppress(DuplicateKeyError):  # another writer made it first
            mongo.aggregates.update_one(
                {"_id": course_id},
                {"$setOnInsert": {"seq": 0, "sums": [], "pending": []}},
                upsert=True,
            )
        doc = mongo.aggregates.find_one({"_id": course_id}) or {}
    return Aggregate(
        course_id,
        int(doc.get("seq", 0)),
        _pairs(doc.get("sums")),
        list(doc.get("pending", [])),
        float(doc.get("pending_at", 0.0)),
    )


def resolve(mongo: MongoStore, agg: Aggregate) -> Contribution:
    """The deltas of `agg`'s pending batch whose writes did not land, each of those enrollments
    fenced first so that it never can (after letting a fresh batch's writer land them)."""
    if not agg.pending:
        return {}
    unlanded = _unlanded(mongo, agg, agg.pending)
    grace = min(LANDING_GRACE_S, agg.pending_at + LANDING_GRACE_S - time.time())
    deadline = time.monotonic() + max(0.0, grace)
    while unlanded and time.monotonic() < deadline:
        time.sleep(LANDING_POLL_S)
        unlanded = _unlanded(mongo, agg, unlanded)
    if not unlanded:
        return {}
    for p in unlanded:  # a no-op where the write landed meanwhile
        mongo.enrollments.update_one(
            {"_id": p["e"], "rollup_rev": rev_token(p["rev"])},
            {"$set": {"rollup_rev": next_rev(p["rev"])}},
        )
    back: Contribution = {}
    for p in _unlanded(mongo, agg, unlanded):
        rollup.add(back, _pairs(p["d"]))
    return back


def _unlanded(
    mongo: MongoStore, agg: Aggregate, pending: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    docs = _states(mongo, [p["e"] for p in pending])
    return [p for p in pending if not _landed(p, docs.get(p["e"]), agg.seq)]


def _landed(p: dict[str, Any], doc: dict[str, Any] | None, seq: int) -> bool:
    if p.get("del"):  # gone, or a new enrollment: no writer reached it before this resolution
        return doc is None or doc.get("rollup_rev") is None
    return doc is not None and doc.get("agg_seq") == seq


def _states(mongo: MongoStore, ids: list[str]) -> dict[str, dict[str, Any]]:
    fields = {"rollup_rev": 1, "agg_seq": 1}
    return {d["_id"]: d for d in mongo.enrollments.find({"_id": {"$in": ids}}, fields)}


def _swap(
    mongo: MongoStore, agg: Aggregate, new_sums: Contribution, pending: list[dict[str, Any]]
) -> bool:
    result = mongo.aggregates.update_one(
        {"_id": agg.course_id, "seq": agg.seq},
        {"$set": {"seq": agg.seq + 1, "sums": sorted(map(list, new_sums.items())),
                  "pending": pending, "pending_at": time.time()}},
    )  # fmt: skip
    return result.matched_count == 1


def _pairs(raw: Iterable[Any] | None) -> Contribution:
    return {str(k): int(v) for k, v in raw or []}
