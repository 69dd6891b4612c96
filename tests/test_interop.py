"""Interoperability against real parts: Ralph's LRS (xAPI), a real HTTP webhook receiver, a
real Redis and the MongoDB stand-in. The workers' steps (flush, completion job, deliveries) are
called in-process, in order, so that each expected number can be worked out by hand; the
outage under load runs the Procfile's processes (tests/test_interop_system.py). The app and the
workers share a `MockedClock`, moved past each backoff, due time and max age instead of sleeping.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from standardwebhooks import Webhook

import tests.lrs
from ingest.app import create_app
from shared.clock import MockedClock
from shared.devtools.services import free_port
from shared.errors import Unavailable
from shared.integrations.outbox import WEBHOOK, XAPI, Limits, Outbox, OutboxEntry
from shared.integrations.xapi import EXT
from shared.settings import Settings
from shared.storage.keys import STATS, XAPI_SESSIONS
from tests.helpers import COURSE, COURSE_ID, bearer, make_settings
from tests.lrs import LRS_PASSWORD, LRS_USER, RalphLRS, WebhookReceiver, ralph_validate
from workers import completion, maintenance
from workers.context import WorkerContext, build_context
from workers.deliver import end_silent_sessions, send_due_statements, send_due_webhooks
from workers.flush import flush_batch

ADMIN = "a-root"
record_completions_name = "workers.completion.record_completions"
HOMEPAGE = "https://idp.school.test"
ACTIVITIES = "https://courses.school.test/videos/"
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # made per run, never stored


@pytest.fixture(scope="module")
def lrs(tmp_path_factory: pytest.TempPathFactory, buffer_kind: str) -> Iterator[RalphLRS]:
    # One LRS per buffer kind: the two runs send the same deterministic statement ids.
    server = RalphLRS(tmp_path_factory.mktemp(f"ralph-{buffer_kind}")).start()
    yield server
    server.stop()


def interop_settings(redis_url: str, mongo_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "xapi_actor_homepage": HOMEPAGE,
        "xapi_activity_base": ACTIVITIES,
        # Whole seconds, so that the moved clock lands exactly on each due time.
        "outbox_retry_base_s": 1.0,
        "outbox_retry_max_s": 4.0,
        # Verified watching (when it lands) bounds credit by server time; these tests send
        # whole ranges at once, so they trust the client, as MAX_PLAYBACK_RATE=0 says.
        "max_playback_rate": 0,
    }
    values.update(overrides)
    return make_settings(redis_url, mongo_url, **values)


class World:
    """The app, a worker context on the app's clock, and the steps of the workers, run by hand."""

    def __init__(
        self,
        settings: Settings,
        client: TestClient,
        clock: MockedClock,
        monkeypatch: pytest.MonkeyPatch,
    ):
        self.settings, self.client, self.clock = settings, client, clock
        self.ctx: WorkerContext = build_context(settings, clock)
        for module in (completion, maintenance):
            monkeypatch.setattr(module, "get_context", lambda: self.ctx)

    def token(self, user: str, role: str = "student") -> dict[str, str]:
        return bearer(self.settings, user, role, now=self.clock.time())

    def enroll(self, student: str) -> dict[str, str]:
        admin = self.token(ADMIN, "admin")
        r = self.client.put(f"/api/courses/{COURSE_ID}/enrollments/{student}", headers=admin)
        assert r.status_code == 201, r.text
        return self.token(student)

    def watch(self, headers: dict[str, str], video: str = "v-100", **body: Any) -> None:
        total = 600 if video == "v-600" else 100
        r = self.client.post(
            f"/api/progress/video/{video}/watch-time",
            json={"total_duration": total, **body},
            headers=headers,
        )
        assert r.status_code == 202, r.text

    def flush(self) -> None:
        report = flush_batch(self.ctx, 500)
        assert not report.errors, report.errors

    def run_completion_jobs(self) -> int:
        """Run the completion jobs the flushes queued (as an RQ worker would); returns how many."""
        jobs = [j for j in self.ctx.queue.jobs if j.func_name == record_completions_name]
        for job in jobs:
            completion.record_completions(*job.args)
            job.delete()
        return len(jobs)

    def stats(self) -> dict[str, int]:
        raw = self.ctx.redis.hgetall(STATS)
        return {k.decode(): int(float(v)) for k, v in raw.items()}  # type: ignore[union-attr]


