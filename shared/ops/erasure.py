"""Erasing a student's progress everywhere it lives: hot state and queued heartbeats in Redis,
documents in MongoDB, completions in enrollments, entries in the outboxes. Erasure wins over
everything in flight.

How, in order (each step idempotent, so a failed erasure is simply repeated):

1. The cut (erase.lua, one atomic step on the student's partition): every buffer key the
   student's key index lists (or the one material's) loses its hot state and queued heartbeats
   and keeps a tombstone version T, 2^32 beyond any version a fold or write in flight can hold
   (MongoDB's, read just before, included); T is also recorded in the student's buffer
   tombstones. A key set aside leaves the list; erasing the whole student also deletes their
   viewing budget. A heartbeat accepted after the cut continues from T: erasure is no ban.
2. The outbox tombstones (RQ's Redis) get the same versions. From here on, an outbox push or a
   session record made from a state at or below T is refused atomically (before any quota is
   spent).
3. MongoDB's documents are replaced by tombstones holding only T (and `erased_at`), unless a
   write after the cut already holds more than T.
4. Enrollments: the erased completions are removed and the erasure counted (`erasures`), then
   the rollups are rebuilt from the tombstones.
5. The outboxes: the student's entries made from erased states, the open sessions and the
   sessions the quota remembers of the erased materials (and, erasing the whole student, the
   quota and the record of sent ids) go, found by the student's indexes and keys. Each outbox's
   step reads with the student's index and the dead-letter hash watched and writes in one
   transaction: a delivery that settles one of the student's entries, or an operator's
   requeue, between the read and the writes makes it read again.
6. Erasing the whole student: the time of the erasure is kept in the buffer (the student's
   `person_erased` key, as long as the tombstones), then their LTI class memberships (the
   platform's user id, names) and the names on their enrollments go.
7. The LTI grade targets of the erased materials (what the launches recorded to grade, and the
   score last sent) are deleted; the report lists the scores the LMS holds.

Why nothing erased comes back after the answer:
- A flush that read the keys before the cut: its fold's compare-and-set on the version fails
  (the cut rewrote it), so it writes nothing; if it committed before the cut, its MongoDB write
  (version < T) lands before step 3, which replaces it, or after, when the tombstone refuses it
  as stale; a write still on the wire after the answer is refused the same way, as long as the
  tombstone lives. Its rollup entries lose to T in the rollups (higher version wins); its
  `finish` sees the buffer tombstone and marks nothing (no stored flag, no completion flag, no
  dirty key); a key whose write MongoDB refused is not set aside (set_aside.lua: the cut took
  its data); its statements and sessions are refused by step 2 or removed by step 5.
- A delivery job or an operator's `outbox-requeue`: an entry it moves between the queue and
  the dead-letter hash while step 5 runs makes step 5 read again; a settle after it finds the
  entry gone and leaves it so, and a requeue after it finds nothing to move. A delivery
  already on the wire may still arrive (its id is not in the report).
- A completion job: it reads the enrollment's `erasures` count before it checks that the
  stored states are complete, and its updates name that count. Step 4 counts the erasure after
  step 3 erased the states, so the job either saw the erased states, or its updates match
  nothing (and it reads again), or it wrote before step 4, which removes it. Its statements and
  webhooks name the versions of the states they state: refused by step 2, or removed by step 5.
- An LTI roster sync: it leaves out every learner erased since it started reading the
  roster (step 6's time), and after writing it looks again and forgets whoever an erasure took
  meanwhile. A sync that started reading after the erasure enrolls them again, as a launch
  does: the LMS still lists them, and erasure is no ban.
- Tombstones expire after `ERASURE_TOMBSTONE_TTL_S` (a day by default; at least an hour more
  than a lease: longer than a flush and a completion job with its retries can be in flight).
  The rollups keep T as the erased materials' (empty) entries' version; a state that starts
  after every tombstone is gone (no hot state, no stored document) starts beyond the version
  its enrollment's rollup holds (workers/flush.py, `_version_floors`), so it wins there.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import redis

from shared.domain.catalog import Catalog
from shared.integrations import sessions
from shared.integrations.outbox import GRADE, WEBHOOK, XAPI, Outbox, set_tombstones
from shared.lti.classes import forget_member
from shared.lti.grades import GradeTargets
from shared.ops.rollups import rebuild_student, settle
from shared.storage.clients import Buffer
from shared.storage.flush_store import HotStore
from shared.storage.keys import KeySchema
from shared.storage.mongo_store import MongoStore

# Tombstones jump the version this far: further than any heartbeats still being folded.
VERSION_GAP = 2**32


@dataclass
class ErasureReport:
    student_id: str
    material_id: str | None
    documents: int = 0
    hot_states: int = 0
    queued_heartbeats: int = 0
    enrollments: int = 0
    outbox_entries: int = 0  # queued or set-aside xAPI statements, webhooks, LTI scores dropped
    lti_members: int = 0  # LMS class memberships (names, the platform's user id) erased
    grade_targets: int = 0  # LTI grade targets (line items this student was graded on) deleted
    # Delivered before the erasure (whole-student erasure only): erase these in the LRS, and
    # tell the webhook receivers, as the school's process requires.
    sent_xapi_statement_ids: list[str] = field(default_factory=list)
    sent_webhook_ids: list[str] = field(default_factory=list)
    # Scores sent to LMS gradebooks before the erasure: `{platform_id, lineitem, user}` (the
    # platform's user id); the LMS's copies are the school's to erase.
    sent_grades: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def erase_progress(
    mongo: MongoStore,
    r: Buffer,
    schema: KeySchema,
    catalog: Catalog,
    student_id: str,
    material_id: str | None = None,
    tombstone_ttl_s: int = 24 * 3600,
    outboxes: redis.Redis | None = None,
    now: float | None = None,
) -> ErasureReport:
    """Erase one material's progress, or all of a student's, from the buffer `r` (its keys as
    `schema` names them), MongoDB and the outboxes (on RQ's Redis, `outboxes`; `r` itself when
    that is the same plain Redis), in the order the module's docstring explains. Looks up the
    student's own keys (the key index, MongoDB by student, the outbox indexes); never scans.
    Idempotent; repeat it after a failure part-way. Raises Unavailable while MongoDB or the
    buffer cannot be reached."""
    if outboxes is None:
        if not isinstance(r, redis.Redis):
            raise TypeError("erasing on a cluster buffer needs RQ's Redis for the outboxes")
        outboxes = r
    report = ErasureReport(student_id, material_id)
    stored = mongo.stored_versions(student_id, material_id)
    report.documents = sum(holds for _, holds in stored.values())
    versions = {m: v for m, (v, _) in stored.items()}
    cut = HotStore(r, schema).erase(student_id, material_id, versions, VERSION_GAP, tombstone_ttl_s)
    tombstones = {key.material_id: key.tombstone for key in cut}
    report.queued_heartbeats = sum(key.queued for key in cut)
    report.hot_states = sum(key.had_state for key in cut)
    set_tombstones(outboxes, student_id, tombstones, tombstone_ttl_s)
    erased_at = time.time() if now is None else now
    mongo.erase_states(student_id, tombstones, erased_at)
    _forget_completions(mongo, r, catalog, report)
    erase_from_outboxes(outboxes, report, tombstones)
    if material_id is None:  # the person, not one material: their LMS identity goes too
        r.set(schema.person_erased(student_id), erased_at, ex=tombstone_ttl_s)  # first: step 6
        report.lti_members = forget_member(mongo, r, student_id)
    _erase_grade_targets(mongo, report)
    return report


def _erase_grade_targets(mongo: MongoStore, report: ErasureReport) -> None:
    """Step 7: the student's LTI grade targets (of the material, or all), listing the scores
    already sent. A delivery in flight records nothing on a deleted target (no upsert), and
    what it read before the cut is refused or removed with the grade outbox's entries."""
    targets = GradeTargets(mongo.db)
    docs = [
        d
        for d in targets.of_student(report.student_id)
        if report.material_id is None or d.get("material_id") == report.material_id
    ]
    report.sent_grades = [
        {"platform_id": d["platform_id"], "lineitem": d.get("lineitem"), "user": d["sub"]}
        for d in docs
        if d.get("sent")
    ]
    report.grade_targets = targets.erase(report.student_id, report.material_id)


