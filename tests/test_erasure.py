"""Erasure wins over everything in flight (API.md, "Hostile input"): an erasure that lands at any
step of a flush or of a completion job leaves nothing of the student in MongoDB, the buffer or
the outboxes once the work in flight has run to its end, and a heartbeat after the erasure is
taken as any other. The app and the worker steps run in-process on real Redis (one server or
the cluster) and the MongoDB stand-in, sharing a `MockedClock`; the erasure is made to happen
between two steps of a real flush or completion job by running it when the step before returns.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from redis.cluster import RedisCluster

import workers.completion
import workers.flush
from ingest.app import create_app
from shared.clock import MockedClock
from shared.integrations.outbox import OUTBOXES, WEBHOOK, XAPI, Outbox, Settled
from shared.integrations.xapi import EXT, Video, session_uuid
from shared.ops.erasure import VERSION_GAP, erase_progress
from shared.settings import Settings
from shared.storage import rollup_store
from shared.storage.clients import Buffer
from shared.storage.keys import (
    XAPI_SESSIONS,
    ProgressKey,
    outbox_tombstones,
    xapi_sessions_of,
)
from tests.helpers import COURSE, COURSE_ID, KEY_SCHEMA, bearer, make_settings, present
from workers import completion, maintenance
from workers.context import WorkerContext, build_context
from workers.deliver import end_silent_sessions
from workers.flush import flush_batch

T0 = float(int(time.time()))  # near the real time, which MongoDB's `written_at` takes
ADMIN = "a-root"
STUDENT = "s-erased"
COMPLETION_JOB = "workers.completion.record_completions"
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # made per run, never stored
TOMBSTONE_FIELDS = {"_id", "student_id", "material_id", "v", "erased_at"}


@dataclass
class Campus:
    """The app, a worker context and a clock they share; the workers' steps run by hand."""

    settings: Settings
    client: TestClient
    ctx: WorkerContext
    clock: MockedClock
    buffer: Buffer

    def enroll(self, student: str) -> dict[str, str]:
        admin = self.token(ADMIN, "admin")
        r = self.client.put(f"/api/courses/{COURSE_ID}/enrollments/{student}", headers=admin)
        assert r.status_code == 201, r.text
        return self.token(student)

    def token(self, user: str, role: str = "student") -> dict[str, str]:
        """A token issued at the app's clock, which judges `iat` and `exp` (30 s leeway): one
        issued at the system time would depend on how long the tests took to get here."""
        return bearer(self.settings, user, role, now=self.clock.time())

    def watch(self, who: dict[str, str], video: str, **body: Any) -> None:
        total = 600 if video == "v-600" else 100
        r = self.client.post(
            f"/api/progress/video/{video}/watch-time",
            json={"total_duration": total, **body},
            headers=who,
        )
        assert r.status_code == 202, r.text

    def open(self, who: dict[str, str], material: str) -> None:
        r = self.client.post(f"/api/progress/material/{material}/complete", headers=who)
        assert r.status_code == 202, r.text

    def flush(self) -> None:
        report = flush_batch(self.ctx, 500)
        assert not report.errors, report.errors

    def run_completion_jobs(self) -> int:
        jobs = [j for j in self.ctx.queue.jobs if j.func_name == COMPLETION_JOB]
        for job in jobs:
            completion.record_completions(*job.args)
            job.delete()
        return len(jobs)

    def erase(self, material: str | None = None) -> dict[str, Any]:
        params = {"student_id": STUDENT} | ({"material_id": material} if material else {})
        admin = self.token(ADMIN, "admin")
        r = self.client.delete("/api/admin/progress", params=params, headers=admin)
        assert r.status_code == 200, r.text
        report: dict[str, Any] = r.json()
        return report

    def status(self, who: dict[str, str], video: str = "v-100") -> dict[str, Any]:
        r = self.client.get(f"/api/progress/video/{video}/status", headers=who)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    def settle(self) -> None:
        """Let every piece of work in flight run to its end: flushes, completion jobs and the
        maintenance repair."""
        self.flush()
        while self.run_completion_jobs():
            self.flush()
        maintenance.reconcile_completions()
        self.run_completion_jobs()

    def sweep_sessions(self) -> None:
        """The delivery job's sweep, long after every session fell silent."""
        end_silent_sessions(self.ctx, T0 + 10 * self.settings.xapi_session_timeout_s)


