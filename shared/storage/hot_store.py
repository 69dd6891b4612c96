"""Redis: the durable heartbeat buffer and the hot state that makes reads see every write.

The keys are mapped in `shared.storage.keys`. A heartbeat is never deleted before the state
holding it is written (to Redis by a fold, which is atomic with the trim), and a key leaves
its partition's `dirty` index only once MongoDB acknowledged its latest version, so a worker
may die at any instant without losing anything.

Every script call touches the keys of one partition (one hash tag), so the buffer may be a
Redis Cluster; pipelines are split by node by the cluster client.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.cluster import RedisCluster

from shared.domain.progress import Heartbeat, Verification, WatchState, cap_s
from shared.errors import Unavailable
from shared.storage.clients import AsyncBuffer, Buffer
from shared.storage.keys import (
    CATALOG,
    CATALOG_VERSION,
    ENROLLMENT_LOADED,
    KeySchema,
    Partition,
    ProgressKey,
)
from shared.storage.set_aside import UNREADABLE, SetAside, describe

log = logging.getLogger(__name__)


def _lua(name: str) -> str:
    return (Path(__file__).parent / "lua" / f"{name}.lua").read_text()


SCRIPTS = {
    name: _lua(name)
    for name in (
        "ingest", "read", "claim", "commit_fold", "finish", "erase", "publish", "mirror",
        "spend_reads",
    )
}  # fmt: skip
SHAS = {name: hashlib.sha1(text.encode()).hexdigest() for name, text in SCRIPTS.items()}

ScriptCall = tuple[list[str], list[Any]]  # (KEYS, ARGV), the keys all in one slot


NODE_DOWN = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterError,
    redis.exceptions.SlotNotCoveredError,
)


def _pipelined_scripts(conn: redis.Redis, name: str, calls: list[ScriptCall]) -> list[Any]:
    """One script many times in one round trip to one server (two if it lost its scripts);
    errors of single calls are returned in their place."""
    for attempt in range(2):
        pipe = conn.pipeline(transaction=False)
        for keys, args in calls:
            pipe.execute_command("EVALSHA", SHAS[name], len(keys), *keys, *args)  # type: ignore[no-untyped-call]  # redis-py
        replies = pipe.execute(raise_on_error=False)
        if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
            break
        if attempt == 0:  # Redis restarted without its scripts: load, then the calls again
            conn.script_load(SCRIPTS[name])
    return list(replies)


def _redirected(reply: Any) -> bool:
    return isinstance(reply, redis.exceptions.ResponseError) and str(reply).startswith(
        ("MOVED", "ASK")
    )


def run_scripts_per_node(client: Buffer, name: str, calls: list[ScriptCall]) -> list[Any]:
    """Run one script many times, one pipeline per server. Each call's keys share a hash tag
    (one slot); errors of single calls are returned in their place, and on a cluster a primary
    that is down fails only its own calls (its replies are the error).

    On a cluster the calls are grouped by the node holding their slot and sent over that node's
    own connection: redis-py's cluster pipeline asks a server `COMMAND GETKEYS` for every
    EVALSHA in it (one more round trip per call, to one node). A call whose slot moved meanwhile
    (MOVED) is sent again after the client learns the slots anew."""
    if not isinstance(client, RedisCluster):
        return _pipelined_scripts(client, name, calls)
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for attempt in range(2):
        groups: dict[str, tuple[Any, list[int]]] = {}
        for i in todo:
            node = client.get_node_from_key(calls[i][0][0])  # type: ignore[no-untyped-call]  # redis-py
            groups.setdefault(node.name, (node, []))[1].append(i)
        for node, indexes in groups.values():
            try:
                group = _pipelined_scripts(node.redis_connection, name, [calls[i] for i in indexes])
            except NODE_DOWN as exc:
                group = [exc] * len(indexes)
            for i, reply in zip(indexes, group, strict=True):
                replies[i] = reply
        todo = [i for i in todo if _redirected(replies[i])]
        if not todo or attempt == 1:
            break
        client.nodes_manager.initialize()
    return replies


def run_scripts(client: Buffer, name: str, calls: list[ScriptCall]) -> list[Any]:
    """`run_scripts_per_node`, raising the first error."""
    replies = run_scripts_per_node(client, name, calls)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


@dataclass(slots=True)
class HotEntry:
    """What Redis holds for one key: the folded state and the heartbeats not yet folded."""

    state: WatchState | None
    version: int | None  # None: no hot state (never folded, or expired)
    pending: list[Heartbeat]
    completion_recorded: bool = False


@dataclass(frozen=True, slots=True)
class CachedView:
    """What a process already folded of a key: the hash's epoch and version, and how many of
    its pending heartbeats. Redis answers a caller holding a current view with only the
    heartbeats after it."""

    epoch: str
    version: str  # the hash's `n` as text ('' when it has none)
    folded: int
    mark: str  # SHA-1 of the last pending heartbeat folded ('' when none): the list still holds it


@dataclass(frozen=True, slots=True)
class Proposal:
    """A state a web process folded from a key's hot state (version `view.version`) and its
    first `view.folded` pending heartbeats, offered to Redis as the key's preview."""

    view: CachedView
    state_json: str


