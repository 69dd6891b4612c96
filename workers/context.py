"""Per-process connections for jobs, created once (workers run as `SimpleWorker`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from functools import lru_cache

import httpx
import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from rq import Queue

from shared.clock import Clock, SystemClock
from shared.domain.catalog import Catalog
from shared.errors import Unavailable
from shared.lti.grades import GradeTargets
from shared.lti.keys import ToolKeys
from shared.lti.services import ServiceTokens
from shared.settings import Settings, get_settings
from shared.storage.clients import Buffer, buffer_client, rq_client
from shared.storage.flush_store import HotStore
from shared.storage.keys import CATALOG_VERSION, KeySchema
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore


@dataclass
class WorkerContext:
    settings: Settings
    redis: redis.Redis  # RQ's Redis: queues and `vp:stats`
    buffer: Buffer  # the heartbeat buffer (maybe a cluster)
    key_schema: KeySchema  # the buffer's key names (BUFFER_PARTITIONS)
    hot: HotStore
    mongo: MongoStore
    queue: Queue
    clock: Clock = field(default_factory=SystemClock)
    _catalog: Catalog = field(default_factory=lambda: Catalog([]))
    _lti_keys: ToolKeys | None = None
    _lti_http: httpx.Client | None = None

    @property
    def live(self) -> LiveRollups:
        """The enrollment rollups kept in Redis (shared/storage/live_rollups.py)."""
        return LiveRollups(self.buffer, self.settings.rollup_persist_s)

    @property
    def lti_grades(self) -> GradeTargets:
        return GradeTargets(self.mongo.db)

    @property
    def lti_http(self) -> httpx.Client:
        """The HTTP client for LTI platforms' services, kept for the process (making one
        loads the CA bundle: tens of milliseconds)."""
        if self._lti_http is None:
            self._lti_http = httpx.Client(timeout=self.settings.delivery_timeout_s)
        return self._lti_http

    @property
    def lti_tokens(self) -> ServiceTokens:
        """Platforms' service tokens (AGS, NRPS), cached in RQ's Redis for every worker."""
        return ServiceTokens(self.redis, self.lti_keys, self.clock, self.lti_http)

    @property
    def lti_keys(self) -> ToolKeys:
        """The tool's signing keys (shared/lti/keys.py), built on first use."""
        if self._lti_keys is None:
            self._lti_keys = ToolKeys(self.settings, self.mongo.db, self.clock)
        return self._lti_keys

    def catalog(self) -> Catalog:
        """The catalog as last published to Redis (re-read only when its version changed)."""
        version = int(self.buffer.get(CATALOG_VERSION) or 0)
        if version != self._catalog.version:
            version, blob = self.hot.catalog()
            self._catalog = Catalog.from_json(blob, version) if blob else Catalog([], version)
        return self._catalog


def build_context(settings: Settings, clock: Clock | None = None) -> WorkerContext:
    options = {
        "socket_timeout": 10,
        "health_check_interval": 30,
        "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
    }
    client = rq_client(settings, **options)
    buffer = buffer_client(settings, **options)  # the same server as RQ's unless configured
    key_schema = KeySchema.from_settings(settings)
    return WorkerContext(
        settings=settings,
        redis=client,
        buffer=buffer,
        key_schema=key_schema,
        hot=HotStore(buffer, key_schema),
        mongo=MongoStore(settings.mongo_url, settings.mongo_timeout_ms),
        queue=Queue(settings.queue_name, connection=client),
        clock=clock or SystemClock(),
    )


@lru_cache(maxsize=1)
def get_context() -> WorkerContext:
    ctx = build_context(get_settings())
    with contextlib.suppress(Unavailable):  # retried by the next process start
        ctx.mongo.ensure_indexes()
        ctx.lti_grades.ensure_indexes()
    return ctx