@pytest.fixture
def campus(
    redis_url: str, redis_client: Buffer, mongo_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Campus]:
    settings = make_settings(
        redis_url,
        mongo_url,
        xapi_lrs_url="http://127.0.0.1:9/xAPI/",  # never reached: nothing is delivered here
        webhook_urls="http://127.0.0.1:9/hooks",
        webhook_secret=SECRET,
    )
    clock = MockedClock(T0)
    ctx = build_context(settings, clock)
    for module in (completion, maintenance):
        monkeypatch.setattr(module, "get_context", lambda: ctx)
    with TestClient(create_app(settings, clock=clock)) as client:
        admin = bearer(settings, ADMIN, "admin", now=clock.time())
        assert client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).is_success
        yield Campus(settings, client, ctx, clock, redis_client)
    ctx.mongo.close()


def erase_between_steps(
    monkeypatch: pytest.MonkeyPatch,
    target: Any,
    name: str,
    erase: Callable[[], Any],
    after: bool = True,
) -> list[Any]:
    """Make `target.name` run `erase` once, right after it returns (or right before it runs):
    the erasure then lands between that step and the next. Returns the erasure's reports."""
    real = getattr(target, name)
    reports: list[Any] = []

    def step(*args: Any, **kwargs: Any) -> Any:
        if not after and not reports:
            reports.append(erase())
        result = real(*args, **kwargs)
        if after and not reports:
            reports.append(erase())
        return result

    monkeypatch.setattr(target, name, step)
    return reports


# ---- what is left of a student ---------------------------------------------------------------


def _keys(buffer: Buffer, pattern: str) -> list[str]:
    """Every key matching `pattern` on the buffer (a test may list keys; the service never)."""
    found: list[Any]
    if isinstance(buffer, RedisCluster):
        found = buffer.keys(pattern, target_nodes=RedisCluster.PRIMARIES)
    else:
        found = buffer.keys(pattern)
    return sorted(k.decode() if isinstance(k, bytes) else str(k) for k in found)


def leftovers(c: Campus, student: str = STUDENT) -> list[str]:
    """Everything of the student's progress still held anywhere, apart from tombstones (a
    version, without data, expiring), the enrollment itself and rate-limit counters."""
    found: list[str] = []
    db = c.ctx.mongo
    for doc in db.progress.find({"student_id": student}):
        if set(doc) - TOMBSTONE_FIELDS:
            found.append(f"watch_progress {doc['_id']}: {sorted(set(doc) - TOMBSTONE_FIELDS)}")
    for doc in db.enrollments.find({"student_id": student}):
        kept = (doc.get("completed_materials"), doc.get("progress_percentage"),
                doc.get("completed_count") or 0, doc.get("watched_seconds") or 0,
                doc.get("last_active"))  # fmt: skip
        if kept != ([], 0.0, 0, 0, None):
            found.append(f"enrollment {doc['_id']}: {kept}")
    found += _buffer_leftovers(c.buffer, student)
    found += _outbox_leftovers(c.ctx.redis, student)
    return found


def _buffer_leftovers(buffer: Buffer, student: str) -> list[str]:
    found = []
    tag = ProgressKey(student, "", KEY_SCHEMA).pending.removesuffix(":hb:")
    for key in _keys(buffer, f"*:s:{student}:*"):
        kind = key.removeprefix(tag + ":")
        if kind.startswith("ws:"):
            names: list[Any] = buffer.hkeys(key)
            fields = {f.decode() for f in names}
            if fields != {"n"}:  # a tombstone holds only a version
                found.append(f"{key}: {sorted(fields)}")
        elif not kind.startswith(("erased", "enr", "rl:", "rr:")):
            found.append(key)
    for part in KEY_SCHEMA.partitions():
        for name in (part.dirty, part.leases, part.poison):
            members: list[Any] = (
                buffer.hkeys(name) if name == part.leases else buffer.zrange(name, 0, -1)
            )
            found += [f"{name} {m!r}" for m in members if m.endswith(f"|{student}".encode())]
    return found


