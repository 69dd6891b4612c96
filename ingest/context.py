"""What the API process holds: settings, connections, the catalog cache."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

import redis
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from starlette.concurrency import run_in_threadpool

from ingest.metrics import system_registry
from shared.clock import Clock, SystemClock
from shared.domain.catalog import Catalog, MaterialRef
from shared.errors import Unavailable
from shared.lti.classes import ClassStore
from shared.lti.frames import FrameOrigins
from shared.lti.grades import GradeTargets
from shared.lti.keys import ToolKeys
from shared.lti.launch import LaunchValidator, PlatformKeySets
from shared.lti.registry import PlatformRegistry
from shared.lti.services import AsyncServiceTokens, ServiceTokens
from shared.ops import admin_ops
from shared.settings import Settings
from shared.storage.clients import (
    AsyncBuffer,
    Buffer,
    async_buffer_client,
    buffer_client,
    rq_client,
)
from shared.storage.durability import log_buffer_durability
from shared.storage.ingest_store import AsyncHotStore
from shared.storage.keys import KeySchema
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore
from shared.tokens import TokenVerifier, ToolTrust

log = logging.getLogger(__name__)


class CatalogCache:
    """The catalog as published in Redis; re-read when its version changes (checked every
    second, and at once, at most twice a second, when asked for an unknown material)."""

    def __init__(self, hot: AsyncHotStore, mongo: MongoStore, r: Buffer, clock: Clock) -> None:
        self.hot, self.mongo, self.redis_sync, self.clock = hot, mongo, r, clock
        self.current = Catalog([])
        self._last_forced = 0.0

    async def refresh(self) -> None:
        version = await self.hot.catalog_version()
        if version == 0:  # nothing published yet (a fresh Redis): publish from MongoDB
            self.current = await run_in_threadpool(
                admin_ops.publish_catalog, self.mongo, self.redis_sync
            )
        elif version != self.current.version:
            version, blob = await self.hot.catalog()
            # Parsed in a thread: a catalog of 100,000 materials takes over half a second, and
            # every API process refreshes at once after a change (the event loop goes on).
            parsed = await run_in_threadpool(Catalog.from_json, blob, version) if blob else None
            if version >= self.current.version:  # a refresh that began later may have won
                self.current = parsed or Catalog([], version)

    async def material(self, material_id: str) -> MaterialRef | None:
        ref = self.current.material(material_id)
        if ref is None and self.clock.monotonic() - self._last_forced > 0.5:
            self._last_forced = self.clock.monotonic()
            await self.refresh()
            ref = self.current.material(material_id)
        return ref

    async def run(self, interval_s: float = 1.0) -> None:
        while True:
            try:
                await self.refresh()
            except (redis.RedisError, Unavailable) as exc:
                log.warning("catalog refresh failed: %s", exc)
            await asyncio.sleep(interval_s)


@dataclass
class MongoReadBreaker:
    """After a failed MongoDB read, skip optional reads for a while (ingest must not wait)."""

    clock: Clock
    pause_s: float = 5.0
    _open_until: float = field(default=0.0, repr=False)

    def allows(self) -> bool:
        return self.clock.monotonic() >= self._open_until

    def failed(self) -> None:
        self._open_until = self.clock.monotonic() + self.pause_s


@dataclass
class AppContext:
    settings: Settings
    verifier: TokenVerifier
    redis_async: AsyncBuffer  # the heartbeat buffer (maybe a cluster)
    redis_sync: Buffer  # the same, blocking (admin operations, in threads)
    rq_redis: redis.Redis  # RQ's Redis (/metrics: failed jobs, workers' statistics)
    key_schema: KeySchema  # the buffer's key names (BUFFER_PARTITIONS)
    hot: AsyncHotStore
    mongo: MongoStore
    catalog: CatalogCache
    breaker: MongoReadBreaker
    system_metrics: CollectorRegistry
    clock: Clock
    lti_platforms: PlatformRegistry
    lti_keys: ToolKeys  # the tool's signing keys (made on first use, not at start)
    lti_launches: LaunchValidator  # the launch checks, with the platforms' cached key sets
    lti_classes: ClassStore  # LMS contexts, their classes and members
    lti_grades: GradeTargets  # what learners' launches record to grade (AGS)
    lti_tokens: AsyncServiceTokens  # platforms' service tokens (AGS, NRPS), cached in RQ's Redis
    lti_frame_origins: FrameOrigins  # the platforms' frame_origins, for frame-ancestors
    live: LiveRollups  # enrollment rollups not yet in MongoDB, read by the teacher views
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(cls, settings: Settings, clock: Clock | None = None) -> AppContext:
        # A connection broken by a Redis restart is retried on a fresh one: repeating an
        # append is harmless (heartbeats are idempotent), failing it would be a needless 503.
        client = async_buffer_client(
            settings,
            socket_timeout=5,
            socket_connect_timeout=2,
            max_connections=256,
            health_check_interval=30,
            retry=AsyncRetry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        )
        sync_options = {
            "socket_timeout": 5,
            "socket_connect_timeout": 2,
            "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        }
        sync_client = buffer_client(settings, **sync_options)
        rq_redis = rq_client(settings, **sync_options)
        clock = clock or SystemClock()
        key_schema = KeySchema.from_settings(settings)
        hot = AsyncHotStore(client, key_schema)
        mongo = MongoStore(settings.mongo_url, settings.mongo_timeout_ms)
        lti_keys = ToolKeys(settings, mongo.db, clock)
        lti_platforms = PlatformRegistry(mongo.db)
        verifier = TokenVerifier(settings, clock)
        # The sessions LTI launches mint are signed with the tool's keys: trusted beside the
        # identity provider's tokens.
        verifier.trust_tool(ToolTrust(lti_keys.public_keys, clock))
        return cls(
            settings=settings,
            verifier=verifier,
            redis_async=client,
            redis_sync=sync_client,
            rq_redis=rq_redis,
            key_schema=key_schema,
            hot=hot,
            mongo=mongo,
            catalog=CatalogCache(hot, mongo, sync_client, clock),
            breaker=MongoReadBreaker(clock),
            system_metrics=system_registry(
                sync_client, key_schema, rq_redis, settings.due_delay_s, settings.queue_name, clock
            ),
            clock=clock,
            lti_platforms=lti_platforms,
            lti_keys=lti_keys,
            lti_launches=LaunchValidator(PlatformKeySets(clock), client, clock),
            lti_classes=ClassStore(mongo, sync_client, key_schema),
            lti_grades=GradeTargets(mongo.db),
            lti_tokens=AsyncServiceTokens(ServiceTokens(rq_redis, lti_keys, clock)),
            lti_frame_origins=FrameOrigins(lti_platforms, clock),
            live=LiveRollups(sync_client, settings.rollup_persist_s),
        )

    async def start(self) -> None:
        try:
            await run_in_threadpool(self.mongo.ensure_indexes)
            await run_in_threadpool(self.lti_platforms.ensure_indexes)
            await run_in_threadpool(self.lti_classes.ensure_indexes)
        except Unavailable:
            log.warning("MongoDB unavailable at start-up; indexes will be created by workers")
        try:
            await self.hot.prepare()
        except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
            log.warning("the buffer's Redis is unavailable at start-up: %s", exc)
        await run_in_threadpool(log_buffer_durability, self.redis_sync)
        with contextlib.suppress(redis.RedisError, Unavailable):
            await self.catalog.refresh()
        await self.verifier.start()
        await self.lti_frame_origins.refresh()
        self._tasks.append(asyncio.create_task(self.catalog.run()))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.verifier.close()
        await self.lti_launches.key_sets.close()
        await self.lti_frame_origins.close()
        self.lti_tokens.tokens.http.close()
        await self.hot.aclose()
        await self.redis_async.aclose()
        self.redis_sync.close()
        self.rq_redis.close()
        self.mongo.close()
