"""Faults, over real processes of their own (uvicorn, RQ workers, redis-server with AOF, the
MongoDB stand-in): one test per kind of outage. Workers SIGKILLed at random moments and while
holding a batch, Redis crashed and restarted, MongoDB away under load, a poison job. Simulated
watchers send heartbeats the way the browser tracker does and retry what is refused; at the end
every accepted heartbeat must be stored exactly once.

The Redis crash depends on the buffer's layout (marked `cluster`): it runs again with the
buffer on a three-primary Redis Cluster with AOF, two web processes and three workers, where
the crash is one primary's. The deterministic proofs of the same guarantees (lease takeovers,
retries, the flush's due times) are tests/test_flush_clock.py and tests/test_hot_store.py. A
summary table is printed at the end of the run (and written to test-output/).
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import redis
from rq import Queue, Retry
from rq.registry import FailedJobRegistry

from shared.devtools.services import Service
from shared.storage import aggregate_store
from shared.storage.mongo_store import MongoStore
from tests.helpers import (
    COURSE_ID,
    FAULT_ROWS,
    KEY_SCHEMA,
    bearer,
    buffered,
    dirty_score,
    heartbeat,
    lease_expiries,
    leased,
    present,
    wait_until,
)
from tests.stack import CLAIM_LEASE_S, Stack, enroll, post, running_stack, stored

pytestmark = pytest.mark.system

STEP_S = 5.0  # seconds of video per heartbeat (time-compressed: sent every ~0.2 s)
VIDEO, DURATION = "v-600", 600


@dataclass(frozen=True)
class Attempt:
    """One POST of a heartbeat: when it was sent and answered (monotonic clock) and its status
    (None: no HTTP answer within the client's timeout)."""

    sent: float
    answered: float
    status: int | None


@dataclass
class Watcher:
    """One student watching v-600 from the start, never seeking; retries until accepted."""

    student: str
    headers: dict[str, str]
    session: str = field(default_factory=lambda: uuid.uuid4().hex)
    position: float = 0.0
    seq: int = 0
    accepted: int = 0
    refusals: dict[int, int] = field(default_factory=dict)
    attempts: list[Attempt] = field(default_factory=list)

    def step(self, client: httpx.Client, deadline: float) -> None:
        start, end = self.position, min(DURATION, self.position + STEP_S)
        body = {
            "watch_time": end,
            "total_duration": DURATION,
            "client_ts": datetime.now(UTC).isoformat(),
            "session_id": self.session,
            "seq": self.seq,
            "played": [[start, end]],
        }
        while time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                r = client.post(f"/api/progress/video/{VIDEO}/watch-time", json=body)
            except httpx.TransportError:
                self.attempts.append(Attempt(sent, time.monotonic(), None))
                time.sleep(0.2)
                continue
            self.attempts.append(Attempt(sent, time.monotonic(), r.status_code))
            if r.status_code == 202:
                self.accepted += 1
                self.position, self.seq = end, self.seq + 1
                return
            self.refusals[r.status_code] = self.refusals.get(r.status_code, 0) + 1
            assert r.status_code in (429, 503), r.text  # nothing else may refuse a good heartbeat
            assert "Retry-After" in r.headers, r.headers  # API.md: the client is told when
            codes = {503: {"unavailable", "buffer_full"}, 429: {"rate_limited"}}[r.status_code]
            assert r.json()["error"]["code"] in codes, r.text
            time.sleep(min(2.0, float(r.headers["Retry-After"]) / 4))
        raise AssertionError(f"{self.student}: a heartbeat was never accepted")

    def answers(self, sent_after: float, answered_before: float = math.inf) -> list[int | None]:
        """The statuses of the attempts sent after `sent_after` and answered before
        `answered_before` (monotonic clock)."""
        return [
            a.status
            for a in list(self.attempts)  # a copy: the watcher's thread may be appending
            if a.sent > sent_after and a.answered < answered_before
        ]


@pytest.fixture(scope="module")
def single_fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(tmp_path_factory)


@pytest.fixture(scope="module")
def cluster_fault_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from running_stack(tmp_path_factory, buffer="cluster")


@pytest.fixture
def stack(buffer_kind: str, request: pytest.FixtureRequest) -> Stack:
    """The fault tests' own stack of the test's buffer kind (a fault is not undone for the
    next test: processes come back through `supervise`, data stays)."""
    name = "cluster_fault_stack" if buffer_kind == "cluster" else "single_fault_stack"
    found: Stack = request.getfixturevalue(name)
    return found


def watchers(stack: Stack, prefix: str, n: int) -> list[Watcher]:
    return [Watcher(f"{prefix}-{i}", enroll(stack, f"{prefix}-{i}")) for i in range(n)]


def run_load(stack: Stack, group: list[Watcher], steps: int, pace_s: float = 0.2) -> None:
    """Each watcher sends `steps` heartbeats, one every `pace_s` (all at once, in threads)."""

    def watch(w: Watcher) -> None:
        with httpx.Client(base_url=stack.url, headers=w.headers, timeout=15) as client:
            for _ in range(steps):
                w.step(client, deadline=time.monotonic() + 120)
                time.sleep(pace_s)

    with ThreadPoolExecutor(len(group)) as pool:
        for future in [pool.submit(watch, w) for w in group]:
            future.result()


def supervise(stack: Stack) -> None:
    """Restart crashed processes, as a platform's process manager would."""
    for name, count in (("worker", stack.workers), ("clock", 1), ("web", 1)):
        alive = [p for p in stack.procs.get(name, []) if p.poll() is None]
        stack.procs[name] = alive
        for _ in range(count - len(alive)):
            stack.start(name)


def drained(stack: Stack) -> bool:
    return buffered(stack.redis_client()) == (0, 0)


def aof_has_every_write(server: Service) -> bool:
    """Every write the redis-server acknowledged is in its AOF file, i.e. handed to the
    operating system: a crash of the process alone (not of the machine) loses none of them."""
    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)
    try:
        return int(client.info("persistence")["aof_buffer_length"]) == 0
    finally:
        client.close()


