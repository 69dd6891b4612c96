"""A MongoDB wire proxy that counts the documents the database says it wrote, per collection.

    .venv/bin/python -m tests.benchmarks.mongo_wire --port P --upstream Q --out counts.json

Forwards every byte both ways unchanged. For each OP_MSG write command a client sends
(`insert`, `update`, `delete`, `findAndModify`) it reads the server's reply and adds up what the
database reports: inserted `n`; updated `nModified` plus the upserted documents; deleted `n`;
`findAndModify`'s `lastErrorObject.n`. An update that matched nothing, or matched a document it
left as it was, writes no document and counts none; the operations sent are counted apart
(`ops`). The totals, `{collection: {"docs": n, "ops": n}}`, are written to `--out` every second
and at exit (SIGTERM), so a benchmark reads them before and after a phase.

Loadgen starts one between the stack's processes and nx-27017 (see benchstack.py) so that
writes per heartbeat cover every collection and every writer (flush, rollups, completion jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import struct
from pathlib import Path
from typing import Any

import bson

OP_MSG = 2013
WRITES = ("insert", "update", "delete", "findAndModify", "findandmodify")
HEADER = struct.Struct("<iiii")


class Counts:
    def __init__(self) -> None:
        self.by_collection: dict[str, dict[str, int]] = {}

    def add(self, collection: str, docs: int, ops: int) -> None:
        row = self.by_collection.setdefault(collection, {"docs": 0, "ops": 0})
        row["docs"] += docs
        row["ops"] += ops


def command_of(body: bytes) -> tuple[str, str, int] | None:
    """(write command, collection, operations sent) of an OP_MSG body, None for other commands."""
    pos, end = 4, len(body) - (4 if body[0] & 1 else 0)  # flag bit 0: a checksum follows
    command: dict[str, Any] | None = None
    ops = 0
    while pos < end:
        kind = body[pos]
        size = int.from_bytes(body[pos + 1 : pos + 5], "little")
        if kind == 0:
            command = bson.decode(body[pos + 1 : pos + 1 + size])
            pos += 1 + size
        else:  # a document sequence: the bulk's operations
            name_end = body.index(b"\0", pos + 5)
            seq = body[name_end + 1 : pos + 1 + size]
            ops += len(bson.decode_all(seq)) if seq else 0
            pos += 1 + size
    if not command:
        return None
    name = next(iter(command))
    if name not in WRITES:
        return None
    for field in ("documents", "updates", "deletes"):
        ops += len(command.get(field, []))
    return name, str(command[name]), max(ops, 1)


def documents_written(name: str, reply: dict[str, Any]) -> int:
    if name == "update":
        return int(reply.get("nModified", 0)) + len(reply.get("upserted", []))
    if name.lower() == "findandmodify":
        return int((reply.get("lastErrorObject") or {}).get("n", 0))
    return int(reply.get("n", 0))


def reply_of(body: bytes) -> dict[str, Any]:
    size = int.from_bytes(body[5:9], "little")
    return bson.decode(body[5 : 5 + size])


async def relay(
    client: asyncio.StreamReader, server: asyncio.StreamWriter, asked: dict[int, Any]
) -> None:
    while True:
        header = await client.readexactly(16)
        length, request_id, _, op = HEADER.unpack(header)
        body = await client.readexactly(length - 16)
        if op == OP_MSG and (found := command_of(body)) is not None:
            asked[request_id] = found
        server.write(header + body)
        await server.drain()


async def answer(
    server: asyncio.StreamReader,
    client: asyncio.StreamWriter,
    asked: dict[int, Any],
    counts: Counts,
) -> None:
    while True:
        header = await server.readexactly(16)
        length, _, response_to, op = HEADER.unpack(header)
        body = await server.readexactly(length - 16)
        found = asked.pop(response_to, None)
        if op == OP_MSG and found is not None:
            name, collection, ops = found
            counts.add(collection, documents_written(name, reply_of(body)), ops)
        client.write(header + body)
        await client.drain()


async def serve(port: int, upstream: int, out: Path) -> None:
    counts = Counts()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
        asked: dict[int, Any] = {}
        tasks = [
            asyncio.create_task(relay(reader, up_writer, asked)),
            asyncio.create_task(answer(up_reader, writer, asked, counts)),
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        writer.close()
        up_writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", port)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with server:
        while not stop.is_set():
            out.write_text(json.dumps(counts.by_collection))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    out.write_text(json.dumps(counts.by_collection))


def read_counts(out: Path) -> dict[str, dict[str, int]]:
    """The proxy's latest totals (empty before its first write)."""
    try:
        data: dict[str, dict[str, int]] = json.loads(out.read_text() or "{}")
    except (FileNotFoundError, ValueError):
        return {}
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", type=int, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.upstream, args.out))


if __name__ == "__main__":
    main()
