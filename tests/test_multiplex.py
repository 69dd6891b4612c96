"""Many callers on one connection (shared/storage/multiplex.py), on a real redis-server: each
caller gets its own reply, an error reply stays with its caller, and a broken or stalled
connection is given up and replaced. What the server saw is read from the server itself
(CLIENT LIST), not from the multiplexer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import DataError, NoScriptError, ResponseError, TimeoutError

from shared.storage.clients import hiredis_packing
from shared.storage.multiplex import Multiplexed

NAME = "multiplexed-test"
T = TypeVar("T")


def run(make: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(make())


@asynccontextmanager
async def shared(url: str, timeout_s: float = 5.0, retries: int = 3) -> AsyncIterator[Multiplexed]:
    """A Multiplexed over a client of `url` whose connections are named NAME and pack with
    hiredis, as the buffer's client does."""
    client = aioredis.Redis.from_url(url, client_name=NAME, socket_timeout=timeout_s)
    pool = client.connection_pool
    pool.connection_class = hiredis_packing(pool.connection_class)
    lane = Multiplexed(pool, Retry(NoBackoff(), retries), timeout_s)
    try:
        yield lane
    finally:
        await lane.aclose()
        await client.aclose()


def connections(r: redis.Redis) -> list[dict[str, Any]]:
    """The server's view of the multiplexer's connections."""
    return [c for c in r.client_list(_type="normal") if c.get("name") == NAME]


def test_concurrent_callers_each_get_their_own_reply_over_one_connection(
    plain: redis.Redis,
) -> None:
    async def scenario() -> tuple[list[Any], list[list[Any]], int]:
        async with shared(redis_url_of(plain)) as lane:
            singles = [lane.execute("ECHO", f"m{i}") for i in range(600)]
            many = [
                lane.execute_many([("ECHO", f"a{i}"), ("INCR", "counter"), ("ECHO", f"b{i}")])
                for i in range(200)
            ]
            results = await asyncio.gather(*singles, *many)
            return results[:600], results[600:], len(connections(plain))

    singles, many, open_connections = run(scenario)
    assert singles == [f"m{i}".encode() for i in range(600)]
    assert [(m[0], m[2]) for m in many] == [(b"a%d" % i, b"b%d" % i) for i in range(200)]
    assert sorted(m[1] for m in many) == list(range(1, 201))  # every INCR once, in some order
    assert open_connections == 1
    assert plain.get("counter") == b"200"


def test_an_error_reply_stays_with_its_caller(plain: redis.Redis) -> None:
    plain.set("text", "not a number")

    async def scenario() -> list[Any]:
        async with shared(redis_url_of(plain)) as lane:
            return list(
                await asyncio.gather(
                    lane.execute("ECHO", "before"),
                    lane.execute("EVALSHA", "0" * 40, 0),
                    lane.execute_many([("INCR", "text"), ("ECHO", "inside")]),
                    lane.execute("ECHO", "after"),
                    return_exceptions=True,
                )
            )

    before, missing, pipeline, after = run(scenario)
    assert (before, after) == (b"before", b"after")
    assert isinstance(missing, NoScriptError)  # redis-py's class for the NOSCRIPT reply
    wrong, inside = pipeline
    assert isinstance(wrong, ResponseError) and "not an integer" in str(wrong)
    assert inside == b"inside"


def test_a_killed_connection_is_replaced_and_the_command_sent_again(
    plain: redis.Redis,
) -> None:
    async def scenario() -> tuple[str, Any, list[dict[str, Any]]]:
        async with shared(redis_url_of(plain)) as lane:
            await lane.execute("PING")
            [first] = connections(plain)
            plain.client_kill_filter(_id=first["id"])
            reply = await lane.execute("ECHO", "again")
            return first["id"], reply, connections(plain)

    first_id, reply, now = run(scenario)
    assert reply == b"again"
    assert len(now) == 1 and now[0]["id"] != first_id


def test_a_late_reply_gives_the_connection_up_and_fails_its_callers(
    plain: redis.Redis,
) -> None:
    async def scenario() -> tuple[list[Any], Any, int]:
        async with shared(redis_url_of(plain), timeout_s=0.3, retries=0) as lane:
            await lane.execute("PING")
            [first] = connections(plain)
            plain.client_pause(1500, all=True)
            stalled = await asyncio.gather(
                *(lane.execute("ECHO", f"x{i}") for i in range(3)), return_exceptions=True
            )
            await asyncio.sleep(1.5)  # the pause ends: Redis answers again
            reply = await lane.execute("ECHO", "after")
            ids = [c["id"] for c in connections(plain)]
            return stalled, reply, ids.count(first["id"])

    stalled, reply, old_still_open = run(scenario)
    assert all(isinstance(s, TimeoutError) for s in stalled), stalled
    assert reply == b"after"  # a new connection, not the late replies of the old one
    assert old_still_open == 0


def test_a_cancelled_caller_does_not_shift_the_replies(plain: redis.Redis) -> None:
    async def scenario() -> tuple[Any, Any]:
        async with shared(redis_url_of(plain)) as lane:
            await lane.execute("PING")
            plain.client_pause(300, all=True)
            first = asyncio.ensure_future(lane.execute("ECHO", "first"))
            second = asyncio.ensure_future(lane.execute("ECHO", "second"))
            await asyncio.sleep(0.05)
            first.cancel()
            return await second, await lane.execute("ECHO", "third")

    assert run(scenario) == (b"second", b"third")


def test_a_command_that_cannot_be_packed_is_refused_alone(plain: redis.Redis) -> None:
    async def scenario() -> list[Any]:
        async with shared(redis_url_of(plain), timeout_s=2.0, retries=0) as lane:
            return list(
                await asyncio.gather(
                    lane.execute("SET", "k", None),
                    lane.execute("ECHO", "after"),
                    return_exceptions=True,
                )
            )

    refused, after = run(scenario)
    assert isinstance(refused, DataError)  # redis-py's refusal, before anything was sent
    assert after == b"after"


def test_the_urls_database_holds(plain: redis.Redis) -> None:
    base = redis_url_of(plain).rsplit("/", 1)[0]
    other = redis.Redis.from_url(f"{base}/5")
    other.delete("where")
    plain.delete("where")

    async def scenario() -> None:
        async with shared(f"{base}/5") as lane:
            await lane.execute("SET", "where", "db5")

    run(scenario)
    assert other.get("where") == b"db5"
    assert plain.get("where") is None
    other.delete("where")
    other.close()


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis (RQ's: always one server, never a cluster)."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def redis_url_of(r: redis.Redis) -> str:
    kwargs = r.connection_pool.connection_kwargs
    return f"redis://{kwargs['host']}:{kwargs['port']}/{kwargs.get('db', 0)}"