def check_and_summarise(stack: Stack, fault: str, injected: int, group: list[Watcher]) -> None:
    wait_until(lambda: drained(stack), timeout_s=90, step_s=0.5)
    accepted = sum(w.accepted for w in group)
    stored_counts, problems = 0, []
    for w in group:
        doc = stored(stack, w.student, VIDEO) or {}
        stored_counts += doc.get("v", 0)
        expected = (w.position, w.position)  # continuous play from 0: watched == position
        got = (doc.get("watch_time"), doc.get("watched_seconds"))
        if doc.get("v") != w.accepted or got != expected:
            problems.append(
                f"{w.student}: v={doc.get('v')} accepted={w.accepted} {got}!={expected}"
            )
    lost = sum(
        max(0, w.accepted - (stored(stack, w.student, VIDEO) or {}).get("v", 0)) for w in group
    )
    duplicated = max(0, stored_counts - accepted)
    FAULT_ROWS.append((fault, injected, accepted, stored_counts, lost, duplicated))
    assert not problems, problems
    assert lost == 0 and duplicated == 0


def test_workers_killed_at_random_moments_lose_and_double_nothing(stack: Stack) -> None:
    group = watchers(stack, "kill", 8)
    stop = threading.Event()
    kills = {"total": 0, "holding_a_batch": 0}
    rng = random.Random(11)
    r = stack.redis_client()

    def holding_a_batch() -> bool:
        """A worker claimed keys within the last second (a fresh lease), i.e. is flushing."""
        fresh_after = time.time() + CLAIM_LEASE_S - 1.0
        return any(float(v) > fresh_after for v in lease_expiries(r))

    def killer() -> None:
        while not stop.is_set():
            time.sleep(rng.uniform(0.3, 0.9))  # let the replacement start and take work
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline and not holding_a_batch():
                time.sleep(0.005)  # prefer the moment a worker holds a batch
            alive = [p for p in stack.procs.get("worker", []) if p.poll() is None]
            if alive and not stop.is_set():
                holding = holding_a_batch()
                victim = rng.choice(alive)
                victim.send_signal(signal.SIGKILL)
                victim.wait()
                kills["total"] += 1
                kills["holding_a_batch"] += holding
            supervise(stack)

    thread = threading.Thread(target=killer)
    thread.start()
    try:
        run_load(stack, group, steps=30, pace_s=0.25)
        wait_until(lambda: kills["total"] >= 12, timeout_s=60)
    finally:
        stop.set()
        thread.join()
    supervise(stack)
    # How many kills found a worker mid-flush depends on the machine's speed, so it is
    # reported, not asserted: test_a_worker_killed_while_holding_a_batch_loses_nothing makes
    # that moment happen for certain.
    fault = f"worker SIGKILLs ({kills['holding_a_batch']} mid-flush)"
    check_and_summarise(stack, fault, kills["total"], group)
    # The course aggregate holds every landed rollup write once, whatever the kills cut between
    # a commit and its enrollment writes (the takeovers' commits resolved those).
    mongo = MongoStore(stack.settings().mongo_url)
    try:
        assert aggregate_store.sums(mongo, COURSE_ID) == aggregate_store.count(mongo, COURSE_ID)
    finally:
        mongo.close()


