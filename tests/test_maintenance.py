"""The maintenance job repairs what a lost job left undone: real Redis, the MongoDB stand-in,
the real ingest route and flush step, and the RQ queue they use."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from rq import Queue

from ingest.app import create_app
from shared.settings import Settings, get_settings
from tests.helpers import COURSE, COURSE_ID, SECRET, bearer, heartbeat, make_settings, present
from workers.context import build_context, get_context
from workers.flush import flush_batch
from workers.maintenance import reconcile_completions

STUDENT = "s-lost"


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        admin = bearer(settings, "a-root", "admin")
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        r = c.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin)
        assert r.status_code == 201
        yield c


@pytest.fixture
def worker_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment a worker process reads its settings from (jobs build their context
    from it), pointed at this test's Redis and database."""
    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("JWT_SECRET", SECRET)
    monkeypatch.setenv("REDIS_URL", settings.redis_url)
    monkeypatch.setenv("MONGO_URL", settings.mongo_url)
    get_settings.cache_clear()
    get_context.cache_clear()
    yield
    get_context().mongo.close()
    get_settings.cache_clear()
    get_context.cache_clear()


def test_a_lost_completion_job_and_a_missed_rollup_are_repaired_by_reconcile_completions(
    client: TestClient, settings: Settings, mongo_db: Any, worker_env: None
) -> None:
    headers = bearer(settings, STUDENT)
    r = client.post(
        "/api/progress/video/v-100/watch-time",
        json=heartbeat(85, played=[[0, 85]]),
        headers=headers,
    )
    assert r.status_code == 202 and r.json()["completed"] is True
    ctx = build_context(settings)
    report = flush_batch(ctx, 100)  # writes the state, enqueues one completion job
    ctx.mongo.close()
    assert report.written == 1 and report.completions == 1

    # The completion job is lost (its worker died and RQ never retried it).
    queue = Queue(settings.queue_name, connection=redis.Redis.from_url(settings.redis_url))
    [job] = queue.get_jobs()
    assert job.func_name == "workers.completion.record_completions"
    # Its arguments name the student: kept a week if it fails (RQ's default: a year;
    # docs/operations.md, "Erasure and export").
    assert job.failure_ttl == 7 * 86400
    job.delete()
    assert queue.count == 0
    enrollment = {"student_id": STUDENT, "course_id": COURSE_ID}
    written = present(mongo_db.enrollments.find_one(enrollment))
    assert written["completed_materials"] == ["v-100"]  # the flush's rollup write holds it...
    # ...unless that write missed the enrollment (one written before 0.9.0, say).
    mongo_db.enrollments.update_one(
        enrollment, {"$set": {"completed_materials": [], "progress_percentage": 0.0}}
    )
    assert present(mongo_db.watch_progress.find_one({"student_id": STUDENT}))["completed"] is True

    assert reconcile_completions() == 1
    after = present(mongo_db.enrollments.find_one(enrollment))
    assert after["completed_materials"] == ["v-100"]
    assert after["progress_percentage"] == 25.0  # 1 of the course's 4 materials
    assert reconcile_completions() == 0  # nothing left to repair; the enrollment is unchanged
    assert mongo_db.enrollments.find_one(enrollment) == after


def test_one_odd_enrollment_does_not_stop_the_repair_of_the_others(
    client: TestClient, settings: Settings, mongo_db: Any, worker_env: None
) -> None:
    """Each enrollment is repaired on its own: one whose `completed_materials` is no list (an
    older version's, or one edited by hand) is repaired too, and a completed document naming
    no student is passed over."""
    admin = bearer(settings, "a-root", "admin")
    assert client.put(f"/api/courses/{COURSE_ID}/enrollments/s-odd", headers=admin).is_success
    for student in (STUDENT, "s-odd"):
        r = client.post(
            "/api/progress/video/v-100/watch-time",
            json=heartbeat(85, played=[[0, 85]]),
            headers=bearer(settings, student),
        )
        assert r.status_code == 202 and r.json()["completed"] is True  # fmt: skip
    ctx = build_context(settings)
    assert flush_batch(ctx, 100).written == 2
    ctx.mongo.close()
    # Both completions missed (their jobs lost, the rollup writes missing them); one of the
    # enrollments holds null instead of a list; one completed document names no student.
    mongo_db.enrollments.update_one({"student_id": STUDENT}, {"$set": {"completed_materials": []}})
    mongo_db.enrollments.update_one({"student_id": "s-odd"},
                                    {"$set": {"completed_materials": None}})  # fmt: skip
    mongo_db.watch_progress.insert_one({"_id": "odd", "completed": True, "v": 1,
                                        "written_at": present(mongo_db.watch_progress.find_one(
                                            {"student_id": STUDENT}))["written_at"]})  # fmt: skip

    repaired = reconcile_completions()

    for student in (STUDENT, "s-odd"):
        doc = present(mongo_db.enrollments.find_one({"student_id": student}))
        assert doc["completed_materials"] == ["v-100"], (student, doc)
    assert repaired == 2
