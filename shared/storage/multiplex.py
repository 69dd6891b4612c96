"""Commands of many concurrent callers on one connection to a Redis server.

The ingest tier's hot path (one script call per heartbeat, and the status reads' pipelines): on
a plain Redis one shared connection (`Multiplexed`), on a Redis Cluster one per primary
(`ClusterLanes`). redis-py's asyncio client gives every command in flight a pooled
connection of its own and wraps it in its pool, its retry, a timeout per read and its response
callbacks: ~85 us of the web process's CPU per call, where the whole round trip costs ~50 us
on a shared connection (docs/performance.md, "One connection for the hot path"). Redis answers
a connection's commands in the order they came, so a shared connection needs no more than a
queue of the callers waiting: each reply goes to the oldest of them.

What stays redis-py's: the connection itself (made by the client's pool, so the URL's TCP, TLS
or Unix socket, credentials, database and handshake hold), the packing of commands (the pool's
connection class: `HiredisPacking`), the error classes (a NOSCRIPT reply is a NoScriptError, a
broken connection a ConnectionError, a late reply a TimeoutError) and the client's retry policy.
The asyncio streams of that connection are redis-py's private `_reader` and `_writer`;
tests/test_multiplex.py holds the locked version to them.

Failures: a broken connection fails every command waiting on it with ConnectionError, and a
reply later than the client's `socket_timeout` gives the connection up (its callers get
TimeoutError: the replies behind a missing one cannot be matched any more), as redis-py
disconnects a connection whose read timed out. Either way the next command opens a new
connection, and a failed command is sent again as the client's retry policy says (redis-py
does the same: the ingest script and the reads are safe to repeat).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis import exceptions
from redis._parsers import BaseParser
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

READ_BYTES = 1 << 16
WRITE_BUFFER_LIMIT = 1 << 20  # bytes waiting for the socket before writers wait (drain)


class Multiplexed:
    """One shared connection of `pool`, made when first needed and again after a failure; a
    reply is late past the pool's `socket_timeout`."""

    def __init__(self, pool: ConnectionPool, retry: Retry) -> None:
        self.pool, self.retry = pool, retry
        self.timeout_s: float | None = pool.connection_kwargs.get("socket_timeout")
        self._lane: _Lane | None = None
        self._opening: asyncio.Future[_Lane] | None = None

    @classmethod
    def of(cls, client: aioredis.Redis) -> Multiplexed:
        return cls(client.connection_pool, client.get_retry() or Retry(NoBackoff(), 0))

    async def execute(self, *args: Any) -> Any:
        """One command's reply; an error reply raises (ResponseError and its kinds)."""
        reply = (await self._call([args]))[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    async def execute_many(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands`, written at once (a pipeline); an error reply is returned
        in its place, as an exception, not raised."""
        return await self._call(commands)

    async def aclose(self) -> None:
        lane, self._lane = self._lane, None
        if lane is not None:
            lane.fail(exceptions.ConnectionError("the connection was closed"))
            await lane.closed()

    async def _call(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        async def attempt() -> list[Any]:
            lane = await self._current()
            return await lane.send(commands)

        async def failed(exc: Exception) -> None:
            """Nothing to do: the next attempt's `_current` replaces a failed connection."""

        result: list[Any] = await self.retry.call_with_retry(attempt, failed)
        return result

    async def _current(self) -> _Lane:
        lane = self._lane
        loop = asyncio.get_running_loop()
        if lane is not None and lane.alive and lane.loop is loop:
            return lane
        opening = self._opening
        # A finished opening is never reused: its lane is the one that just failed (or it
        # failed), even when no caller was left to clear it (all cancelled while it opened).
        if opening is None or opening.done() or opening.get_loop() is not loop:
            opening = self._opening = asyncio.ensure_future(self._open())
            opening.add_done_callback(_retrieved)  # its error is not "never retrieved"
        try:
            return await asyncio.shield(opening)
        finally:
            if opening.done() and self._opening is opening:
                self._opening = None

    async def _open(self) -> _Lane:
        connection: AbstractConnection = self.pool.make_connection()  # type: ignore[no-untyped-call]
        await connection.connect()  # type: ignore[no-untyped-call]
        self._lane = _Lane(connection, self.timeout_s)
        return self._lane


class _Lane:
    """One connection: callers wait in the order they wrote; a reader task hands out replies."""

    def __init__(self, connection: AbstractConnection, timeout_s: float | None) -> None:
        self.connection, self.timeout_s = connection, timeout_s
        self.loop = asyncio.get_running_loop()
        self.reader: asyncio.StreamReader = connection._reader  # type: ignore[assignment]
        self.writer: asyncio.StreamWriter = connection._writer  # type: ignore[assignment]
        options: dict[str, Any] = {
            "protocolError": exceptions.InvalidResponse,
            "replyError": BaseParser.parse_error,  # NOSCRIPT -> NoScriptError, as redis-py
        }
        encoder = connection.encoder
        if encoder.decode_responses:
            options.update(encoding=encoder.encoding, errors=encoder.encoding_errors)
        self.parser = hiredis.Reader(**options)
        self.transport = self.writer.transport
        self.waiting: collections.deque[tuple[asyncio.Future[Any], float]] = collections.deque()
        self.unsent: list[bytes] = []
        self._flushing = False
        self.alive = True
        self.error: Exception | None = None
        self._watchdog: asyncio.TimerHandle | None = None
        self._closing: asyncio.Task[None] | None = None
        self._reading = self.loop.create_task(self._read())

    async def send(self, commands: list[tuple[Any, ...]]) -> list[Any]:
        if not self.alive:
            raise self.error or exceptions.ConnectionError("the connection was lost")
        pack = self.connection.pack_command
        packed = [pack(*args) for args in commands]  # a DataError leaves nothing queued
        futures = []
        now = self.loop.time()
        for chunks in packed:
            future = self.loop.create_future()
            self.waiting.append((future, now))
            futures.append(future)
            self.unsent += chunks
        if not self._flushing:  # the commands of this turn of the loop go out in one write
            self._flushing = True
            self.loop.call_soon(self._flush)
        if self.timeout_s is not None and self._watchdog is None:
            self._watchdog = self.loop.call_at(now + self.timeout_s, self._check)
        if self.transport.get_write_buffer_size() > WRITE_BUFFER_LIMIT:
            with contextlib.suppress(OSError):  # lost: the reader fails the callers
                await self.writer.drain()
        if len(futures) == 1:
            return [await futures[0]]
        return list(await asyncio.gather(*futures))

    async def closed(self) -> None:
        """After `fail`: until the socket is closed."""
        if self._closing is not None:
            with contextlib.suppress(Exception):
                await self._closing

    def _flush(self) -> None:
        self._flushing = False
        unsent, self.unsent = self.unsent, []
        if self.alive:
            self.transport.writelines(unsent)

    async def _read(self) -> None:
        try:
            while True:
                data = await self.reader.read(READ_BYTES)
                if not data:
                    raise exceptions.ConnectionError("Redis closed the connection")
                self.parser.feed(data)
                while (reply := self.parser.gets()) is not False:
                    future, _ = self.waiting.popleft()
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(reply)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.fail(exc if isinstance(exc, exceptions.RedisError) else _lost(exc))

    def _check(self) -> None:
        """The oldest reply is late past the timeout: give the connection up; else look again
        when the oldest command waiting would be."""
        self._watchdog = None
        if not self.alive or not self.waiting or self.timeout_s is None:
            return
        due = self.waiting[0][1] + self.timeout_s
        if self.loop.time() >= due:
            self.fail(exceptions.TimeoutError("Timeout reading from Redis"))
        else:
            self._watchdog = self.loop.call_at(due, self._check)

    def fail(self, error: Exception) -> None:
        """Fail every caller waiting and close the connection (idempotent)."""
        if not self.alive:
            return
        self.alive, self.error = False, error
        if self._watchdog is not None:
            self._watchdog.cancel()
        while self.waiting:
            future, _ = self.waiting.popleft()
            if not future.done():  # an exception of its own: each caller's traceback apart
                future.set_exception(type(error)(*error.args))
        if self._reading is not asyncio.current_task(self.loop):
            self._reading.cancel()
        # Drop what is unsent and close now: a closing transport would wait to flush it to a
        # server that does not read (stopped, or cut off without a reset), and the callers
        # waiting for room in `send` would wait with it.
        self.transport.abort()
        self._closing = self.loop.create_task(self.connection.disconnect(nowait=True))


# What a cluster's shared connection gives back to redis-py's cluster client: a redirection
# (the slot moved, or is moving: the client follows it and learns the new slot map), a cluster
# busy or down, and a connection lost or late (the client's own retry and failover). The
# calls are safe to repeat (see above); a redirected one was not run at all.
REDIRECTED = (exceptions.AskError, exceptions.TryAgainError, exceptions.ClusterDownError)
REROUTED = (*REDIRECTED, exceptions.ConnectionError, exceptions.TimeoutError)


class ClusterLanes:
    """One `Multiplexed` per primary of a Redis Cluster, for calls whose keys share a slot (the
    buffer's keys of one student do: one partition tag). `lane_for` finds the slot's primary in
    the cluster client's slot map; `None` sends the call through the cluster client instead (no
    keys, keys in several slots, a slot map not known yet). A connection made here is made as
    the cluster client makes its own (the node's connection class and settings: TLS,
    credentials, hiredis packing); its retry is the cluster client's (REROUTED), not its own."""

    def __init__(self, client: AsyncRedisCluster) -> None:
        self.client = client
        self.lanes: dict[str, Multiplexed] = {}

    def lane_for(self, keys: list[str]) -> Multiplexed | None:
        if not keys:
            return None
        slot = self.client.keyslot(keys[0])
        if any(self.client.keyslot(key) != slot for key in keys[1:]):
            return None
        try:
            node = self.client.nodes_manager.get_node_from_slot(slot)
        except (KeyError, exceptions.RedisClusterException):  # no slot map yet, or a gap
            return None
        lane = self.lanes.get(node.name)
        if lane is None:
            pool = ConnectionPool(connection_class=node.connection_class, **node.connection_kwargs)
            lane = self.lanes[node.name] = Multiplexed(pool, Retry(NoBackoff(), 0))
        return lane

    async def aclose(self) -> None:
        lanes, self.lanes = list(self.lanes.values()), {}
        for lane in lanes:
            await lane.aclose()


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _lost(exc: Exception) -> exceptions.ConnectionError:
    return exceptions.ConnectionError(f"Error while reading from Redis: {exc!r}")
