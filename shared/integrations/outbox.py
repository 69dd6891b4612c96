"""A durable, bounded outbox in Redis with leased delivery and exponential backoff.

Entries are queued by producers that must never block on a receiver (the flush, the completion
job); delivery jobs lease due entries, attempt them, and settle each one: sent (removed, its id
recorded per student), retried (due again after a backoff), or set aside in a dead-letter hash.
Ids are deterministic, so queueing the same entry twice adds nothing, and an id recorded as sent
is never queued again. Delivery is at-least-once: a job that dies after sending and before
settling leaves its entries to be sent again after the lease.

Each entry names the states it was made from (`basis`: material id -> the state's version). A
push refuses an entry made from a state an erasure has since replaced (a version at or below the
student's tombstone for that material, `vp:erased:<sid>`), in the same atomic step: the producer
read the state before the erasure's cut, and whatever it pushes after the erasure answered is
dropped. Each student's entries are indexed (`OutboxKeys.of`), so export and erasure never scan.

What goes in is bounded per student too (`Limits`, judged in the push script), so that one
student cannot crowd out the others: statements per student per minute, new player sessions per
(student, video) per hour, and a share of the bound kept for completions (`completed`
statements and webhooks), which no quota stops. Each drop is counted by reason. An entry an
erasure refused spends no quota.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from shared.errors import Unavailable
from shared.integrations.xapi import EXT, VERBS
from shared.settings import Settings
from shared.storage.keys import STATS, OutboxKeys, outbox_tombstones

XAPI = OutboxKeys("xapi")
WEBHOOK = OutboxKeys("webhook")
GRADE = OutboxKeys("grade")  # LTI AGS scores (shared/lti/grades.py)
OUTBOXES = (XAPI, WEBHOOK, GRADE)

# Why an entry was not queued (`vp:stats` field `<outbox>_dropped_<reason>`): the student's
# statements per minute, the video's new sessions per hour, the bound less the completions'
# reserve, and the whole bound (only completions reach it).
DROP_REASONS = ("quota_student", "quota_session", "full", "reserve_full")
SESSION_WINDOW_S = 3600  # OUTBOX_SESSIONS_PER_HOUR counts the sessions let through in it
SESSION_MEMORY_S = 24 * 3600  # a session's `terminated` after this counts as a new session
ERASE_ATTEMPTS = 16  # reads of a student's entries lost to other writers before giving up
# How the push script judges an entry: a completion, a session statement, any other statement.
COMPLETION, SESSION, EVENT = "c", "s", "e"
_SESSION_VERBS = {VERBS["initialized"], VERBS["terminated"]}


def _lua(name: str) -> str:
    return (Path(__file__).parent.parent / "storage" / "lua" / f"{name}.lua").read_text()


_PUSH, _CLAIM, _SETTLE = (_lua(n) for n in ("outbox_push", "outbox_claim", "outbox_settle"))


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One thing to deliver: an xAPI statement, or one webhook event for one receiver."""

    id: str
    student_id: str
    payload: dict[str, Any]
    created_at: float
    material_id: str | None = None  # the material it is about (None: a course's event)
    attempts: int = 0  # failed attempts so far (filled in by `claim`)
    basis: tuple[tuple[str, int], ...] = ()  # (material id, version) of the states it states

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "student_id": self.student_id,
                "material_id": self.material_id,
                "created_at": self.created_at,
                "payload": self.payload,
                "basis": dict(self.basis),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, raw: str | bytes, attempts: int = 0) -> OutboxEntry:
        doc = json.loads(raw)
        return cls(
            doc["id"],
            doc["student_id"],
            doc["payload"],
            doc["created_at"],
            doc.get("material_id"),
            attempts,
            tuple(doc.get("basis", {}).items()),
        )


@dataclass(frozen=True, slots=True)
class Settled:
    sent: list[OutboxEntry]
    retry: list[tuple[OutboxEntry, float]]  # (entry, next due time)
    dead: list[tuple[OutboxEntry, str]]  # (entry, reason)


