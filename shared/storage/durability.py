"""How durable the heartbeat buffer's Redis is: its AOF settings, as far as Redis tells.

Accepted heartbeats live only in the buffer until a worker stores them in MongoDB, so a Redis
without AOF loses them all when it restarts. The web process and the worker log what they
find at start-up, and `/readyz` reports it. Managed Redis services often refuse CONFIG; the
durability is then unknown (None), never guessed.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import redis
from redis.cluster import RedisCluster

from shared.storage.clients import Buffer

log = logging.getLogger(__name__)

_FSYNC_STRENGTH = {"no": 0, "everysec": 1, "always": 2}


@dataclass(frozen=True, slots=True)
class Durability:
    aof: bool | None  # None: unknown (CONFIG refused, or Redis did not answer)
    appendfsync: str | None  # with AOF only: "always", "everysec" or "no"

    def as_dict(self) -> dict[str, bool | str | None]:
        return asdict(self)


UNKNOWN = Durability(None, None)


def buffer_durability(client: Buffer) -> tuple[Durability, str | None]:
    """The buffer's AOF settings (on a cluster, the weakest primary's) and, when unknown, why.
    Never raises a Redis error."""
    try:
        if isinstance(client, RedisCluster):
            primaries = client.get_primaries()  # type: ignore[no-untyped-call]  # redis-py's
            nodes = [client.get_redis_connection(node) for node in primaries]
        else:
            nodes = [client]
        found = [_node_durability(node) for node in nodes]
    except redis.ResponseError as exc:  # CONFIG renamed away or denied by an ACL
        return UNKNOWN, f"CONFIG GET refused: {exc}"
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        return UNKNOWN, f"Redis did not answer: {exc}"
    if not all(d.aof for d in found):
        return Durability(False, None), None
    weakest = min(found, key=lambda d: _FSYNC_STRENGTH.get(d.appendfsync or "", -1))
    return weakest, None


def _node_durability(node: redis.Redis) -> Durability:
    config = {_text(k): _text(v) for k, v in node.config_get("append*").items()}
    if config.get("appendonly") != "yes":
        return Durability(False, None)
    return Durability(True, config.get("appendfsync"))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def log_buffer_durability(client: Buffer) -> Durability:
    """Log one line on the buffer's durability (a warning unless AOF is on and fsyncs at
    least every second); returns what was found. Never raises a Redis error."""
    found, why = buffer_durability(client)
    if found.aof is None:
        log.warning("the buffer Redis's durability is unknown (%s): check it has AOF", why)
    elif not found.aof:
        log.warning(
            "the buffer's Redis has no AOF (appendonly no): heartbeats accepted but not yet "
            "in MongoDB are lost if Redis restarts; set appendonly yes, appendfsync everysec"
        )
    elif found.appendfsync not in ("everysec", "always"):
        log.warning(
            "the buffer's Redis has AOF with appendfsync %s: a machine crash loses the "
            "heartbeats of the last ~30 s; set appendfsync everysec",
            found.appendfsync,
        )
    else:
        log.info("the buffer's Redis has AOF, appendfsync %s", found.appendfsync)
    return found
