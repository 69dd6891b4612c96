"""What tests/benchmarks/tail_probe/sitecustomize.py installs in the web process (see there)."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

LAG_SLEEP_S = 0.005
DUMP_EVERY_S = 2.0
LONG_PASS_S = 0.002


class Probe:
    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.wall = [0.0, 0.0, 0.0]
        self.cpu = [0.0, 0.0, 0.0]
        self.long_passes: list[tuple[float, int, float, float]] = []  # (time, gen, wall, cpu)
        self.lag: list[float] = []
        self.served: list[float] = []  # heartbeats: from the app's call to the answer's end
        self.views: Counter[str] = Counter()
        self._started = (0.0, 0.0)

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = (time.perf_counter(), time.thread_time())
            return
        gen = info["generation"]
        wall = time.perf_counter() - self._started[0]
        cpu = time.thread_time() - self._started[1]
        self.passes[gen] += 1
        self.wall[gen] += wall
        self.cpu[gen] += cpu
        if wall > LONG_PASS_S:
            self.long_passes.append((time.time(), gen, wall, cpu))

    async def measure_lag(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LAG_SLEEP_S)
            self.lag.append(loop.time() - before - LAG_SLEEP_S)

    def record(self) -> dict[str, Any]:
        from ingest.metrics import HEARTBEATS_ACCEPTED

        lag, self.lag = self.lag, []
        served, self.served = self.served, []
        long_passes, self.long_passes = self.long_passes, []
        return {
            "ts": time.time(),
            "cpu": time.process_time(),
            "accepted": next(iter(HEARTBEATS_ACCEPTED.collect())).samples[0].value,
            "gc_passes": self.passes,
            "gc_wall": self.wall,
            "gc_cpu": self.cpu,
            "long_passes": long_passes,
            "lag": lag,
            "served": served,
            "views": dict(self.views),
            "load": os.getloadavg()[0],
        }

    def dump_forever(self, path: str) -> None:
        with open(path, "a", buffering=1) as out:
            while True:
                time.sleep(DUMP_EVERY_S)
                out.write(json.dumps(self.record()) + "\n")


def timed(app: ASGIApp, probe: Probe) -> ASGIApp:
    """`app`, noting each heartbeat's time from the app's call (uvicorn has read and parsed
    the request) to its answer's last byte handed back to uvicorn: the server's own share of
    the latency the load generator measures (the rest: uvicorn before the call, the sockets,
    and the generator's own loop)."""

    async def timing(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].endswith("/watch-time"):
            await app(scope, receive, send)
            return
        started = time.perf_counter()

        async def noting(message: Message) -> None:
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                probe.served.append(time.perf_counter() - started)

        await app(scope, receive, noting)

    return timing


def install(path: str) -> None:
    """Count the collector's passes and the views from now on; measure the loop's lag and the
    heartbeats' time in the app, and start writing once the app's start-up is done (inside its
    settled heap)."""
    import shared.runtime.gc_tuning as gc_tuning
    import shared.storage.views as views

    probe = Probe()
    gc.callbacks.append(probe.on_gc)
    parse = views.HotView.parse

    def counted(reply: list[Any]) -> views.HotView:
        view = parse(reply)
        probe.views[view.mode] += 1
        return view

    views.HotView.parse = counted  # type: ignore[method-assign]
    settled = gc_tuning.settled_heap

    @contextmanager
    def settled_and_probed() -> Iterator[None]:
        with settled():
            task = asyncio.get_running_loop().create_task(probe.measure_lag())
            threading.Thread(target=probe.dump_forever, args=(path,), daemon=True).start()
            yield
            task.cancel()

    gc_tuning.settled_heap = settled_and_probed  # ingest.app imports it by name: before it
    import ingest.app

    create_app = ingest.app.create_app

    def create_timed_app(*args: Any, **kwargs: Any) -> ASGIApp:
        return timed(create_app(*args, **kwargs), probe)

    ingest.app.create_app = create_timed_app  # type: ignore[assignment]  # uvicorn's factory
