"""A durable, bounded outbox in Redis with leased delivery and exponential backoff.

Entries are queued by producers that must never block on a receiver (the flush, the completion
job); delivery jobs lease due entries, attempt them, and settle each one: sent (removed, its id
recorded per student), retried (due again after a backoff), or set aside in a dead-letter hash.
Ids are deterministic, so queueing the same entry twice adds nothing, and an id recorded as sent
is never queued again. Delivery is at-least-once: a job that dies after sending and before
settling leaves its entries to be sent again after the lease.

What goes in is bounded per student too (`Limits`, judged in the push script), so that one
student cannot crowd out the others: statements per student per minute, new player sessions per
(student, video) per hour, and a share of the bound kept for completions (`completed`
statements and webhooks), which no quota stops. Each drop is counted by reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from shared.integrations.xapi import EXT, VERBS
from shared.settings import Settings
from shared.storage.keys import STATS, XAPI_SESSIONS, OutboxKeys

XAPI = OutboxKeys("xapi")
WEBHOOK = OutboxKeys("webhook")
OUTBOXES = (XAPI, WEBHOOK)

# Why an entry was not queued (`vp:stats` field `<outbox>_dropped_<reason>`): the student's
# statements per minute, the video's new sessions per hour, the bound less the completions'
# reserve, and the whole bound (only completions reach it).
DROP_REASONS = ("quota_student", "quota_session", "full", "reserve_full")
SESSION_WINDOW_S = 3600  # OUTBOX_SESSIONS_PER_HOUR counts the sessions let through in it
SESSION_MEMORY_S = 24 * 3600  # a session's `terminated` after this counts as a new session
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

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "student_id": self.student_id,
                "material_id": self.material_id,
                "created_at": self.created_at,
                "payload": self.payload,
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
    if keys == WEBHOOK:
        return COMPLETION, ""  # webhooks carry only material.completed and course.completed
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
            keys += [k.sent(e.student_id), k.quota(e.student_id), k.sessions(e.student_id)]
            args += [e.id, e.to_json(), *entry_kind(k, e)]
        return keys, args

    def push(self, entries: list[OutboxEntry], limits: Limits, now: float) -> tuple[int, ...]:
        """Queue entries, skipping ids already queued, set aside or sent; entries past the
        student's quotas or the bound (less the completions' reserve, for other entries) are
        dropped and counted by reason (`DROP_REASONS`). Atomic. Returns (added, skipped,
        dropped)."""
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
        keys += [k.sent(e.student_id) for _, e, _ in rows]
        args: list[Any] = [now, sent_ids_kept, k.name]
        for op, e, detail in rows:
            args += [op, e.id, detail]
        return tuple(int(x) for x in self._settle(keys=keys, args=args))

    def requeue_dead(self, ids: list[str] | None = None, now: float = 0.0) -> int:
        """Put set-aside entries (all, or those named) back in the outbox, due at `now`, after
        an operator fixed the cause. Returns how many were moved."""
        raw: dict[bytes, bytes] = self.redis.hgetall(self.keys.dead)  # type: ignore[assignment]
        moved = {
            _text(k): json.dumps(json.loads(v)["entry"], separators=(",", ":"), sort_keys=True)
            for k, v in raw.items()
            if ids is None or _text(k) in ids
        }
        if not moved:
            return 0
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.entries, mapping=moved)  # type: ignore[arg-type]
        pipe.zadd(self.keys.due, dict.fromkeys(moved, now))
        pipe.hdel(self.keys.tries, *moved)
        pipe.hdel(self.keys.dead, *moved)
        pipe.execute()
        return len(moved)

    def depth(self) -> int:
        return int(self.redis.hlen(self.keys.entries))

    def entries_of(self, student_id: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The student's queued and set-aside entries (scans the bounded outbox)."""
        queued = [
            doc
            for _, raw in self.redis.hscan_iter(self.keys.entries, count=1000)
            if (doc := json.loads(raw))["student_id"] == student_id
        ]
        dead = [
            doc
            for _, raw in self.redis.hscan_iter(self.keys.dead, count=1000)
            if (doc := json.loads(raw))["entry"]["student_id"] == student_id
        ]
        return queued, dead

    def sent_ids(self, student_id: str) -> list[str]:
        return [_text(m) for m in self.redis.zrange(self.keys.sent(student_id), 0, -1)]

    def erase_student(
        self, student_id: str, material_id: str | None = None
    ) -> tuple[int, list[str]]:
        """Remove the student's queued and set-aside entries and the sessions their quota
        remembers (only those about `material_id` when given). For a whole student, also forget
        their quota and the record of sent ids, and return those ids (the receiver's copies are
        the school's to erase). Idempotent.
        Returns (entries removed, ids delivered before this call)."""
        queued, dead = self.entries_of(student_id)
        dead_entries = [d["entry"] for d in dead]
        if material_id is not None:
            queued = [d for d in queued if d.get("material_id") == material_id]
            dead_entries = [d for d in dead_entries if d.get("material_id") == material_id]
        ids = [d["id"] for d in queued]
        dead_ids = [d["id"] for d in dead_entries]
        sent = self.sent_ids(student_id) if material_id is None else []
        sessions = [] if material_id is None else self._sessions_of(student_id, material_id)
        pipe = self.redis.pipeline(transaction=True)
        if ids:
            pipe.hdel(self.keys.entries, *ids)
            pipe.zrem(self.keys.due, *ids)
            pipe.hdel(self.keys.tries, *ids)
        if dead_ids:
            pipe.hdel(self.keys.dead, *dead_ids)
        if sessions:
            pipe.zrem(self.keys.sessions(student_id), *sessions)
        if material_id is None:
            k = self.keys
            pipe.delete(k.sent(student_id), k.quota(student_id), k.sessions(student_id))
        pipe.execute()
        return len(ids) + len(dead_ids), sent

    def _sessions_of(self, student_id: str, material_id: str) -> list[bytes]:
        """The members of the student's quota sessions that are about the material."""
        return [
            m
            for m, _ in self.redis.zscan_iter(self.keys.sessions(student_id), count=1000)
            if _text(m).rpartition("|")[0] == material_id
        ]


def forget_sessions(client: redis.Redis, student_id: str, material_id: str | None) -> int:
    """Drop the student's open xAPI sessions (so no `terminated` follows an erasure)."""
    members = [
        m
        for m, _ in client.zscan_iter(XAPI_SESSIONS, count=1000)
        if (doc := json.loads(m))[1] == student_id and material_id in (None, doc[0])
    ]
    return int(client.zrem(XAPI_SESSIONS, *members)) if members else 0


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
