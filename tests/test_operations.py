"""What an operator relies on: limits, metrics, logs, refusal of unsafe settings, poison keys."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.clock import MockedClock
from shared.settings import Settings
from shared.storage.clients import Buffer
from shared.storage.keys import ProgressKey
from tests.helpers import (
    COURSE,
    COURSE_ID,
    KEY_SCHEMA,
    bearer,
    buffered,
    heartbeat,
    make_settings,
    poisoned,
)
from workers.context import build_context
from workers.flush import flush_batch

STUDENT = "s-ops"


def client_for(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        admin = bearer(settings, "root", "admin")
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        assert c.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin).is_success
        yield c


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(
        redis_url,
        mongo_url,
        rate_limit_per_minute=5,
        max_pending_heartbeats=8 * KEY_SCHEMA.partition_count,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    yield from client_for(settings)


def watch(c: TestClient, settings: Settings, video: str = "v-100", **body: Any) -> Any:
    url = f"/api/progress/video/{video}/watch-time"
    return c.post(url, json=body, headers=bearer(settings, STUDENT))


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


def test_per_student_rate_limit_is_429_with_retry_after(
    client: TestClient, settings: Settings
) -> None:
    statuses = [watch(client, settings, **heartbeat(i)).status_code for i in range(6)]
    assert statuses == [202] * 5 + [429]
    refused = watch(client, settings, **heartbeat(7))
    assert refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    status = client.get("/api/progress/video/v-100/status", headers=bearer(settings, STUDENT))
    assert status.json()["watch_time"] == 4.0  # the refused ones stored nothing
    # Another student is not affected: the limit is per student, kept in Redis.
    admin = bearer(settings, "root", "admin")
    client.put(f"/api/courses/{COURSE_ID}/enrollments/s-other", headers=admin)
    url = "/api/progress/video/v-100/watch-time"
    r = client.post(url, json=heartbeat(1), headers=bearer(settings, "s-other"))
    assert r.status_code == 202


def test_the_buffer_bound_answers_503_with_retry_after(
    redis_url: str, mongo_url: str, redis_client: Buffer
) -> None:
    # The bound is per partition (its share of MAX_PENDING_HEARTBEATS): 3 for this student's.
    settings = make_settings(
        redis_url, mongo_url, max_pending_heartbeats=3 * KEY_SCHEMA.partition_count
    )
    for c in client_for(settings):
        statuses = [watch(c, settings, **heartbeat(i)).status_code for i in range(4)]
        assert statuses == [202, 202, 202, 503]
        r = watch(c, settings, **heartbeat(9))
        assert r.json()["error"]["code"] == "buffer_full" and int(r.headers["Retry-After"]) > 0
        assert buffered(redis_client) == (1, 3)
        flush_batch(build_context(settings), 100)  # a worker drains it: accepted again
        assert watch(c, settings, **heartbeat(10)).status_code == 202


def test_metrics_show_backlog_flushes_and_rejections(
    client: TestClient, settings: Settings
) -> None:
    for i in range(3):
        watch(client, settings, **heartbeat(10 * (i + 1), played=[[10 * i, 10 * (i + 1)]]))
    watch(client, settings, **heartbeat(500))  # refused: over the duration
    before = client.get("/metrics").text
    assert metric(before, "videoprogress_buffer_dirty_keys") == 1
    assert metric(before, "videoprogress_buffer_pending_heartbeats") == 3
    assert metric(before, "videoprogress_buffer_oldest_unflushed_seconds") >= 0
    assert 'videoprogress_heartbeats_rejected_total{reason="invalid"}' in before
    flush_batch(build_context(settings), 100)
    after = client.get("/metrics").text
    assert metric(after, "videoprogress_buffer_dirty_keys") == 0
    assert metric(after, "videoprogress_buffer_pending_heartbeats") == 0
    assert metric(after, "videoprogress_flushes_total") == 1
    assert metric(after, "videoprogress_flushed_heartbeats_total") == 3
    assert metric(after, "videoprogress_flushed_keys_total") == 1
    assert metric(after, 'videoprogress_flush_batch_documents_bucket{le="1"}') == 1
    assert metric(after, "videoprogress_mongo_bulk_writes_total") == 1
    assert metric(after, "videoprogress_failed_jobs") == 0


def test_the_oldest_unflushed_age_is_measured_on_the_ingests_clock(settings: Settings) -> None:
    """The gauge's age is the time since the oldest dirty key's first heartbeat, on the clock
    the ingest stamped it with: moving that clock is the only way it grows here."""
    clock = MockedClock(1_000_000.0)
    with TestClient(create_app(settings, clock=clock)) as c:
        admin = bearer(settings, "root", "admin", now=clock.time())
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        assert c.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin).is_success
        url = "/api/progress/video/v-100/watch-time"
        token = bearer(settings, STUDENT, now=clock.time())
        assert c.post(url, json=heartbeat(5), headers=token).status_code == 202
        clock.advance(42.0)
        text = c.get("/metrics").text
    assert metric(text, "videoprogress_buffer_oldest_unflushed_seconds") == pytest.approx(42.0)


def test_a_key_a_flush_cannot_process_is_quarantined_not_blocking(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    watch(client, settings, **heartbeat(30, played=[[0, 30]]))
    watch(client, settings, "v-600", **heartbeat(10, 600, played=[[0, 10]]))
    corrupt = ProgressKey(STUDENT, "v-600", KEY_SCHEMA)
    redis_client.rpush(corrupt.pending, "{not json")  # a corrupt entry
    report = flush_batch(build_context(settings), 100)
    assert report.quarantined == 1 and report.written == 1
    assert mongo_db.watch_progress.find_one({"material_id": "v-100"})["watched_seconds"] == 30.0
    assert poisoned(redis_client) == [b"v-600|" + STUDENT.encode()]
    assert redis_client.llen(corrupt.pending) == 2  # kept for an operator
    assert buffered(redis_client)[0] == 0
    metrics = client.get("/metrics").text
    assert metric(metrics, 'videoprogress_quarantined_total{reason="unreadable"}') == 1
    assert metric(metrics, 'videoprogress_quarantined_total{reason="write_error"}') == 0


def test_requests_are_logged_with_an_id_and_never_a_token(
    client: TestClient, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    headers = bearer(settings, STUDENT)
    token = headers["Authorization"].split()[1]
    with caplog.at_level(logging.DEBUG):
        r = client.post(
            "/api/progress/video/v-100/watch-time",
            json=heartbeat(5),
            headers={**headers, "X-Request-ID": "req-123"},
        )
        client.get("/api/progress/video/v-100/status", headers={"Authorization": "Bearer bad"})
    assert r.headers["X-Request-ID"] == "req-123"
    lines = [rec for rec in caplog.records if rec.name == "videoprogress.http"]
    assert any(
        getattr(rec, "request_id", None) == "req-123" and getattr(rec, "status", None) == 202
        for rec in lines
    )
    assert any(getattr(rec, "status", None) == 401 for rec in lines)
    everything = "\n".join(f"{rec.getMessage()} {rec.__dict__}" for rec in caplog.records)
    assert token not in everything and "Bearer" not in everything


@pytest.mark.parametrize("secret", ["changeme", "short"])
def test_the_web_process_refuses_to_start_with_a_placeholder_secret(secret: str) -> None:
    env = {**os.environ, "APP_ENV": "production", "JWT_SECRET": secret}
    env.pop("MONGO_URL", None)
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "--factory", "ingest.app:create_app", "--port", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr
    assert secret not in result.stderr.replace("JWT_SECRET", "")  # the value is not echoed


def test_a_streamed_body_over_the_limit_is_413(client: TestClient, settings: Settings) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"heartbeats": ['
        for _ in range(4000):
            yield b'{"material_id": "v-100", "watch_time": 1, "total_duration": 100},'
        yield b"{}]}"

    r = client.post(
        "/api/progress/heartbeats",
        content=chunks(),
        headers={**bearer(settings, STUDENT), "Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_redis_out_of_memory_is_503_not_a_crash(
    client: TestClient, settings: Settings, redis_client: Buffer
) -> None:
    redis_client.config_set("maxmemory", "1")  # noeviction: every write is refused
    try:
        r = watch(client, settings, **heartbeat(5))
    finally:
        redis_client.config_set("maxmemory", "0")
    assert r.status_code == 503 and r.json()["error"]["code"] == "buffer_full"
    assert int(r.headers["Retry-After"]) > 0
    assert watch(client, settings, **heartbeat(6)).status_code == 202


def test_a_running_app_keeps_its_start_up_heap_out_of_the_collector(settings: Settings) -> None:
    before = gc.get_threshold()
    with TestClient(create_app(settings)) as c:
        assert c.get("/healthz").status_code == 200
        # Start-up objects are frozen; the youngest generation is collected far less often.
        assert gc.get_freeze_count() > 10_000
        assert gc.get_threshold()[0] >= 10_000
    # Stopping the app restores the collector: nothing of it stays frozen.
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_two_apps_stopped_in_either_order_leave_the_collector_as_it_was(
    settings: Settings,
) -> None:
    before = gc.get_threshold()
    first, second = TestClient(create_app(settings)), TestClient(create_app(settings))
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)  # the first one out: the second still runs settled
    assert gc.get_freeze_count() > 10_000 and gc.get_threshold()[0] >= 10_000
    second.__exit__(None, None, None)
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before