@dataclass(frozen=True, slots=True)
class Limits:
    """What a push may queue: the bound, the part of it only completions may use, and the
    student quotas (0: none)."""

    max_entries: int
    reserved: int = 0
    per_minute: int = 0  # statements a student may queue per minute (their bucket's refill)
    burst: int = 1  # the bucket's size: statements a student may queue at once
    sessions_per_hour: int = 0  # new player sessions per (student, video) per hour

    @classmethod
    def of(cls, s: Settings) -> Limits:
        return cls(
            s.outbox_max_entries,
            int(s.outbox_max_entries * s.outbox_reserved_share),
            s.outbox_statements_per_minute,
            s.outbox_statements_burst,
            s.outbox_sessions_per_hour,
        )


def entry_kind(keys: OutboxKeys, entry: OutboxEntry) -> tuple[str, str]:
    """(kind, session member) as the push script judges it: every webhook and `completed` is a
    completion; `initialized` and `terminated` name their session as `<material>|<session>`."""
    if keys in (WEBHOOK, GRADE):
        # Webhooks carry only material.completed and course.completed; a grade entry is at most
        # one per learner, line item and score interval.
        return COMPLETION, ""
    verb = entry.payload.get("verb", {}).get("id")
    if verb == VERBS["completed"]:
        return COMPLETION, ""
    session = entry.payload.get("context", {}).get("extensions", {}).get(EXT + "session-id")
    if verb in _SESSION_VERBS and session is not None:
        return SESSION, f"{entry.material_id}|{session}"
    return EVENT, ""


def backoff_s(attempts: int, base_s: float, max_s: float) -> float:
    """Delay before the next attempt after `attempts` failed ones: base, 2x base, 4x... capped."""
    return float(min(max_s, base_s * 2 ** min(max(attempts - 1, 0), 30)))


