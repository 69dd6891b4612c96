"""Connections to the two Redis roles (README, "Scaling").

RQ's Redis (`REDIS_URL`): queues, scheduler, cron and the workers' statistics; always a plain
Redis (RQ does not support Redis Cluster). The buffer (`BUFFER_REDIS_URL`, default `REDIS_URL`):
every key of `shared.storage.keys` but `vp:stats`; with `BUFFER_REDIS_CLUSTER=true` the URL names
one startup node of a Redis Cluster and redis-py's cluster client is used. Every Lua script
touches the keys of one partition, hence one slot.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

import hiredis
import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.cluster import RedisCluster

from shared.settings import Settings

Buffer = redis.Redis | RedisCluster
AsyncBuffer = aioredis.Redis | AsyncRedisCluster

# No CLIENT SETINFO on connect for cluster connections: Redis before 7.2 refuses it, and the
# asyncio cluster client (redis-py 8.1) then breaks connections opened concurrently
# ("'NoneType' object has no attribute 'writelines'"), found by tests/benchmarks/bench_cluster.
_NO_SETINFO = {"driver_info": None}


def rq_client(settings: Settings, **options: Any) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, **options)


def buffer_client(settings: Settings, **options: Any) -> Buffer:
    """The buffer's client (blocking); building it changes nothing else."""
    if settings.buffer_redis_cluster:
        options.pop("health_check_interval", None)  # per node, managed by the cluster client
        return RedisCluster.from_url(settings.buffer_url, **_NO_SETINFO, **options)
    return redis.Redis.from_url(settings.buffer_url, **options)


def async_buffer_client(settings: Settings, **options: Any) -> AsyncBuffer:
    """The buffer's client (asyncio); building it changes nothing else. Its connections pack
    commands with hiredis (`HiredisPacking`)."""
    if settings.buffer_redis_cluster:
        options.pop("health_check_interval", None)
        options.pop("max_connections", None)
        cluster = AsyncRedisCluster.from_url(settings.buffer_url, **_NO_SETINFO, **options)
        # Every node, the startup nodes and those found later, takes its connection class
        # from the client's connection_kwargs (redis-py 8's ClusterNode and NodesManager).
        packing = hiredis_packing(cluster.connection_kwargs["connection_class"])
        cluster.connection_kwargs["connection_class"] = packing
        for node in cluster.startup_nodes:
            node.connection_class = packing
        return cluster
    client = aioredis.Redis.from_url(settings.buffer_url, **options)
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)
    return client


class HiredisPacking(AbstractConnection):
    """Commands packed by hiredis's C `pack_command`, as redis-py's blocking client already
    does; its asyncio connections pack in Python (redis-py issue #4176). The ingest script's
    call (40 arguments) took 42 us to pack in Python and 6 us here, on every heartbeat.
    Bytes-identical to redis-py's packing (tests/test_clients.py). What hiredis does not take
    (a bytearray, a memoryview, which redis-py sends without a copy, and a bool or None, which
    it refuses) and a client encoding other than UTF-8 (hiredis encodes text as UTF-8) go to
    redis-py's own packing."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if self.encoder.encoding not in UTF8:
            return super().pack_command(*args)
        words = args
        head = args[0]
        if isinstance(head, str):  # "CONFIG GET": the server wants the words apart
            words = (*head.encode().split(), *args[1:])
        elif b" " in head:
            words = (*head.split(), *args[1:])
        try:
            return [hiredis.pack_command(words)]
        except TypeError:  # a memoryview or bytearray (packed), a bool or None (refused)
            return super().pack_command(*args)


UTF8 = frozenset({"utf-8", "utf8", "UTF-8", "UTF8"})


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}
C = TypeVar("C", bound=AbstractConnection)


def hiredis_packing(base: type[C]) -> type[C]:
    """`base` (the connection class a URL chose: TCP, TLS, Unix socket) packing with hiredis;
    one class per base."""
    if base not in _PACKING:
        _PACKING[base] = type(f"Hiredis{base.__name__}", (HiredisPacking, base), {})
    return cast(type[C], _PACKING[base])