def _outbox_leftovers(r: redis.Redis, student: str) -> list[str]:
    found = []
    for box in OUTBOXES:
        for name in (box.entries, box.dead):
            for raw in r.hvals(name):
                doc = json.loads(raw)
                entry = doc.get("entry", doc)
                if entry["student_id"] == student:
                    found.append(f"{name}: {entry['id']} {entry.get('payload', {}).get('type')}")
        owned = (box.of(student), box.sent(student), box.quota(student), box.sessions(student))
        found += [k for k in owned if r.exists(k)]
    members: list[Any] = r.zrange(XAPI_SESSIONS, 0, -1)
    found += [f"session {m!r}" for m in members if json.loads(m)[1] == student]
    if r.exists(xapi_sessions_of(student)):
        found.append(xapi_sessions_of(student))
    return found


def queued_for(c: Campus, box: Any, student: str = STUDENT) -> list[dict[str, Any]]:
    raw: list[Any] = c.ctx.redis.hvals(box.entries)
    docs = [json.loads(v) for v in raw]
    return [d for d in docs if d["student_id"] == student]


# ---- scenarios -------------------------------------------------------------------------------


def watch_everything(c: Campus, who: dict[str, str]) -> None:
    """The student completes the whole course (a course.completed webhook follows) and has
    statements queued and a player session open."""
    c.watch(who, "v-600", watch_time=600, played=[[0, 600]], session_id="p1", seq=0)
    c.open(who, "pdf-1")
    c.open(who, "link-1")
    c.flush()
    c.run_completion_jobs()
    c.watch(who, "v-100", watch_time=0, session_id="p2", seq=0, event="play")
    c.watch(who, "v-100", watch_time=90, played=[[0, 90]], session_id="p2", seq=1, event="pause")


def watch_again_after_the_erasure(c: Campus, who: dict[str, str]) -> None:
    """Erasure is no ban: the next heartbeat is taken, stored, stated and completed normally."""
    c.watch(who, "v-100", watch_time=85, played=[[0, 85]], session_id="p3", seq=0, event="pause")
    assert c.status(who)["watched_seconds"] == 85.0
    c.flush()
    assert c.run_completion_jobs() == 1
    doc = present(c.ctx.mongo.progress.find_one({"student_id": STUDENT, "material_id": "v-100"}))
    assert doc["watched_seconds"] == 85.0 and doc["v"] > VERSION_GAP
    enrollment = present(c.ctx.mongo.enrollment(STUDENT, COURSE_ID))
    assert enrollment["completed_materials"] == ["v-100"]
    verbs = sorted(d["payload"]["verb"]["display"]["en-US"] for d in queued_for(c, XAPI))
    assert verbs == ["completed", "initialized", "paused"]
    hooks = [d["payload"]["event"]["type"] for d in queued_for(c, WEBHOOK)]
    assert hooks == ["material.completed"]


FLUSH_STEPS = [
    pytest.param("hot", "read_entries", True, id="keys read"),
    pytest.param("flush", "announce_flush", True, id="statements queued"),
    pytest.param("hot", "commit", True, id="fold committed"),
    pytest.param("mongo", "write_states", False, id="write on the wire"),
    pytest.param("mongo", "write_states", True, id="written"),
    pytest.param("flush", "record_flushed", True, id="rolled up"),
    pytest.param("hot", "finish", False, id="completion job queued"),
    pytest.param("hot", "finish", True, id="finished"),
]


