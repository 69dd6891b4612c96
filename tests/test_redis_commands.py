"""What one heartbeat and one status read cost Redis, counted command by command on a
redis-server of the test's own (INFO commandstats counts the commands a script runs, and
nothing else talks to this server): the per-call costs docs/performance.md lists."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
from redis.asyncio import Redis as AsyncRedis

from shared.devtools.services import Service, redis_service
from shared.domain.progress import Heartbeat, WatchState
from shared.storage.ingest_store import IngestItem, IngestLimits
from shared.storage.keys import ProgressKey
from shared.storage.views import CachedState, HotView, IngestReply
from tests.helpers import KEY_SCHEMA, hot_store

KEY = ProgressKey("s1", "v1", KEY_SCHEMA)
T = TypeVar("T")
HANDSHAKE = {"info", "hello", "client"}  # this test's INFO, and each new connection's greeting


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Service]:
    service = redis_service(tmp_path / "redis").start()
    try:
        yield service
    finally:
        service.stop()


def calls(r: redis.Redis) -> dict[str, int]:
    stats = r.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}


def counted(r: redis.Redis, run: Coroutine[Any, Any, T]) -> tuple[dict[str, int], T]:
    """The commands `run` made Redis execute, by name, and what it returned."""
    before = calls(r)
    result = asyncio.run(run)
    after = calls(r)
    diff = {k: v - before.get(k, 0) for k, v in after.items() if k not in HANDSHAKE}
    return {k: v for k, v in diff.items() if v}, result


def hb(t: float) -> Heartbeat:
    return Heartbeat(received_at=t, watch_time=t, played=((0.0, t),))


async def append(port: int, beats: list[Heartbeat], cached: CachedState | None) -> IngestReply:
    async with hot_store(AsyncRedis(port=port)) as store:
        limits = IngestLimits(1000.0, 100, 10_000, 240, 60, now=6000.0)
        [reply] = await store.append([IngestItem(KEY, "c1", beats, cached)], limits)
        return reply


def test_a_heartbeat_after_the_callers_view_costs_twelve_commands(server: Service) -> None:
    r = redis.Redis(port=server.port)
    r.sadd(KEY_SCHEMA.enrollments_key("s1"), "*", "c1")
    first = asyncio.run(append(server.port, [hb(1)], None))
    assert first.status == "ok" and first.view is not None
    cached = first.view.cached(WatchState())

    # The key is dirty, its hash has an epoch, the rate counter has its TTL: what is left is
    # the checks, the append and the reply (EVALSHA, enrolled, bounds, rate, the key's fields,
    # the caller's view's last mark, the append, the stored flag, the tail).
    spent, reply = counted(r, append(server.port, [hb(2)], cached))
    assert reply.status == "ok" and reply.view is not None and reply.view.mode == "cache"
    assert [h.received_at for h in reply.view.tail] == [2]
    assert spent == {
        "evalsha": 1,
        "sismember": 2,  # enrolled; stored in MongoDB
        "llen": 1,
        "get": 1,  # the partition's pending count
        "zscore": 1,  # already dirty
        "incrby": 2,  # the rate counter; the partition's pending count
        "hmget": 1,  # epoch, version, preview, grant
        "lindex": 1,  # the caller's view still holds
        "rpush": 1,
        "lrange": 1,
    }


def test_a_batch_is_one_rpush_and_its_reply_mark_is_the_last_heartbeat(server: Service) -> None:
    r = redis.Redis(port=server.port)
    r.sadd(KEY_SCHEMA.enrollments_key("s1"), "*", "c1")
    asyncio.run(append(server.port, [hb(1)], None))
    spent, reply = counted(r, append(server.port, [hb(2), hb(3), hb(4)], None))
    assert spent["rpush"] == 1 and "lindex" not in spent
    assert reply.view is not None and [h.received_at for h in reply.view.tail] == [1, 2, 3, 4]
    last = r.lindex(KEY.pending, -1)
    assert isinstance(last, bytes)
    assert reply.view.mark == hashlib.sha1(last).hexdigest()


async def read(port: int, cached: CachedState) -> HotView:
    async with hot_store(AsyncRedis(port=port)) as store:
        _, [view] = await store.read("s1", [KEY], [cached])
        return view


def test_a_status_read_after_the_callers_view_costs_eight_commands(server: Service) -> None:
    r = redis.Redis(port=server.port)
    r.sadd(KEY_SCHEMA.enrollments_key("s1"), "*", "c1")
    first = asyncio.run(append(server.port, [hb(1)], None))
    assert first.view is not None
    asyncio.run(append(server.port, [hb(2)], None))
    asyncio.run(read(server.port, first.view.cached(WatchState())))  # loads the script
    spent, view = counted(r, read(server.port, first.view.cached(WatchState())))
    assert view.mode == "cache" and [h.received_at for h in view.tail] == [2]
    assert spent == {
        "smembers": 1,  # the enrollments, in the same pipeline
        "evalsha": 1,
        "llen": 1,
        "hmget": 1,
        "sismember": 1,  # stored in MongoDB
        "lindex": 2,  # the caller's view still holds; the reply's mark of the list's last
        "lrange": 1,
    }
