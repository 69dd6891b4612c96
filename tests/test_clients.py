"""The buffer's asyncio client packs commands with hiredis (shared/storage/clients.py): the
bytes on the wire are redis-py's own, for every kind of argument the code sends, and a real
Redis answers them. The expected bytes come from redis-py's Python packer, an implementation
independent of hiredis's."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from shared.domain.progress import Heartbeat, Verification
from shared.storage.clients import HiredisPacking, async_buffer_client, hiredis_packing
from shared.storage.ingest_store import IngestItem, IngestLimits, ingest_args
from shared.storage.keys import ProgressKey
from tests.helpers import KEY_SCHEMA, async_buffer, make_settings

COMMANDS: list[tuple[Any, ...]] = [
    ("SET", "k", "v"),
    ("CONFIG GET", "appendonly"),  # two words in the command's name
    (b"CLIENT SETNAME", b"web"),
    ("HSET", "h", "naïve ☃ 日本", "é" * 300),
    ("ZADD", "z", 1765000000.123, "m", -0.5, "n", 1e20, "o", 2.5e-7, "p", math.inf, "q"),
    ("INCRBY", "n", -5), ("SET", "big", 2**70), ("SET", "empty", ""), ("SET", b"raw", b"\x00\xff"),
    ("RPUSH", "l", bytearray(b"ab"), b"x" * 10_000),  # past redis-py's buffer cutoff
]  # fmt: skip


def python_packed(*args: Any) -> bytes:
    return b"".join(Connection().pack_command(*args))


def hiredis_packed(*args: Any) -> bytes:
    return b"".join(hiredis_packing(Connection)().pack_command(*args))


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: str(c[0]))
def test_hiredis_packs_the_bytes_redis_py_packs(command: tuple[Any, ...]) -> None:
    assert hiredis_packed(*command) == python_packed(*command)


def test_the_ingest_scripts_call_packs_the_same() -> None:
    """The heartbeat route's one command (the reason for the packer), with its real keys and
    arguments: floats, ints, strings and the heartbeats' JSON."""
    key = ProgressKey("s-ünï", "v-100", KEY_SCHEMA)
    readings = [Heartbeat(1765000000.25 + n, 12.5 * n, session_id="tab-1", seq=n) for n in range(3)]
    item = IngestItem(key, "phys-101", readings, need=30.0)
    limits = IngestLimits(
        due_at=1765000030.5,
        max_dirty=10_000,
        max_pending=500_000,
        rate_limit=600,
        now=1765000000.75,
        verification=Verification(),
    )
    keys, args = ingest_args(item, limits, want_state=True)
    call = ("EVALSHA", "f" * 40, len(keys), *keys, *args)
    assert hiredis_packed(*call) == python_packed(*call)


def test_what_redis_py_refuses_is_refused() -> None:
    bad: Any
    for bad in (True, None, [1]):
        with pytest.raises(DataError):
            hiredis_packing(Connection)().pack_command("SET", "k", bad)


def test_another_encoding_keeps_redis_pys_packing() -> None:
    conn = hiredis_packing(Connection)(encoding="latin-1")
    assert (
        b"".join(conn.pack_command("SET", "k", "é"))
        == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n\xe9\r\n"
    )


@pytest.mark.parametrize(
    ("url", "base"),
    [("redis://127.0.0.1:1/0", Connection), ("rediss://127.0.0.1:1/0", SSLConnection),
     ("unix:///tmp/redis.sock", UnixDomainSocketConnection)],
)  # fmt: skip
def test_the_buffer_client_keeps_the_urls_connection_kind(url: str, base: type) -> None:
    settings = make_settings(
        "redis://127.0.0.1:1/0", "mongodb://127.0.0.1:1/x", buffer_redis_url=url
    )
    client = async_buffer_client(settings)
    assert isinstance(client, Redis)
    kind = client.connection_pool.connection_class
    assert issubclass(kind, HiredisPacking) and issubclass(kind, base)


@pytest.mark.cluster
def test_a_real_redis_reads_what_the_packer_sent(redis_url: str) -> None:
    """On one Redis and on the cluster (every node, found at start-up or later, packs with
    hiredis), a script's arguments arrive as sent."""
    client = async_buffer(redis_url)

    async def round_trip() -> tuple[list[bytes], list[type]]:
        try:
            echo = "return ARGV"
            sent = ("naïve ☃", 1765000000.123, -5, b"\x00\xff", "")
            got: list[bytes] = await client.eval(echo, 0, *sent)
            if isinstance(client, Redis):
                return got, [client.connection_pool.connection_class]
            for n in range(20):  # keys of every slot range: a connection to every primary
                await client.set(f"k{n}", n)
            return got, [type(c) for node in client.get_nodes() for c in node._connections]
        finally:
            await client.aclose()

    echoed, kinds = asyncio.run(round_trip())
    assert echoed == ["naïve ☃".encode(), b"1765000000.123", b"-5", b"\x00\xff", b""]
    assert kinds and all(issubclass(kind, HiredisPacking) for kind in kinds)