class Outbox:
    """One outbox's operations (all single round trips; safe to call from several workers)."""

    def __init__(self, client: redis.Redis, keys: OutboxKeys) -> None:
        self.redis, self.keys = client, keys
        self._push = client.register_script(_PUSH)
        self._claim = client.register_script(_CLAIM)
        self._settle = client.register_script(_SETTLE)

    def push_args(
        self, entries: list[OutboxEntry], limits: Limits, now: float
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        keys = [k.entries, k.due, k.dead, STATS]
        args: list[Any] = [limits.max_entries, now, k.name, limits.reserved, limits.per_minute]
        args += [max(1, limits.burst), limits.sessions_per_hour, SESSION_WINDOW_S]
        args += [SESSION_MEMORY_S]
        for e in entries:
            keys += [k.sent(e.student_id), k.of(e.student_id), outbox_tombstones(e.student_id)]
            keys += [k.quota(e.student_id), k.sessions(e.student_id)]
            args += [e.id, e.to_json(), *entry_kind(k, e)]
            args += [len(e.basis), *(x for pair in e.basis for x in pair)]
        return keys, args

    def push(self, entries: list[OutboxEntry], limits: Limits, now: float) -> tuple[int, ...]:
        """Queue entries, skipping ids already queued, set aside or sent and entries made from
        erased states; entries past the student's quotas or the bound (less the completions'
        reserve, for other entries) are dropped and counted by reason (`DROP_REASONS`). A
        skipped entry spends no quota. Atomic. Returns (added, skipped, dropped)."""
        if not entries:
            return (0, 0, 0)
        keys, args = self.push_args(entries, limits, now)
        return tuple(int(x) for x in self._push(keys=keys, args=args))

    def push_in(
        self, pipe: redis.client.Pipeline, entries: list[OutboxEntry], limits: Limits, now: float
    ) -> None:
        """`push` as a step of the caller's pipeline (one round trip for several outboxes)."""
        if entries:
            keys, args = self.push_args(entries, limits, now)
            self._push(keys=keys, args=args, client=pipe)

    def claim(self, now: float, lease_s: float, limit: int) -> list[OutboxEntry]:
        """Lease up to `limit` due entries for `lease_s` (others skip them meanwhile)."""
        k = self.keys
        flat = self._claim(keys=[k.entries, k.due, k.tries], args=[now, now + lease_s, limit])
        return [
            OutboxEntry.from_json(flat[i + 1], int(flat[i + 2])) for i in range(0, len(flat), 3)
        ]

    def settle(self, outcome: Settled, now: float, sent_ids_kept: int) -> tuple[int, ...]:
        """Record an attempt's outcome; entries erased meanwhile are left erased.
        Returns (sent, retried, dead) as counted."""
        rows: list[tuple[str, OutboxEntry, Any]] = [("sent", e, "") for e in outcome.sent]
        rows += [("retry", e, due) for e, due in outcome.retry]
        rows += [
            (
                "dead",
                e,
                json.dumps(
                    {
                        "entry": json.loads(e.to_json()),
                        "reason": reason,
                        "attempts": e.attempts + 1,
                        "at": now,
                    }
                ),
            )
            for e, reason in outcome.dead
        ]
        if not rows:
            return (0, 0, 0)
        k = self.keys
        keys = [k.entries, k.due, k.tries, k.dead, STATS]
        keys += [key for _, e, _ in rows for key in (k.sent(e.student_id), k.of(e.student_id))]
        args: list[Any] = [now, sent_ids_kept, k.name]
        for op, e, detail in rows:
            args += [op, e.id, detail]
        return tuple(int(x) for x in self._settle(keys=keys, args=args))

    def requeue_dead(self, ids: list[str] | None = None, now: float = 0.0) -> int:
        """Put set-aside entries (all, or those named) back in the outbox, due at `now`, after
        an operator fixed the cause. Returns how many were moved. Watches the dead-letter hash:
        an erasure between the read and the move makes it read again, so erased entries stay
        erased."""
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(self.keys.dead)  # type: ignore[no-untyped-call]  # redis-py
                    return self._requeue(pipe, ids, now)
                except redis.WatchError:
                    continue

    def _requeue(self, pipe: redis.client.Pipeline, ids: list[str] | None, now: float) -> int:
        raw: dict[bytes, bytes] = pipe.hgetall(self.keys.dead)  # type: ignore[assignment]
        moved = {
            _text(k): json.dumps(json.loads(v)["entry"], separators=(",", ":"), sort_keys=True)
            for k, v in raw.items()
            if ids is None or _text(k) in ids
        }
        if not moved:
            return 0
        pipe.multi()
        pipe.hset(self.keys.entries, mapping=moved)  # type: ignore[arg-type]
        pipe.zadd(self.keys.due, dict.fromkeys(moved, now))
        pipe.hdel(self.keys.tries, *moved)
        pipe.hdel(self.keys.dead, *moved)
        pipe.execute()
        return len(moved)

    def depth(self) -> int:
        return int(self.redis.hlen(self.keys.entries))

    def entries_of(self, student_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The student's queued and set-aside entries, found by the student's entry index (no
        scan of the outbox)."""
        ids = sorted(_text(i) for i in self.redis.smembers(self.keys.of(student_id)))
        if not ids:
            return [], []
        pipe = self.redis.pipeline(transaction=False)
        pipe.hmget(self.keys.entries, ids)
        pipe.hmget(self.keys.dead, ids)
        queued, dead = pipe.execute()
        return [json.loads(r) for r in queued if r], [json.loads(r) for r in dead if r]

    def sent_ids(self, student_id: str) -> list[str]:
        return [_text(m) for m in self.redis.zrange(self.keys.sent(student_id), 0, -1)]

    def erase_student(
        self, student_id: str, tombstones: dict[str, int], whole: bool
    ) -> tuple[int, list[str]]:
        """Remove the student's queued and set-aside entries made from erased states (a basis
        at or below `tombstones`, the versions the erasure gave each material); entries made
        since from newer states stay. Also the sessions the student's quota remembers for the
        erased materials. With `whole` (the whole student is erased) also entries that name no
        basis, and the student's quota, and the record of sent ids is forgotten and returned
        (the receiver's copies are the school's to erase). Call it after the student's outbox
        tombstones are set, so that nothing erased is pushed after it (and no refused push
        writes the quota again). Looks up the student's own keys only. Idempotent.

        Atomic against the other writers: it reads with the student's entry index and the
        dead-letter hash watched (and, with `whole`, the record of sent ids), and writes in one
        transaction; a delivery that settles one of the student's entries (sent, or set aside)
        or an operator's requeue between the read and the writes makes it read again, so an
        entry that moved between `entries` and `dead` meanwhile is not left behind where the
        read did not find it. Raises Unavailable when they kept changing.
        Returns (entries removed, ids delivered before this call)."""
        k = self.keys
        watched = [k.of(student_id), k.dead] + ([k.sent(student_id)] if whole else [])
        with self.redis.pipeline(transaction=True) as pipe:
            for _ in range(ERASE_ATTEMPTS):
                try:
                    pipe.watch(*watched)  # type: ignore[no-untyped-call]  # redis-py
                    return self._erase(pipe, student_id, tombstones, whole)
                except redis.WatchError:
                    continue
        raise Unavailable(f"the {k.name} entries of {student_id!r} kept changing; retry")

    def _erase(
        self,
        pipe: redis.client.Pipeline,
        student_id: str,
        tombstones: dict[str, int],
        whole: bool,
    ) -> tuple[int, list[str]]:
        """`erase_student`'s read (after the watch: on any connection) and its transaction."""
        queued, dead = self.entries_of(student_id)
        gone = {d["id"] for d in queued if _erased(d, tombstones, whole)}
        gone |= {d["entry"]["id"] for d in dead if _erased(d["entry"], tombstones, whole)}
        sent = self.sent_ids(student_id) if whole else []
        sessions = [] if whole else self._sessions_of(student_id, set(tombstones))
        k = self.keys
        pipe.multi()
        if gone:  # from both hashes, wherever the read found each
            pipe.hdel(k.entries, *gone)
            pipe.zrem(k.due, *gone)
            pipe.hdel(k.tries, *gone)
            pipe.hdel(k.dead, *gone)
            pipe.srem(k.of(student_id), *gone)
        if sessions:
            pipe.zrem(k.sessions(student_id), *sessions)
        if whole:
            pipe.delete(k.sent(student_id), k.quota(student_id), k.sessions(student_id))
        pipe.execute()
        return len(gone), sent

    def _sessions_of(self, student_id: str, material_ids: set[str]) -> list[bytes]:
        """The members of the student's quota sessions that are about these materials (one
        read of the student's own zset, which the push trims to a day)."""
        key = self.keys.sessions(student_id)
        members: list[bytes] = self.redis.zrange(key, 0, -1)  # type: ignore[assignment]
        return [m for m in members if _text(m).rpartition("|")[0] in material_ids]


def set_tombstones(
    client: redis.Redis, student_id: str, tombstones: dict[str, int], ttl_s: int
) -> None:
    """Record an erasure's tombstone versions where the outbox push and the session hook check
    them (RQ's Redis), for `ttl_s`. Call it before clearing the outboxes."""
    if not tombstones:
        return
    pipe = client.pipeline(transaction=True)
    pipe.hset(outbox_tombstones(student_id), mapping=tombstones)  # type: ignore[arg-type]
    pipe.expire(outbox_tombstones(student_id), ttl_s)
    pipe.execute()


def _erased(doc: dict[str, Any], tombstones: dict[str, int], whole: bool) -> bool:
    """Whether an entry (as stored) was made from a state the erasure replaced."""
    basis: dict[str, int] = doc.get("basis") or {}
    if not basis:  # queued before entries named their basis
        return whole or doc.get("material_id") in tombstones
    return any(m in tombstones and v <= tombstones[m] for m, v in basis.items())


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