@dataclass(slots=True)
class HotView:
    """What one atomic step saw of a key, for a reply: a base and the heartbeats after it.

    `mode`: 'cache' (the base is the caller's cached state), 'preview' (`base` is the preview a
    web process stored) or 'state' (`base` is the hot state, None when there is none).
    """

    mode: str
    epoch: str
    version: str
    preview_folded: int  # how far the key's preview reaches (-1: none for this version)
    stored: bool  # MongoDB holds a state for the key
    base: WatchState | None
    start: int  # the pending list's index of the first heartbeat in `tail`
    mark: str  # SHA-1 of the list's last heartbeat, the last one `tail` reaches
    tail: list[Heartbeat]

    @property
    def has_hot_state(self) -> bool:
        return self.version != ""

    @property
    def folded(self) -> int:
        """Pending heartbeats a state built from this view holds."""
        return self.start + len(self.tail)

    def cached_view(self) -> CachedView:
        return CachedView(self.epoch, self.version, self.folded, self.mark)


@dataclass(slots=True)
class IngestReply:
    status: str  # ok | enrollment_unknown | not_enrolled | buffer_full | key_full | rate_limited
    view: HotView | None = None
    retry_after_s: int = 0


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else value


def parse_view(reply: list[Any]) -> HotView:
    """ingest.lua's reply after its status, or read.lua's whole reply."""
    raw_base = reply[5]
    return HotView(
        mode=as_text(reply[0]),
        epoch=as_text(reply[1]),
        version=as_text(reply[2]),
        preview_folded=int(reply[3]),
        stored=as_text(reply[4]) == "1",
        base=WatchState.from_json(raw_base) if raw_base else None,
        start=int(reply[6]),
        mark=as_text(reply[7]),
        tail=[Heartbeat.from_json(raw) for raw in reply[8:]],
    )


def parse_ingest_reply(reply: list[Any]) -> IngestReply:
    status = as_text(reply[0])
    if status == "rate_limited":
        return IngestReply(status, retry_after_s=max(1, int(reply[1])))
    if status != "ok" or len(reply) == 1:
        return IngestReply(status)
    return IngestReply(status, parse_view(reply[1:]))


HOT_FIELDS = ("state", "n", "cq")


def parse_entry(hot_hash: dict[Any, Any], pending: list[Any]) -> HotEntry:
    fields = {as_text(k): as_text(v) for k, v in hot_hash.items()}
    state = WatchState.from_json(fields["state"]) if "state" in fields else None
    version = int(fields["n"]) if "n" in fields else None
    return HotEntry(
        state, version, [Heartbeat.from_json(raw) for raw in pending], fields.get("cq") == "1"
    )


def parse_enrollments(members: set[Any]) -> set[str] | None:
    courses = {as_text(m) for m in members}
    if ENROLLMENT_LOADED not in courses:
        return None
    return courses - {ENROLLMENT_LOADED}


def ingest_args(
    item: IngestItem, limits: IngestLimits, want_state: bool
) -> tuple[list[str], list[Any]]:
    key = item.key
    part = key.partition
    keys = [
        key.schema.enrollments_key(key.student_id),
        key.pending,
        key.state,
        part.dirty,
        part.pending,
        limits.rate_key(key),
        key.stored,
        key.schema.budget_key(key.student_id),
        key.schema.key_index(key.student_id),
    ]
    view = item.cached or NO_VIEW
    offer = item.proposal
    args: list[Any] = [
        item.course_id,
        key.member,
        limits.due_at,
        limits.max_dirty,
        limits.max_pending,
        "1" if want_state else "0",
        limits.rate_limit,
        limits.rate_window_s,
        key.material_id,
        limits.max_per_key,
        new_epoch(),
        *_view_args(view),
    ]
    if offer is None:
        args += ["", "", 0, "", ""]
    else:
        args += [*_view_args(offer.view), offer.state_json]
    v = limits.verification
    args += [v.max_rate, v.gap_s, cap_s(v), v.slack_s, item.need, limits.now, limits.ledger_ttl_s]
    args += [hb.to_json() for hb in item.heartbeats]
    return keys, args


_EPOCHS = itertools.count()
_epoch_prefix: tuple[int, str] = (0, "")  # (pid, random prefix): renewed in a forked child


def new_epoch() -> str:
    """An epoch for a hash created now: unique across processes (a random prefix per process)
    and cheaper than random bytes per request (the script uses it only when the hash has none)."""
    global _epoch_prefix
    pid = os.getpid()
    if _epoch_prefix[0] != pid:
        _epoch_prefix = (pid, secrets.token_hex(6))
    return f"{_epoch_prefix[1]}{next(_EPOCHS):x}"


NO_VIEW = CachedView("", "", 0, "")  # an epoch is never '', so this view never matches


