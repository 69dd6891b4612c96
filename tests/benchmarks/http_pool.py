"""A small HTTP/1.1 keep-alive client for the load generator.

httpx's connection pool checks every pooled connection on every request (py-spy: 60 % of the
generator's time at 400 requests/s over 128 connections), so with httpx the generator, not the
service, was what fell behind. This client keeps idle connections on a stack and parses only
what the service sends: a status line, headers and a Content-Length body (JSON routes; no
chunked bodies, no redirects).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass


class HttpError(Exception):
    """The request may not have been answered (connection refused, reset, timed out)."""


class _NotAnswered(Exception):
    """The connection closed before any byte of a response came back."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes


class HttpPool:
    """Connections are opened as concurrent requests need them (callers bound that number)."""

    def __init__(self, host: str, port: int, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
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
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
            raise HttpError(f"{type(exc).__name__}: {exc}") from None

    async def _exchange(self, raw: bytes) -> Reply:
        reused = bool(self._idle)
        conn = self._idle.pop() if reused else await self._connect()
        try:
            reply, keep = await self._send(conn, raw)
        except _NotAnswered:
            conn[1].close()
            if not reused:
                raise OSError("connection closed before the response") from None
            # The server closed an idle connection as we reused it (keep-alive timeout):
            # send the request once more on a fresh connection.
            conn = await self._connect()
            try:
                reply, keep = await self._send(conn, raw)
            except BaseException:
                conn[1].close()
                raise
        except BaseException:
            conn[1].close()
            raise
        if keep:
            self._idle.append(conn)
        else:
            conn[1].close()
        return reply

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    @staticmethod
    async def _send(
        conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], raw: bytes
    ) -> tuple[Reply, bool]:
        reader, writer = conn
        try:
            writer.write(raw)
            status_line = await reader.readline()
        except (ConnectionResetError, BrokenPipeError):
            status_line = b""
        if not status_line:
            raise _NotAnswered
        status = int(status_line.split(b" ", 2)[1])
        length, keep = 0, True
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                keep = False
            elif name == b"transfer-encoding":
                raise ValueError("chunked responses are not supported by this client")
        return Reply(status, await reader.readexactly(length) if length else b""), keep

    async def aclose(self) -> None:
        while self._idle:
            _, writer = self._idle.pop()
            writer.close()
