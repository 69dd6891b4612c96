"""Load generator with a correctness oracle: simulated students watch course videos.

    .venv/bin/python -m tests.benchmarks.loadgen --watchers 1000 --minutes 3 --speedup 1
    .venv/bin/python -m tests.benchmarks.loadgen --watchers 300 --minutes 2 --speedup 30
    .venv/bin/python -m tests.benchmarks.loadgen --capacity [--max-minutes 15]
    .venv/bin/python -m tests.benchmarks.loadgen --watchers 300 --minutes 2 --adversaries 20

Starts a stack of its own (redis-server with AOF, nx-27017, the Procfile's web, worker and
clock processes; product flush settings unless `--flush-interval`/`--flush-tick` say otherwise),
creates a course of 8 videos and a pdf, enrolls N students and lets each watch like people do:
play, pause, seek forward and back, change speed, rewatch, close the tab mid-video, sometimes a
second tab (a second session_id). Heartbeats are sent as the browser tracker
(frontend/src/tracker/tracker.ts) sends them: every 10 s of *simulated* time while playing and on
pause, seek, end and tab close, with client_ts, session_id, seq and the ranges played since the
last one. `--speedup K` compresses time: 10 simulated seconds take 10/K real seconds (the player's
clock, client_ts, runs K times faster, in the past so that the server never clamps it).

Every 202 updates the generator's own model of what each student watched. At the end it waits
until the workers have drained (every partition's `dirty` empty and `pending` 0, no RQ job
queued or running) and compares MongoDB's `watch_progress` and `enrollments` with the model:
resume position (latest reading by client clock), watched seconds (union of played ranges,
within 1 s), completion at 80 %, course progress; and the course's aggregate (what the stats
read) with a count of its enrollments' contributions from scratch. Any mismatch is printed and
makes the exit code 1. MongoDB's documents written are counted per collection by a wire proxy
(mongo_wire.py; `--no-count-writes` to leave it out).
Each tab also opens with `GET .../status` (as the player does to resume), checked against the
model too (read-your-writes) when no other tab of the student has that video open.

`--capacity`: one web process (`--web-processes N` for uvicorn's N), one worker; first a
worker-tier outage (`--outage-minutes`, default 5 with --capacity): 1,000 watchers for a
minute, then the worker and clock processes stopped for that long while ingest goes on, then
restarted; it reports ingest p50/p99 before,
during and after the outage and the time the backlog takes to drain once they are back (the
oracle at the end covers every heartbeat accepted meanwhile). Then 1,000 watchers at speedup 1,
then more every step
until ingest p99 passes 100 ms, the flush backlog grows without bound, or the generator cannot
keep its schedule; reports the highest watcher count held. The whole run is bounded by
`--max-minutes` (default 15: the steps up to `--max-watchers` 20,000, the drain, the checks).

Ingest latency (p50/p95/p99) is timed from the request's send to its answer; a heartbeat that
waits for one of the `--concurrency` connections (128) waits before that and shows as send
lateness (`late p99 s`). `p99 from due` counts both, from when the heartbeat was due to its
answer (retries included): what a player would see (coordinated omission), the generator's
own lag included; `own lag` is that lag alone.

Numbers measured on the nx-27017 stand-in, not MongoDB; writes per heartbeat is the
hardware-independent figure (comparable with the target only at `--speedup 1`, since with
compressed time more heartbeats fall into one flush interval).

Verified watching is off (`MAX_PLAYBACK_RATE=0`) for the generator's stack: its students replay
players faster than real time with `--speedup`, and its tabs do not report the start of playing
as the browser tracker does, so the bound would (rightly) credit less than the model expects.

`--adversaries N` (adversary.py): a baseline phase of `--minutes` with the honest watchers
alone, then as long again with N hostile students beside them (forgeries, ten tabs, bad ids
and bodies, oversized bodies, floods; `--hostile-roles` picks which). It runs at speedup 1 with
verified watching on (`MAX_PLAYBACK_RATE=2`), and the honest tabs then behave like the browser
tracker: a heartbeat at once on play (and on resume), every 10 s while playing, on pause, seek,
end and exit, each naming its `event`, so that the bound credits exactly what they claim. A
second tab of a student is left out in this mode: two players of one student playing at once
may claim up to twice what one could, and the per-student budget rightly credits less. It
prints the honest p50/p99 of both phases and their ratio, what the hostile requests got (by
status and error code; a 5xx fails the run), and the worst hostile credit ratio (credited
watched_seconds over all videos / (MAX_PLAYBACK_RATE x wall time from the student's first to
last accepted request + 1 ms per heartbeat); over 1 fails the run). The oracle still checks
every honest watcher; hostile students' documents are left to that ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import random
import signal
import sys
import time
import uuid
from array import array
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rq import Queue
from rq.registry import StartedJobRegistry

from shared.domain import rollup
from shared.domain.catalog import Course
from shared.ops import teacher_views
from shared.runtime.gc_tuning import GC_THRESHOLD
from shared.storage import aggregate_store, rollup_store
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import progress_id
from shared.storage.stats import read_stats
from tests.benchmarks.adversary import ROLES, AdversaryProcess, Outcome, credit_report
from tests.benchmarks.benchstack import (
    BenchStack,
    RedisCounters,
    bench_stack,
    cpu_share,
    cpu_snapshot,
    enroll_bulk,
    percentile,
)
from tests.benchmarks.http_pool import HttpError, HttpPool
from tests.benchmarks.mongo_wire import read_counts

console = Console() if sys.stdout.isatty() else Console(width=220)  # logs: no wrapping

COURSE_ID = "load-101"
VIDEOS = {
    "lv01": 90.0, "lv02": 150.0, "lv03": 240.0, "lv04": 300.0,
    "lv05": 420.0, "lv06": 600.0, "lv07": 900.0, "lv08": 1200.0,
}  # fmt: skip
PDF_ID = "lnotes"
MATERIALS = [*VIDEOS, PDF_ID]
THRESHOLD = 80.0
HEARTBEAT_S = 10.0  # the tracker's interval, simulated seconds
MAX_PAUSE_S = 60.0  # simulated
LAG_SAMPLE_EVERY_S = 0.5  # real seconds between end-to-end lag samples
LAG_MAX_OUTSTANDING = 20
LAG_GIVE_UP_S = 240.0


def load_course() -> Course:
    videos = list(VIDEOS.items())
    return Course.model_validate(
        {
            "course_id": COURSE_ID,
            "title": "Load test course",
            "teacher_ids": ["t-load"],
            "modules": [
                {
                    "module_id": "m1",
                    "title": "Part one",
                    "materials": [
                        {"material_id": m, "title": m, "type": "video", "duration": d}
                        for m, d in videos[:4]
                    ],
                },
                {
                    "module_id": "m2",
                    "title": "Part two",
                    "materials": [
                        *(
                            {"material_id": m, "title": m, "type": "video", "duration": d}
                            for m, d in videos[4:]
                        ),
                        {"material_id": PDF_ID, "title": "Notes", "type": "pdf"},
                    ],
                },
            ],
        }
    )


def r3(x: float) -> float:
    return round(x, 3)


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


def parsed_ts(text: str) -> float:
    """The epoch seconds the server computes from our client_ts."""
    return datetime.fromisoformat(text).timestamp()


def union_length(ranges: list[tuple[float, float]]) -> float:
    total, start, end = 0.0, None, None
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if end is None or a > end:
            if end is not None:
                total += end - start  # type: ignore[operator]
            start, end = a, b
        else:
            end = max(end, b)
    if end is not None:
        total += end - start  # type: ignore[operator]
    return total


# -- the oracle -----------------------------------------------------------------------------


@dataclass
class KeyModel:
    """What one student did to one material, from the heartbeats that got a 202."""

    duration: float | None
    ranges: list[tuple[float, float]] = field(default_factory=list)
    best: tuple[float, int, float] | None = None
    position: float = 0.0
    accepted: int = 0
    opened: bool = False  # pdf completed
    uncertain: bool = False  # a heartbeat whose fate is unknown (gave up retrying)
    sent: int = 0  # heartbeats that left (whatever their fate)
    inflight: int = 0  # heartbeats sent whose answer has not come back

    def accept(self, body: dict[str, Any], client_ts: float) -> None:
        self.accepted += 1
        d = self.duration
        assert d is not None
        pos = min(body["watch_time"], d)
        order = (client_ts, body["seq"], pos)
        if self.best is None or order > self.best:
            self.best, self.position = order, pos
        for a, b in body["played"]:
            self.ranges.append((min(max(a, 0.0), d), min(max(b, 0.0), d)))
        # keep the list short: replace it by its union from time to time
        if len(self.ranges) > 64:
            self.ranges = merged(self.ranges)

    @property
    def watched(self) -> float:
        return union_length(self.ranges)

    @property
    def percentage(self) -> float:
        if self.duration is None:
            return 100.0 if self.opened else 0.0
        return min(100.0, self.watched / self.duration * 100.0)

    @property
    def completed(self) -> bool:
        return self.opened if self.duration is None else self.percentage >= THRESHOLD

    @property
    def borderline(self) -> bool:
        """Within 10 ms of the threshold: float sums may fall either way."""
        return self.duration is not None and abs(self.watched - self.duration * 0.8) < 0.01


def merged(ranges: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[tuple[float, float]] = []
    for a, b in sorted(ranges):
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


# -- measurements -----------------------------------------------------------------------------


@dataclass
class Measure:
    """Everything counted during the run (real times from the event loop's clock)."""

    at: array[float] = field(default_factory=lambda: array("d"))  # when each 202 came back
    latency_ms: array[float] = field(default_factory=lambda: array("d"))
    # When each 202 came back - when its heartbeat was due: the latency a player sees, with the
    # wait for one of --concurrency connections (coordinated omission: latency_ms leaves it out)
    due_ms: array[float] = field(default_factory=lambda: array("d"))
    late_at: array[float] = field(default_factory=lambda: array("d"))
    late_s: array[float] = field(default_factory=lambda: array("d"))  # send start - schedule
    # the generator's own part of late_s: how late it got to a heartbeat, before any wait for
    # a connection
    own_lag_s: array[float] = field(default_factory=lambda: array("d"))
    status_ms: list[float] = field(default_factory=list)
    lags: list[float] = field(default_factory=list)
    lag_unseen: int = 0
    accepted: int = 0
    completes: int = 0
    retries: int = 0
    errors: Counter[int | str] = field(default_factory=Counter)  # HTTP status, or why
    error_examples: list[str] = field(default_factory=list)
    ryw_checked: int = 0
    ryw_mismatches: list[str] = field(default_factory=list)
    credited: list[float] = field(default_factory=lambda: [0.0, 0.0])  # stored, claimed (s)

    def window(self, start: float, end: float) -> tuple[int, list[float], list[float]]:
        """(accepted, latencies, send lateness) in [start, end); both arrays are in time order."""
        a, b = bisect_left(self.at, start), bisect_left(self.at, end)
        c, d = bisect_left(self.late_at, start), bisect_left(self.late_at, end)
        return b - a, list(self.latency_ms[a:b]), list(self.late_s[c:d])

    def from_schedule(self, start: float, end: float) -> list[float]:
        """`due_ms` of the heartbeats accepted in [start, end)."""
        return list(self.due_ms[bisect_left(self.at, start) : bisect_left(self.at, end)])


@dataclass
class LagSample:
    student: str
    material: str
    client_ts: float
    seq: int
    accepted_at: float  # wall clock


class LoadGen:
    def __init__(self, bs: BenchStack, args: argparse.Namespace) -> None:
        self.bs = bs
        self.args = args
        self.k = float(args.speedup)
        self.model: dict[tuple[str, str], KeyModel] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.m = Measure()
        self.stopping = False
        self.tasks: list[asyncio.Task[None]] = []
        self.inflight: set[asyncio.Future[None]] = set()
        self.lag_outstanding: list[LagSample] = []
        self.last_sample = 0.0
        self.backlog: list[tuple[float, int, int, int]] = []  # (t, dirty, pending, overdue)
        self.own_redis_calls = 0
        self.own_redis_reads = 0
        self.open_tabs: Counter[tuple[str, str]] = Counter()
        # With adversaries verified watching is on: tabs behave as the browser tracker does.
        self.tracker = args.adversaries > 0
        # Verified watching on, players that are not the tracker (`--max-playback-rate`
        # alone): the model's credit is an upper bound, not the figure (`credit_differs`).
        self.bounded = bs.settings.max_playback_rate > 0 and not self.tracker
        self.hostile: set[str] = set()  # hostile students' ids (not in the model)

    # -- clock ----------------------------------------------------------------------------

    def start_clock(self, horizon_real_s: float) -> None:
        self.loop = asyncio.get_running_loop()
        self.t0 = self.loop.time()
        # The simulated clock ends before the real now: a player clock ahead would be clamped.
        self.sim0 = time.time() - self.k * horizon_real_s - 600.0

    def sim_now(self) -> float:
        return self.sim0 + (self.loop.time() - self.t0) * self.k

    async def until(self, sim_t: float) -> None:
        delay = (sim_t - self.sim_now()) / self.k
        if delay > 0:
            await asyncio.sleep(delay)

    def real_of(self, sim_t: float) -> float:
        return self.t0 + (sim_t - self.sim0) / self.k

    # -- HTTP -----------------------------------------------------------------------------

    async def open(self) -> None:
        conc = self.args.concurrency
        url = urlsplit(self.bs.url)
        self.http = HttpPool(url.hostname or "127.0.0.1", url.port or 80)
        self.sem = asyncio.Semaphore(conc)
        self.aredis = aioredis.Redis.from_url(self.bs.settings.redis_url)

    async def close(self) -> None:
        await self.http.aclose()
        await self.aredis.aclose()

    def add_students(self, students: list[str]) -> None:
        for sid in students:
            self.headers[sid] = {"Authorization": f"Bearer {self.bs.token(sid)}"}

    def key(self, sid: str, mid: str) -> KeyModel:
        km = self.model.get((sid, mid))
        if km is None:
            km = self.model[(sid, mid)] = KeyModel(VIDEOS.get(mid))
        return km

    async def _request(self, method: str, path: str, sid: str) -> tuple[int | None, Any]:
        body = b"" if method == "POST" else None
        try:
            reply = await self.http.request(method, path, self.headers[sid], body)
        except HttpError as exc:
            self._example(f"{method} {path}: {exc}")
            return None, None
        if reply.status >= 400:
            self._example(f"{method} {path}: {reply.status} {reply.body[:200]!r}")
        return reply.status, json.loads(reply.body) if reply.status < 300 else None

    def _example(self, text: str) -> None:
        if len(self.m.error_examples) < 10:
            self.m.error_examples.append(text)

    async def send(self, sid: str, mid: str, body: dict[str, Any], scheduled: float) -> None:
        """Send one heartbeat (retrying what may be retried), shielded from cancellation so
        that the model always learns the fate of a request that left."""
        task = asyncio.ensure_future(self._send(sid, mid, body, scheduled))
        self.inflight.add(task)
        task.add_done_callback(self.inflight.discard)
        await asyncio.shield(task)

    async def _send(self, sid: str, mid: str, body: dict[str, Any], scheduled: float) -> None:
        km = self.key(sid, mid)
        km.sent += 1
        km.inflight += 1
        try:
            await self._post(km, sid, mid, body, scheduled)
        finally:
            km.inflight -= 1

    async def _post(
        self, km: KeyModel, sid: str, mid: str, body: dict[str, Any], scheduled: float
    ) -> None:
        path = f"/api/progress/video/{mid}/watch-time"
        client_ts = parsed_ts(body["client_ts"])
        raw = json.dumps(body).encode()
        self.m.own_lag_s.append(max(0.0, self.loop.time() - scheduled))
        for attempt in range(5):
            async with self.sem:
                if attempt == 0:
                    now = self.loop.time()
                    self.m.late_at.append(now)
                    self.m.late_s.append(max(0.0, now - scheduled))
                t = time.perf_counter()
                reply = None
                try:
                    reply = await self.http.request("POST", path, self.headers[sid], raw)
                    status: int | None = reply.status
                except HttpError as exc:
                    status = None
                    self._example(f"POST {path}: {exc}")
                elapsed_ms = (time.perf_counter() - t) * 1000.0
            if status == 202:
                km.accept(body, client_ts)
                self.m.accepted += 1
                answered = self.loop.time()
                self.m.at.append(answered)
                self.m.latency_ms.append(elapsed_ms)
                self.m.due_ms.append(max(0.0, answered - scheduled) * 1000.0)
                self._maybe_sample(sid, mid, client_ts, body["seq"])
                return
            if status is None or status == 429 or status >= 500:
                self.m.retries += 1
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
                continue
            self.m.errors[status] += 1
            self._example(f"POST {path} {body}: {status} {reply.body[:160] if reply else b''!r}")
            return
        km.uncertain = True
        self.m.errors["gave up after retries"] += 1

    async def complete_pdf(self, sid: str) -> None:
        km = self.key(sid, PDF_ID)
        for attempt in range(5):
            async with self.sem:
                status, _ = await self._request(
                    "POST", f"/api/progress/material/{PDF_ID}/complete", sid
                )
            if status == 202:
                km.opened = True
                km.accepted += 1
                self.m.completes += 1
                return
            if status is None or status >= 500:
                await asyncio.sleep(min(2.0, 0.2 * 2**attempt))
                continue
            self.m.errors[status] += 1
            return
        km.uncertain = True
        self.m.errors["gave up after retries"] += 1

    async def status(self, sid: str, mid: str, check: bool) -> float:
        """The player's resume request; checked against the model (read-your-writes)."""
        km = self.key(sid, mid)
        expected = (km.position, km.watched, km.completed, km.borderline)
        # Exact only when nothing for this key is in flight or sent while the read runs.
        quiet = (km.inflight, km.sent) if km.inflight == 0 else None
        async with self.sem:
            t = time.perf_counter()
            code, doc = await self._request("GET", f"/api/progress/video/{mid}/status", sid)
            self.m.status_ms.append((time.perf_counter() - t) * 1000.0)
        if code != 200:
            self.m.errors[f"status {code}"] += 1
            return km.position
        if check and not km.uncertain and quiet == (km.inflight, km.sent):
            self.m.ryw_checked += 1
            position, watched, completed, borderline = expected
            problems = []
            if abs(doc["watch_time"] - position) > 0.002:
                problems.append(f"watch_time {doc['watch_time']} != {position:.3f}")
            if credit_differs(doc["watched_seconds"], watched, 1.0, self.bounded):
                problems.append(f"watched_seconds {doc['watched_seconds']} != {watched:.3f}")
            if completion_differs(doc["completed"], completed, borderline, self.bounded):
                problems.append(f"completed {doc['completed']} != {completed}")
            if problems:
                self.m.ryw_mismatches.append(f"{sid}/{mid}: " + ", ".join(problems))
        return float(doc["watch_time"])

    # -- end-to-end lag -------------------------------------------------------------------

    def _maybe_sample(self, sid: str, mid: str, client_ts: float, seq: int) -> None:
        now = self.loop.time()
        if now - self.last_sample < LAG_SAMPLE_EVERY_S:
            return
        if len(self.lag_outstanding) >= LAG_MAX_OUTSTANDING:
            return
        self.last_sample = now
        self.lag_outstanding.append(LagSample(sid, mid, client_ts, seq, time.time()))

    def _visible(self, samples: list[LagSample]) -> list[float | None]:
        """For each sample, when it was seen in MongoDB (None: not yet). Runs in a thread."""
        seen: list[float | None] = []
        for s in samples:
            doc = self.bs.mongo.progress.find_one(
                {"_id": progress_id(s.student, s.material)}, {"_id": 0, "state": 1}
            )
            key = ((doc or {}).get("state") or {}).get("position_key")
            visible = key and (
                key[0] > s.client_ts + 5e-4
                or (abs(key[0] - s.client_ts) <= 5e-4 and key[1] >= s.seq)
            )
            seen.append(time.time() if visible else None)
        return seen

    async def poll_lag(self) -> None:
        samples = list(self.lag_outstanding)
        if not samples:
            return
        seen = await asyncio.to_thread(self._visible, samples)
        now = time.time()
        for s, at in zip(samples, seen, strict=True):
            if at is not None:
                self.m.lags.append(at - s.accepted_at)
            elif now - s.accepted_at > LAG_GIVE_UP_S:
                self.m.lag_unseen += 1
            else:
                continue
            self.lag_outstanding.remove(s)

    async def lag_poller(self) -> None:
        while True:
            await self.poll_lag()
            await asyncio.sleep(1.0)

    # -- backlog --------------------------------------------------------------------------

    async def sample_backlog(self) -> tuple[int, int, int]:
        overdue_before = time.time() - 2 * self.bs.settings.flush_tick_s
        pipe = self.aredis.pipeline(transaction=False)
        for part in self.bs.key_schema.partitions():
            pipe.zcard(part.dirty)
            pipe.get(part.pending)
            pipe.zcount(part.dirty, "-inf", overdue_before)
        replies = await pipe.execute()
        self.own_redis_calls += len(replies)
        self.own_redis_reads += 1
        dirty, overdue = sum(replies[0::3]), sum(replies[2::3])
        pending = sum(int(p or 0) for p in replies[1::3])
        sample = (int(dirty), pending, int(overdue))
        self.backlog.append((self.loop.time(), *sample))
        return sample

    # -- students -------------------------------------------------------------------------

    def spawn(self, students: list[str], spread_s: float) -> None:
        """Start watchers, arriving over `spread_s` real seconds."""
        for sid in students:
            rng = random.Random(f"{self.args.seed}:{sid}")
            start = self.sim_now() + rng.uniform(0.0, spread_s * self.k)
            self.tasks.append(asyncio.create_task(self.student(sid, rng, start)))

    def pick_video(self, sid: str, rng: random.Random) -> str:
        ids = list(VIDEOS)
        done = [m for m in ids if (km := self.model.get((sid, m))) and km.completed]
        todo = [m for m in ids if m not in done]
        roll = rng.random()
        if done and (roll < 0.15 or not todo):
            return rng.choice(done)  # rewatch
        if roll < 0.25 or not todo:
            return rng.choice(ids)  # jump around
        return todo[0]

    async def student(self, sid: str, rng: random.Random, start: float) -> None:
        await self.until(start)
        while not self.stopping:
            if rng.random() < 0.05 and not self.key(sid, PDF_ID).opened:
                await self.complete_pdf(sid)
            video = self.pick_video(sid, rng)
            # A second tab, for a while; not under verified watching: two players of one
            # student at once may rightly be credited less than they claim.
            if rng.random() < 0.08 and not self.tracker:
                other = video if rng.random() < 0.5 else rng.choice(list(VIDEOS))
                tab_rng = random.Random(rng.random())
                limit = rng.uniform(60.0, 300.0)
                self.tasks.append(asyncio.create_task(self.tab(sid, other, tab_rng, limit)))
            await self.tab(sid, video, rng, None)
            await self.until(self.sim_now() + rng.uniform(2.0, 20.0))

    async def tab(self, sid: str, mid: str, rng: random.Random, limit_s: float | None) -> None:
        self.open_tabs[(sid, mid)] += 1
        try:
            await self._tab(sid, mid, rng, limit_s)
        finally:
            self.open_tabs[(sid, mid)] -= 1

    async def _tab(self, sid: str, mid: str, rng: random.Random, limit_s: float | None) -> None:
        """One page load of the player: what the tracker would send, in simulated time."""
        duration = VIDEOS[mid]
        alone = self.open_tabs[(sid, mid)] == 1
        position = await self.status(sid, mid, check=alone)
        if self.stopping:
            return
        if position >= duration - 3.0 or rng.random() < 0.05:
            position = 0.0
        session = uuid.uuid4().hex
        seq = 0
        rate = rng.choice([1.0] * 7 + [1.25, 1.5, 1.5, 2.0])
        t = self.sim_now()
        deadline = t + limit_s if limit_s is not None else math.inf
        range_start = position
        played: list[tuple[float, float]] = []
        next_tick = t + HEARTBEAT_S
        beat_at_play = self.tracker  # the tracker reports at once when playing starts

        async def beat(at: float, watch_time: float, event: str | None) -> None:
            nonlocal seq, played
            body: dict[str, Any] = {
                "watch_time": r3(watch_time),
                "total_duration": duration,
                "client_ts": iso(r3(at)),
                "session_id": session,
                "seq": seq,
                "played": [[r3(a), r3(b)] for a, b in played if r3(b) > r3(a)],
                "playback_rate": rate,
            }
            if self.tracker and event is not None:
                body["event"] = event
            seq += 1
            played = []
            await self.send(sid, mid, body, self.real_of(at))

        if beat_at_play:
            await beat(t, position, "play")

        while True:
            t_end = t + (duration - position) / rate
            t_event = t + rng.expovariate(1.0 / 60.0)
            t_next = max(t, min(next_tick, t_end, t_event, deadline))  # a pause may pass them
            await self.until(t_next)
            position = min(duration, position + (t_next - t) * rate)
            t = t_next
            if self.stopping or t_next >= deadline:  # tab closed (pagehide)
                played.append((range_start, position))
                await beat(t, position, "exit")
                return
            if t_next == t_end:  # ended
                played.append((range_start, duration))
                await beat(t, duration, "ended")
                return
            if t_next == next_tick:  # the interval timer, while playing
                played.append((range_start, position))
                range_start = position
                next_tick += HEARTBEAT_S
                await beat(t, position, None)  # the timer: no event
                continue
            event = rng.choices(
                ["pause", "back", "forward", "close", "rate"], [0.35, 0.25, 0.2, 0.12, 0.08]
            )[0]
            if event == "rate":
                played.append((range_start, position))  # a new rate: keep timing honest
                range_start = position
                rate = rng.choice([1.0, 1.25, 1.5, 2.0])
                continue
            if event == "close":
                played.append((range_start, position))
                await beat(t, position, "exit")
                return
            if event == "pause":
                played.append((range_start, position))
                range_start = position
                await beat(t, position, "pause")
                t += rng.uniform(3.0, MAX_PAUSE_S)
                await self.until(t)
                if self.stopping:  # closing a paused tab: pagehide sends the position
                    await beat(t, position, "exit")
                    return
                next_tick = t + HEARTBEAT_S  # play restarts the interval timer
                if beat_at_play:
                    await beat(t, position, "play")
                continue
            # a seek: 'seeking' closes the open range, 'seeked' sends the new position
            played.append((range_start, position))
            if event == "back":
                position = max(0.0, position - rng.uniform(5.0, 120.0))
            else:
                position = min(duration - 1.0, position + rng.uniform(5.0, 180.0))
            range_start = position
            await beat(t, position, "seek")

    async def stop_students(self, grace_s: float) -> None:
        self.stopping = True
        if self.tasks:
            _, pending = await asyncio.wait(self.tasks, timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self.inflight:
            await asyncio.wait(set(self.inflight), timeout=60.0)


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Step:
    watchers: int
    start: float
    end: float
    accepted: int = 0
    p50: float = math.nan
    p95: float = math.nan
    p99: float = math.nan
    late_p99: float = math.nan
    due_p99: float = math.nan
    overdue_mid: int = 0
    overdue_end: int = 0
    dirty_end: int = 0
    pending_end: int = 0
    bulk_writes: int = 0
    docs_per_bulk: float = math.nan
    cpu: dict[str, float] = field(default_factory=dict)
    errors: int = 0
    verdict: str = ""

    @property
    def rate(self) -> float:
        return self.accepted / max(1e-9, self.end - self.start)


def students_range(first: int, count: int) -> list[str]:
    return [f"s{i:05d}" for i in range(first, first + count)]


async def drain(gen: LoadGen, timeout_s: float) -> float | None:
    """Seconds until everything buffered reached MongoDB (None: not within `timeout_s`)."""
    queue_key = Queue.redis_queue_namespace_prefix + gen.bs.settings.queue_name
    started_key = StartedJobRegistry.key_template.format(gen.bs.settings.queue_name)
    t = time.monotonic()
    while time.monotonic() - t < timeout_s:
        pipe = gen.aredis.pipeline(transaction=False)
        pipe.llen(queue_key)
        pipe.zcard(started_key)
        for part in gen.bs.key_schema.partitions():
            pipe.zcard(part.dirty)
            pipe.get(part.pending)
        queued, running, *buffer = await pipe.execute()
        gen.own_redis_calls += 2 + len(buffer)
        gen.own_redis_reads += 1
        dirty, pending = sum(buffer[0::2]), sum(int(p or 0) for p in buffer[1::2])
        if not dirty and not pending and not queued and not running:
            return time.monotonic() - t
        await asyncio.sleep(0.5)
    return None


def verify(gen: LoadGen) -> tuple[list[str], list[str]]:
    """Compare MongoDB with the model: (watch_progress problems, enrollment problems)."""
    gen.m.credited = [0.0, 0.0]
    docs = {
        (d["student_id"], d["material_id"]): d
        for d in gen.bs.mongo.progress.find(
            {},
            {
                "_id": 0,
                "student_id": 1,
                "material_id": 1,
                "watch_time": 1,
                "watched_seconds": 1,
                "progress_percentage": 1,
                "completed": 1,
            },
        )
    }
    problems: list[str] = []
    completed_by: dict[str, set[str]] = {}
    for (sid, mid), km in gen.model.items():
        if km.accepted == 0 or km.uncertain:
            continue
        doc = docs.pop((sid, mid), None)
        if doc is None:
            problems.append(f"{sid}/{mid}: no watch_progress document ({km.accepted} accepted)")
            continue
        stored_completed = bool(doc.get("completed"))
        if stored_completed if km.borderline or gen.bounded else km.completed:
            completed_by.setdefault(sid, set()).add(mid)
        if km.duration is None:
            if not stored_completed:
                problems.append(f"{sid}/{mid}: pdf opened but not completed")
            continue
        bad = []
        if abs(float(doc.get("watch_time", -1)) - km.position) > 0.002:
            bad.append(f"resume {doc.get('watch_time')} != {km.position:.3f}")
        gen.m.credited[0] += float(doc.get("watched_seconds", 0.0))
        gen.m.credited[1] += km.watched
        if credit_differs(float(doc.get("watched_seconds", -1)), km.watched, 1.0, gen.bounded):
            bad.append(f"watched {doc.get('watched_seconds')} != {km.watched:.3f}")
        expected_pct = round(km.percentage, 3)
        stored_pct = float(doc.get("progress_percentage", -1))
        if credit_differs(stored_pct, expected_pct, 100.0 / km.duration, gen.bounded):
            bad.append(f"progress {doc.get('progress_percentage')} != {expected_pct}")
        if completion_differs(stored_completed, km.completed, km.borderline, gen.bounded):
            bad.append(f"completed {stored_completed} != {km.completed}")
        if bad:
            problems.append(f"{sid}/{mid}: " + ", ".join(bad))
    uncertain = {k for k, km in gen.model.items() if km.uncertain}
    for key in docs:
        if key not in uncertain and key[0] not in gen.hostile:  # theirs: `credit_report`
            problems.append(f"{key[0]}/{key[1]}: unexpected document (nothing was accepted)")
    course = load_course()
    total = len(course.materials)
    enrollment_problems: list[str] = []
    # What the teacher views read: the documents with the live rollup records laid over them
    # (the persister writes these every ROLLUP_PERSIST_S).
    records = LiveRollups(gen.bs.r).records(COURSE_ID)
    for found in gen.bs.mongo.enrollments.find({"course_id": COURSE_ID}, {"_id": 0}):
        sid = found["student_id"]
        if sid not in gen.headers:
            continue
        record = records.get(sid)
        doc = (
            {**found, **rollup_store.completion_fields(record.entries, course)} if record else found
        )
        expected = completed_by.get(sid, set())
        stored = set(doc.get("completed_materials", []))
        want = round(100.0 * len(expected) / total, 3)
        got = float(doc.get("progress_percentage", 0.0))
        if stored != expected or abs(got - want) > 0.01:
            enrollment_problems.append(
                f"{sid}: completed {sorted(stored)} != {sorted(expected)}"
                f" or progress {got} != {want}"
            )
    return problems, enrollment_problems


def credit_differs(stored: float, claimed: float, tolerance: float, bounded: bool) -> bool:
    """Whether a stored credit (seconds or percentage) is wrong against the model's claim:
    exactly it, or with verified watching on (`bounded`) at most it: the server credits only
    what its own clock saw, which the model cannot know (a player that is not the tracker
    reports a session's first seconds only with its first heartbeat, 10 s in, for one)."""
    if bounded:
        return stored > claimed + tolerance
    return abs(stored - claimed) > tolerance


def completion_differs(stored: bool, claimed: bool, borderline: bool, bounded: bool) -> bool:
    """Completion as the model claims it, or with verified watching on, never beyond it."""
    if borderline:
        return False
    return (stored and not claimed) if bounded else stored != claimed


async def verify_with_patience(gen: LoadGen, attempts: int = 10) -> tuple[list[str], list[str]]:
    """Completion jobs run after the flush; give enrollments a few seconds to catch up."""
    problems, enrollment = await asyncio.to_thread(verify, gen)
    for _ in range(attempts):
        if problems or not enrollment:
            break
        await asyncio.sleep(2.0)
        problems, enrollment = await asyncio.to_thread(verify, gen)
    return problems, enrollment


def aggregate_equals_a_count(gen: LoadGen) -> bool:
    """Whether the course's aggregate holds exactly the contributions of its folded
    enrollments, as a count from scratch finds them, once every flush is done; and whether
    the stats (the aggregate plus the live records' delta) equal a count over the rows the
    teacher views show (documents with the records laid over)."""
    mongo = gen.bs.mongo
    if aggregate_store.sums(mongo, COURSE_ID) != aggregate_store.count(mongo, COURSE_ID):
        return False
    course, live = load_course(), LiveRollups(gen.bs.r)
    rows = rollup_store.course_rollups(mongo, course, live=live)
    counted = teacher_views.class_sums(rows, course)
    # Enrolled here by `enroll_bulk` (documents the aggregate has not folded; an enrolment
    # through the API folds them at once): those without a record add nothing to the sums.
    records = live.records(COURSE_ID)
    for doc in mongo.enrollments.find({"course_id": COURSE_ID, "agg_seq": {"$exists": False}}):
        if doc["student_id"] not in records:
            rollup.add(counted, rollup.contribution_of(doc), -1)
    held = rollup.add(dict(aggregate_store.sums(mongo, COURSE_ID) or {}), live.delta(COURSE_ID))
    return held == counted


def mongo_flushes(gen: LoadGen) -> tuple[int, int]:
    """(sum of `flushes` over watch_progress documents, number of documents)."""
    rows = list(
        gen.bs.mongo.progress.aggregate(
            [{"$group": {"_id": None, "flushes": {"$sum": "$flushes"}, "docs": {"$sum": 1}}}]
        )
    )
    if not rows:
        return 0, 0
    return int(rows[0]["flushes"] or 0), int(rows[0]["docs"] or 0)


async def wire_counts(bs: BenchStack) -> dict[str, dict[str, int]] | None:
    """The write-counting proxy's totals, once it has written all it saw (None without it)."""
    if bs.wire_counts is None:
        return None
    await asyncio.sleep(1.5)  # it writes its totals every second
    return read_counts(bs.wire_counts)


def wire_delta(
    after: dict[str, dict[str, int]] | None, before: dict[str, dict[str, int]] | None
) -> dict[str, dict[str, int]] | None:
    if after is None or before is None:
        return None
    return {
        c: {k: v - before.get(c, {}).get(k, 0) for k, v in row.items()} for c, row in after.items()
    }


def wire_rows(wire: dict[str, dict[str, int]] | None, accepted: int) -> list[tuple[str, str]]:
    """Documents written per accepted heartbeat, per collection and in total, as the database
    reported them (the write-counting proxy), with the write operations sent beside them."""
    if wire is None:
        return [("MongoDB documents written per heartbeat", "not counted (--no-count-writes)")]
    n = max(1, accepted)
    docs = sum(row["docs"] for row in wire.values())
    ops = sum(row["ops"] for row in wire.values())
    rows = [("MongoDB documents written per heartbeat, all collections (at the database)",
             f"{docs / n:.3f}  ({docs:,} documents, {ops:,} write operations sent)")]  # fmt: skip
    for collection, row in sorted(wire.items(), key=lambda kv: -kv[1]["docs"]):
        docs_ops = f"({row['docs']:,} documents, {row['ops']:,} ops)"
        rows.append((f"  {collection}", f"{row['docs'] / n:.3f}  {docs_ops}"))
    return rows


def fmt(x: float, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:,.{digits}f}"


def flush_stats(gen: LoadGen) -> dict[str, float]:
    """The workers' own flush figures (`vp:stats`, summed over all workers)."""
    gen.own_redis_calls += 1
    gen.own_redis_reads += 1
    return read_stats(gen.bs.r)


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def per_bulk(stats: dict[str, float]) -> float:
    writes = stats.get("mongo_writes", 0.0)
    return stats.get("flushed_keys", 0.0) / writes if writes else math.nan


async def run(bs: BenchStack, args: argparse.Namespace) -> int:
    gen = LoadGen(bs, args)
    await gen.open()
    capacity = args.capacity
    budget_s = args.max_minutes * 60.0 if capacity else args.minutes * 60.0
    adversary = await start_adversary(gen, bs, args) if args.adversaries else None
    if adversary:  # a baseline phase, then the same load beside the hostile students
        budget_s *= 2
    reserve_s = args.drain_timeout + 30.0 if capacity else 0.0
    gen.start_clock(budget_s + 120.0)
    pids = bs.pids()
    pids["loadgen"] = os.getpid()

    # idle background (RQ polling, cron ticks) over a few seconds, for the record
    idle0 = RedisCounters.take(bs.r)
    await asyncio.sleep(5.0)
    idle = RedisCounters.take(bs.r).minus(idle0)
    idle_rate = idle.total / 5.0

    plan = capacity_plan(args) if capacity else [args.watchers]
    if adversary:
        plan = [args.watchers, args.watchers]
    steps: list[Step] = []
    outage: dict[str, Any] | None = None
    redis0 = RedisCounters.take(bs.r)
    stats_run0 = flush_stats(gen)
    wire0 = await wire_counts(bs)
    wall0 = time.time()
    load_t0 = gen.loop.time()
    poller = asyncio.create_task(gen.lag_poller())
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
        transient=False,
    )
    enrolled = 0
    out_of_time: int | None = None  # the step the time budget did not leave room for
    with progress:
        bar = progress.add_task("load", total=budget_s - reserve_s, info="")
        if args.outage_minutes > 0:
            new = students_range(0, plan[0])
            await asyncio.to_thread(enroll_bulk, bs, new, COURSE_ID)
            gen.add_students(new)
            enrolled = plan[0]
            gen.spawn(new, spread_s=20.0)
            progress.update(bar, description=f"{plan[0]:,} watchers, worker tier outage")
            outage = await worker_outage(gen, bs, args.outage_minutes * 60.0)
            progress.update(bar, completed=gen.loop.time() - load_t0)
            if capacity:
                plan = plan[1:]
        for i, watchers in enumerate(plan):
            if capacity:
                step_s = args.step_seconds * (1.5 if i == 0 else 1.0)
            elif adversary:
                step_s = args.minutes * 60.0
            else:  # what the outage phases left of the run
                step_s = max(10.0, budget_s - (gen.loop.time() - load_t0))
            elapsed = gen.loop.time() - load_t0
            if capacity and elapsed + step_s > budget_s - reserve_s:
                out_of_time = watchers
                break
            new = students_range(enrolled, watchers - enrolled)
            if new:
                await asyncio.to_thread(enroll_bulk, bs, new, COURSE_ID)
            gen.own_redis_calls += 2 * len(new)  # the enrollment mirror: DEL + SADD each
            gen.own_redis_reads += math.ceil(len(new) / 5000)
            gen.add_students(new)
            gc.freeze()  # the model so far stays to the end: out of the collector's passes
            enrolled = watchers
            step = Step(watchers, gen.loop.time(), 0.0)
            cpu0 = cpu_snapshot(pids)
            stats0 = flush_stats(gen)
            errors0 = sum(gen.m.errors.values())
            gen.spawn(new, spread_s=min(20.0, step_s / 3))
            if adversary and i == 1:
                adversary.start()
            hostile = f" + {adversary.hostile} hostile" if adversary and i == 1 else ""
            progress.update(bar, description=f"{watchers:,} watchers{hostile}")
            end = step.start + step_s
            mid_overdue = None
            while (now := gen.loop.time()) < end:
                dirty, pending, overdue = await gen.sample_backlog()
                if mid_overdue is None and now >= step.start + step_s / 2:
                    mid_overdue = overdue
                n, lat, _ = gen.m.window(now - 5.0, now)
                errors = sum(gen.m.errors.values())
                progress.update(
                    bar,
                    completed=now - load_t0,
                    info=f"accepted {gen.m.accepted:,} ({n / 5.0:,.0f}/s) p99 "
                    f"{fmt(percentile(lat, 99))} ms | pending {pending:,} dirty {dirty:,} "
                    f"overdue {overdue:,} | errors {errors}",
                )
                await asyncio.sleep(0.5)
            step.end = gen.loop.time()
            step.cpu = cpu_share(cpu0, cpu_snapshot(pids), step.end - step.start)
            step.accepted, lat, late = gen.m.window(step.start, step.end)
            step.p50, step.p95, step.p99 = (percentile(lat, q) for q in (50, 95, 99))
            step.late_p99 = percentile(late, 99)
            step.due_p99 = percentile(gen.m.from_schedule(step.start, step.end), 99)
            step.dirty_end, step.pending_end, step.overdue_end = await gen.sample_backlog()
            step.overdue_mid = mid_overdue or 0
            step_stats = delta(flush_stats(gen), stats0)
            step.bulk_writes = int(step_stats.get("mongo_writes", 0))
            step.docs_per_bulk = per_bulk(step_stats)
            steps.append(step)
            step.errors = sum(gen.m.errors.values()) - errors0
            if capacity:
                step.verdict = judge(step, bs.settings.flush_batch_size)
                if step.verdict != "held":
                    break
    load_s = gen.loop.time() - load_t0
    accepted_in_load = gen.m.accepted + gen.m.completes
    outcome = await adversary.stop() if adversary else None
    console.print(f"stopping {enrolled:,} watchers (tabs close: a last heartbeat each)...")
    await gen.stop_students(grace_s=min(30.0, MAX_PAUSE_S / gen.k + 5.0))
    drain_started = time.time()
    drained = await drain(gen, args.drain_timeout)
    poller.cancel()  # first, so that two polls never work on the same samples
    with contextlib.suppress(asyncio.CancelledError):
        await poller
    await gen.poll_lag()  # samples made visible by the last flushes
    redis_delta = RedisCounters.take(bs.r).minus(redis0)
    total_wall = time.time() - wall0
    wire = wire_delta(await wire_counts(bs), wire0)
    problems, enrollment_problems = await verify_with_patience(gen)
    aggregate_held = await asyncio.to_thread(aggregate_equals_a_count, gen)
    flushes, documents = await asyncio.to_thread(mongo_flushes, gen)
    stats = delta(flush_stats(gen), stats_run0)
    hostile_failed = False
    if outcome:
        docs = await asyncio.to_thread(
            lambda: list(
                gen.bs.mongo.progress.find({}, {"_id": 0, "student_id": 1, "watched_seconds": 1})
            )
        )
        hostile_failed = report_adversary(steps, outcome, docs, bs.settings.max_playback_rate)
    await gen.close()

    # -- report ---------------------------------------------------------------------------
    accepted = gen.m.accepted + gen.m.completes
    own_calls, own_reads = gen.own_redis_calls, gen.own_redis_reads
    calls = redis_delta.total - own_calls
    reads = redis_delta.reads - own_reads - 1  # our closing INFO
    scripts = redis_delta.calls.get("evalsha", 0) + redis_delta.calls.get("eval", 0)
    lat_all = list(gen.m.latency_ms)
    late_all = list(gen.m.late_s)
    due_all = list(gen.m.due_ms)
    mongo_s = stats.get("mongo_write_seconds", 0.0)
    flushed_keys = int(stats.get("flushed_keys", 0))
    today = datetime.now(UTC).date().isoformat()

    if outage is not None:
        t = Table(title=f"worker-tier outage under {outage['watchers']:,} watchers, {today}")
        t.add_column("phase")
        for col in ("seconds", "accepted/s", "p50 ms", "p99 ms", "pending at end"):
            t.add_column(col, justify="right")
        for phase in ("before", "during", "after"):
            p = outage[phase]
            t.add_row(
                phase,
                f"{p['seconds']:.0f}",
                fmt(p["rate"]),
                fmt(p["p50"], 2),
                fmt(p["p99"], 2),
                f"{p['pending']:,}",
            )
        console.print(t)
        drained_in = outage["drained_s"]
        console.print(
            "backlog drained (no key overdue) "
            + ("NOT within the after phase" if drained_in is None else f"{drained_in:.0f} s")
            + f" after the worker tier came back; longest pending list during the outage: "
            f"{outage['longest']:,} heartbeats"
        )
    if capacity:
        t = Table(title=f"capacity run, {today}, 2-core dev machine, nx-27017 stand-in")
        for col in (
            "watchers",
            "accepted/s",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "late p99 s",
            "p99 from due ms",
            "overdue mid→end",
            "pending",
            "bulk writes",
            "docs/bulk",
            "CPU % web/worker/redis/mongo/loadgen",
            "verdict",
        ):
            t.add_column(col, justify="right")
        for s in steps:
            c = s.cpu
            cpu = "/".join(
                f"{c.get(k, 0):.0f}" for k in ("web", "worker", "redis", "mongo", "loadgen")
            )
            t.add_row(
                f"{s.watchers:,}",
                fmt(s.rate),
                fmt(s.p50, 2),
                fmt(s.p95, 2),
                fmt(s.p99, 2),
                fmt(s.late_p99, 2),
                fmt(s.due_p99, 1),
                f"{s.overdue_mid:,}→{s.overdue_end:,}",
                f"{s.pending_end:,}",
                str(s.bulk_writes),
                fmt(s.docs_per_bulk),
                cpu,
                s.verdict,
            )
        console.print(t)
        held = [s.watchers for s in steps if s.verdict == "held"]
        console.print(f"[bold]highest watcher count held: {max(held) if held else 0:,}[/]")
        if out_of_time is not None:
            console.print(
                f"[yellow]not a limit: --max-minutes left no time for the {out_of_time:,} step[/]"
            )
    else:
        s = steps[0]
        console.print(
            "CPU % of one core during the load: "
            + ", ".join(f"{k} {v:.0f}" for k, v in sorted(s.cpu.items()))
        )

    t = Table(title=f"loadgen summary, {today}, 2-core dev machine, nx-27017 stand-in")
    t.add_column("what")
    t.add_column("value", justify="right")
    rows = [
        ("watchers (max) / speedup", f"{enrolled:,} / {gen.k:g}"),
        (
            "flush interval / tick / workers",
            f"{bs.settings.flush_interval_s:g} s / {bs.settings.flush_tick_s} s / {args.workers}",
        ),
        ("load phase", f"{load_s:.0f} s"),
        ("accepted heartbeats (+ pdf completes)", f"{gen.m.accepted:,} (+{gen.m.completes})"),
        ("accepted/s", fmt(accepted_in_load / load_s)),
        (
            "ingest latency p50 / p95 / p99 ms",
            f"{fmt(percentile(lat_all, 50), 2)} / {fmt(percentile(lat_all, 95), 2)} / "
            f"{fmt(percentile(lat_all, 99), 2)}",
        ),
        ("max ms", fmt(max(lat_all) if lat_all else math.nan, 1)),
        (
            "from when each heartbeat was due, p50 / p99 ms (the wait for a connection too)",
            f"{fmt(percentile(due_all, 50), 2)} / {fmt(percentile(due_all, 99), 2)}",
        ),
        ("send lateness vs schedule p99 s", fmt(percentile(late_all, 99), 3)),
        (
            "  of which the generator's own lag (before a connection is free) p99 s",
            fmt(percentile(list(gen.m.own_lag_s), 99), 3),
        ),
        (
            "status (resume) reads p50 / p99 ms",
            f"{fmt(percentile(gen.m.status_ms, 50), 2)} / "
            f"{fmt(percentile(gen.m.status_ms, 99), 2)}",
        ),
        (
            "end-to-end lag 202 → MongoDB p50 / p99 s",
            f"{fmt(percentile(gen.m.lags, 50), 1)} / {fmt(percentile(gen.m.lags, 99), 1)} "
            f"({len(gen.m.lags)} samples, {gen.m.lag_unseen} unseen)",
        ),
        ("drained after stop", "NOT within timeout" if drained is None else f"{drained:.1f} s"),
        (
            "watch_progress writes per heartbeat (Σ flushes / accepted)",
            f"{flushes / max(1, accepted):.3f}  ({flushes:,} writes, {documents:,} docs)",
        ),
        *wire_rows(wire, accepted),
        (
            "documents per bulk write (worker stats)",
            f"{fmt(per_bulk(stats))}  ({int(stats.get('mongo_writes', 0)):,} bulk writes, "
            f"{flushed_keys:,} docs, {int(stats.get('flushes', 0)):,} flush jobs with keys)",
        ),
        (
            "time in bulk writes (worker stats)",
            f"{mongo_s:.1f} s ({1000 * mongo_s / max(1, flushed_keys):.2f} ms/doc)",
        ),
        (
            "stale writes / takeovers / failures / quarantined",
            " / ".join(
                str(int(stats.get(k, 0)))
                for k in ("stale_writes", "takeovers", "flush_failures", "quarantined")
            ),
        ),
        (
            "Redis commands per heartbeat (commandstats, incl. inside Lua)",
            f"{calls / max(1, accepted):.2f}",
        ),
        ("Redis script calls per heartbeat (EVALSHA)", f"{scripts / max(1, accepted):.2f}"),
        ("Redis round trips per heartbeat (read events)", f"{reads / max(1, accepted):.2f}"),
        (
            "  of which idle background (RQ, cron) per heartbeat",
            f"{idle_rate * total_wall / max(1, accepted):.2f} commands, over {total_wall:.0f} s",
        ),
        ("retries / errors", f"{gen.m.retries} / {dict(gen.m.errors) or 0}"),
        (
            "read-your-writes checks / mismatches",
            f"{gen.m.ryw_checked:,} / {len(gen.m.ryw_mismatches)}",
        ),
        ("watch_progress mismatches", str(len(problems))),
        *(
            [
                (
                    "verified watching: credit checked as a bound; credited / claimed",
                    f"{gen.m.credited[0]:,.0f} s / {gen.m.credited[1]:,.0f} s "
                    f"({gen.m.credited[0] / max(1.0, gen.m.credited[1]):.1%})",
                )
            ]
            if gen.bounded
            else []
        ),
        ("enrollment mismatches", str(len(enrollment_problems))),
        ("course aggregate equal to a count of the enrollments", "yes" if aggregate_held else "NO"),
    ]
    for what, value in rows:
        t.add_row(what, value)
    console.print(t)
    top = sorted(redis_delta.calls.items(), key=lambda kv: -kv[1])[:12]
    console.print(
        "Redis commands by name (whole run, all clients): "
        + ", ".join(f"{k} {v / max(1, accepted):.2f}" for k, v in top)
        + f"  [per accepted heartbeat; drain started {drain_started - wall0:.0f} s in]"
    )
    if args.speedup != 1:
        console.print(
            "[yellow]note: speedup != 1 packs more heartbeats into one flush interval; "
            "compare writes per heartbeat with the target only at --speedup 1[/]"
        )
    for text in gen.m.error_examples:
        console.print(f"[red]error example:[/] {text}")
    for line in (gen.m.ryw_mismatches + problems + enrollment_problems)[:40]:
        console.print(f"[red]mismatch:[/] {line}")
    failed = (
        hostile_failed
        or not aggregate_held
        or bool(
            problems
            or enrollment_problems
            or gen.m.ryw_mismatches
            or drained is None
            or gen.m.errors
        )
    )
    console.print(
        "[red]FAILED[/]" if failed else "[green]OK: the stored state matches the model[/]"
    )
    return 1 if failed else 0


async def start_adversary(
    gen: LoadGen, bs: BenchStack, args: argparse.Namespace
) -> AdversaryProcess:
    """Enroll the hostile students (ids apart from the honest ones'); not started yet."""
    ids = [f"x{i:04d}" for i in range(args.adversaries)]
    await asyncio.to_thread(enroll_bulk, bs, ids, COURSE_ID)
    gen.hostile.update(ids)
    url = urlsplit(bs.url)
    tokens = {sid: bs.token(sid) for sid in ids}
    roles = tuple(args.hostile_roles.split(","))
    return AdversaryProcess(
        url.hostname or "127.0.0.1",
        url.port or 80,
        tokens,
        VIDEOS,
        bs.settings.max_body_bytes,
        args.seed,
        roles,
    )


def report_adversary(
    steps: list[Step], adversary: Outcome, docs: list[dict[str, Any]], max_rate: float
) -> bool:
    """Print the honest latencies without and with the hostile students, what the hostile
    requests got and the worst hostile credit ratio; True when something failed."""
    base, hostile = steps[0], steps[1] if len(steps) > 1 else steps[0]
    ratio = hostile.p99 / base.p99 if base.p99 > 0 else math.nan
    console.print(
        f"honest ingest latency, baseline p50 / p99 {fmt(base.p50, 2)} / {fmt(base.p99, 2)} ms"
        f" ({base.accepted:,} accepted); beside {len(adversary.ledgers)} hostile students "
        f"{fmt(hostile.p50, 2)} / {fmt(hostile.p99, 2)} ms ({hostile.accepted:,} accepted); "
        f"p99 ratio {fmt(ratio, 2)} (target <= 1.5)"
    )
    if not ratio <= 1.5:
        console.print("[bold yellow]the honest p99 rose more than 1.5x beside the hostile ones[/]")
    replies = ", ".join(f"{k}: {v:,}" for k, v in sorted(adversary.replies.items()))
    console.print(f"hostile requests ({sum(adversary.replies.values()):,}): {replies}")
    worst, over = credit_report(adversary, docs, max_rate)
    console.print(
        f"hostile credit: worst credited / (MAX_PLAYBACK_RATE {max_rate:g} x accepted span "
        f"+ 1 ms per heartbeat) = {worst:.3f}"
    )
    for line in over:
        console.print(f"[red]hostile student credited past the budget:[/] {line}")
    for line in adversary.server_errors[:20]:
        console.print(f"[bold red]5xx FOR HOSTILE INPUT (a bug):[/] {line}")
    if adversary.server_errors:
        console.print(f"[bold red]{len(adversary.server_errors)} hostile requests got a 5xx[/]")
    return bool(over or adversary.server_errors)


async def worker_outage(gen: LoadGen, bs: BenchStack, outage_s: float) -> dict[str, Any]:
    """A minute of normal load, the worker and clock processes stopped for `outage_s` while the
    students go on, then restarted: latencies per phase, and how long the backlog takes to
    drain once the workers are back (overdue keys back to 0, at most 5 minutes)."""
    watchers = len(gen.headers)
    phases: dict[str, Any] = {"watchers": watchers}

    async def phase(name: str, seconds: float, until_drained: bool = False) -> float | None:
        start = gen.loop.time()
        drained_at = None
        while gen.loop.time() - start < seconds:
            _, _, overdue = await gen.sample_backlog()
            if until_drained and overdue == 0 and drained_at is None:
                drained_at = gen.loop.time() - start
            if drained_at is not None and gen.loop.time() - start >= 60:
                break  # a minute of "after" measured, and drained
            await asyncio.sleep(1.0)
        end = gen.loop.time()
        n, lat, _ = gen.m.window(start, end)
        _, pending, _ = await gen.sample_backlog()
        phases[name] = {
            "seconds": end - start,
            "rate": n / max(1e-9, end - start),
            "p50": percentile(lat, 50),
            "p99": percentile(lat, 99),
            "pending": pending,
        }
        return drained_at

    await phase("before", 60.0)
    bs.stack.kill_all("worker", signal.SIGTERM)
    bs.stack.kill_all("clock", signal.SIGTERM)
    await phase("during", outage_s)
    phases["longest"] = await asyncio.to_thread(longest_pending, bs)
    bs.stack.start("worker")
    bs.stack.start("clock")
    phases["drained_s"] = await phase("after", 300.0, until_drained=True)
    return phases


def longest_pending(bs: BenchStack) -> int:
    longest = 0
    for key in bs.r.scan_iter(match="vp:{*}:hb:*", count=1000):
        longest = max(longest, int(bs.r.llen(key)))
    return longest


def capacity_plan(args: argparse.Namespace) -> list[int]:
    plan = [args.start_watchers]
    while plan[-1] < args.max_watchers:
        plan.append(min(args.max_watchers, int(plan[-1] * args.step_factor)))
    return plan


def judge(step: Step, batch_size: int) -> str:
    if step.errors:
        return "errors"
    if step.p99 > 100.0:
        return "p99 > 100 ms"
    if step.late_p99 > 1.0:
        return "generator behind schedule"
    if step.overdue_end > 2 * batch_size and step.overdue_end > step.overdue_mid:
        return "backlog growing"
    return "held"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=2.0)
    parser.add_argument("--speedup", type=float, default=1.0)
    parser.add_argument("--concurrency", type=int, default=128, help="requests in flight, max")
    parser.add_argument("--workers", type=int, default=1, help="rq worker processes")
    parser.add_argument(
        "--web-processes", type=int, default=1, help="uvicorn's worker processes (WEB_CONCURRENCY)"
    )
    parser.add_argument("--flush-interval", type=float, default=30.0, help="FLUSH_INTERVAL_S")
    parser.add_argument("--flush-tick", type=int, default=5, help="FLUSH_TICK_S")
    parser.add_argument("--drain-timeout", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument(
        "--adversaries",
        type=int,
        default=0,
        help="hostile students: a baseline phase of --minutes, then as long beside them "
        "(speedup 1, verified watching on)",
    )
    parser.add_argument(
        "--hostile-roles",
        default=",".join(ROLES),
        help=f"comma-separated, taken in turn by the hostile students (of {', '.join(ROLES)})",
    )
    parser.add_argument(
        "--max-playback-rate",
        default=None,
        help="MAX_PLAYBACK_RATE for the stack (default 0, 2 with --adversaries): e.g. 2 to count "
        "the per-student budget's Redis commands (the oracle may then see less credited)",
    )
    parser.add_argument("--capacity", action="store_true", help="step up until it breaks")
    parser.add_argument(
        "--count-writes",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="count the documents MongoDB writes, per collection, through a wire proxy",
    )
    parser.add_argument("--max-minutes", type=float, default=15.0, help="capacity: whole run")
    parser.add_argument("--start-watchers", type=int, default=1000)
    parser.add_argument("--max-watchers", type=int, default=20000)
    parser.add_argument("--step-factor", type=float, default=1.5)
    parser.add_argument("--step-seconds", type=float, default=60.0)
    parser.add_argument(
        "--outage-minutes",
        type=float,
        default=None,
        help="stop the worker tier this long under --start-watchers (default 5 with --capacity)",
    )
    args = parser.parse_args()
    if args.outage_minutes is None:
        args.outage_minutes = 5.0 if args.capacity else 0.0
    if args.capacity and args.outage_minutes and args.max_minutes == 15.0:
        args.max_minutes = 15.0 + args.outage_minutes + 6.0  # the outage and its drain
    # The generator keeps a large model; the collector's full passes over it stalled its event
    # loop for up to 0.5 s (measured with gc.callbacks), which shows as service latency.
    gc.set_threshold(*GC_THRESHOLD)
    if args.capacity:
        args.workers = 1
    if args.adversaries and (args.capacity or args.outage_minutes):
        parser.error("--adversaries runs alone (not with --capacity or --outage-minutes)")
    if not set(args.hostile_roles.split(",")) <= set(ROLES):
        parser.error(f"--hostile-roles: each of {', '.join(ROLES)}")
    if args.adversaries:
        args.speedup = 1.0  # verified watching bounds players to real time
    # The per-student rate limit counts real minutes: scale it with the compressed time.
    rate_limit = str(math.ceil(240 * max(1.0, args.speedup)))
    max_rate = "2" if args.adversaries else "0"  # the product default when it is measured
    if args.max_playback_rate is not None:
        max_rate = str(args.max_playback_rate)
    with bench_stack(
        "loadgen-",
        [load_course()],
        workers=args.workers,
        flush_interval_s=args.flush_interval,
        flush_tick_s=args.flush_tick,
        extra_env={
            "RATE_LIMIT_PER_MINUTE": rate_limit,
            "MAX_PLAYBACK_RATE": max_rate,
            "WEB_CONCURRENCY": str(args.web_processes),
        },
        count_writes=args.count_writes,
    ) as bs:
        try:
            import uvloop

            code = uvloop.run(run(bs, args))
        except ImportError:  # pragma: no cover
            code = asyncio.run(run(bs, args))
        if code:
            sys.exit(code)  # inside the stack: a failed run keeps its folder (the logs)


if __name__ == "__main__":
    main()
