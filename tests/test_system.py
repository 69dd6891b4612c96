"""The whole system as it runs in production: the Procfile's processes (uvicorn, RQ workers,
the RQ cron clock) over a real redis-server and the MongoDB stand-in, driven through HTTP.

The tests share one stack per buffer kind with tests/test_teacher.py (`system_stack` in
conftest.py); those marked `cluster` also run with the buffer on a three-primary Redis Cluster
with two web processes and three workers. Outages (workers SIGKILLed, Redis crashed, MongoDB
away) are tests/test_faults.py's, on stacks of their own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
import redis

from shared.storage.mongo_store import progress_id
from tests.helpers import (
    COURSE_ID,
    bearer,
    dirty_score,
    heartbeat,
    inject_pending,
    present,
    wait_until,
)
from tests.stack import FLUSH_INTERVAL_S, Stack, enroll, post, stored

pytestmark = pytest.mark.system


@contextmanager
def no_flush_started(stack: Stack) -> Iterator[None]:
    """The clock stopped (SIGSTOP) and every flush it enqueued finished: no flush can start
    until the block ends, however slow the machine."""
    from rq import Queue
    from rq.registry import StartedJobRegistry

    queue = Queue("videoprogress", connection=stack.rq_client())
    clocks = [p for p in stack.procs["clock"] if p.poll() is None]
    for clock in clocks:
        clock.send_signal(signal.SIGSTOP)
    try:
        wait_until(lambda: queue.count == 0 and StartedJobRegistry(queue=queue).count == 0)
        yield
    finally:
        for clock in clocks:
            clock.send_signal(signal.SIGCONT)


@pytest.mark.cluster
def test_heartbeats_reach_mongodb_once_per_flush_with_read_your_writes(stack: Stack) -> None:
    headers = enroll(stack, "sys-a")
    with no_flush_started(stack):  # eight heartbeats within one flush interval, on any machine
        for i in range(8):
            body = heartbeat(5 * (i + 1), played=[[5 * i, 5 * (i + 1)]], seq=i)
            assert post(stack, headers, **body).status_code == 202
        status = httpx.get(f"{stack.url}/api/progress/video/v-100/status", headers=headers)
        assert status.json()["watched_seconds"] == 40.0 and status.json()["watch_time"] == 40.0
    doc = wait_until(lambda: (d := stored(stack, "sys-a")) and d["v"] == 8 and d)
    assert doc["flushes"] == 1  # eight heartbeats, one MongoDB write
    assert doc["watched_ranges"] == [[0.0, 40.0]] and doc["progress_percentage"] == 40.0
    assert doc["completed"] is False and doc["course_id"] == COURSE_ID
    wait_until(lambda: dirty_score(stack.redis_client(), "sys-a", "v-100") is None)


def test_completion_updates_the_enrollment_once(stack: Stack) -> None:
    headers = enroll(stack, "sys-b")
    assert post(stack, headers, **heartbeat(85, played=[[0, 85]])).json()["completed"] is True
    enrollments = stack.db().enrollments

    def recorded() -> dict[str, Any] | None:
        # The job adds the material, then raises the progress: wait for both writes.
        doc = present(enrollments.find_one({"student_id": "sys-b", "course_id": COURSE_ID}))
        return doc if doc and doc["completed_materials"] and doc["progress_percentage"] else None

    doc = wait_until(recorded)
    assert doc["completed_materials"] == ["v-100"]
    assert doc["progress_percentage"] == 25.0  # 1 of the course's 4 materials
    # Later heartbeats of a completed video enqueue no further completion job.
    assert post(stack, headers, **heartbeat(95, played=[[85, 95]])).status_code == 202
    wait_until(lambda: (d := stored(stack, "sys-b")) and d["watched_seconds"] == 95.0)
    from rq import Queue
    from rq.registry import FinishedJobRegistry

    queue = Queue("videoprogress", connection=stack.rq_client())
    with no_flush_started(stack):  # every job enqueued so far has run, a second completion too
        jobs = [
            queue.fetch_job(job_id) for job_id in FinishedJobRegistry(queue=queue).get_job_ids()
        ]
    completions = [
        j
        for j in jobs
        if j
        and (j.func_name or "").endswith("record_completions")
        and "sys-b" in json.dumps(j.args)
    ]
    assert len(completions) == 1
    assert present(recorded())["completed_materials"] == ["v-100"]


def test_a_key_watched_for_several_intervals_is_written_at_most_once_per_interval(
    stack: Stack,
) -> None:
    # The one real-time test of the flush's cadence (tests/test_flush_clock.py proves the due
    # times on a moved clock): a heartbeat every 0.5 s for 3 flush intervals (9 s).
    # A key is due FLUSH_INTERVAL_S - FLUSH_TICK_S = 2 s after its first unflushed heartbeat,
    # so two writes of it are never closer than that; a write every tick (1 s) would fail here.
    # Writes are counted by the document's `flushes` counter and timed by its `written_at` (the
    # worker's clock at each write), polled every 50 ms: a late poll loses a time, not a write.
    headers = enroll(stack, "sys-cadence")
    due_delay = FLUSH_INTERVAL_S - 1  # the stack's FLUSH_TICK_S is 1
    watched_for = 3 * FLUSH_INTERVAL_S
    written_at: dict[int, float] = {}  # the document's `flushes` -> when that write happened
    sent, start = 0, time.monotonic()
    while (now := time.monotonic()) - start < watched_for + FLUSH_INTERVAL_S + 2:
        if now - start < watched_for and now - start >= sent * 0.5:
            watched = 0.5 * (sent + 1)
            body = heartbeat(watched, played=[[watched - 0.5, watched]], seq=sent)
            assert post(stack, headers, **body).status_code == 202
            sent += 1
        if doc := stored(stack, "sys-cadence"):
            written_at.setdefault(doc["flushes"], doc["written_at"])
        time.sleep(0.05)
    writes = present(stored(stack, "sys-cadence"))["flushes"]
    gaps = [round(written_at[n + 1] - written_at[n], 2) for n in written_at if n + 1 in written_at]
    assert writes >= 3, written_at  # one write per interval, not one at the end
    assert writes <= watched_for / due_delay + 1, written_at
    assert all(gap >= due_delay - 0.5 for gap in gaps), gaps  # 0.5 s: job latency
    doc = present(stored(stack, "sys-cadence"))
    assert doc["v"] == sent and doc["watch_time"] == 0.5 * sent  # the last write holds them all
    assert doc["watched_seconds"] == 0.5 * sent


@pytest.mark.cluster
def test_buffer_keys_land_where_the_buffer_is(stack: Stack) -> None:
    """On a cluster: spread over every primary, none on RQ's Redis. On one Redis (both roles
    on one server, the default): all there."""
    for i in range(36):
        headers = enroll(stack, f"spread-{i}")
        assert post(stack, headers, **heartbeat(5, played=[[0, 5]])).status_code == 202
    if stack.cluster is None:
        rq = stack.rq_client()
        students = {k.split(b":s:")[1].split(b":")[0] for k in rq.scan_iter(
            match="vp:{p*}:s:spread-*:ws:*", count=1000)}  # fmt: skip
        assert students == {f"spread-{i}".encode() for i in range(36)}
        return
    per_node = []
    for node in stack.cluster.nodes:
        client = redis.Redis(port=node.port)
        per_node.append(sum(1 for _ in client.scan_iter(match="vp:{p*}:s:spread-*", count=1000)))
        client.close()
    assert all(n > 0 for n in per_node), per_node
    rq = stack.rq_client()
    assert list(rq.scan_iter(match="vp:{*", count=1000)) == []  # no buffer key (hash-tagged)


def set_aside_rows(stack: Stack) -> list[dict[str, Any]]:
    admin = bearer(stack.settings(), "admin", "admin")
    r = httpx.get(f"{stack.url}/api/admin/poison", headers=admin, timeout=10)
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()["rows"]
    return rows


def quarantined(stack: Stack, reason: str | None = None) -> float:
    """videoprogress_quarantined_total, of one reason or summed."""
    text = httpx.get(f"{stack.url}/metrics", timeout=10).text
    prefix = "videoprogress_quarantined_total{"
    return sum(
        float(line.split()[1])
        for line in text.splitlines()
        if line.startswith(prefix) and (reason is None or f'reason="{reason}"' in line)
    )


@pytest.mark.cluster
def test_a_key_mongodb_refuses_is_set_aside_alone_and_stored_once_fixed(stack: Stack) -> None:
    """One student's document MongoDB refuses (its stored counter is text: every `$inc` of it
    fails) while other students watch, and one student's heartbeat left in Redis by 0.7 holds
    a NUL in its session id. Everyone else's progress is stored at once; the refused key is
    listed and counted, its data kept; after the document is fixed the CLI retry stores it."""
    odd, nul, honest = "sys-odd", "sys-nul", [f"sys-ok-{i}" for i in range(3)]
    headers = {s: enroll(stack, s) for s in [odd, nul, *honest]}
    stack.db().watch_progress.insert_one(
        {"_id": progress_id(odd, "v-100"), "student_id": odd, "material_id": "v-100", "v": 0,
         "flushes": "many"}
    )  # fmt: skip
    before = quarantined(stack, "write_error")
    assert post(stack, headers[odd], **heartbeat(30, played=[[0, 30]])).status_code == 202
    inject_pending(stack.redis_client(), nul, {"r": time.time(), "w": 12.0, "s": "a\x00b"})
    for n, s in enumerate(honest):
        body = heartbeat(10 * (n + 1), played=[[0, 10 * (n + 1)]])
        assert post(stack, headers[s], **body).status_code == 202

    def written(student: str) -> dict[str, Any] | None:
        doc = stored(stack, student)
        return doc if doc and doc["v"] == 1 else None

    for n, s in enumerate(honest):
        doc = wait_until(lambda: written(s))  # noqa: B023  # called within this iteration
        assert doc["watched_seconds"] == 10 * (n + 1) and doc["flushes"] == 1
    doc = wait_until(lambda: stored(stack, nul))
    assert doc["state"]["readings"][0][0] == "a\x00b" and doc["watch_time"] == 12.0
    [row] = wait_until(lambda: set_aside_rows(stack))
    assert (row["key"], row["reason"]) == (f"v-100|{odd}", "write_error"), row
    assert "$inc" in row["error"]
    assert quarantined(stack, "write_error") == before + 1
    assert present(stored(stack, odd))["v"] == 0  # refused, so unchanged...
    status = httpx.get(f"{stack.url}/api/progress/video/v-100/status", headers=headers[odd])
    assert status.json()["watched_seconds"] == 30.0  # ...and nothing of the student's lost

    stack.db().watch_progress.update_one(
        {"_id": progress_id(odd, "v-100")}, {"$set": {"flushes": 0}}
    )
    retry = subprocess.run(
        [sys.executable, "-m", "shared.devtools.cli", "poison", "retry", "--key", row["key"]],
        env=stack.env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert retry.returncode == 0, retry.stderr
    doc = wait_until(lambda: written(odd))
    assert doc["watched_seconds"] == 30.0 and doc["flushes"] == 1
    wait_until(lambda: set_aside_rows(stack) == [])
