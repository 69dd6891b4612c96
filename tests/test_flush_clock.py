"""Due times, leases and takeovers of the flush, driven by a moved clock instead of sleeps (the
way arroyo's MockedClock tests batching): the real ingest route and flush step, real Redis (one
server or the cluster) and the MongoDB stand-in, with the app and the worker sharing one
`MockedClock`."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.clock import MockedClock
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat, make_settings
from workers.context import WorkerContext, build_context
from workers.flush import flush_batch

pytestmark = pytest.mark.cluster  # the claims and their timing, on both layouts

T0 = 1_800_000_000.0
STUDENT = "s-clock"


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(T0)


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    # Due 25 s after the first unflushed heartbeat (30 s interval - 5 s tick); leases of 60 s.
    return make_settings(
        redis_url, mongo_url, flush_interval_s=30.0, flush_tick_s=5, claim_lease_s=60.0
    )


@pytest.fixture
def client(settings: Settings, clock: MockedClock) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=clock)) as c:
        admin = bearer(settings, "a-root", "admin", now=clock.time())
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        assert c.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin).is_success
        c.headers.update(bearer(settings, STUDENT, now=clock.time()))
        yield c


@pytest.fixture
def worker(settings: Settings, clock: MockedClock) -> Iterator[WorkerContext]:
    ctx = build_context(settings, clock)
    yield ctx
    ctx.mongo.close()


def watch(client: TestClient, t: float) -> None:
    body = heartbeat(t, played=[[max(0.0, t - 10), t]], session_id="p", seq=int(t))
    assert client.post("/api/progress/video/v-100/watch-time", json=body).status_code == 202


def test_a_key_is_flushed_once_it_is_due_not_before(
    client: TestClient, worker: WorkerContext, clock: MockedClock
) -> None:
    watch(client, 10)
    clock.advance(24.9)
    assert flush_batch(worker, 100).claimed == 0  # due 25 s after its first heartbeat
    clock.advance(0.1)
    report = flush_batch(worker, 100)
    assert (report.claimed, report.written, report.cleaned) == (1, 1, 1)
    watch(client, 20)  # a new heartbeat after the flush: due 25 s after it, not at once
    clock.advance(10)
    assert flush_batch(worker, 100).claimed == 0
    clock.advance(15)
    assert flush_batch(worker, 100).written == 1


def test_keys_leased_by_a_silent_worker_are_taken_over_when_the_lease_expires(
    client: TestClient, worker: WorkerContext, clock: MockedClock
) -> None:
    watch(client, 10)
    clock.advance(25)
    now = clock.time()
    takeovers, keys, _ = worker.hot.claim(now, now + 60.0, 100)  # a worker that then dies
    assert (takeovers, len(keys)) == (0, 1)
    clock.advance(59)
    assert flush_batch(worker, 100).claimed == 0  # still leased
    clock.advance(1)
    report = flush_batch(worker, 100)
    assert (report.claimed, report.takeovers, report.written) == (1, 1, 1)
