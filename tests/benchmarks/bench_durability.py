"""Benchmark: what `appendfsync always` costs the heartbeat route, against `everysec`, in one run.

    .venv/bin/python -m tests.benchmarks.bench_durability [--seconds 6] [--rounds 2]
        [--connections 32 1] [--students 500] [--client auto|wrk|python]

One stack (`benchstack.bench_stack`: redis-server with AOF, its data on the disk `TMPDIR` is
on, nx-27017, the Procfile's web process, no worker), the single-heartbeat route with hot
states in Redis, as `bench_ingest`'s steady mode measures it. The same load runs with
`CONFIG SET appendfsync everysec` and `always`, alternately (`--rounds` times each, so that the
machine's other work falls on both), pending heartbeats dropped between runs, at each number of
concurrent connections: many (the rate: Redis fsyncs once per event-loop pass for all the
writes of that pass) and one (the latency one heartbeat pays). Prints the disk's own fsync
time (a file next to Redis's AOF), each run, then per concurrency the best rate and p50 of each
setting and the ratios of the two.
"""

from __future__ import annotations

import argparse
import os
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from tests.benchmarks.bench_ingest import (
    COURSE_ID,
    LoadResult,
    course,
    pending,
    print_result,
    reset_buffer,
    run_python_client,
    run_wrk,
    seed_hot_states,
    single_rows,
    write_requests,
)
from tests.benchmarks.benchstack import bench_stack, enroll_bulk, percentile

MODES = ("everysec", "always")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, nargs="+", default=[32, 1])
    parser.add_argument("--students", type=int, default=500)
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args()
    tool = args.client
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    load = run_wrk if tool == "wrk" else run_python_client
    no_refusals = {"RATE_LIMIT_PER_MINUTE": str(10**9)}  # the limiter runs, never refuses
    with bench_stack(
        "bench-durability-", [course()], workers=0, clock=False, extra_env=no_refusals
    ) as bs:
        students = [f"d{i:05d}" for i in range(args.students)]
        enroll_bulk(bs, students, COURSE_ID)
        seed_hot_states(bs, students)
        tokens = {s: f"Bearer {bs.token(s)}" for s in students}
        root = bs.stack.root / "requests"
        root.mkdir()
        rows = single_rows(students, tokens, "/api/progress/video/{video}/watch-time")
        data = write_requests(root / "single.tsv", rows)
        print(f"the disk's fsync: median {disk_fsync_ms(bs.stack.root / 'redis'):.2f} ms")
        s = args.seconds
        print(f"load tool: {load.__name__}, {s:g} s a run; warming up...")
        load("warm-up", bs.url, data, 3, max(args.connections))
        for c in args.connections:
            results: dict[str, list[LoadResult]] = {mode: [] for mode in MODES}
            for _ in range(args.rounds):
                for mode in MODES:
                    bs.r.config_set("appendfsync", mode)
                    reset_buffer(bs, students)
                    before = pending(bs)
                    name = f"{c} conn., appendfsync {mode}"
                    result = load(name, bs.url, data, s, c)
                    result.accepted = pending(bs) - before
                    results[mode].append(result)
                    print_result(result)
            summarize(c, results)
        bs.r.config_set("appendfsync", "everysec")


def disk_fsync_ms(folder: Path, count: int = 200) -> float:
    """The median time of a small append and fsync to a file in `folder`."""
    path = folder / "fsync-probe"
    times = []
    with path.open("ab") as f:
        for _ in range(count):
            t = time.perf_counter()
            f.write(b"x" * 100)
            f.flush()
            os.fsync(f.fileno())
            times.append((time.perf_counter() - t) * 1000)
    path.unlink()
    return percentile(times, 50)


def summarize(connections: int, results: dict[str, list[LoadResult]]) -> None:
    best = {mode: max(rs, key=lambda r: r.rps) for mode, rs in results.items()}
    p50 = {mode: min(r.p50_ms for r in rs) for mode, rs in results.items()}
    every, always = best["everysec"], best["always"]
    today = datetime.now(UTC).date().isoformat()
    runs = len(results["always"])
    print(f"\n{connections} connections ({today}; best rate and p50 of {runs} runs each)")
    for mode in MODES:
        print(
            f"  appendfsync {mode:9} {best[mode].rps:8,.0f} req/s  p50 "
            f"{p50[mode]:6.2f} ms  p99 {best[mode].p99_ms:6.2f} ms"
        )
    print(
        f"  always / everysec: {always.rps / every.rps:.2f}x the rate, "
        f"{p50['always'] / p50['everysec']:.2f}x the p50 latency"
    )


if __name__ == "__main__":
    main()
