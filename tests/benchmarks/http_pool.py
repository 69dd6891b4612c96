"""A small HTTP/1.1 keep-alive client for the load generator.

httpx's connection pool checks every pooled connection on every request (py-spy: 60 % of the
generator's time at 400 requests/s over 128 connections), so with httpx the generator, not the
service, was what fell behind. This client keeps idle connections on a stack and parses only
what the service sends: a status line, headers and a Content-Length body (JSON routes; no
chunked bodies, no redirects).

Each connection is an `asyncio.Protocol` that parses an answer from the bytes as they arrive
and completes one future: a request costs one write, one timer and one wake-up of its caller.
The earlier version read through `asyncio.StreamReader`, a wake-up per header line; at 20,000
watchers the generator is one of the five processes sharing two cores, and its CPU per request
is part of every step's latency (docs/performance.md).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import cast


class HttpError(Exception):
    """The request may not have been answered (connection refused, reset, timed out)."""


class _NotAnswered(Exception):
    """The connection closed before any byte of a response came back."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class _Connection(asyncio.Protocol):
    """One keep-alive connection, one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._buf = bytearray()
        self._waiter: asyncio.Future[tuple[Reply, bool]] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses

    def send(self, raw: bytes) -> asyncio.Future[tuple[Reply, bool]]:
        assert self.transport is not None and self._waiter is None
        self._buf.clear()
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(raw)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self._waiter is None or self._waiter.done():
            return
        head_end = self._buf.find(b"\r\n\r\n")
        if head_end < 0:
            return
        try:
            status, length, keep = _head(bytes(self._buf[:head_end]))
        except ValueError as exc:
            self._finish(exc=exc)
            return
        body_start = head_end + 4
        if len(self._buf) - body_start >= length:
            body = bytes(self._buf[body_start : body_start + length])
            self._finish(result=(Reply(status, body), keep))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is not None and not self._waiter.done():
            lost = exc or ConnectionResetError("connection closed during the response")
            self._finish(exc=_NotAnswered() if not self._buf else lost)

    def _finish(
        self, result: tuple[Reply, bool] | None = None, exc: BaseException | None = None
    ) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if exc is not None:
            waiter.set_exception(exc)
        else:
            assert result is not None
            waiter.set_result(result)

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def _head(head: bytes) -> tuple[int, int, bool]:
    """(status, Content-Length, keep-alive) of a response's status line and headers."""
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            keep = False
        elif name == b"transfer-encoding":
            raise ValueError("chunked responses are not supported by this client")
    return status, length, keep


class HttpPool:
    """Connections are opened as concurrent requests need them (callers bound that number)."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: list[_Connection] = []
        self._host_header = f"Host: {host}:{port}\r\n".encode()

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None = None
    ) -> Reply:
        lines = [f"{method} {path} HTTP/1.1\r\n".encode(), self._host_header]
        lines += [f"{name}: {value}\r\n".encode() for name, value in headers.items()]
        if body is not None:
            lines.append(b"Content-Type: application/json\r\n")
            lines.append(f"Content-Length: {len(body)}\r\n".encode())
        lines.append(b"\r\n")
        if body:
            lines.append(body)
        raw = b"".join(lines)
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._exchange(raw)
        except (OSError, TimeoutError, ValueError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None

    async def _exchange(self, raw: bytes) -> Reply:
        conn = None
        while self._idle and conn is None:
            candidate = self._idle.pop()
            conn = None if candidate.closed else candidate
        reused = conn is not None
        if conn is None:
            conn = await self._connect()
        try:
            reply, keep = await conn.send(raw)
        except _NotAnswered:
            conn.close()
            if not reused:
                raise OSError("connection closed before the response") from None
            # The server closed an idle connection as we reused it (keep-alive timeout):
            # send the request once more on a fresh connection.
            conn = await self._connect()
            try:
                reply, keep = await conn.send(raw)
            except _NotAnswered:
                conn.close()
                raise OSError("connection closed before the response") from None
            except BaseException:
                conn.close()
                raise
        except BaseException:
            conn.close()
            raise
        if keep and not conn.closed:
            self._idle.append(conn)
        else:
            conn.close()
        return reply

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(_Connection, self.host, self.port)
        return conn

    async def aclose(self) -> None:
        while self._idle:
            self._idle.pop().close()
