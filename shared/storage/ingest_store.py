"""The ingest tier's view of Redis (asyncio): the durable heartbeat buffer and the reads that
see every write (`shared.storage.views`).

The keys are mapped in `shared.storage.keys`. A heartbeat is accepted in one atomic step
(ingest.lua) that checks the enrollment and every bound, appends it, marks the key dirty and
answers with the key's view, so the caller can compute the state as of it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster

from shared.domain.progress import Heartbeat, Verification, cap_s
from shared.storage.clients import AsyncBuffer
from shared.storage.keys import (
    CATALOG,
    CATALOG_VERSION,
    ENROLLMENT_LOADED,
    KeySchema,
    ProgressKey,
)
from shared.storage.multiplex import REDIRECTED, REROUTED, ClusterLanes, Multiplexed
from shared.storage.scripts import SCRIPTS, SHAS, ScriptCall, as_text
from shared.storage.views import CachedState, HotView, IngestReply, view_args


@dataclass(frozen=True, slots=True)
class IngestItem:
    """Heartbeats for one key. With `offer_preview`, `cached`'s state is offered to Redis as
    the key's preview (stored when it reaches further than the preview Redis holds)."""

    key: ProgressKey
    course_id: str
    heartbeats: list[Heartbeat]
    cached: CachedState | None = None  # what the caller already folded of the key
    offer_preview: bool = False
    need: float = 0.0  # seconds of the student's budget the heartbeats ask for
    # The key's grant `need` already counts: the epoch of the state it was computed from and
    # that state's stamp in it (("", 0.0): no state); the script takes off the key's grants
    # beyond it. None: `need` is net of every grant already.
    seen: tuple[str, float] | None = None


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


NO_PREVIEW = ["", "", 0, "", ""]


def ingest_args(item: IngestItem, limits: IngestLimits, want_state: bool) -> ScriptCall:
    """ingest.lua's KEYS and ARGV (its header says what each is), in that order."""
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
    ]
    args += view_args(item.cached)  # 12-15
    cached = item.cached
    if item.offer_preview and cached is not None:  # 16-20
        args += [*view_args(cached), cached.state.to_json()]  # the preview: every process's
    else:
        args += NO_PREVIEW
    v = limits.verification  # 21-27
    args += [v.max_rate, v.gap_s, cap_s(v), v.slack_s, item.need, limits.now, limits.ledger_ttl_s]
    args += ["", "-"] if item.seen is None else [item.seen[0], item.seen[1]]  # 28-29
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


def parse_enrollments(members: Iterable[Any]) -> set[str] | None:
    courses = {as_text(m) for m in members}
    if ENROLLMENT_LOADED not in courses:
        return None
    return courses - {ENROLLMENT_LOADED}


