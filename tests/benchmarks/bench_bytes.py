"""Bytes per heartbeat, for the scaling arithmetic (docs/performance.md, README's Scaling):
what one heartbeat takes on the wire, in Redis while it waits and once folded, and in MongoDB.

    .venv/bin/python -m tests.benchmarks.bench_bytes [--students 50] [--materials 50]

A course of `--materials` 10-minute videos; every student watches one of them for 60 s as the
browser tracker reports it (a heartbeat every 10 s with the ranges played, the client's time,
session and sequence), on a moved clock so that verified watching credits it. Sizes are read
from the service's own stores: request bytes as sent (body and the headers a browser sends
for it), `MEMORY USAGE` of the buffer's keys before and after a flush, and the BSON size of the
documents the flush wrote. Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import time
from typing import Any

import bson
import redis
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.clock import MockedClock
from shared.settings import Settings
from shared.storage.keys import KeySchema, ProgressKey
from tests.benchmarks.benchstack import bare_stores
from tests.helpers import bearer
from workers.context import build_context
from workers.flush import flush_batch

SECRET = "bench-" + "0123456789abcdef" * 3
DURATION, BEATS, EVERY_S = 600.0, 6, 10.0
BROWSER_HEADERS = 420  # Host, Origin, User-Agent, Accept*, Content-Type/-Length, Sec-Fetch-*


def course(materials: int) -> dict[str, Any]:
    videos = [
        {"material_id": f"v-{i:03d}", "title": f"Lecture {i}", "type": "video",
         "duration": DURATION}
        for i in range(materials)
    ]  # fmt: skip
    module = {"module_id": "m", "title": "All", "materials": videos}
    return {"title": "Bytes", "teacher_ids": ["t-1"], "modules": [module]}


def body(seq: int, at: float, session: str) -> dict[str, Any]:
    start = seq * EVERY_S
    return {
        "watch_time": start + EVERY_S,
        "total_duration": DURATION,
        "client_ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + ".000Z",
        "session_id": session,
        "seq": seq,
        "played": [[start, start + EVERY_S]],
        "playback_rate": 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=50)
    parser.add_argument("--materials", type=int, default=50)
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)
    with bare_stores("bench-bytes-") as (redis_url, mongo_url):
        os.environ.update(
            REDIS_URL=redis_url,
            MONGO_URL=mongo_url,
            APP_ENV="production",
            JWT_SECRET=SECRET,
            FLUSH_INTERVAL_S="1",
        )
        measure(Settings(), args.students, args.materials)


def measure(settings: Settings, students: int, materials: int) -> None:
    clock = MockedClock(time.time())
    schema = KeySchema.from_settings(settings)
    r = redis.Redis.from_url(settings.redis_url)
    requests: list[int] = []
    with TestClient(create_app(settings, clock=clock)) as client:
        admin = bearer(settings, "admin-1", "admin", now=clock.time())
        assert client.put("/api/courses/c-1", json=course(materials), headers=admin).is_success
        keys = []
        for i in range(students):
            sid = f"student-{i:05d}"
            assert client.put(f"/api/courses/c-1/enrollments/{sid}", headers=admin).is_success
            keys.append(ProgressKey(sid, f"v-{i % materials:03d}", schema))
        for seq in range(BEATS):
            clock.advance(EVERY_S)
            for key in keys:
                token = bearer(settings, key.student_id, now=clock.time())
                payload = json.dumps(body(seq, clock.time(), f"tab-{key.student_id}"))
                url = f"/api/progress/video/{key.material_id}/watch-time"
                headers = {**token, "Content-Type": "application/json"}
                answer = client.post(url, content=payload, headers=headers)
                assert answer.status_code == 202, answer.text
                auth = len("Authorization: ") + len(token["Authorization"])
                requests.append(len(payload) + auth + BROWSER_HEADERS + len(url) + 16)
        pending = [int(r.memory_usage(k.pending) or 0) for k in keys]
        clock.advance(settings.flush_interval_s + 1)
        ctx = build_context(settings, clock)
        while flush_batch(ctx, 10_000).written:
            pass
        hot = [int(r.memory_usage(k.state) or 0) for k in keys]
        db = ctx.mongo.db
        progress = [len(bson.encode(d)) for d in db["watch_progress"].find({})]
        enrollments = [len(bson.encode(d)) for d in db["enrollments"].find({})]
        aggregates = [len(bson.encode(d)) for d in db["course_aggregates"].find({})]
    rows = [
        ("heartbeat request (body + a browser's headers with the bearer JWT)", requests),
        (f"Redis: a key's pending list after {BEATS} heartbeats (MEMORY USAGE)", pending),
        ("Redis: a key's hot state once flushed (MEMORY USAGE)", hot),
        ("MongoDB: a watch_progress document (BSON)", progress),
        (f"MongoDB: an enrollment with its rollup, {materials} materials (BSON)", enrollments),
        (f"MongoDB: the course aggregate, {materials} materials (BSON)", aggregates),
    ]
    print(f"{students} students, {materials} videos of {DURATION:.0f} s, {BEATS} heartbeats each")
    for name, sizes in rows:
        if not sizes:
            print(f"  {name}: none")
            continue
        median, low, high = statistics.median(sizes), min(sizes), max(sizes)
        print(f"  {name}: median {median:,.0f} B (min {low:,}, max {high:,})")


if __name__ == "__main__":
    main()
