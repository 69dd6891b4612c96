"""Many callers on one connection (shared/storage/multiplex.py), on a real redis-server: each
caller gets its own reply, an error reply stays with its caller, and a broken or stalled
connection is given up and replaced. On a real three-primary Redis Cluster, through the buffer's
own `AsyncHotStore`: one connection per primary, and what a primary's connection cannot serve
(a slot map gone stale, a connection killed) goes through redis-py's cluster client, run once.
What the servers saw is read from the servers themselves (CLIENT LIST, the counters the
scripts keep), not from the multiplexer."""

from __future__ import annotations

import asyncio
import secrets
import signal
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import DataError, NoScriptError, ResponseError, TimeoutError

from shared.devtools.services import RedisCluster, redis_service
from shared.storage.clients import async_buffer_client, hiredis_packing
from shared.storage.ingest_store import AsyncHotStore
from shared.storage.keys import KeySchema
from shared.storage.multiplex import Multiplexed
from tests.helpers import hot_store, make_settings, present, wait_until_async

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
    lane = Multiplexed(pool, Retry(NoBackoff(), retries))
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


def test_callers_waiting_to_write_to_a_stopped_redis_fail_when_it_is_given_up(
    tmp_path: Path,
) -> None:
    """A Redis that stops reading (SIGSTOP: a frozen host, a partition without a reset) while
    commands keep coming: once its connection is given up, every caller fails at once, those
    waiting for room in the socket's buffer too, and the unsent bytes are dropped."""
    server = redis_service(tmp_path / "redis").start()
    proc = present(server.proc)
    big = b"x" * (1 << 20)

    async def scenario() -> tuple[list[BaseException | None], int]:
        async with shared(f"redis://127.0.0.1:{server.port}/0", timeout_s=0.5, retries=0) as lane:
            await lane.execute("PING")
            proc.send_signal(signal.SIGSTOP)
            calls = []
            for i in range(40):  # one a turn of the loop: the later ones wait for room
                calls.append(asyncio.ensure_future(lane.execute("SET", f"k{i}", big)))
                await asyncio.sleep(0)
            line = present(lane._lane)
            await wait_until_async(lambda: not line.alive, timeout_s=30)  # the watchdog
            await asyncio.wait(calls, timeout=30)  # a bound on a hang, not on speed
            outcome = [c.exception() if c.done() else None for c in calls]
            unsent = line.transport.get_write_buffer_size()
            for c in calls:
                c.cancel()
            return outcome, unsent

    try:
        outcome, unsent = run(scenario)
    finally:
        proc.send_signal(signal.SIGCONT)
        server.stop()
    assert all(isinstance(e, TimeoutError) for e in outcome), outcome  # none left waiting
    assert unsent == 0


def test_a_connection_opened_for_a_cancelled_caller_is_replaced_once_it_breaks(
    plain: redis.Redis,
) -> None:
    """The first caller gives up (its client went away) while the connection is being made;
    when that connection later breaks, the next command gets a new one, not the broken one."""

    async def scenario() -> tuple[Any, Any]:
        async with shared(redis_url_of(plain), retries=0) as lane:
            first = asyncio.ensure_future(lane.execute("PING"))
            await asyncio.sleep(0)  # it is opening the connection
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await wait_until_async(lambda: lane._lane is not None, timeout_s=30)
            before = await lane.execute("ECHO", "before")
            for c in connections(plain):
                plain.client_kill_filter(_id=c["id"])
            await wait_until_async(lambda: not present(lane._lane).alive, timeout_s=30)
            return before, await lane.execute("ECHO", "after")

    assert run(scenario) == (b"before", b"after")


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


# -- on a Redis Cluster ----------------------------------------------------------------------

WINDOW_S, NOW = 3600, 1_800_000_000.0  # one read-limit window for every call of a test


@asynccontextmanager
async def cluster_store(cluster: RedisCluster) -> AsyncIterator[AsyncHotStore]:
    """The buffer's asyncio cluster client, as the web process makes it (hiredis packing), its
    connections named NAME, under the web process's AsyncHotStore."""
    settings = make_settings(
        "redis://127.0.0.1:1/0", "mongodb://127.0.0.1:1/unused",
        buffer_redis_url=cluster.url, buffer_redis_cluster=True,
    )  # fmt: skip
    client = async_buffer_client(settings, client_name=NAME, socket_timeout=5)
    store = AsyncHotStore(client, KeySchema.from_settings(settings))
    await store.prepare()
    try:
        yield store
    finally:
        await store.aclose()
        await client.aclose()


