"""Connections to the two Redis roles (README, "Scaling").

RQ's Redis (`REDIS_URL`): queues, scheduler, cron and the workers' statistics; always a plain
Redis (RQ does not support Redis Cluster). The buffer (`BUFFER_REDIS_URL`, default `REDIS_URL`):
every key of `shared.storage.keys` but `vp:stats`; with `BUFFER_REDIS_CLUSTER=true` the URL names
one startup node of a Redis Cluster and redis-py's cluster client is used. Every Lua script
touches the keys of one partition, hence one slot.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
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
    """The buffer's client (asyncio); building it changes nothing else."""
    if settings.buffer_redis_cluster:
        options.pop("health_check_interval", None)
        options.pop("max_connections", None)
        return AsyncRedisCluster.from_url(settings.buffer_url, **_NO_SETINFO, **options)
    return aioredis.Redis.from_url(settings.buffer_url, **options)