class AsyncHotStore:
    """The ingest tier's view of Redis (asyncio). Every method costs one round trip.

    The heartbeats and the status reads share one connection on a plain Redis, and one per
    primary on a cluster (`shared.storage.multiplex`); on a cluster, what that connection
    cannot serve (a slot moved, a primary away) goes through redis-py's cluster client."""

    def __init__(
        self, client: AsyncBuffer, schema: KeySchema, shared_connection: bool = True
    ) -> None:
        """`shared_connection=False`: redis-py's pooled connections (a benchmark's
        comparison)."""
        self.client, self.schema = client, schema
        self._scripts = {name: client.register_script(SCRIPTS[name])
                         for name in ("ingest", "spend_reads")}  # fmt: skip
        self._shared: Multiplexed | None = None
        self._loading: dict[str, asyncio.Future[Any]] = {}  # script name -> its SCRIPT LOAD
        self._lanes: ClusterLanes | None = None
        if isinstance(client, aioredis.Redis) and shared_connection:
            self._shared = Multiplexed.of(client)
        elif isinstance(client, AsyncRedisCluster) and shared_connection:
            self._lanes = ClusterLanes(client)

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()
        if self._lanes is not None:
            await self._lanes.aclose()

    async def _load(self, name: str) -> None:
        """Load the script `name` again (Redis lost its scripts: a restart, a failover): one
        SCRIPT LOAD for every caller that met NOSCRIPT meanwhile, not one pooled connection
        each (hundreds of callers would exhaust the pool)."""
        loading = self._loading.get(name)
        if loading is None or loading.done():
            loading = asyncio.ensure_future(self.client.script_load(SCRIPTS[name]))
            self._loading[name] = loading
        await asyncio.shield(loading)

    def _lane(self, keys: list[str]) -> Multiplexed | None:
        """The shared connection for a call on `keys` (None: the client's own way)."""
        return self._shared if self._lanes is None else self._lanes.lane_for(keys)

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
            return [IngestReply.parse(await self._script("ingest", keys, args))]
        replies = await self._pipelined("ingest", calls)
        return [IngestReply.parse(reply) for reply in replies]

    async def _script(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """One call of the script `name` (ingest, spend_reads)."""
        lane = self._lane(keys)
        if lane is None:
            return await self._scripts[name](keys=keys, args=args)
        command = ("EVALSHA", SHAS[name], len(keys), *keys, *args)
        try:
            try:
                return await lane.execute(*command)
            except redis.exceptions.NoScriptError:  # Redis restarted without its scripts
                await self._load(name)
                return await lane.execute(*command)
        except REROUTED:
            if self._lanes is None:  # a plain Redis: the shared connection retried already
                raise
            return await self._scripts[name](keys=keys, args=args)

    async def _pipelined(
        self, name: str, calls: list[ScriptCall], members_of: str | None = None
    ) -> list[Any]:
        """Run one script many times in one round trip (two if Redis lost its scripts), after
        an SMEMBERS of `members_of` when given (its reply comes first)."""
        every_key = [key for keys, _ in calls for key in keys]
        if members_of is not None:
            every_key.append(members_of)
        for attempt in range(2):
            commands: list[tuple[Any, ...]] = []
            if members_of is not None:
                commands.append(("SMEMBERS", members_of))
            commands += [("EVALSHA", SHAS[name], len(keys), *keys, *args) for keys, args in calls]
            replies = await self._run_all(commands, every_key)
            if not any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
                break
            if attempt == 0:  # Redis restarted without its scripts: load, then the calls again
                await self._load(name)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _run_all(self, commands: list[tuple[Any, ...]], keys: list[str]) -> list[Any]:
        """Replies in order, error replies in their place (a pipeline, in one round trip);
        `keys`: every key the commands name."""
        lane = self._lane(keys)
        replies: list[Any] = [None] * len(commands)
        again = list(range(len(commands)))  # through the client: all, or what did not run
        if lane is not None:
            try:
                replies = await lane.execute_many(commands)
            except REROUTED:
                if self._lanes is None:
                    raise
            else:
                if self._lanes is None:
                    return replies
                # A redirected command did not run; the others did and must not run twice
                # (a slot being moved answers ASK only for the keys it no longer holds).
                again = [i for i, reply in enumerate(replies) if isinstance(reply, REDIRECTED)]
                if not again:
                    return replies
        pipe = self.client.pipeline(transaction=False)
        for i in again:  # the cluster pipeline refuses `evalsha()`: by name
            pipe.execute_command(*commands[i])
        for i, reply in zip(again, await pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
        return replies

    async def read(
        self, student_id: str, keys: list[ProgressKey], cached: list[CachedState | None]
    ) -> tuple[set[str] | None, list[HotView]]:
        """The student's enrolled course ids (None when not mirrored) and each key's view
        (relative to the caller's cached state of it, when that still holds)."""
        calls = [
            ([key.pending, key.state, key.stored], [key.material_id, *view_args(entry)])
            for key, entry in zip(keys, cached, strict=True)
        ]
        replies = await self._pipelined("read", calls, self.schema.enrollments_key(student_id))
        return parse_enrollments(replies[0]), [HotView.parse(r) for r in replies[1:]]

    async def catalog(self) -> tuple[int, str | None]:
        version, blob = await self.client.mget(CATALOG_VERSION, CATALOG)
        return int(version or 0), as_text(blob) if blob is not None else None

    async def spend_reads(
        self, user_id: str, cost: int, limit: int, window_s: int, now: float
    ) -> bool:
        """Count `cost` reads of the user in the window of `window_s` seconds holding `now`,
        unless that goes over `limit`: False when refused (refused reads do not count)."""
        keys = [self.schema.read_limit_key(user_id, int(now // window_s))]
        return bool(await self._script("spend_reads", keys, [limit, window_s, cost]))

    async def catalog_version(self) -> int:
        return int(await self.client.get(CATALOG_VERSION) or 0)
