"""Sums up a tail probe's file (tests/benchmarks/tail_probe/) over the load: from the first 2 s
with more than `--busy` (50) heartbeats a second to the last, and again from `--skip` s on.

    .venv/bin/python -m tests.benchmarks.tail_probe_report /tmp/probe.jsonl [--skip 45] [--every 60]

`--every 60` adds a window a minute (a capacity run's steps, roughly: a step starts when the
generator has added its watchers).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from tests.benchmarks.benchstack import percentile


def rate(a: dict[str, Any], b: dict[str, Any]) -> float:
    return float(b["accepted"] - a["accepted"]) / float(b["ts"] - a["ts"])


def window(records: list[dict[str, Any]], label: str) -> str:
    a, b = records[0], records[-1]
    n, dt, cpu = b["accepted"] - a["accepted"], b["ts"] - a["ts"], b["cpu"] - a["cpu"]
    per_10k = 10_000 / max(1.0, n)
    views = {k: b["views"].get(k, 0) - a["views"].get(k, 0) for k in b["views"]}
    cached = views.get("cache", 0) / max(1, sum(views.values()))
    passes = [y - x for x, y in zip(a["gc_passes"], b["gc_passes"], strict=True)]
    gc_cpu = [round(1000 * (y - x)) for x, y in zip(a["gc_cpu"], b["gc_cpu"], strict=True)]
    lag = [1000 * x for r in records[1:] for x in r["lag"]]
    served = [1000 * x for r in records[1:] for x in r.get("served", [])]
    longest = max((p[2] for r in records[1:] for p in r["long_passes"]), default=0.0)
    loads = [r["load"] for r in records]
    return (
        f"{label}: {dt:.0f} s, {n / dt:.0f} heartbeats/s, web {100 * cpu / dt:.0f} % of a core, "
        f"{1e6 * cpu / max(1.0, n):.0f} us CPU per heartbeat | views from the cache "
        f"{100 * cached:.0f} % | GC passes per generation {passes}, CPU ms {gc_cpu!r}; per 10,000 "
        f"heartbeats {sum(passes) * per_10k:.1f} passes, {sum(gc_cpu) * per_10k:.0f} ms; "
        f"longest pass {1000 * longest:.0f} ms wall | loop lag p50/p90/p99 "
        f"{percentile(lag, 50):.0f}/{percentile(lag, 90):.0f}/{percentile(lag, 99):.0f} ms | "
        f"{_served(served)}load average {min(loads):.1f}-{max(loads):.1f}"
    )


def _served(ms: list[float]) -> str:
    if not ms:
        return ""
    return (f"heartbeats in the app p50/p99 {percentile(ms, 50):.1f}/{percentile(ms, 99):.1f} "
            f"ms | ")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path")
    parser.add_argument("--busy", type=float, default=50.0, help="heartbeats/s that count as load")
    parser.add_argument("--skip", type=float, default=45.0, help="seconds of ramp to leave out")
    parser.add_argument("--every", type=float, default=0.0, help="also a window every N s")
    args = parser.parse_args()
    with open(args.path) as f:
        records = [json.loads(line) for line in f]
    busy = [b for a, b in zip(records, records[1:], strict=False) if rate(a, b) > args.busy]
    if not busy:
        raise SystemExit("no load in this file")
    start, end = busy[0]["ts"], busy[-1]["ts"]
    print(window([r for r in records if start <= r["ts"] <= end], "the load"))
    later = [r for r in records if start + args.skip <= r["ts"] <= end]
    if len(later) > 1:
        print(window(later, f"from {args.skip:.0f} s"))
    if args.every:  # a capacity run's steps, one window each (set it to --step-seconds)
        t = start
        while t + args.every / 2 < end:
            part = [r for r in records if t <= r["ts"] <= t + args.every]
            if len(part) > 1:
                print(window(part, f"{t - start:4.0f}-{t - start + args.every:.0f} s"))
            t += args.every


if __name__ == "__main__":
    main()