@pytest.mark.cluster
def test_redis_crash_and_restart_from_aof(stack: Stack) -> None:
    """The buffer's Redis (on a cluster, one primary) SIGKILLed under load and restarted from
    its AOF: nothing accepted is lost; while it is down every heartbeat of the students it holds
    is refused with 503 and Retry-After (no replica: none can be accepted) and, on a cluster,
    every other student's is accepted."""
    group = watchers(stack, "aof", 6)
    victim = stack.buffer_server(group[0].student)
    hit = [w for w in group if stack.buffer_server(w.student) == victim]
    spared = [w for w in group if w not in hit]
    assert spared if stack.cluster else not spared
    workers = [p for p in stack.procs["worker"] if p.poll() is None]
    for worker in workers:  # nothing flushes: what the victim holds lives in Redis only
        worker.send_signal(signal.SIGSTOP)
    try:
        run_load(stack, group, steps=10, pace_s=0.05)
        buffer = stack.redis_client()
        assert all(dirty_score(buffer, w.student, VIDEO) is not None for w in hit)  # unflushed
        wait_until(lambda: aof_has_every_write(victim))  # an everysec write may be postponed
        victim.stop(signal.SIGKILL)  # returns once the process is gone
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGCONT)
    down_since = time.monotonic()
    during = threading.Thread(target=run_load, args=(stack, group, 10, 0.05))
    during.start()  # the held students' heartbeats are refused and retried until it is back

    def outage_seen() -> bool:
        """Every held student refused at least once, every other one served at least once."""
        return all(503 in w.answers(down_since) for w in hit) and all(
            202 in w.answers(down_since) for w in spared
        )

    with contextlib.suppress(AssertionError):  # if not, the assertions below say who was not
        wait_until(outage_seen, timeout_s=60)
    ready = httpx.get(f"{stack.url}/readyz", timeout=10)
    if not stack.cluster:
        assert ready.status_code == 503  # the one Redis is down: nothing can be served
    else:  # the process stays ready and says which part of the buffer is away
        assert ready.status_code == 200
        metrics = httpx.get(f"{stack.url}/metrics", timeout=10)
        assert metrics.status_code == 200
        away = next(
            float(line.split()[1])
            for line in metrics.text.splitlines()
            if line.startswith("videoprogress_buffer_unreachable_partitions ")
        )
        assert away == KEY_SCHEMA.partition_count // len(stack.cluster.nodes)  # the victim's share
    back_at = time.monotonic()
    victim.start()
    during.join()
    while_down = {w.student: w.answers(down_since, back_at) for w in hit}
    assert all(set(statuses) == {503} for statuses in while_down.values()), while_down
    served = {w.student: w.answers(down_since) for w in spared}  # the restart included
    assert all(set(statuses) == {202} for statuses in served.values()), served
    supervise(stack)
    if stack.cluster:
        fault = f"cluster primary SIGKILL + AOF ({len(hit)}/{len(group)} refused)"
    else:
        fault = "Redis crash + AOF restart"
    check_and_summarise(stack, fault, 1, group)


