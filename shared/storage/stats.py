"""Worker statistics kept in Redis (hash `vp:stats`), so that the counts of any number of
workers on any number of hosts add up; the API's /metrics exposes them."""

from __future__ import annotations

from collections.abc import Mapping

import redis

from shared.storage.keys import STATS

BATCH_BUCKETS = (1, 10, 50, 100, 250, 500, 1000)


def record_flush(
    r: redis.Redis,
    *,
    keys: int,
    heartbeats: int,
    written: int,
    stale: int,
    takeovers: int,
    completions: int,
    failed: bool,
    mongo_seconds: float,
    set_aside: Mapping[str, int] | None = None,
    overclaimed: int = 0,
) -> None:
    """Add one flush's figures (one round trip). A flush that claimed nothing is not counted.
    `set_aside`: keys set aside by reason (`quarantined:<reason>`, and their sum)."""
    if keys == 0:
        return
    pipe = r.pipeline(transaction=False)
    pipe.hincrby(STATS, "flushes", 1)
    pipe.hincrby(STATS, "flushed_keys", written)
    pipe.hincrby(STATS, "flushed_heartbeats", heartbeats)
    pipe.hincrby(STATS, "stale_writes", stale)
    pipe.hincrby(STATS, "takeovers", takeovers)
    pipe.hincrby(STATS, "completions", completions)
    pipe.hincrby(STATS, "flush_failures", int(failed))
    for reason, count in (set_aside or {}).items():
        pipe.hincrby(STATS, "quarantined", count)
        pipe.hincrby(STATS, f"quarantined:{reason}", count)
    pipe.hincrby(STATS, "overclaimed_heartbeats", overclaimed)
    if written:
        pipe.hincrby(STATS, "mongo_writes", 1)
        pipe.hincrbyfloat(STATS, "mongo_write_seconds", mongo_seconds)
        bucket = next((b for b in BATCH_BUCKETS if written <= b), "inf")
        pipe.hincrby(STATS, f"batch_le_{bucket}", 1)
    pipe.execute()


def read_stats(r: redis.Redis) -> dict[str, float]:
    raw: dict[bytes | str, bytes | str] = r.hgetall(STATS)
    return {(k.decode() if isinstance(k, bytes) else k): float(v) for k, v in raw.items()}
