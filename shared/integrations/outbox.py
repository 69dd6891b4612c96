"""A durable, bounded outbox in Redis with leased delivery and exponential backoff.

Entries are queued by producers that must never block on a receiver (the flush, the completion
job); delivery jobs lease due entries, attempt them, and settle each one: sent (removed, its id
recorded per student), retried (due again after a backoff), or set aside in a dead-letter hash.
Ids are deterministic, so queueing the same entry twice adds nothing, and an id recorded as sent
is never queued again. Delivery is at-least-once: a job that dies after sending and before
settling leaves its entries to be sent again after the lease.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from shared.storage.keys import STATS, XAPI_SESSIONS, OutboxKeys

XAPI = OutboxKeys("xapi")
WEBHOOK = OutboxKeys("webhook")
OUTBOXES = (XAPI, WEBHOOK)


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
        self, entries: list[OutboxEntry], max_entries: int, now: float
    ) -> tuple[list[str], list[Any]]:
        k = self.keys
        keys = [k.entries, k.due, k.dead, STATS] + [k.sent(e.student_id) for e in entries]
        args: list[Any] = [max_entries, now, k.name]
        for e in entries:
            args += [e.id, e.to_json()]
        return keys, args

    def push(self, entries: list[OutboxEntry], max_entries: int, now: float) -> tuple[int, ...]:
        """Queue entries, skipping ids already queued, set aside or sent; past `max_entries`
        new ones are dropped and counted. Returns (added, skipped, dropped)."""
        if not entries:
            return (0, 0, 0)
        keys, args = self.push_args(entries, max_entries, now)
        return tuple(int(x) for x in self._push(keys=keys, args=args))

    def push_in(
        self, pipe: redis.client.Pipeline, entries: list[OutboxEntry], max_entries: int, now: float
    ) -> None:
        """`push` as a step of the caller's pipeline (one round trip for several outboxes)."""
        if entries:
            keys, args = self.push_args(entries, max_entries, now)
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
        """Remove the student's queued and set-aside entries (only those about `material_id`
        when given). For a whole student, also forget the record of sent ids and return them
        (the receiver's copies are the school's to erase). Idempotent.
        Returns (entries removed, ids delivered before this call)."""
        queued, dead = self.entries_of(student_id)
        dead_entries = [d["entry"] for d in dead]
        if material_id is not None:
            queued = [d for d in queued if d.get("material_id") == material_id]
            dead_entries = [d for d in dead_entries if d.get("material_id") == material_id]
        ids = [d["id"] for d in queued]
        dead_ids = [d["id"] for d in dead_entries]
        sent = self.sent_ids(student_id) if material_id is None else []
        pipe = self.redis.pipeline(transaction=True)
        if ids:
            pipe.hdel(self.keys.entries, *ids)
            pipe.zrem(self.keys.due, *ids)
            pipe.hdel(self.keys.tries, *ids)
        if dead_ids:
            pipe.hdel(self.keys.dead, *dead_ids)
        if material_id is None:
            pipe.delete(self.keys.sent(student_id))
        pipe.execute()
        return len(ids) + len(dead_ids), sent


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