def node_clients(cluster: RedisCluster) -> list[redis.Redis]:
    return [redis.Redis(port=node.port) for node in cluster.nodes]


def counted(cluster: RedisCluster, store_keys: list[str]) -> list[int]:
    """Each read counter's value, read from whichever primary holds it."""
    client = redis.RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)
    try:
        return [int(client.get(key) or 0) for key in store_keys]
    finally:
        client.close()


def test_a_cluster_buffer_shares_one_connection_per_primary(redis_cluster: RedisCluster) -> None:
    users = [f"mx-{secrets.token_hex(4)}-{i}" for i in range(300)]  # spread over every primary

    async def scenario() -> tuple[list[bool], list[str], list[int]]:
        async with cluster_store(redis_cluster) as store:
            nodes = node_clients(redis_cluster)
            before = [{c["id"] for c in connections(node)} for node in nodes]  # the client's own
            spent = await asyncio.gather(
                *(store.spend_reads(u, 2, 100, WINDOW_S, NOW) for u in users for _ in range(3))
            )
            keys = [store.schema.read_limit_key(u, int(NOW // WINDOW_S)) for u in users]
            per_node = [
                len({c["id"] for c in connections(node)} - known)
                for node, known in zip(nodes, before, strict=True)
            ]
            for node in nodes:
                node.close()
            return spent, keys, per_node

    spent, keys, per_node = run(scenario)
    assert spent == [True] * 900
    assert counted(redis_cluster, keys) == [6] * 300  # each call run once: 3 calls of 2 reads
    assert per_node == [1, 1, 1]  # 900 calls: one new connection on each primary


def test_a_stale_slot_map_is_followed_through_the_cluster_client(
    redis_cluster: RedisCluster,
) -> None:
    user = f"mx-moved-{secrets.token_hex(4)}"

    async def scenario() -> tuple[bool, list[Any], str, str, str]:
        async with cluster_store(redis_cluster) as store:
            client = store.client
            assert isinstance(client, aioredis.RedisCluster)
            key = store.schema.read_limit_key(user, int(NOW // WINDOW_S))
            slot = client.keyslot(key)
            owner = client.nodes_manager.get_node_from_slot(slot)
            wrong = next(n for n in client.get_primaries() if n.name != owner.name)
            client.nodes_manager.slots_cache[slot] = [wrong]  # as if the slot had moved
            spent = await store.spend_reads(user, 1, 100, WINDOW_S, NOW)  # MOVED, then again
            # A pipeline on the stale map: its replies come back redirected, and it is sent
            # again through the cluster client's pipeline (each command run once in all).
            client.nodes_manager.slots_cache[slot] = [wrong]
            piped = await store._run_all([("INCRBY", key, 10), ("INCRBY", key, 100)], [key])
            learnt = client.nodes_manager.get_node_from_slot(slot).name
            return spent, piped, key, owner.name, learnt

    spent, piped, key, owner, learnt = run(scenario)
    assert spent is True
    assert piped == [11, 111]
    assert counted(redis_cluster, [key]) == [111]  # 1 + 10 + 100: nothing ran twice
    assert learnt == owner  # the cluster client learnt where the slot is


def test_a_primarys_killed_connection_is_served_by_the_cluster_client_then_replaced(
    redis_cluster: RedisCluster,
) -> None:
    user = f"mx-killed-{secrets.token_hex(4)}"

    async def lane_address(store: AsyncHotStore, node: str) -> str:
        """The client address (ip:port) of the shared connection to `node`, as the server
        lists it."""
        assert store._lanes is not None
        lane = await store._lanes.lanes[node]._current()
        host, port = lane.writer.get_extra_info("sockname")[:2]
        return f"{host}:{port}"

    async def scenario() -> tuple[list[bool], str, dict[str, Any], list[dict[str, Any]]]:
        async with cluster_store(redis_cluster) as store:
            client = store.client
            assert isinstance(client, aioredis.RedisCluster)
            key = store.schema.read_limit_key(user, int(NOW // WINDOW_S))
            owner = client.nodes_manager.get_node_from_slot(client.keyslot(key))
            server = redis.Redis(port=int(owner.port))
            spent = [await store.spend_reads(user, 1, 100, WINDOW_S, NOW)]
            address = await lane_address(store, owner.name)
            [first] = [c for c in connections(server) if c["addr"] == address]
            server.client_kill_filter(_id=first["id"])
            spent.append(await store.spend_reads(user, 1, 100, WINDOW_S, NOW))  # the client's
            spent.append(await store.spend_reads(user, 1, 100, WINDOW_S, NOW))  # a new lane
            address = await lane_address(store, owner.name)
            now = [c for c in connections(server) if c["addr"] == address]
            ids = {c["id"] for c in connections(server)}
            server.close()
            assert first["id"] not in ids
            return spent, key, first, now

    spent, key, first, now = run(scenario)
    assert spent == [True, True, True]
    assert counted(redis_cluster, [key]) == [3]  # the killed connection's call ran once
    assert len(now) == 1 and now[0]["id"] != first["id"]  # a new shared connection


def test_scripts_lost_by_a_restart_are_loaded_once_for_every_caller_waiting(
    tmp_path: Path,
) -> None:
    """Redis lost its scripts (a restart, a failover to a replica that never had them) under
    load: the callers that meet NOSCRIPT wait for one SCRIPT LOAD, and none of them is refused
    for want of a connection to send its own."""
    server = redis_service(tmp_path / "redis").start()
    url = f"redis://127.0.0.1:{server.port}/0"
    r = redis.Redis.from_url(url)
    settings = make_settings(url, "mongodb://127.0.0.1:1/unused")
    users = [f"u{i}" for i in range(400)]  # more than the pool's 256 connections

    async def scenario() -> list[Any]:
        client = async_buffer_client(settings, socket_timeout=5, max_connections=256)
        async with hot_store(client) as store:
            await store.prepare()
            r.script_flush()
            r.config_resetstat()
            return list(
                await asyncio.gather(
                    *(store.spend_reads(u, 1, 100, WINDOW_S, NOW) for u in users),
                    return_exceptions=True,
                )
            )

    try:
        spent = run(scenario)
        # SCRIPT's calls (Redis 6 counts its subcommands together; 7 as `script|load`): the
        # scenario sends no other SCRIPT command after the reset.
        loads = sum(v["calls"] for k, v in r.info("commandstats").items() if "script" in k)
    finally:
        r.close()
        server.stop()
    assert spent == [True] * 400
    assert loads == 1


def test_a_pipeline_partly_redirected_runs_again_only_what_did_not_run(
    redis_cluster: RedisCluster,
) -> None:
    """A slot being moved (`redis-cli --cluster reshard`): its old primary runs the commands on
    keys it still holds and answers ASK for the others. Only those are sent again, through the
    cluster client (which follows the ASK): each command runs once."""
    tag = f"mx-ask-{secrets.token_hex(4)}"
    held, moving = f"{{{tag}}}:held", f"{{{tag}}}:moving"
    slot = key_slot(held.encode())
    nodes = node_clients(redis_cluster)
    [source] = [n for n in nodes if _owns(n, slot)]
    target = next(n for n in nodes if n is not source)
    source.set(held, 0)
    _command(target, "CLUSTER", "SETSLOT", slot, "IMPORTING", _command(source, "CLUSTER", "MYID"))
    _command(source, "CLUSTER", "SETSLOT", slot, "MIGRATING", _command(target, "CLUSTER", "MYID"))

    async def scenario() -> list[Any]:
        async with cluster_store(redis_cluster) as store:
            return await store._run_all([("INCRBY", held, 1), ("INCRBY", moving, 1)], [held])

    try:
        replies = run(scenario)
        on_source = source.get(held)
        asked = target.pipeline(transaction=False)  # one connection: ASKING, then the key
        for command in (("ASKING",), ("GET", moving), ("ASKING",), ("DEL", moving)):
            _command(asked, *command)
        on_target = asked.execute()[1]
    finally:
        source.delete(held)
        for node in nodes:
            _command(node, "CLUSTER", "SETSLOT", slot, "STABLE")
            node.close()
    assert replies == [1, 1]
    assert on_source == b"1"  # run once on the old primary, not again
    assert on_target == b"1"  # the moving key, once, where the slot is going


def _command(r: redis.Redis | Any, *args: Any) -> Any:
    return r.execute_command(*args)


def _owns(node: redis.Redis, slot: int) -> bool:
    """Whether `node` serves `slot` (its own line of CLUSTER NODES, flagged `myself`)."""
    nodes = _command(node, "CLUSTER", "NODES")
    text = nodes.decode() if isinstance(nodes, bytes) else str(nodes)
    [mine] = [line for line in text.splitlines() if "myself" in line.split()[2]]
    for part in mine.split()[8:]:
        first, _, last = part.partition("-")
        if first.isdigit() and int(first) <= slot <= int(last or first):
            return True
    return False