@pytest.fixture
def world_factory(redis_url: str, mongo_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    made: list[tuple[World, Any]] = []

    def make(**overrides: Any) -> World:
        settings = interop_settings(redis_url, mongo_url, **overrides)
        # Started at the real time (the webhook receiver checks signatures against it), on a
        # whole second so that moves by whole and half seconds add up exactly.
        clock = MockedClock(float(int(time.time())))
        cm = TestClient(create_app(settings, clock=clock))
        client = cm.__enter__()
        world = World(settings, client, clock, monkeypatch)
        made.append((world, cm))
        admin = world.token(ADMIN, "admin")
        assert (
            client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        )
        return world

    yield make
    for world, cm in made:
        cm.__exit__(None, None, None)
        world.ctx.mongo.close()


def lrs_settings(lrs: RalphLRS) -> dict[str, Any]:
    return {
        "xapi_lrs_url": lrs.base_url,
        "xapi_lrs_username": LRS_USER,
        "xapi_lrs_password": LRS_PASSWORD,
    }


def of_student(statements: list[dict[str, Any]], student: str) -> list[dict[str, Any]]:
    return [s for s in statements if s["actor"]["account"]["name"] == student]


def verb(statement: dict[str, Any]) -> str:
    return str(statement["verb"]["display"]["en-US"])


def by_verb(statements: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [s for s in statements if verb(s) == name]


def queued(r: redis.Redis, box: Any = XAPI) -> list[dict[str, Any]]:
    return [json.loads(v)["payload"] for v in r.hvals(box.entries)]


# ---- xAPI ------------------------------------------------------------------------------------


def test_watching_reaches_the_lrs_as_valid_video_profile_statements(
    world_factory: Any, lrs: RalphLRS
) -> None:
    w = world_factory(**lrs_settings(lrs))
    me = w.enroll("s-xapi")
    # Session tab-1: play at 0, watch to 20, play on to 25 and seek to 50, watch to 80, pause.
    w.watch(me, watch_time=0, session_id="tab-1", seq=0, event="play")
    w.watch(me, watch_time=20, session_id="tab-1", seq=1, played=[[0, 20]])
    w.watch(me, watch_time=50, session_id="tab-1", seq=2, played=[[20, 25]], event="seek")
    w.watch(me, watch_time=80, session_id="tab-1", seq=3, played=[[50, 80]], event="pause")
    w.flush()
    # The page closes: the session's final heartbeat.
    w.watch(me, watch_time=80, session_id="tab-1", seq=4, event="exit")
    w.flush()
    sent_first = queued(w.ctx.redis)
    assert Counter(verb(s) for s in sent_first) == {
        "initialized": 1,
        "played": 1,
        "seeked": 1,
        "paused": 1,
        "terminated": 1,
    }
    assert send_due_statements(w.ctx) == {"sent": 5, "retried": 0, "refused": 0}

    # Session tab-2 watches 25..50: covered [0, 80] = 80 s of 100 = the threshold.
    w.watch(me, watch_time=50, session_id="tab-2", seq=0, played=[[25, 50]])
    w.flush()
    assert w.run_completion_jobs() == 1
    # tab-2 falls silent: the sweep ends it (timeout passed: look an hour ahead).
    assert end_silent_sessions(w.ctx, w.clock.time() + 3601) == 1
    waiting = Counter(verb(s) for s in queued(w.ctx.redis))
    assert waiting == {"initialized": 1, "completed": 1, "terminated": 1}
    assert send_due_statements(w.ctx) == {"sent": 3, "retried": 0, "refused": 0}

    stored = of_student(lrs.statements(), "s-xapi")
    assert Counter(verb(s) for s in stored) == {
        "initialized": 2,
        "played": 1,
        "seeked": 1,
        "paused": 1,
        "terminated": 2,
        "completed": 1,
    }
    (paused,) = by_verb(stored, "paused")
    assert paused["result"]["extensions"] == {
        EXT + "time": 80.0,
        EXT + "progress": 0.55,
        EXT + "played-segments": "0.0[.]25.0[,]50.0[.]80.0",
    }
    (seeked,) = by_verb(stored, "seeked")
    assert seeked["result"]["extensions"] == {EXT + "time-from": 25.0, EXT + "time-to": 50.0}
    (done,) = by_verb(stored, "completed")
    assert done["result"]["completion"] is True
    assert done["result"]["duration"] == "PT80.0S"
    assert done["result"]["extensions"][EXT + "progress"] == 0.8
    assert done["result"]["extensions"][EXT + "played-segments"] == "0.0[.]80.0"
    assert done["context"]["extensions"][EXT + "completion-threshold"] == 0.8
    for s in stored:
        assert s["actor"]["account"] == {"homePage": HOMEPAGE, "name": "s-xapi"}
        assert s["object"]["id"] == ACTIVITIES + "v-100"
        assert s["context"]["contextActivities"]["category"][0]["id"] == (
            "https://w3id.org/xapi/video"
        )
    sessions = {
        s["context"]["extensions"][EXT + "session-id"] for s in by_verb(stored, "initialized")
    }
    assert len(sessions) == 2  # one UUID per player session
    terminated_sessions = {
        s["context"]["extensions"][EXT + "session-id"] for s in by_verb(stored, "terminated")
    }
    assert terminated_sessions == sessions

    # Ralph's own models of the profile accept every statement, as sent and as stored.
    check = ralph_validate(sent_first)
    assert check.returncode == 0, check.stderr[-2000:]
    check = ralph_validate(stored)
    assert check.returncode == 0, check.stderr[-2000:]
    assert len(check.stdout.splitlines()) == 8

    # Redelivery: the completion job and the maintenance pass run again, the flush hook sees
    # the same heartbeats again: nothing new is queued or stored.
    completion.record_completions([["s-xapi", COURSE_ID, ["v-100"]]])
    maintenance.reconcile_completions()
    w.flush()
    assert w.ctx.redis.hlen(XAPI.entries) == 0
    assert send_due_statements(w.ctx)["sent"] == 0
    assert len(of_student(lrs.statements(), "s-xapi")) == 8
    assert w.stats()["xapi_sent"] == 8 and w.stats().get("xapi_dead", 0) == 0


def test_ralph_validate_can_fail() -> None:
    """The validation above means something: a statement without the profile's session id
    (required by Ralph's video models) is refused."""
    from shared.integrations.xapi import StatementBuilder, Video, XapiConfig

    b = StatementBuilder(XapiConfig(HOMEPAGE, ACTIVITIES, 80))
    good = b.initialized(Video("s", "v-100", "Speed", 100.0), "tab", 1_764_000_000.0)
    assert ralph_validate([good]).returncode == 0
    bad = json.loads(json.dumps(good))
    del bad["context"]["extensions"][EXT + "session-id"]
    assert ralph_validate([bad]).returncode != 0


def test_a_refused_statement_is_set_aside_and_the_rest_of_its_batch_is_sent(
    world_factory: Any, lrs: RalphLRS
) -> None:
    w = world_factory(**lrs_settings(lrs))
    me = w.enroll("s-refused")
    for seq in range(5):  # five pauses: five paused statements + one initialized
        w.watch(me, watch_time=10 * seq, session_id="t", seq=seq, event="pause")
    w.flush()
    statements = sorted(queued(w.ctx.redis), key=lambda s: s["id"])
    assert len(statements) == 6
    # The LRS already holds a different statement under one of these ids: it must refuse it
    # (409), and with it the whole batch.
    clash = json.loads(json.dumps(statements[3]))
    clash["timestamp"] = "2020-01-01T00:00:00.000Z"
    r = httpx.post(
        lrs.base_url + "statements",
        json=[clash],
        auth=(LRS_USER, LRS_PASSWORD),
        headers={"X-Experience-API-Version": "1.0.3"},
    )
    assert r.status_code == 200, r.text
    assert send_due_statements(w.ctx) == {"sent": 5, "retried": 0, "refused": 1}
    dead = {k.decode(): json.loads(v) for k, v in w.ctx.redis.hgetall(XAPI.dead).items()}
    assert list(dead) == [statements[3]["id"]]
    assert "409" in dead[statements[3]["id"]]["reason"]
    stored_ids = {s["id"] for s in of_student(lrs.statements(), "s-refused")}
    assert stored_ids == {s["id"] for s in statements}  # 5 sent + the clashing one
    metrics = w.client.get("/metrics").text
    assert 'videoprogress_outbox_dead_total{outbox="xapi"} 1.0' in metrics
    assert 'videoprogress_outbox_sent_total{outbox="xapi"} 5.0' in metrics
    assert 'videoprogress_outbox_dead_entries{outbox="xapi"} 1.0' in metrics
    # Never retried: the next run has nothing to do.
    assert send_due_statements(w.ctx) == {"sent": 0, "retried": 0, "refused": 0}
    # An operator puts it back (e.g. after deleting the clash in the LRS): refused again.
    assert Outbox(w.ctx.redis, XAPI).requeue_dead(None, w.clock.time()) == 1
    assert w.ctx.redis.hlen(XAPI.entries) == 1 and w.ctx.redis.hlen(XAPI.dead) == 0
    assert send_due_statements(w.ctx) == {"sent": 0, "retried": 0, "refused": 1}


def test_an_lrs_that_is_down_delays_statements_and_loses_none(
    world_factory: Any, tmp_path: Path
) -> None:
    down = RalphLRS(tmp_path / "lrs", port=free_port())  # nothing listens on it yet
    w = world_factory(**lrs_settings(down))
    me = w.enroll("s-down")
    w.watch(me, watch_time=0, session_id="t", seq=0, event="play")
    w.flush()  # the flush does not need the LRS
    nothing = {"sent": 0, "retried": 0, "refused": 0}  # what a run with nothing due returns
    assert send_due_statements(w.ctx) == {"sent": 0, "retried": 2, "refused": 0}
    assert w.client.get("/readyz").json()["outbox"] == {"xapi": 2, "webhook": 0, "grade": 0}
    # Retried OUTBOX_RETRY_BASE_S (1 s) after the first attempt, not before.
    w.clock.advance(0.5)
    assert send_due_statements(w.ctx) == nothing
    w.clock.advance(0.5)
    assert send_due_statements(w.ctx)["retried"] == 2
    tries = {k.decode(): int(v) for k, v in w.ctx.redis.hgetall(XAPI.tries).items()}
    assert sorted(tries.values()) == [2, 2]  # counted per attempt: the backoff doubles
    # The second retry waits 2 s: still not due 1.5 s later.
    w.clock.advance(1.5)
    assert send_due_statements(w.ctx) == nothing
    down.start()
    try:
        w.clock.advance(0.5)
        assert send_due_statements(w.ctx) == {"sent": 2, "retried": 0, "refused": 0}
        assert {verb(s) for s in down.statements()} == {"initialized", "played"}
    finally:
        down.stop()
    metrics = w.client.get("/metrics").text
    assert 'videoprogress_outbox_retried_total{outbox="xapi"} 4.0' in metrics
    assert 'videoprogress_outbox_depth{outbox="xapi"} 0.0' in metrics


def test_an_lrs_whose_picked_port_was_taken_first_starts_on_another(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as other:  # another process's server took the port picked first
        other.bind(("127.0.0.1", 0))
        other.listen()
        taken = other.getsockname()[1]
        ports = iter([taken])
        monkeypatch.setattr(tests.lrs, "free_port", lambda: next(ports, None) or free_port())
        lrs = RalphLRS(tmp_path / "lrs").start()
        try:
            assert "address already in use" in (tmp_path / "lrs" / "ralph.log").read_text()
            assert lrs.port != taken and lrs.statements() == []  # ours answers on its new port
        finally:
            lrs.stop()


def test_a_flush_that_mongodb_postponed_still_reports_its_heartbeats_once(
    world_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fold commits (and trims the heartbeats) before the MongoDB write: a flush whose write
    fails leaves no later flush to see those heartbeats, so their statements are queued first."""
    w = world_factory(xapi_lrs_url="http://127.0.0.1:9/xAPI/")
    me = w.enroll("s-mongo")
    w.watch(me, watch_time=0, session_id="t", seq=0, event="play")
    w.watch(me, watch_time=10, session_id="t", seq=1, played=[[0, 10]], event="pause")

    def unavailable(*args: Any) -> Any:
        raise Unavailable("MongoDB is down")

    write_states = w.ctx.mongo.write_states
    monkeypatch.setattr(w.ctx.mongo, "write_states", unavailable)
    report = flush_batch(w.ctx, 500)
    assert report.errors and report.written == 0
    assert Counter(verb(s) for s in queued(w.ctx.redis)) == {
        "initialized": 1,
        "played": 1,
        "paused": 1,
    }
    monkeypatch.setattr(w.ctx.mongo, "write_states", write_states)
    # The postponed keys are due again two ticks (FLUSH_TICK_S = 1 s) later, not before.
    w.clock.advance(1.5)
    assert flush_batch(w.ctx, 500).claimed == 0
    w.clock.advance(0.5)
    w.flush()
    assert w.ctx.mongo.find_states([("s-mongo", "v-100")])[("s-mongo", "v-100")].version == 2
    assert w.ctx.redis.hlen(XAPI.entries) == 3


def test_the_outbox_is_bounded_and_never_blocks_the_flush(world_factory: Any) -> None:
    w = world_factory(xapi_lrs_url="http://127.0.0.1:9/xAPI/", outbox_max_entries=3)
    me = w.enroll("s-full")
    for seq in range(4):
        w.watch(me, watch_time=seq, session_id="t", seq=seq, event="pause")
    w.flush()  # 5 statements (initialized + 4 paused) for room for 3
    assert w.ctx.redis.hlen(XAPI.entries) == 3
    assert w.stats()["xapi_dropped_full"] == 2
    assert w.ctx.mongo.find_states([("s-full", "v-100")])[("s-full", "v-100")].version == 4
    metrics = w.client.get("/metrics").text
    assert 'videoprogress_outbox_dropped_total{outbox="xapi",reason="full"} 2.0' in metrics


def test_two_delivery_jobs_never_hold_the_same_entry(rq_client: redis.Redis) -> None:
    box = Outbox(rq_client, XAPI)
    entries = [OutboxEntry(f"id-{i}", "s", {"n": i}, 0.0) for i in range(10)]
    assert box.push(entries, Limits(100), now=0.0) == (10, 0, 0)
    first = box.claim(now=1.0, lease_s=30, limit=6)
    second = box.claim(now=1.0, lease_s=30, limit=6)
    assert len(first) == 6 and len(second) == 4
    assert not {e.id for e in first} & {e.id for e in second}
    assert box.claim(now=2.0, lease_s=30, limit=10) == []
    # A job that died: its lease runs out and another job takes the entries.
    assert {e.id for e in box.claim(now=32.0, lease_s=30, limit=10)} == {e.id for e in entries}
    assert box.push(entries, Limits(100), now=0.0) == (0, 10, 0)  # queued already: nothing added


# ---- webhooks --------------------------------------------------------------------------------


def verified(delivery: Any) -> dict[str, Any]:
    """The receiver's side: verify the signature with the library, then read the event."""
    event: dict[str, Any] = Webhook(SECRET).verify(delivery.body, delivery.headers)
    return event


def complete_v100(w: World, me: dict[str, str]) -> None:
    w.watch(me, watch_time=85, session_id="t", seq=0, played=[[0, 85]])
    w.flush()
    assert w.run_completion_jobs() == 1


def test_a_receiver_that_fails_twice_gets_the_event_on_the_third_try_with_one_id(
    world_factory: Any,
) -> None:
    with WebhookReceiver(lambda n: 500 if n <= 2 else 204) as receiver:
        w = world_factory(webhook_urls=receiver.url, webhook_secret=SECRET)
        me = w.enroll("s-hook")
        complete_v100(w, me)
        completed_at = w.ctx.mongo.find_states([("s-hook", "v-100")])[("s-hook", "v-100")]
        assert send_due_webhooks(w.ctx) == {"sent": 0, "retried": 1, "dead": 0}
        for backoff in (1.0, 2.0):  # OUTBOX_RETRY_BASE_S, then doubled; never tried before
            w.clock.advance(backoff - 0.5)
            assert send_due_webhooks(w.ctx) == {"sent": 0, "retried": 0, "dead": 0}
            w.clock.advance(0.5)
            send_due_webhooks(w.ctx)
    assert [d.status for d in receiver.deliveries] == [500, 500, 204]
    events = [verified(d) for d in receiver.deliveries]
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 1
    assert all(e == events[0] for e in events)
    state = completed_at.state
    assert state is not None and state.completed_at is not None
    assert events[0]["type"] == "material.completed"
    assert events[0]["data"] == {
        "student_id": "s-hook",
        "course_id": COURSE_ID,
        "material_id": "v-100",
        "progress_percentage": 85.0,
        "completed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(state.completed_at)),
    }
    assert events[0]["id"] == receiver.deliveries[0].headers["webhook-id"]
    stats = w.stats()
    assert stats["webhook_sent"] == 1 and stats["webhook_retried"] == 2
    assert w.ctx.redis.hlen(WEBHOOK.entries) == 0


def test_a_receiver_that_is_down_gets_the_event_set_aside_after_the_max_age(
    world_factory: Any,
) -> None:
    with WebhookReceiver() as receiver:
        url = receiver.url
    # The receiver is gone: connections are refused.
    w = world_factory(
        webhook_urls=url, webhook_secret=SECRET, webhook_max_age_s=7, outbox_retry_max_s=2
    )
    me = w.enroll("s-gone")
    complete_v100(w, me)  # the event is queued at the clock's time
    nothing, retried = {"sent": 0, "retried": 0, "dead": 0}, {"sent": 0, "retried": 1, "dead": 0}
    assert send_due_webhooks(w.ctx) == retried
    # Tried again 1, 3 and 5 s later (backoffs of 1 s, 2 s doubled, 2 s capped), younger than
    # the max age each time, and never before it is due; at 7 s, its max age, set aside instead.
    waits = [(1.0, retried), (2.0, retried), (2.0, retried), (2.0, {**nothing, "dead": 1})]
    for backoff, outcome in waits:
        w.clock.advance(backoff - 0.5)
        assert send_due_webhooks(w.ctx) == nothing
        w.clock.advance(0.5)
        assert send_due_webhooks(w.ctx) == outcome
    assert w.ctx.redis.hlen(WEBHOOK.entries) == 0
    (dead,) = [json.loads(v) for v in w.ctx.redis.hvals(WEBHOOK.dead)]
    assert dead["entry"]["payload"]["event"]["type"] == "material.completed"
    assert "ConnectError" in dead["reason"] and dead["attempts"] == 5
    stats = w.stats()
    assert stats["webhook_dead"] == 1 and stats["webhook_retried"] == 4
    metrics = w.client.get("/metrics").text
    assert 'videoprogress_outbox_dead_total{outbox="webhook"} 1.0' in metrics


def test_a_completion_seen_twice_yields_one_event_id_and_the_course_event_at_100(
    world_factory: Any,
) -> None:
    with WebhookReceiver() as receiver:
        w = world_factory(webhook_urls=receiver.url, webhook_secret=SECRET)
        me = w.enroll("s-twice")
        complete_v100(w, me)
        # Redelivery: RQ runs the completion job again, maintenance repairs it again, and the
        # hot state forgets that its completion was recorded, so the next flush queues it again.
        completion.record_completions([["s-twice", COURSE_ID, ["v-100"]]])
        send_due_webhooks(w.ctx)
        completion.record_completions([["s-twice", COURSE_ID, ["v-100"]]])
        maintenance.reconcile_completions()
        w.ctx.redis.hdel("vp:{s-twice}:ws:v-100", "cq")
        w.watch(me, watch_time=86, session_id="t", seq=1, played=[[85, 86]])
        w.flush()
        w.run_completion_jobs()
        send_due_webhooks(w.ctx)
        assert len(receiver.deliveries) == 1
        # The rest of the course: the other video, the pdf and the link.
        w.watch(me, "v-600", watch_time=600, session_id="t", seq=0, played=[[0, 600]])
        for material in ("pdf-1", "link-1"):
            r = w.client.post(f"/api/progress/material/{material}/complete", headers=me)
            assert r.status_code == 202, r.text
        w.flush()
        w.run_completion_jobs()
        send_due_webhooks(w.ctx)
    events = [verified(d) for d in receiver.deliveries]
    assert Counter(e["type"] for e in events) == {"material.completed": 4, "course.completed": 1}
    assert len({d.headers["webhook-id"] for d in receiver.deliveries}) == 5
    (course,) = [e for e in events if e["type"] == "course.completed"]
    assert course["data"]["progress_percentage"] == 100.0
    assert course["data"]["student_id"] == "s-twice" and "material_id" not in course["data"]


# ---- export and erasure ----------------------------------------------------------------------


def test_a_student_reads_their_own_data_and_an_admin_anyones(world_factory: Any) -> None:
    w = world_factory(xapi_lrs_url="http://127.0.0.1:9/xAPI/")
    me = w.enroll("s-exp")
    w.watch(me, watch_time=30, session_id="t", seq=0, played=[[0, 30]], event="pause")
    w.flush()
    w.watch(me, watch_time=40, session_id="t", seq=1, played=[[30, 40]])  # not flushed yet
    r = w.client.get("/api/progress/export", headers=me)
    assert r.status_code == 200, r.text
    data = r.json()
    assert data["student_id"] == "s-exp"
    assert [(e["course_id"], e["student_id"]) for e in data["enrollments"]] == [
        (COURSE_ID, "s-exp")
    ]
    (m,) = data["materials"]
    assert m["material_id"] == "v-100" and m["course_id"] == COURSE_ID
    assert m["current"]["watched_ranges"] == [[0.0, 40.0]]
    assert m["current"]["watched_seconds"] == 40.0 and m["current"]["position"] == 40.0
    assert m["stored"]["watched_ranges"] == [[0.0, 30.0]]
    assert [h["watch_time"] for h in m["pending_heartbeats"]] == [40.0]
    queued_verbs = sorted(
        e["payload"]["verb"]["display"]["en-US"] for e in data["outbox"]["xapi"]["queued"]
    )
    assert queued_verbs == ["initialized", "paused"]
    xapi = w.client.get("/api/progress/export?format=xapi", headers=me).json()
    assert sorted(verb(s) for s in xapi["statements"]) == ["initialized", "paused"]

    admin = w.token(ADMIN, "admin")
    as_admin = w.client.get("/api/admin/students/s-exp/export", headers=admin).json()
    assert as_admin["materials"] == data["materials"]
    for who, role in (("s-exp", "student"), ("t-phys", "teacher")):
        r = w.client.get("/api/admin/students/s-exp/export", headers=w.token(who, role))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    r = w.client.get("/api/progress/export", headers=w.token("t-phys", "teacher"))
    assert r.status_code == 403


def test_erasure_clears_the_outboxes_and_returns_the_sent_ids(
    world_factory: Any, lrs: RalphLRS
) -> None:
    with WebhookReceiver() as receiver:
        w = world_factory(**lrs_settings(lrs), webhook_urls=receiver.url, webhook_secret=SECRET)
        me = w.enroll("s-erase")
        complete_v100(w, me)  # initialized + completed statements, one webhook
        send_due_statements(w.ctx)
        send_due_webhooks(w.ctx)
        sent = {s["id"] for s in of_student(lrs.statements(), "s-erase")}
        assert len(sent) == 2
        w.watch(me, "v-600", watch_time=10, session_id="u", seq=0, event="pause")
        w.flush()  # two more statements wait in the outbox
        assert len(queued(w.ctx.redis)) == 2
        admin = w.token(ADMIN, "admin")
        r = w.client.delete("/api/admin/progress?student_id=s-erase", headers=admin)
        assert r.status_code == 200, r.text
    report = r.json()
    assert set(report["sent_xapi_statement_ids"]) == sent
    assert len(report["sent_webhook_ids"]) == 1
    assert report["sent_webhook_ids"][0] == receiver.deliveries[0].headers["webhook-id"]
    assert report["outbox_entries"] == 2
    assert w.ctx.redis.hlen(XAPI.entries) == 0 and w.ctx.redis.zcard(XAPI_SESSIONS) == 0
    again = w.client.delete("/api/admin/progress?student_id=s-erase", headers=admin).json()
    assert again["sent_xapi_statement_ids"] == [] and again["outbox_entries"] == 0