MONGO_OUTAGE_S = 12  # four flush intervals of the stack: every flush meanwhile fails


def test_mongodb_away_under_load(stack: Stack) -> None:
    """MongoDB stopped while students watch: every heartbeat is still accepted (202), the
    backlog and readyz show the outage, nothing is set aside for it, and once MongoDB is back
    everything accepted is stored exactly once."""
    group = watchers(stack, "mongo", 8)
    load = threading.Thread(target=run_load, args=(stack, group, 60, 0.25))
    load.start()
    wait_until(lambda: all(w.accepted for w in group))
    stack.mongo.stop()
    try:
        time.sleep(MONGO_OUTAGE_S / 2)
        ready = httpx.get(f"{stack.url}/readyz", timeout=10)
        assert ready.status_code == 200 and ready.json()["mongodb"] == "unavailable"
        wait_until(lambda: dirty_keys(stack) >= len(group))  # the backlog, as the operator sees it
        time.sleep(MONGO_OUTAGE_S / 2)
    finally:
        stack.mongo.start()
    load.join()
    assert all(not w.refusals for w in group), [w.refusals for w in group]  # always 202
    check_and_summarise(stack, f"MongoDB stopped {MONGO_OUTAGE_S} s", 1, group)
    admin = bearer(stack.settings(), "admin", "admin")
    poison = httpx.get(f"{stack.url}/api/admin/poison", headers=admin, timeout=10)
    assert poison.json()["rows"] == []  # an outage is no fault of any key


def dirty_keys(stack: Stack) -> float:
    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    return next(
        float(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("videoprogress_buffer_dirty_keys ")
    )


def test_a_worker_killed_while_holding_a_batch_loses_nothing(stack: Stack) -> None:
    """The moment that matters, made certain: MongoDB hangs (SIGSTOP) while a worker holds a
    batch; every worker is SIGKILLed; a new one takes the batch over when the lease runs out."""
    headers = enroll(stack, "held")
    r = stack.redis_client()
    present(stack.mongo.proc).send_signal(signal.SIGSTOP)  # a flush blocks mid-write
    try:
        for i in range(6):
            body = heartbeat(10 * (i + 1), played=[[10 * i, 10 * (i + 1)]])
            assert post(stack, headers, **body).status_code == 202
        wait_until(lambda: leased(r, "held", "v-100"), timeout_s=30)
        stack.kill_all("worker")  # SIGKILL, whichever of them holds the batch
    finally:
        present(stack.mongo.proc).send_signal(signal.SIGCONT)
    assert (doc := stored(stack, "held")) is None or doc["v"] < 6
    stack.restart_workers()
    doc = wait_until(lambda: (d := stored(stack, "held")) and d["v"] == 6 and d, timeout_s=40)
    assert doc["watched_seconds"] == 60.0 and doc["watch_time"] == 60.0
    wait_until(lambda: not leased(r, "held", "v-100"))
    admin = bearer(stack.settings(), "admin", "admin")
    poison = httpx.get(f"{stack.url}/api/admin/poison", headers=admin, timeout=10)
    assert poison.json()["rows"] == []  # a hung MongoDB is no fault of any key


def test_a_poison_job_fails_for_good_without_blocking_other_work(stack: Stack) -> None:
    queue = Queue("videoprogress", connection=stack.rq_client())
    failed_before = FailedJobRegistry(queue=queue).count
    job = queue.enqueue(
        "workers.completion.record_completions",
        "not a list of items",
        retry=Retry(max=2),
    )
    group = watchers(stack, "poison", 3)
    run_load(stack, group, steps=5, pace_s=0.1)
    registry = FailedJobRegistry(queue=queue)
    wait_until(lambda: job.id in registry.get_job_ids(), timeout_s=60)
    job.refresh()  # type: ignore[no-untyped-call]  # rq: Job.refresh is not annotated
    assert job.retries_left == 0
    metrics = httpx.get(f"{stack.url}/metrics", timeout=10).text
    assert f"videoprogress_failed_jobs {failed_before + 1}.0" in metrics
    check_and_summarise(stack, "poison job (2 retries)", 1, group)
    FailedJobRegistry(queue=queue).remove(job)