@dataclass(frozen=True, slots=True)
class IngestItem:
    key: ProgressKey
    course_id: str
    heartbeats: list[Heartbeat]
    cached: CachedView | None = None
    proposal: Proposal | None = None
    need: float = 0.0  # seconds of the student's budget the heartbeats ask for


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """Bounds every append is checked against, inside the same atomic step. The buffer bounds
    are the partition's (the settings' `max_*_per_partition`)."""

    due_at: float
    max_dirty: int  # dirty keys in the key's partition
    max_pending: int  # pending heartbeats in the key's partition
    rate_limit: int  # appends per student per window; 0 disables
    rate_window_s: int = 60
    now: float = 0.0
    max_per_key: int = 3600  # pending heartbeats one key may hold
    verification: Verification = Verification()  # the budget's terms (trusted: no budget)
    ledger_ttl_s: int = 7 * 24 * 3600  # the student's budget outlives their silence this long

    def rate_key(self, key: ProgressKey) -> str:
        return key.schema.rate_limit_key(key.student_id, int(self.now // self.rate_window_s))


@dataclass(frozen=True, slots=True)
class Fold:
    """A fold to commit: `folded` pending heartbeats moved into `state`, now version `version`."""

    key: ProgressKey
    expected_version: int | None
    state: WatchState
    folded: int
    version: int


class AsyncHotStore:
    """The ingest tier's view of Redis (asyncio). Every method costs one round trip."""

    def __init__(self, client: AsyncBuffer, schema: KeySchema) -> None:
        self.client, self.schema = client, schema
        self._ingest = client.register_script(SCRIPTS["ingest"])
        self._spend_reads = client.register_script(SCRIPTS["spend_reads"])

    async def prepare(self) -> None:
        """Before the first request: learn a cluster's slots, and load the scripts (on every
        primary). Without it, the first requests of many concurrent clients race the asyncio
        cluster client's start-up (MOVED replies, broken connections, a script run twice)."""
        if isinstance(self.client, AsyncRedisCluster):
            await self.client.initialize()
        for name in ("ingest", "read", "spend_reads"):
            await self.client.script_load(SCRIPTS[name])

    async def append(
        self, items: list[IngestItem], limits: IngestLimits, want_state: bool = True
    ) -> list[IngestReply]:
        """Durably buffer each item's heartbeats, or refuse it whole (see IngestReply.status).

        With `want_state`, each reply carries a view of the key from the same atomic step (a
        base and the heartbeats after it), so the caller can compute the state as of this
        heartbeat at a cost that does not grow with the backlog.
        """
        calls = [ingest_args(item, limits, want_state) for item in items]
        if len(calls) == 1:  # the common case: one EVALSHA, no pipeline, no SCRIPT EXISTS
            keys, args = calls[0]
            return [parse_ingest_reply(await self._ingest(keys=keys, args=args))]
        replies = await self._pipelined("ingest", calls)
        return [parse_ingest_reply(reply) for reply in replies]

    async def _pipelined(
        self, name: str, calls: list[ScriptCall], members_of: str | None = None
    ) -> list[Any]:
        """Run one script many times in one round trip (two if Redis lost its scripts), after
        an SMEMBERS of `members_of` when given (its reply comes first)."""
        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            if members_of is not None:
                pipe.smembers(members_of)
            for keys, args in calls:  # the cluster pipeline refuses `evalsha()`: by name
                pipe.execute_command("EVALSHA", SHAS[name], len(keys), *keys, *args)
            replies = await pipe.execute(raise_on_error=False)
            if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                break
            if attempt == 0:  # Redis restarted without its scripts: load, then the calls again
                await self.client.script_load(SCRIPTS[name])
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def read(
        self, student_id: str, keys: list[ProgressKey], cached: list[CachedView | None]
    ) -> tuple[set[str] | None, list[HotView]]:
        """The student's enrolled course ids (None when not mirrored) and each key's view
        (relative to the caller's cached view of it, when that still holds)."""
        calls = [
            ([key.pending, key.state, key.stored], [key.material_id, *_view_args(view)])
            for key, view in zip(keys, cached, strict=True)
        ]
        replies = await self._pipelined("read", calls, self.schema.enrollments_key(student_id))
        return parse_enrollments(replies[0]), [parse_view(r) for r in replies[1:]]

    async def catalog(self) -> tuple[int, str | None]:
        version, blob = await self.client.mget(CATALOG_VERSION, CATALOG)
        return int(version or 0), as_text(blob) if blob is not None else None

    async def spend_reads(
        self, user_id: str, cost: int, limit: int, window_s: int, now: float
    ) -> bool:
        """Count `cost` reads of the user in the window of `window_s` seconds holding `now`,
        unless that goes over `limit`: False when refused (refused reads do not count)."""
        keys = [self.schema.read_limit_key(user_id, int(now // window_s))]
        return bool(await self._spend_reads(keys=keys, args=[limit, window_s, cost]))

    async def catalog_version(self) -> int:
        return int(await self.client.get(CATALOG_VERSION) or 0)


def _view_args(view: CachedView | None) -> list[Any]:
    v = view or NO_VIEW
    return [v.epoch, v.version, v.folded, v.mark]


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
            call = _erase_call(
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


def _erase_call(
    schema: KeySchema,
    student_id: str,
    materials: list[str],
    stored: dict[str, int],
    gap: int,
    ttl_s: int,
    whole: bool,
) -> ScriptCall:
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
