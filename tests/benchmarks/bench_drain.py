"""Benchmark: how fast one worker drains the heartbeat buffer into MongoDB.

    .venv/bin/python -m tests.benchmarks.bench_drain [--students 1000] [--videos 4]
        [--heartbeats 3] [--no-rq] [--repeat 5]

`--repeat N` runs the in-process passes N times over (each from the same state) and prints each
row's median and range, and the records' cost run by run (known keys against the flush without
rollups): on a shared machine one run swings by ±15 %.

Prefills the buffer through the ingest Lua script itself (the step the route takes, keys due at
once) with a realistic mix: every student watching every video, a few tracker-shaped heartbeats
per key (one session, played ranges), as a 30 s flush interval collects them. Then one worker
drains it, in rounds: round 1 on new keys (no hot state, no document yet: the flush reads
MongoDB for them and inserts), then the same keys again (hot state present: updates); three
rounds with the rollup records (below), two in the other passes.

Passes:
- `stand-in`: the flush function the RQ job runs (`workers.flush.flush_batch`, batches of
  FLUSH_BATCH_SIZE) in a loop in this process, against nx-27017, with each step timed apart
  (MongoDB write, MongoDB read, the new keys' rollup versions (their enrollments), Redis, and
  the rest: decoding, folding, encoding);
  the enrollment rollups merged into their records in Redis (the default, ROLLUP_PERSIST_S=600:
  shared/storage/live_rollups.py). Three rounds: new keys; the same keys merged into the
  records the first made; then the persister writes the course's records to MongoDB, timed
  apart, and a third round's records are all new again (each re-checked against its
  enrollment). In production the persister runs once per ROLLUP_PERSIST_S of activity, about
  twenty flushes of a key, so the steady state of known keys is nineteen rounds like the
  second, one like the third, and one persist: the row `known keys, steady state`;
- `stand-in, rollups every flush`: ROLLUP_PERSIST_S=0, the flush writing the enrollments and
  the course aggregate itself (0.9.0 before the records);
- `stand-in, no rollups`: the same with the rollups' step (`roll_up`) skipped, the flush as it
  was before rollups: the ratios are what the rollups cost, in one run;
- `no MongoDB write`: the same with `MongoStore.write_states` (and the cold keys' reads: their
  states, and for new keys their enrollments' rollup versions) replaced by no-ops, so the
  pipeline's own rate is visible apart from the stand-in's slowness;
- `rq worker --burst`: the Procfile's worker line with `--burst`, one process, after one
  `flush_pending` job is enqueued (it enqueues its follow-ups); wall time of the process, less
  the start-up time of a burst worker on an empty queue. It also runs the completion jobs.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from rq import Queue

from shared.devtools.services import procfile_commands, start_procfile_process
from shared.domain.catalog import Course
from shared.domain.progress import Heartbeat
from shared.ops import admin_ops
from shared.storage import mongo_store
from shared.storage.ingest_store import IngestItem, IngestLimits, ingest_args
from shared.storage.keys import ProgressKey
from shared.storage.scripts import SCRIPTS
from shared.storage.stats import read_stats
from tests.benchmarks.benchstack import BenchStack, bench_stack, enroll_bulk
from workers import flush
from workers.context import WorkerContext, build_context

COURSE_ID = "bench-drain"
# What `MongoStore.write_states` returns when every write landed (an outcome object, or a count
# of stale writes in older versions of the store).
NOTHING_REFUSED = getattr(mongo_store, "WriteOutcome", int)
DURATION = 900.0


def course(videos: int) -> Course:
    return Course.model_validate(
        {
            "course_id": COURSE_ID,
            "title": "Drain benchmark",
            "teacher_ids": [],
            "modules": [
                {
                    "module_id": "m",
                    "title": "All",
                    "materials": [
                        {
                            "material_id": f"dv{i:02d}",
                            "title": f"Video {i}",
                            "type": "video",
                            "duration": DURATION,
                        }
                        for i in range(videos)
                    ],
                }
            ],
        }
    )


def students(n: int) -> list[str]:
    return [f"d{i:05d}" for i in range(n)]


def prefill(bs: BenchStack, args: argparse.Namespace, round_no: int) -> int:
    """Buffer `heartbeats` per (student, video) through the ingest script; returns how many."""
    script = bs.r.register_script(SCRIPTS["ingest"])
    now = time.time()
    limits = IngestLimits(
        due_at=0.0, max_dirty=10**9, max_pending=10**9, rate_limit=0, rate_window_s=60, now=now
    )
    videos = [f"dv{i:02d}" for i in range(args.videos)]
    total = 0
    pipe = bs.r.pipeline(transaction=False)
    for n, sid in enumerate(students(args.students)):
        for j, video in enumerate(videos):
            start = float((n * 37 + j * 101) % 400) + round_no * args.heartbeats * 10.0
            session = f"{sid}-{video}-{round_no}"
            hbs = [
                Heartbeat(
                    received_at=now,
                    watch_time=start + 10.0 * (k + 1),
                    client_ts=now - 600 + 10.0 * k,
                    session_id=session,
                    seq=k,
                    played=((start + 10.0 * k, start + 10.0 * (k + 1)),),
                )
                for k in range(args.heartbeats)
            ]
            keys, argv = ingest_args(
                IngestItem(ProgressKey(sid, video, bs.key_schema), COURSE_ID, hbs),
                limits,
                want_state=False,
            )
            script(keys=keys, args=argv, client=pipe)
            total += len(hbs)
        if len(pipe) >= 2000:
            pipe.execute()
    pipe.execute()
    pending = sum(int(bs.r.get(p.pending) or 0) for p in bs.key_schema.partitions())
    assert pending == total, "the ingest script refused heartbeats"
    return total


@dataclass
class Timers:
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    calls: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    undo: list[tuple[Any, str, bool, Any]] = field(default_factory=list)

    def wrap(
        self, obj: Any, name: str, bucket: str, replacement: Callable[..., Any] | None = None
    ) -> None:
        """Time every call of `obj.name` (or of `replacement` standing in for it)."""
        own = vars(obj)
        self.undo.append((obj, name, name in own, own.get(name)))
        inner = replacement or getattr(obj, name)

        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return inner(*a, **kw)
            finally:
                self.seconds[bucket] += time.perf_counter() - t
                self.calls[bucket] += 1

        setattr(obj, name, timed)

    def restore(self) -> None:
        for obj, name, had, value in reversed(self.undo):
            if had:
                setattr(obj, name, value)
            else:
                delattr(obj, name)
        self.undo.clear()


@dataclass
class Round:
    name: str
    heartbeats: int
    written: int
    bulk_writes: int
    seconds: float
    timers: dict[str, float]

    @property
    def rate(self) -> float:
        return self.heartbeats / self.seconds


def drain_in_process(
    ctx: WorkerContext, no_mongo: bool, time_limit_s: float, rollups: bool = True
) -> Round:
    timers = Timers()
    if rollups:
        timers.wrap(flush, "roll_up", "rollups")
    else:  # the flush as it was before rollups: watch_progress only
        timers.wrap(flush, "roll_up", "rollups", lambda *a: None)
    if no_mongo:
        timers.wrap(ctx.mongo, "write_states", "MongoDB write", lambda writes: NOTHING_REFUSED())
        timers.wrap(ctx.mongo, "find_states", "MongoDB read", lambda keys: {})
        timers.wrap(ctx.mongo, "rolled_up_versions", "rollup versions", lambda keys: {})
    else:
        timers.wrap(ctx.mongo, "write_states", "MongoDB write")
        timers.wrap(ctx.mongo, "find_states", "MongoDB read")
        timers.wrap(ctx.mongo, "rolled_up_versions", "rollup versions")
    for name in ("claim", "read", "commit", "finish", "release"):
        timers.wrap(ctx.hot, name, "Redis")
    timers.wrap(ctx.queue, "enqueue", "Redis")
    timers.wrap(flush, "record_flush", "Redis")
    heartbeats = written = bulk = 0
    t0 = time.perf_counter()
    try:
        for _ in range(100_000):  # bounded: each pass claims up to FLUSH_BATCH_SIZE keys
            report = flush.flush_batch(ctx, ctx.settings.flush_batch_size)
            if report.errors:
                raise RuntimeError(f"flush failed: {report.errors}")
            if report.claimed == 0 or time.perf_counter() - t0 > time_limit_s:
                break
            heartbeats += report.heartbeats
            written += report.written
            bulk += 1 if report.written else 0
    finally:
        elapsed = time.perf_counter() - t0
        timers.restore()
    other = elapsed - sum(timers.seconds.values())
    return Round(
        "", heartbeats, written, bulk, elapsed, {**timers.seconds, "fold, codecs, rest": other}
    )


def drain_rq_burst(bs: BenchStack, startup_s: float) -> Round:
    """One `rq worker --burst` process (the Procfile's worker line) drains the queue."""
    stats0 = read_stats(bs.r)
    Queue(bs.settings.queue_name, connection=bs.r).enqueue(
        "workers.flush.flush_pending", job_timeout=600, result_ttl=0
    )
    t0 = time.perf_counter()
    run_burst(bs)
    elapsed = time.perf_counter() - t0
    stats = {k: v - stats0.get(k, 0.0) for k, v in read_stats(bs.r).items()}
    return Round(
        "",
        int(stats.get("flushed_heartbeats", 0)),
        int(stats.get("flushed_keys", 0)),
        int(stats.get("mongo_writes", 0)),
        max(1e-6, elapsed - startup_s),
        {"MongoDB write": stats.get("mongo_write_seconds", 0.0)},
    )


def run_burst(bs: BenchStack) -> float:
    command = procfile_commands()["worker"] + " --burst"
    t0 = time.perf_counter()
    proc = start_procfile_process(command, bs.stack.env, bs.stack.root / "burst.log")
    try:
        proc.wait(600)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        raise
    return time.perf_counter() - t0


def reset(bs: BenchStack, crs: Course, args: argparse.Namespace) -> None:
    """Every pass starts from the same state: Redis, watch_progress, the enrollments (as
    enrolled, no rollup yet) and the course aggregate all as they were before the first pass.
    (Without it each pass inherited the enrollments the one before left: the pass after the
    one without rollups ran at half its rate, whatever the order.)"""
    bs.r.flushdb()
    bs.mongo.progress.delete_many({})
    bs.mongo.enrollments.delete_many({"course_id": COURSE_ID})
    bs.mongo.aggregates.delete_many({})
    admin_ops.publish_catalog(bs.mongo, bs.r)
    enroll_bulk(bs, students(args.students), COURSE_ID)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--videos", type=int, default=4)
    parser.add_argument("--heartbeats", type=int, default=3, help="per key and round")
    parser.add_argument("--no-rq", action="store_true", help="skip the rq worker --burst pass")
    parser.add_argument("--time-limit", type=float, default=300.0, help="per round, seconds")
    parser.add_argument(
        "--repeat", type=int, default=1, help="the in-process passes N times: medians and ranges"
    )
    args = parser.parse_args()
    crs = course(args.videos)
    with bench_stack("bench-drain-", [crs], workers=0, clock=False, web=False) as bs:
        live_ctx = build_context(bs.settings)
        every_ctx = build_context(bs.settings.model_copy(update={"rollup_persist_s": 0.0}))
        rows: list[tuple[str, Round]] = []
        passes = (("stand-in", live_ctx, False, True),
                  ("stand-in, rollups every flush", every_ctx, False, True),
                  ("stand-in, no rollups", live_ctx, False, False),
                  ("no MongoDB write", live_ctx, True, True))  # fmt: skip
        for label, ctx, no_mongo, rollups in (p for _ in range(args.repeat) for p in passes):
            reset(bs, crs, args)
            records = ctx is live_ctx and rollups and not no_mongo
            rounds = ROUNDS_WITH_RECORDS if records else ROUNDS
            done: list[Round] = []
            persist_s = 0.0
            for round_no, (what, persist_first) in enumerate(rounds):
                if persist_first:
                    persist_s = persisted(ctx, crs)
                n = prefill(bs, args, round_no)
                result = drain_in_process(ctx, no_mongo, args.time_limit, rollups)
                result.name = f"{label}, {what}"
                assert result.heartbeats == n, f"drained {result.heartbeats} of {n}"
                rows.append((label, result))
                report(result)
                done.append(result)
            if records:
                rows.append((label, steady_state(label, done, persist_s)))
                report(rows[-1][1])
        if not args.no_rq:
            reset(bs, crs, args)
            startup = run_burst(bs)
            print(f"  (rq worker --burst start-up and exit on an empty queue: {startup:.2f} s)")
            for round_no, what in ((0, "new keys"), (1, "same keys")):
                n = prefill(bs, args, round_no)
                result = drain_rq_burst(bs, startup)
                result.name = f"rq worker --burst, {what}"
                rows.append(("rq", result))
                report(result)
                if result.heartbeats != n:
                    print(f"  ! drained {result.heartbeats} of {n} heartbeats")
        live_ctx.mongo.close()
        every_ctx.mongo.close()
    today = datetime.now(UTC).date().isoformat()
    keys = args.students * args.videos
    print(
        f"\nsummary ({today}, 2-core dev machine, nx-27017 stand-in): {args.students:,} students"
        f" x {args.videos} videos = {keys:,} keys, {args.heartbeats} heartbeats per key and"
        f" round, batches of {bs.settings.flush_batch_size}"
    )
    runs = f", median of {args.repeat} runs (range)" if args.repeat > 1 else ""
    print(f"  {'pass' + runs:60} {'hb/s':>9} {'writes/hb':>10} {'docs/bulk':>10} {'own hb/s':>9}")
    by_name: dict[str, list[Round]] = defaultdict(list)
    for _, r in rows:
        by_name[r.name].append(r)
    for name, each in by_name.items():
        r = each[0]
        rates = sorted(x.rate for x in each)
        spread = f" ({rates[0]:,.0f}-{rates[-1]:,.0f})" if len(each) > 1 else ""
        print(
            f"  {name + spread:60} {statistics.median(rates):9,.0f} "
            f"{r.written / max(1, r.heartbeats):10.3f} {r.written / max(1, r.bulk_writes):10.1f} "
            f"{statistics.median(own_rate(x) for x in each):9,.0f}"
        )
    print("  (own hb/s: heartbeats / (time - time in MongoDB calls and the persister), the "
          "pipeline's own rate)")  # fmt: skip
    known = by_name.get("stand-in, known keys, steady state", [])
    bare = by_name.get("stand-in, no rollups, same keys", [])
    if known and len(known) == len(bare):
        ratios = sorted(k.rate / b.rate for k, b in zip(known, bare, strict=True))
        print(f"  known keys with the records / the flush without rollups, run by run: "
              f"{', '.join(f'{x:.2f}x' for x in ratios)}; median "
              f"{statistics.median(ratios):.2f}x")  # fmt: skip


MONGO_TIMERS = ("MongoDB write", "MongoDB read", "rollup versions", "the persister")


def own_rate(r: Round) -> float:
    mongo_s = sum(r.timers.get(k, 0.0) for k in MONGO_TIMERS)
    return r.heartbeats / max(1e-6, r.seconds - mongo_s)


PERSIST_EVERY = 20  # flushes of a key per ROLLUP_PERSIST_S at the defaults (600 s / 30 s)
ROUNDS = (("new keys", False), ("same keys", False))
# With the records: the second round merges into the records the first made (as 19 of a key's
# 20 flushes between two persists do); the third comes after the persister settled them all,
# so each of its records is new and re-checked against its enrollment document (the 20th).
ROUNDS_WITH_RECORDS = (
    ("new keys", False),
    ("same keys, records live", False),
    ("same keys, after a persist", True),
)


def persisted(ctx: WorkerContext, crs: Course) -> float:
    """The persister's write of the course's records; returns its seconds."""
    t0 = time.perf_counter()
    written = ctx.live.persist(ctx.mongo, crs, ctx.clock.time())
    took = time.perf_counter() - t0
    print(f"  {'':44} the persister: {written:,} enrollments in {took:.2f} s")
    return took


def steady_state(label: str, rounds: list[Round], persist_s: float) -> Round:
    """A key's PERSIST_EVERY flushes between two persists of known keys: all but one merge
    into a live record, one comes after the persist (re-checks), and the persist itself."""
    live, after = rounds[1], rounds[2]
    k = PERSIST_EVERY - 1
    return Round(
        f"{label}, known keys, steady state",
        k * live.heartbeats + after.heartbeats,
        k * live.written + after.written,
        k * live.bulk_writes + after.bulk_writes,
        k * live.seconds + after.seconds + persist_s,
        {name: k * live.timers.get(name, 0.0) + after.timers.get(name, 0.0)
         for name in {*live.timers, *after.timers}} | {"the persister": persist_s},
    )  # fmt: skip


def report(r: Round) -> None:
    timers = sorted(r.timers.items(), key=lambda kv: -kv[1])
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in timers)
    print(
        f"  {r.name:44} {r.heartbeats:,} heartbeats -> {r.written:,} documents in "
        f"{r.bulk_writes} bulk writes, {r.seconds:.2f} s = {r.rate:,.0f} hb/s  [{parts}]"
    )


if __name__ == "__main__":
    main()