# The cut against the flush's scripts (read, commit, finish) on the student's partition.
@pytest.mark.cluster
@pytest.mark.parametrize(("where", "step", "after"), FLUSH_STEPS)
def test_an_erasure_at_any_step_of_a_flush_leaves_nothing(
    campus: Campus, monkeypatch: pytest.MonkeyPatch, where: str, step: str, after: bool
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    bystander = c.enroll("s-bystander")
    watch_everything(c, who)
    c.watch(bystander, "v-100", watch_time=50, played=[[0, 50]], session_id="b", seq=0)
    target = {"hot": c.ctx.hot, "mongo": c.ctx.mongo, "flush": workers.flush}[where]
    reports = erase_between_steps(monkeypatch, target, step, c.erase, after)
    c.flush()  # the flush in flight: v-100's heartbeats, complete, and the bystander's
    assert len(reports) == 1
    c.settle()
    assert leftovers(c) == []
    c.sweep_sessions()  # ends no erased session: none is left to end
    assert leftovers(c) == []
    assert c.status(who)["watched_seconds"] == c.status(who, "v-600")["watched_seconds"] == 0.0
    bystanders = c.ctx.mongo.progress.find_one({"student_id": "s-bystander"})
    assert present(bystanders)["watched_seconds"] == 50.0  # another student keeps everything
    watch_again_after_the_erasure(c, who)


COMPLETION_STEPS = [
    pytest.param("completion", "record_completions", False, id="job queued"),
    pytest.param("mongo", "_completed", True, id="completions confirmed"),
    pytest.param("completion", "announce_completions", False, id="enrollment updated"),
    pytest.param("mongo", "find_states", True, id="states read for the events"),
    pytest.param("completion", "announce_completions", True, id="events queued"),
]


@pytest.mark.parametrize(("where", "step", "after"), COMPLETION_STEPS)
def test_an_erasure_at_any_step_of_a_completion_job_leaves_nothing(
    campus: Campus, monkeypatch: pytest.MonkeyPatch, where: str, step: str, after: bool
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    watch_everything(c, who)
    c.flush()  # v-100 completes: the job for it, and course.completed, waits in the queue
    [job] = [j for j in c.ctx.queue.jobs if j.func_name == COMPLETION_JOB]
    target = {"mongo": c.ctx.mongo, "completion": workers.completion}[where]
    if step == "record_completions":
        reports = [c.erase()]
    else:
        reports = erase_between_steps(monkeypatch, target, step, c.erase, after)
    completion.record_completions(*job.args)
    job.delete()
    assert len(reports) == 1
    c.settle()
    assert leftovers(c) == []
    c.sweep_sessions()  # ends no erased session: none is left to end
    assert leftovers(c) == []
    watch_again_after_the_erasure(c, who)


def test_erasing_one_material_mid_job_drops_what_it_states_and_keeps_the_rest(
    campus: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    c.watch(who, "v-600", watch_time=600, played=[[0, 600]], session_id="p1", seq=0)
    c.open(who, "pdf-1")
    c.open(who, "link-1")
    c.watch(who, "v-100", watch_time=90, played=[[0, 90]], session_id="p2", seq=0)
    c.flush()  # one job: all four materials, and the course reaches 100 %
    erase_between_steps(monkeypatch, c.ctx.mongo, "find_states", lambda: c.erase("v-100"))
    assert c.run_completion_jobs() == 1
    c.settle()
    hooks = sorted(
        (d["payload"]["event"]["type"], d["material_id"]) for d in queued_for(c, WEBHOOK)
    )  # course.completed and v-100's event were made from v-100's erased state: dropped
    assert hooks == [("material.completed", m) for m in ("link-1", "pdf-1", "v-600")]
    statements = {d["material_id"] for d in queued_for(c, XAPI)}
    assert statements == {"v-600"}  # v-100's statements went with it; pdf and link have none
    enrollment = present(c.ctx.mongo.enrollment(STUDENT, COURSE_ID))
    assert sorted(enrollment["completed_materials"]) == ["link-1", "pdf-1", "v-600"]
    assert enrollment["progress_percentage"] == 75.0
    assert c.status(who)["watched_seconds"] == 0.0
    assert c.status(who, "v-600")["watched_seconds"] == 600.0


@pytest.mark.cluster  # the whole student's keys, on the node holding their slot
def test_tombstones_expire_and_then_nothing_of_the_student_is_left(campus: Campus) -> None:
    c = campus
    who = c.enroll(STUDENT)
    watch_everything(c, who)
    c.flush()
    c.run_completion_jobs()
    report = c.erase()
    assert (report["documents"], report["enrollments"]) == (4, 1)
    assert report["outbox_entries"] > 0
    ttl = c.settings.erasure_tombstone_ttl_s
    assert 0 < c.ctx.redis.ttl(outbox_tombstones(STUDENT)) <= ttl
    tombstones = c.ctx.mongo.progress.count_documents({"student_id": STUDENT})
    assert tombstones == 4 and leftovers(c) == []
    c.clock.advance(ttl - 1)
    assert maintenance.delete_expired_tombstones() == 0
    c.clock.advance(2)
    assert maintenance.delete_expired_tombstones() == 4
    assert c.ctx.mongo.progress.count_documents({"student_id": STUDENT}) == 0
    who = c.token(STUDENT)  # the day-old one expired by the app's clock
    watch_again_after_the_erasure(c, who)


def verbs_in_session(c: Campus, session: str) -> list[str]:
    """The verbs queued for STUDENT's player session `session` on v-100, sorted."""
    wanted = session_uuid(Video(STUDENT, "v-100", "", 100.0), session)
    return sorted(
        d["payload"]["verb"]["display"]["en-US"]
        for d in queued_for(c, XAPI)
        if d["payload"]["context"]["extensions"][EXT + "session-id"] == wanted
    )


# A flush reads a key that has pending heartbeats and no hot state; the erasure's cut comes
# right after that read (and the erasure answers); the student watches again and another flush
# stores that at T + 1. The first flush goes on: its statements of the erased heartbeats must
# stay below the tombstone. (A reverted fix based them on the stored state, read later: T + 1.)
def test_erased_heartbeats_are_not_stated_by_a_flush_that_read_them_before_the_cut(
    campus: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    c.watch(who, "v-100", watch_time=0, session_id="p1", seq=0, event="play")
    c.watch(who, "v-100", watch_time=40, played=[[0, 40]], session_id="p1", seq=1, event="pause")
    real = c.ctx.hot.read_entries
    done: list[Any] = []

    def read_entries(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if not done:
            done.append(c.erase())
            c.watch(who, "v-100", watch_time=10, played=[[0, 10]], session_id="p3", seq=0,
                    event="pause")  # fmt: skip
            assert not flush_batch(c.ctx, 500).errors  # the second flush, in between
        return result

    monkeypatch.setattr(c.ctx.hot, "read_entries", read_entries)
    c.flush()  # the first flush goes on
    assert done
    assert verbs_in_session(c, "p3") == ["initialized", "paused"]  # after the erasure: stated
    assert verbs_in_session(c, "p1") == []  # erased: never stated


# A one-material erasure of another material refreshes the whole buffer tombstones
# hash's TTL, so v-100's field outlives its hot hash and MongoDB tombstone (both gone after the
# day). The student watches v-100 again; a flush reads (version None, tombstone T1, pending);
# v-100 is erased again right then: its cut computes T2 = max(no n, no document) + 2^32, below
# T1, and overwrites the outbox tombstone with T2. The flush states the erased heartbeats on
# T1 + len > T2: accepted. (A reverted fix did that; this pins that no basis does.)
def test_a_stale_buffer_tombstone_lifts_no_erased_heartbeat_above_a_later_cut(
    campus: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    c.watch(who, "v-100", watch_time=20, played=[[0, 20]], session_id="p1", seq=0, event="pause")
    c.flush()
    c.erase("v-100")  # T1 = 1 + 2^32
    ttl = c.settings.erasure_tombstone_ttl_s
    c.clock.advance(ttl - 60)
    c.erase("v-600")  # refreshes the TTL of the student's buffer (and outbox) tombstones
    c.clock.advance(120)
    assert maintenance.delete_expired_tombstones() == 1  # v-100's MongoDB tombstone
    c.buffer.delete(ProgressKey(STUDENT, "v-100", KEY_SCHEMA).state)  # its TTL (the day)
    assert c.buffer.hget(KEY_SCHEMA.buffer_tombstones(STUDENT), "v-100") is not None
    who = c.token(STUDENT)
    c.watch(who, "v-100", watch_time=0, session_id="p5", seq=0, event="play")
    c.watch(who, "v-100", watch_time=40, played=[[0, 40]], session_id="p5", seq=1, event="pause")
    reports = erase_between_steps(monkeypatch, c.ctx.hot, "read_entries", lambda: c.erase("v-100"))
    c.flush()
    assert reports and reports[0]["queued_heartbeats"] == 2
    c.settle()
    assert verbs_in_session(c, "p5") == []  # erased: never stated


# Every tombstone gone (MongoDB's deleted by the maintenance job, Redis's expired): a new state
# starts with no version to continue from, while the rollups still hold the tombstone's T for
# the material. It used to start again from 1 and lose to T there for good: the teacher saw 0 s
# and nothing completed (even after a rebuild), while watch_progress held the progress.
@pytest.mark.parametrize(
    ("erased", "watched", "completed"),
    [("v-100", 600.0 + 85.0, ["v-100", "v-600", "pdf-1", "link-1"]), (None, 85.0, ["v-100"])],
    ids=["one material", "the whole student"],
)
def test_progress_after_every_tombstone_expired_reaches_the_rollups(
    campus: Campus, erased: str | None, watched: float, completed: list[str]
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    watch_everything(c, who)
    c.flush()
    c.run_completion_jobs()
    c.erase(erased)
    t = present(c.ctx.mongo.progress.find_one({"student_id": STUDENT, "material_id": "v-100"}))
    c.clock.advance(c.settings.erasure_tombstone_ttl_s + 1)
    assert maintenance.delete_expired_tombstones() == (1 if erased else 4)
    tombstones = KEY_SCHEMA.buffer_tombstones(STUDENT)
    for material in c.buffer.hkeys(tombstones):  # what Redis's TTL does, by its own clock
        name = material.decode() if isinstance(material, bytes) else material
        c.buffer.delete(ProgressKey(STUDENT, name, KEY_SCHEMA).state)
    c.buffer.delete(tombstones)
    who = c.token(STUDENT)
    c.watch(who, "v-100", watch_time=85, played=[[0, 85]], session_id="p3", seq=0, event="pause")
    c.flush()
    c.run_completion_jobs()
    doc = present(c.ctx.mongo.progress.find_one({"student_id": STUDENT, "material_id": "v-100"}))
    assert doc["watched_seconds"] == 85.0 and doc["completed"] and doc["v"] > t["v"]
    course = c.ctx.catalog().courses[COURSE_ID]
    (row,) = rollup_store.course_rollups(c.ctx.mongo, course, live=c.ctx.live)
    assert (row.totals.watched_seconds, row.totals.completed_materials) == (watched, len(completed))
    rollup_store.rebuild(c.ctx.mongo, course, [STUDENT])
    c.ctx.live.persist(c.ctx.mongo, course, c.clock.time())
    enrollment = present(c.ctx.mongo.enrollment(STUDENT, COURSE_ID))
    assert (enrollment["watched_seconds"], enrollment["completed_count"]) == (
        watched,
        len(completed),
    )
    assert enrollment["completed_materials"] == completed  # in the catalog's order


# ---- the outboxes' other writers between the erasure's read and its writes -----------------


def erasure_reads_then(monkeypatch: pytest.MonkeyPatch, step: Callable[[], Any]) -> list[bool]:
    """Run `step` once, right after the erasure read the student's xAPI entries (`entries_of`)
    and before its transaction writes. Returns a list that holds True once `step` ran."""
    real = Outbox.entries_of
    ran: list[bool] = []

    def entries_of(self: Outbox, *args: Any, **kwargs: Any) -> Any:
        found = real(self, *args, **kwargs)
        if self.keys == XAPI and not ran:
            ran.append(True)
            step()
        return found

    monkeypatch.setattr(Outbox, "entries_of", entries_of)
    return ran


def test_an_entry_a_delivery_sets_aside_while_the_erasure_reads_is_erased_too(
    campus: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delivery job holds the student's statements; the LRS refuses one and the job's settle
    moves it to the dead-letter hash after the erasure read it as queued. It used to be deleted
    from the queue (where it no longer was) and from the student's index, and left set aside,
    unindexed: no repeated erasure found it, and `outbox-requeue` sent it to the LRS."""
    c = campus
    who = c.enroll(STUDENT)
    c.watch(who, "v-100", watch_time=20, played=[[0, 20]], session_id="p1", seq=0, event="pause")
    c.flush()
    box = Outbox(c.ctx.redis, XAPI)
    leased = box.claim(c.clock.time(), 200, 100)  # the delivery job's claim
    assert len(leased) == 2
    refused = Settled([], [], [(leased[0], "HTTP 400: bad")])
    ran = erasure_reads_then(monkeypatch, lambda: box.settle(refused, c.clock.time(), 1000))
    c.erase()
    assert ran == [True]
    assert leftovers(c) == []
    assert box.requeue_dead(now=c.clock.time()) == 0  # `outbox-requeue xapi`: nothing to send


def test_an_operators_requeue_while_the_erasure_reads_brings_nothing_erased_back(
    campus: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`requeue_dead` watches the dead-letter hash, so an erasure between its read and its move
    wins; the other way round, a requeue between the erasure's read (the statements set aside)
    and its writes used to put them back in the queue, where the erasure did not look: they
    were delivered after the erasure answered."""
    c = campus
    who = c.enroll(STUDENT)
    c.watch(who, "v-100", watch_time=20, played=[[0, 20]], session_id="p1", seq=0, event="pause")
    c.flush()
    box = Outbox(c.ctx.redis, XAPI)
    leased = box.claim(c.clock.time(), 200, 100)
    box.settle(Settled([], [], [(e, "HTTP 400: bad") for e in leased]), c.clock.time(), 1000)
    ran = erasure_reads_then(monkeypatch, lambda: box.requeue_dead(now=c.clock.time()))
    c.erase()
    assert ran == [True]
    assert leftovers(c) == []
    assert box.claim(c.clock.time() + 1, 200, 100) == []  # the next delivery job sends nothing


# ---- export and erasure look up the student's own keys ----------------------------------------

SCANS = {"scan", "hscan", "sscan", "zscan", "keys"}
# Commands a script or client sends that name no key, or whose keys their own lines show.
KEYLESS = {"echo", "monitor", "evalsha", "eval", "script", "ping", "info", "cluster", "command",
           "readonly", "client", "select", "hello", "multi", "exec", "discard"}  # fmt: skip
# What may be asked of a structure shared by many students: their own members, one by one.
POINT_COMMANDS = {"zrem", "hdel", "hmget", "hget", "hexists", "zscore", "decrby", "get", "mget"}
# A course's live rollups (shared/storage/live_rollups.py): the student's record is a field of
# the course's hash, set by name; the course's sums and schedule belong to no student.
LIVE_COMMANDS = {"hset", "hincrby", "zadd"}


class Monitor:
    """Every command one redis-server runs, those of Lua scripts included (MONITOR)."""

    def __init__(self, host: str, port: int) -> None:
        self.client = redis.Redis(host=host, port=port)
        self.conn = redis.Connection(host=host, port=port)  # type: ignore[no-untyped-call]  # redis-py
        self.conn.send_command("MONITOR")  # type: ignore[no-untyped-call]  # redis-py
        assert self.conn.read_response() in (b"OK", "OK")
        self.marker = f"end-of-monitor-{os.urandom(6).hex()}"

    def stop(self) -> list[list[str]]:
        """The commands seen until now, as lists of their words (command name lower-cased)."""
        self.client.echo(self.marker)
        seen: list[list[str]] = []
        while True:
            line = self.conn.read_response()
            text = line.decode() if isinstance(line, bytes) else str(line)
            words = [w.replace('\\"', '"') for w in re.findall(r'"((?:[^"\\]|\\.)*)"', text)]
            if words == ["echo", self.marker] or words == ["ECHO", self.marker]:
                break
            if words:
                seen.append([words[0].lower(), *words[1:]])
        self.conn.disconnect()  # type: ignore[no-untyped-call]  # redis-py
        self.client.close()
        return seen


def _servers(c: Campus) -> list[tuple[str, int]]:
    """Every redis-server of the deployment: RQ's, and the buffer's (or the cluster's primaries)."""
    rq = c.ctx.redis.connection_pool.connection_kwargs
    servers = [(str(rq["host"]), int(rq["port"]))]
    if isinstance(c.buffer, RedisCluster):
        primaries = c.buffer.get_primaries()  # type: ignore[no-untyped-call]  # redis-py
        servers += [(n.host, int(n.port)) for n in primaries]
    return servers


def _scans(c: Campus) -> int:
    total = 0
    for host, port in _servers(c):
        stats: dict[str, Any] = redis.Redis(host=host, port=port).info("commandstats")
        total += sum(int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in SCANS)
    return total


def _neighbours(student: str, count: int) -> list[str]:
    """Students in the same buffer partition as `student` (they share its dirty, leases...)."""
    home = KEY_SCHEMA.partition_of(student)
    found = [f"n-{i:04d}" for i in range(5000) if KEY_SCHEMA.partition_of(f"n-{i:04d}") == home]
    return found[:count]


@pytest.mark.cluster  # MONITOR on every node of the buffer
def test_export_and_erasure_look_up_only_the_students_own_keys(campus: Campus) -> None:
    c = campus
    who = c.enroll(STUDENT)
    others = _neighbours(STUDENT, 4) + [f"o-{i:03d}" for i in range(20)]
    for other in others:  # other students with stored, pending and outbox data of their own
        them = c.enroll(other)
        c.watch(them, "v-100", watch_time=85, played=[[0, 85]], session_id="x", seq=0)
    watch_everything(c, who)
    c.flush()
    c.run_completion_jobs()
    for other in others:
        c.watch(c.token(other), "v-100", watch_time=90, session_id="x", seq=1)
    c.watch(who, "v-600", watch_time=10, session_id="p4", seq=0, event="pause")  # pending
    scans_before = _scans(c)
    monitors = [Monitor(host, port) for host, port in _servers(c)]
    exported = c.client.get("/api/progress/export", headers=who)
    report = c.erase()
    commands = [words for m in monitors for words in m.stop()]
    assert _scans(c) == scans_before  # not one SCAN, HSCAN, SSCAN, ZSCAN or KEYS
    assert exported.status_code == 200 and len(exported.json()["materials"]) == 4
    assert report["documents"] == 4 and report["queued_heartbeats"] == 1
    named = [w for words in commands if words[0] not in KEYLESS for w in words[1:]]
    assert named, "MONITOR saw the export's and the erasure's commands"
    assert not [w for w in named for other in others if other in w]  # no other student's data
    for words in commands:
        name, args = words[0], words[1:]
        if name in KEYLESS or not args:
            continue
        key = args[0]
        own = f":s:{STUDENT}:" in key or key.endswith(f":{STUDENT}")
        live = key.startswith("vp:live:") and name in LIVE_COMMANDS
        assert own or live or name in POINT_COMMANDS, f"{name} {key}: not the student's"
    assert leftovers(c) == []


@pytest.mark.cluster  # ingest and a flush between the buffer's cut and MongoDB's
def test_a_heartbeat_taken_after_the_cut_outlives_the_rest_of_the_erasure(
    campus: Campus, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = campus
    who = c.enroll(STUDENT)
    watch_everything(c, who)
    c.flush()
    c.run_completion_jobs()

    def watch_and_flush() -> None:  # after the buffer's cut, before MongoDB's tombstones
        c.watch(
            who, "v-100", watch_time=30, played=[[0, 30]], session_id="p5", seq=0, event="pause"
        )
        c.flush()

    erase_between_steps(monkeypatch, c.ctx.mongo, "erase_states", watch_and_flush, after=False)
    erase_progress(
        c.ctx.mongo, c.buffer, c.ctx.key_schema, c.ctx.catalog(), STUDENT, outboxes=c.ctx.redis
    )
    doc = present(c.ctx.mongo.progress.find_one({"student_id": STUDENT, "material_id": "v-100"}))
    assert doc["watched_seconds"] == 30.0 and doc["v"] > VERSION_GAP
    assert (
        c.status(who)["watched_seconds"] == 30.0 and c.status(who, "v-600")["watched_seconds"] == 0
    )
    verbs = sorted(d["payload"]["verb"]["display"]["en-US"] for d in queued_for(c, XAPI))
    assert verbs == ["initialized", "paused"]  # the new session's statements stay queued
    enrollment = present(c.ctx.mongo.enrollment(STUDENT, COURSE_ID))
    assert enrollment["completed_materials"] == [] and enrollment["watched_seconds"] == 30.0


@pytest.mark.parametrize(
    "odd",
    [pytest.param({"v": "7"}, id="v as text"), pytest.param({"v": None}, id="v null"),
     pytest.param({}, id="no v")],
)  # fmt: skip
def test_an_odd_stored_document_is_erased_with_the_rest(
    campus: Campus, odd: dict[str, Any]
) -> None:
    """A `watch_progress` document whose version is no number (an older version's, or one
    written by hand: the flush sets such a key aside) is erased all the same, and does not stop
    the erasure of the student's other documents."""
    progress = {
        "student_id": STUDENT,
        "course_id": COURSE_ID,
        "watched_seconds": 50.0,
        "progress_percentage": 50.0,
        "completed": False,
        "watched_ranges": [[0, 50]],
    }
    db = campus.ctx.mongo
    db.progress.insert_one({"_id": f"v-100|{STUDENT}", "material_id": "v-100", **progress, **odd})
    db.progress.insert_one({"_id": f"v-600|{STUDENT}", "material_id": "v-600", **progress, "v": 3})
    report = erase_progress(db, campus.buffer, KEY_SCHEMA, campus.ctx.catalog(), STUDENT,
                            outboxes=campus.ctx.redis)  # fmt: skip
    assert report.documents == 2
    left = list(db.progress.find({"student_id": STUDENT}))
    assert sorted(d["material_id"] for d in left) == ["v-100", "v-600"]
    assert all(set(d) == TOMBSTONE_FIELDS for d in left), left  # tombstones, nothing else
    assert all(isinstance(d["v"], int) and d["v"] >= VERSION_GAP for d in left)
