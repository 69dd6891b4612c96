"""The workers' view of Redis (blocking): claims, folds and what MongoDB acknowledged.

The keys are mapped in `shared.storage.keys`. A heartbeat is never deleted before the state
holding it is written (to Redis by a fold, which is atomic with the trim), and a key leaves
its partition's `dirty` index only once MongoDB acknowledged its latest version, so a worker
may die at any instant without losing anything.

Every script call touches the keys of one partition (one hash tag), so the buffer may be a
Redis Cluster; on a cluster the calls are sent per node (`scripts.run_scripts_per_node`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from shared.domain.progress import Heartbeat, WatchState
from shared.errors import Unavailable
from shared.storage.clients import Buffer
from shared.storage.keys import (
    CATALOG,
    CATALOG_VERSION,
    KeySchema,
    Partition,
    ProgressKey,
)
from shared.storage.scripts import NODE_DOWN, ScriptCall, as_text, run_scripts, run_scripts_per_node
from shared.storage.set_aside import UNREADABLE, SetAside, describe

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HotEntry:
    """What Redis holds for one key: the folded state and the heartbeats not yet folded."""

    state: WatchState | None
    version: int | None  # None: no hot state (never folded, or expired)
    pending: list[Heartbeat]
    completion_recorded: bool = False


HOT_FIELDS = ("state", "n", "cq")


def parse_entry(hot_hash: dict[Any, Any], pending: list[Any]) -> HotEntry:
    fields = {as_text(k): as_text(v) for k, v in hot_hash.items()}
    state = WatchState.from_json(fields["state"]) if "state" in fields else None
    version = int(fields["n"]) if "n" in fields else None
    return HotEntry(
        state, version, [Heartbeat.from_json(raw) for raw in pending], fields.get("cq") == "1"
    )


@dataclass(frozen=True, slots=True)
class Fold:
    """A fold to commit: `folded` pending heartbeats moved into `state`, now version `version`."""

    key: ProgressKey
    expected_version: int | None
    state: WatchState
    folded: int
    version: int


class HotStore:
    """The workers' view of Redis (blocking). Every method costs one round trip (on a cluster,
    one per node, sent in turn)."""

    def __init__(self, client: Buffer, schema: KeySchema) -> None:
        self.client, self.schema = client, schema

    def claim(
        self, now: float, lease_until: float, limit: int
    ) -> tuple[int, list[ProgressKey], bool]:
        """Lease up to about `limit` due keys: an equal share from each partition (one claim
        script per partition: one slot each), then, when some partitions had more due than
        their share, what is left of `limit` from those (a second round trip). Returns
        (takeovers, keys, whether a partition still had more due)."""
        parts = self.schema.partitions()
        share = -(-limit // len(parts))
        takeovers, keys, full = self._claim_round(parts, now, lease_until, share)
        if full and len(keys) < limit:  # the due keys sit in a few partitions: fill the batch
            top_up = -(-(limit - len(keys)) // len(full))
            more, extra, full = self._claim_round(full, now, lease_until, top_up)
            takeovers, keys = takeovers + more, keys + extra
        return takeovers, keys, bool(full)

    def _claim_round(
        self, parts: list[Partition], now: float, lease_until: float, share: int
    ) -> tuple[int, list[ProgressKey], list[Partition]]:
        """Claim up to `share` keys from each partition; also returns those that gave all."""
        calls: list[ScriptCall] = [([p.dirty, p.leases], [now, lease_until, share]) for p in parts]
        replies = run_scripts_per_node(self.client, "claim", calls)
        down = [r for r in replies if isinstance(r, Exception)]
        for error in down:
            if not isinstance(error, NODE_DOWN):
                raise error
        if down and len(down) == len(replies):
            raise down[0]
        if down:  # a cluster primary is down: the others' keys are flushed meanwhile
            log.warning("%d of %d partitions unreachable: %s", len(down), len(parts), down[0])
        takeovers, keys, full = 0, [], []
        for part, reply in zip(parts, replies, strict=True):
            if isinstance(reply, Exception):
                continue
            takeovers += int(reply[0])
            keys += [ProgressKey.from_member(m, self.schema) for m in reply[1:]]
            if len(reply) - 1 >= share:
                full.append(part)
        return takeovers, keys, full

    def read(self, keys: list[ProgressKey]) -> list[HotEntry | None]:
        """Each key's entry, or None for one whose stored data cannot be parsed."""
        return [e if isinstance(e, HotEntry) else None for e in self.read_entries(keys)]

    def read_entries(self, keys: list[ProgressKey]) -> list[HotEntry | SetAside]:
        """Each key's entry, or why one whose stored data cannot be parsed is unreadable."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key.state, HOT_FIELDS)  # not the preview: only web processes read it
            pipe.lrange(key.pending, 0, -1)
        replies = pipe.execute()
        entries: list[HotEntry | SetAside] = []
        for i in range(0, len(replies), 2):
            try:
                fields = {f: v for f, v in zip(HOT_FIELDS, replies[i], strict=True) if v}
                entries.append(parse_entry(fields, replies[i + 1]))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                entries.append(SetAside(UNREADABLE, "its buffered data: " + describe(exc)))
        return entries

    def commit(self, folds: list[Fold]) -> list[bool]:
        """Store each fold unless someone else folded that key first (then it is skipped)."""
        calls: list[ScriptCall] = []
        for fold in folds:
            expected = "" if fold.expected_version is None else str(fold.expected_version)
            calls.append((
                [fold.key.state, fold.key.pending, fold.key.partition.pending],
                [expected, fold.state.to_json(), fold.folded, fold.version],
            ))  # fmt: skip
        return [bool(ok) for ok in run_scripts(self.client, "commit_fold", calls)]

    def finish(
        self,
        written: list[tuple[ProgressKey, int, bool]],
        next_due: float,
        ttl_s: int,
    ) -> int:
        """Mark keys clean after MongoDB acknowledged (key, version, completion recorded).

        A key that changed meanwhile stays dirty, due at `next_due`. Returns keys cleaned.
        """
        calls: list[ScriptCall] = [
            (
                [key.partition.dirty, key.partition.leases, key.state, key.pending, key.stored,
                 key.schema.buffer_tombstones(key.student_id), key.schema.key_index(key.student_id),
                 key.partition.poison, key.partition.poison_why],
                [key.member, version, next_due, ttl_s, "1" if completion else "", key.material_id],
            )
            for key, version, completion in written
        ]  # fmt: skip
        return sum(int(x) for x in run_scripts(self.client, "finish", calls))

    def release(self, keys: list[ProgressKey], retry_at: float) -> None:
        """Give claimed keys back unfinished (their write failed): due again at `retry_at`."""
        if not keys:
            return
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hdel(key.partition.leases, key.member)
            pipe.zadd(key.partition.dirty, {key.member: retry_at}, xx=True)
        pipe.execute()

    def catalog(self) -> tuple[int, str | None]:
        version, blob = self.client.mget(CATALOG_VERSION, CATALOG)
        return int(version or 0), as_text(blob) if blob is not None else None

    def indexed_materials(self, student_id: str) -> set[str]:
        """The materials the student's key index lists (one SMEMBERS: no scan)."""
        members: set[Any] = self.client.smembers(self.schema.key_index(student_id))
        return {as_text(m) for m in members}

    def erase(
        self, student_id: str, material_id: str | None, stored: dict[str, int], gap: int, ttl_s: int
    ) -> list[ErasedKey]:
        """The erasure's cut: in one atomic step, the buffer keys of one material of the
        student, or of all the materials the key index lists plus those of `stored` (MongoDB's
        materials and versions), each left with a tombstone version (erase.lua); erasing all,
        the student's budget ledger too. Run again when the index grew in between. Idempotent.
        Raises Unavailable when it kept growing."""
        for _ in range(ERASE_ATTEMPTS):
            if material_id is not None:
                materials = [material_id]
            else:
                materials = sorted(self.indexed_materials(student_id) | set(stored))
            call = erase_call(
                self.schema, student_id, materials, stored, gap, ttl_s, material_id is None
            )
            [reply] = run_scripts(self.client, "erase", [call])
            if as_text(reply[0]) == "ok":
                rows = [reply[1 + 3 * i : 4 + 3 * i] for i in range(len(materials))]
                return [
                    ErasedKey(m, int(version), int(queued), had == 1)
                    for m, (version, queued, had) in zip(materials, rows, strict=True)
                ]
        raise Unavailable(f"the buffer keys of {student_id!r} kept changing; retry the erasure")


ERASE_ATTEMPTS = 5


@dataclass(frozen=True, slots=True)
class ErasedKey:
    """What the erasure's cut did to one (student, material)."""

    material_id: str
    tombstone: int  # the version it now holds: beyond any fold or write still in flight
    queued: int  # pending heartbeats dropped
    had_state: bool  # a hot state was dropped


def erase_call(
    schema: KeySchema,
    student_id: str,
    materials: list[str],
    stored: dict[str, int],
    gap: int,
    ttl_s: int,
    whole: bool,
) -> ScriptCall:
    """erase.lua's KEYS and ARGV for these materials of the student (`whole`: all of them,
    refused unless the key index still lists only `materials`)."""
    part = schema.partition_for(student_id)
    keys = [schema.key_index(student_id), schema.buffer_tombstones(student_id),
            schema.stored_key(student_id),
            part.dirty, part.leases, part.pending, part.poison, part.poison_why,
            schema.budget_key(student_id)]  # fmt: skip
    args: list[Any] = [gap, ttl_s, "1" if whole else "0"]
    for m in materials:
        key = ProgressKey(student_id, m, schema)
        keys += [key.state, key.pending]
        args += [m, key.member, stored.get(m, 0)]
    return keys, args