def _forget_completions(
    mongo: MongoStore, r: Buffer, catalog: Catalog, report: ErasureReport
) -> None:
    """Step 4: the enrollments forget the erased completions; their rollups are rebuilt, and
    their live records in Redis take the tombstones too (a flush in flight that made a record
    from the document read before settles it again: shared/storage/live_rollups.py)."""
    student_id, material_id = report.student_id, report.material_id
    if material_id is None:
        courses = [
            c for cid in mongo.enrolled_courses(student_id) if (c := catalog.courses.get(cid))
        ]
        forget: set[str] | None = None
    else:
        # A material the catalog no longer lists (its course replaced without it) may still be
        # named in the enrollments' completions: every enrolled course forgets it then.
        ref = catalog.material(material_id)
        ids = [ref.course_id] if ref else mongo.enrolled_courses(student_id)
        courses = [c for cid in ids if (c := catalog.courses.get(cid))]
        forget = {material_id}
    report.enrollments = sum(mongo.forget_completions(student_id, forget, c) for c in courses)
    rebuild_student(mongo, courses, student_id)  # the tombstones' versions win in the rollups
    for course in courses:
        settle(r, mongo, course, [student_id])


def erase_from_outboxes(r: redis.Redis, report: ErasureReport, tombstones: dict[str, int]) -> None:
    """Step 5: drop the entries made from the erased states from the xAPI and webhook outboxes,
    and the student's open xAPI sessions of the erased materials; erasing the whole student,
    list the ids already delivered (and forget them). Call it after the outbox tombstones are
    set. Idempotent."""
    whole = report.material_id is None
    sessions.forget(r, report.student_id, report.material_id)
    removed, report.sent_xapi_statement_ids = Outbox(r, XAPI).erase_student(
        report.student_id, tombstones, whole
    )
    more, sent_webhooks = Outbox(r, WEBHOOK).erase_student(report.student_id, tombstones, whole)
    scores, _ = Outbox(r, GRADE).erase_student(report.student_id, tombstones, whole)
    report.outbox_entries = removed + more + scores
    report.sent_webhook_ids = sorted({i.partition("@")[0] for i in sent_webhooks})
