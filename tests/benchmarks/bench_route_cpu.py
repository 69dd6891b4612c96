"""Benchmark: CPU time per heartbeat inside the app, in process, variant against variant.

    .venv/bin/python -m tests.benchmarks.bench_route_cpu [--rounds 40] [--students 200] [--cluster]

Drives the app's ASGI callable directly (no HTTP server, no load tool: only this process's CPU
is counted) with real single-heartbeat requests over a redis-server and the MongoDB stand-in of
its own, the students round-robin, positions moving on. Variants, run one after the other in
every round, so that the machine's drift (±20 % between rounds on a shared machine) falls on
all of them alike:

- `app`: the app as it ships;
- `router`: the app without `Shortcuts` (heartbeats through Starlette's exception
  middleware, FastAPI's exit stack and the router);
- `python packing`: the app with redis-py's own Python command packing instead of hiredis's;
- `route only`: `answer_watch_time` called directly (none of the app's middleware layers);
- `pooled connections`: the app with redis-py's pooled connections for the heartbeat's script
  instead of the one shared connection (shared/storage/multiplex.py);
- `cluster buffer` (with `--cluster`): the app with its buffer on a three-primary Redis Cluster
  of its own (`BUFFER_REDIS_CLUSTER`): a shared connection per primary;
- `cluster, pooled` (with `--cluster`): the same with redis-py's cluster client for the
  heartbeat's script (its pooled connection per command in flight);
- `status read`: a student's status read (`GET .../status`) through the app as it ships
  (`answer_status`, handed it by `Shortcuts`);
- `status, router`: the same through the app without `Shortcuts` (FastAPI's request handler
  running `get_status`).

Prints each variant's median CPU per request and the median of the paired differences against
`app` (heartbeats) or `status read` (with how many rounds agree on the sign).
docs/performance.md has the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from fastapi import FastAPI
from fastapi.testclient import TestClient
from redis.asyncio.connection import AbstractConnection
from starlette.types import Message, Receive, Scope, Send

from ingest.app import create_app
from ingest.routes_watch_time import answer_watch_time
from ingest.shortcuts import Shortcuts
from shared.devtools.services import start_redis_cluster
from shared.settings import Settings
from shared.storage.clients import HiredisPacking
from shared.storage.ingest_store import AsyncHotStore
from tests.benchmarks.benchstack import bare_stores, scratch_dir
from tests.helpers import COURSE, COURSE_ID, bearer, make_settings

VIDEO, DURATION = "v-100", 100.0  # COURSE's video and its catalog duration
PATH = f"/api/progress/video/{VIDEO}/watch-time"
STATUS_PATH = f"/api/progress/video/{VIDEO}/status"
HIREDIS_PACK = HiredisPacking.pack_command
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]


def enroll(settings: Settings, students: int) -> list[bytes]:
    """The course and its students; their Authorization headers."""
    with TestClient(create_app(settings)) as client:
        admin = bearer(settings, "a-root", "admin")
        assert client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).is_success
        for n in range(students):
            url = f"/api/courses/{COURSE_ID}/enrollments/s-{n}"
            assert client.put(url, headers=admin).is_success
    return [bearer(settings, f"s-{n}")["Authorization"].encode() for n in range(students)]


async def post(call: ASGI, authorization: bytes, position: float) -> int:
    body = json.dumps({"watch_time": position, "total_duration": DURATION}).encode()
    return await request(call, "POST", PATH, authorization, body)


async def get_status(call: ASGI, authorization: bytes, position: float) -> int:
    return await request(call, "GET", STATUS_PATH, authorization, b"")


async def request(call: ASGI, method: str, path: str, authorization: bytes, body: bytes) -> int:
    scope: dict[str, Any] = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80), "state": {},
        "headers": [(b"host", b"bench"), (b"content-type", b"application/json"),
                    (b"authorization", authorization), (b"content-length", b"%d" % len(body))],
    }  # fmt: skip
    received = False
    status = 0

    async def receive() -> Message:
        nonlocal received
        if received:  # the answer is out before anyone asks twice
            await asyncio.sleep(3600)
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await call(scope, receive, send)
    return status


Ask = Callable[[ASGI, bytes, float], Awaitable[int]]  # a request: its answer's status
ASKED: dict[Ask, int] = {post: 202, get_status: 200}  # the status each must answer
BASES = ("app", "status read")  # the others are printed against these


def variants(
    app: FastAPI, without_shortcut: FastAPI, pooled: FastAPI
) -> dict[str, tuple[ASGI, bool, Ask]]:
    """Name -> (what to call, whether hiredis packs, the request)."""

    async def route_only(scope: Scope, receive: Receive, send: Send) -> None:
        scope.update(app=app, path_params={"video_id": VIDEO})
        await answer_watch_time(scope, receive, send)

    return {
        "app": (app, True, post),
        "router": (without_shortcut, True, post),
        "python packing": (app, False, post),
        "route only": (route_only, True, post),
        "pooled connections": (pooled, True, post),
        "status read": (app, True, get_status),
        "status, router": (without_shortcut, True, get_status),
    }


async def measure(
    settings: Settings, auths: list[bytes], rounds: int, on_cluster: Settings | None
) -> dict[str, list[float]]:
    app = create_app(settings)
    without_shortcut = create_app(settings)
    without_shortcut.user_middleware = [
        m for m in without_shortcut.user_middleware if cast(object, m.cls) is not Shortcuts
    ]
    pooled = create_app(settings)
    runs = variants(app, without_shortcut, pooled)
    apps, unshared = [app, without_shortcut, pooled], [pooled]
    if on_cluster is not None:
        apps += [clustered := create_app(on_cluster), cluster_pooled := create_app(on_cluster)]
        unshared.append(cluster_pooled)
        runs["cluster buffer"] = (clustered, True, post)
        runs["cluster, pooled"] = (cluster_pooled, True, post)
    per_round = 0.4 * (DURATION - 10) / (len(runs) * rounds + 1)  # stays inside the video
    position = 1.0
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    async with contextlib.AsyncExitStack() as running:
        for each in apps:
            await running.enter_async_context(each.router.lifespan_context(each))
        for each in unshared:
            ctx = each.state.ctx
            ctx.hot = AsyncHotStore(ctx.redis_async, ctx.key_schema, shared_connection=False)
        for warmed in apps:
            for auth in auths:  # warm: every key has a hot state and a cached one
                assert await post(warmed, auth, position) == 202
        for _ in range(rounds):
            for name, (call, hiredis, ask) in runs.items():
                position += per_round
                HiredisPacking.pack_command = (  # type: ignore[method-assign]
                    HIREDIS_PACK if hiredis else AbstractConnection.pack_command
                )
                started = time.process_time()
                for auth in auths:
                    status = await ask(call, auth, position)
                    assert status == ASKED[ask], (name, status)
                cpu[name].append(1e6 * (time.process_time() - started) / len(auths))
    HiredisPacking.pack_command = HIREDIS_PACK  # type: ignore[method-assign]
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--cluster", action="store_true", help="add the two cluster variants")
    args = parser.parse_args()
    with bare_stores("bench-route-cpu-") as (redis_url, mongo_url), contextlib.ExitStack() as on:
        settings = make_settings(
            redis_url, mongo_url, rate_limit_per_minute=10**6, read_rate_limit_per_minute=10**6
        )
        auths = enroll(settings, args.students)
        on_cluster = None
        if args.cluster:
            cluster = start_redis_cluster(on.enter_context(scratch_dir("bench-route-cpu-c-")))
            on.callback(cluster.stop)
            on_cluster = settings.model_copy(
                update={"buffer_redis_url": cluster.url, "buffer_redis_cluster": True}
            )
            enroll(on_cluster, args.students)  # the enrollment mirror, in the cluster's buffer
        cpu = asyncio.run(measure(settings, auths, args.rounds, on_cluster))
    print(f"\nCPU per request in process, {args.rounds} rounds of {args.students} requests")
    for name, values in cpu.items():
        print(f"  {name:18} median {statistics.median(values):6.0f} us")
    for name in [n for n in cpu if n not in BASES]:
        base = "status read" if name.startswith("status") else "app"
        diffs = [x - y for x, y in zip(cpu[name], cpu[base], strict=True)]
        agree = sum((d > 0) == (statistics.median(diffs) > 0) for d in diffs)
        print(
            f"  {name} - {base}: median {statistics.median(diffs):+6.0f} us "
            f"({agree} of {len(diffs)} rounds the same sign)"
        )


if __name__ == "__main__":
    main()
