"""What goes into the outboxes, against a real Redis: the student's statements per minute (a
token bucket), new sessions per (student, video) per hour, the bound less the reserve kept for
completions, and the drop counters by reason. Time is the push's `now`, moved by hand; every
expected figure is worked out in the comments from the limits, not read from the code."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from shared.domain.progress import Heartbeat, WatchState
from shared.integrations import webhooks
from shared.integrations.outbox import (
    WEBHOOK,
    XAPI,
    Limits,
    Outbox,
    OutboxEntry,
    set_tombstones,
)
from shared.integrations.xapi import StatementBuilder, Video, XapiConfig
from shared.storage.stats import read_stats
from tests.helpers import make_settings
from workers.interop import fold_statements

B = StatementBuilder(XapiConfig("https://idp.test", "https://videos.test/", 80))
STATE = WatchState(position=30, covered=[[0.0, 30.0]], progress=30.0, credited=30.0)
T0 = 1_800_000_000.0


@pytest.fixture
def r(redis_base_url: str) -> Iterator[redis.Redis]:
    """RQ's Redis (where the outboxes live), emptied before and after."""
    client = redis.Redis.from_url(redis_base_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def video(student: str, material: str = "v-600") -> Video:
    return Video(student, material, "Waves", 600.0)


def entry(student: str, statement: dict[str, Any], material: str = "v-600") -> OutboxEntry:
    return OutboxEntry(statement["id"], student, statement, T0, material)


def paused(student: str, n: int, material: str = "v-600", session: str = "tab") -> OutboxEntry:
    """The n-th distinct `paused` statement of the student's session."""
    hb = Heartbeat(T0 + n, watch_time=float(n % 600), session_id=session, seq=n, event="pause")
    statement = B.from_heartbeat(video(student, material), hb, STATE)
    assert statement is not None
    return entry(student, statement, material)


def initialized(student: str, session: str, material: str = "v-600") -> OutboxEntry:
    return entry(student, B.initialized(video(student, material), session, T0), material)


def terminated(student: str, session: str, material: str = "v-600") -> OutboxEntry:
    statement = B.terminated(video(student, material), session, STATE, T0)
    return entry(student, statement, material)


def completed(student: str, material: str = "v-600") -> OutboxEntry:
    state = WatchState(position=500, covered=[[0.0, 500.0]], progress=83.3, credited=500.0)
    state.completed, state.completed_at = True, T0
    return entry(student, B.completed(video(student, material), state), material)


def with_basis(e: OutboxEntry, version: int) -> OutboxEntry:
    """The entry as made from version `version` of its material's state."""
    assert e.material_id is not None
    return dataclasses.replace(e, basis=((e.material_id, version),))


def drops(r: redis.Redis, outbox: str = "xapi") -> dict[str, int]:
    prefix = f"{outbox}_dropped_"
    return {k[len(prefix) :]: int(v) for k, v in read_stats(r).items() if k.startswith(prefix)}


def test_a_students_bucket_holds_the_burst_and_refills_at_the_rate(r: redis.Redis) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(1000, per_minute=6, burst=4)
    # A full bucket of 4: the first 4 of 6 go in, 2 are past the quota.
    assert box.push([paused("ana", n) for n in range(6)], limits, T0) == (4, 0, 2)
    # 20 s later: 6/min x 20 s = 2 tokens, so 2 of 3 new ones.
    assert box.push([paused("ana", n) for n in range(6, 9)], limits, T0 + 20) == (2, 0, 1)
    # Another student's bucket is their own; `completed` takes no token (ana has none left).
    assert box.push([paused("bo", n) for n in range(4)], limits, T0 + 20) == (4, 0, 0)
    assert box.push([completed("ana")], limits, T0 + 20) == (1, 0, 0)
    assert drops(r) == {"quota_student": 3}
    # Empty at T0 + 20: full again 4 / (6/min) = 40 s later, when the bucket may go.
    assert 0 < r.ttl(XAPI.quota("ana")) <= 41
    # 10 minutes on, the bucket is full (4), never more.
    assert box.push([paused("ana", n) for n in range(9, 15)], limits, T0 + 620) == (4, 0, 2)


def test_an_id_already_queued_is_skipped_without_spending_a_token(r: redis.Redis) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(1000, per_minute=1, burst=3)
    first = [paused("ana", 0), paused("ana", 1)]
    assert box.push(first, limits, T0) == (2, 0, 0)
    assert box.push(first, limits, T0) == (0, 2, 0)
    # One token left of 3 (1/min refills nothing within the same second).
    assert box.push([paused("ana", 2), paused("ana", 3)], limits, T0) == (1, 0, 1)


def test_new_sessions_per_video_per_hour(r: redis.Redis) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(1000, sessions_per_hour=2)
    # Three tabs open v-600: two sessions let through, the third is past the quota.
    tabs = [initialized("ana", s) for s in ("t1", "t2", "t3")]
    assert box.push(tabs, limits, T0) == (2, 0, 1)
    # The first tab's initialized again (a later fold): queued already, skipped.
    assert box.push([tabs[0]], limits, T0 + 30) == (0, 1, 0)
    # A session let through ends; the refused one's end is refused too.
    assert box.push([terminated("ana", "t1"), terminated("ana", "t3")], limits, T0 + 60) == (
        1,
        0,
        1,
    )
    # Another video is another key; another student, another count.
    assert box.push([initialized("ana", "t4", "v-100")], limits, T0 + 60) == (1, 0, 0)
    assert box.push([initialized("bo", "t1")], limits, T0 + 60) == (1, 0, 0)
    # An hour after t1 and t2 were let through they no longer count: 2 new of 3 go in, and t2,
    # remembered, still ends.
    later = [initialized("ana", s) for s in ("t5", "t6", "t7")] + [terminated("ana", "t2")]
    assert box.push(later, limits, T0 + 3601) == (3, 0, 1)
    assert drops(r) == {"quota_session": 3}
    # Session statements take tokens too; event statements take no session.
    both = Limits(1000, per_minute=1, burst=1, sessions_per_hour=5)
    assert box.push([initialized("cy", "a"), paused("cy", 0)], both, T0) == (1, 0, 1)
    assert drops(r) == {"quota_session": 3, "quota_student": 1}


def test_other_entries_stop_at_the_bound_less_the_reserve_completions_at_the_bound(
    r: redis.Redis,
) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(10, reserved=3)
    # 10 - 3 = 7 places for statements other than `completed`.
    assert box.push([paused(f"s{i}", 0) for i in range(8)], limits, T0) == (7, 0, 1)
    # `completed` may use the 3 reserved: the fourth finds the outbox full.
    assert box.push([completed(f"s{i}") for i in range(4)], limits, T0) == (3, 0, 1)
    assert box.depth() == 10
    assert drops(r) == {"full": 1, "reserve_full": 1}


def test_webhooks_are_completions_and_use_the_whole_bound(r: redis.Redis) -> None:
    box = Outbox(r, WEBHOOK)
    limits = Limits(5, reserved=4, per_minute=1, burst=1, sessions_per_hour=1)
    events = [webhooks.material_completed("ana", "c-1", f"v-{i}", T0, 100.0) for i in range(6)]
    deliveries = [
        d
        for i, e in enumerate(events)
        for d in webhooks.deliveries(e, ["http://lms.test/h"], T0, {f"v-{i}": 1})
    ]
    # No quota stops them (one student, one token): 5 of 6 fill the whole bound.
    assert box.push(deliveries, limits, T0) == (5, 0, 1)
    assert drops(r, "webhook") == {"reserve_full": 1}


def test_quotas_are_judged_before_room_and_spend_what_passed(r: redis.Redis) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(3, per_minute=1, burst=5, sessions_per_hour=1)
    batch = [initialized("ana", "t1")] + [paused("ana", n) for n in range(6)]
    # t1: session 1 of 1, token 1 of 5, room 1 of 3. paused 0, 1: tokens 2, 3, room 2, 3.
    # paused 2, 3: tokens 4, 5, no room (full). paused 4, 5: no token left (quota_student).
    assert box.push(batch, limits, T0) == (3, 0, 4)
    # A second session: past the session quota, whatever the room.
    assert box.push([initialized("ana", "t2")], limits, T0) == (0, 0, 1)
    assert drops(r) == {"full": 2, "quota_student": 2, "quota_session": 1}


def test_limits_follow_the_settings() -> None:
    s = make_settings(
        "redis://127.0.0.1:1/0",
        "mongodb://127.0.0.1:1/unused",
        outbox_max_entries=1000,
        outbox_reserved_share=0.25,
        outbox_statements_per_minute=7,
        outbox_statements_burst=70,
        outbox_sessions_per_hour=3,
    )
    assert Limits.of(s) == Limits(1000, 250, 7, 70, 3)


# ---- an honest student never meets the defaults ------------------------------------------


def honest_session(session: str, t0: float) -> list[Heartbeat]:
    """A page load of a student who takes notes and scrubs: a play, a heartbeat every 10 s, a
    pause and a play again every 2 minutes, four seeks in a row at minute 5, the video's end
    and the page closing, 10 minutes in all."""
    readings: list[tuple[float, str | None]] = [(t0, "play")]
    for tick in range(1, 59):
        t = t0 + tick * 10
        readings.append((t, "pause" if tick % 12 == 0 else None))
        if tick % 12 == 0:
            readings.append((t + 5, "play"))
        if tick == 30:
            readings += [(t + 1 + k * 0.5, "seek") for k in range(4)]
    readings += [(t0 + 595, "ended"), (t0 + 596, "exit")]
    return [
        Heartbeat(t, t - t0, session_id=session, seq=seq, event=event)
        for seq, (t, event) in enumerate(readings)
    ]


def honest_hour(start: float, hour: int) -> list[Heartbeat]:
    """Six page loads of the video in an hour, one after the other."""
    return [hb for load in range(6) for hb in honest_session(f"h{hour}-{load}", start + 600 * load)]


def pushes(beats: list[Heartbeat], flush_s: float) -> list[tuple[float, list[OutboxEntry]]]:
    """What the flush would queue, one fold per `flush_s` of received heartbeats."""
    by_flush: dict[int, list[Heartbeat]] = {}
    for hb in beats:
        by_flush.setdefault(int((hb.received_at - T0) // flush_s), []).append(hb)
    out = []
    for n, group in sorted(by_flush.items()):
        found, _, _ = fold_statements(B, video("ana"), group, STATE)
        out.append((T0 + (n + 1) * flush_s, [entry("ana", st) for st in found]))
    return out


def test_an_honest_student_never_meets_the_default_quotas(r: redis.Redis) -> None:
    limits = Limits.of(make_settings("redis://127.0.0.1:1/0", "mongodb://127.0.0.1:1/unused"))
    box = Outbox(r, XAPI)
    hour = honest_hour(T0, 0)
    # Flushed as they come (every 30 s), for an hour.
    queued = 0
    for now, entries in pushes(hour, 30):
        added, _, dropped = box.push(entries, limits, now)
        queued += added
        assert dropped == 0
    # Per session: initialized, play, 4 pauses and 4 plays, 4 seeks, exit = 15.
    assert queued == 6 * 15
    # Ten hours of it waiting for the workers (an outage), then folded at once.
    r.flushdb()
    ten_hours = [hb for h in range(10) for hb in honest_hour(T0 + 3600 * h, h)]
    ((now, entries),) = pushes(ten_hours, 10 * 3600)
    assert box.push(entries, limits, now) == (10 * 6 * 15, 0, 0)
    assert drops(r) == {}


def test_erasure_forgets_what_the_quotas_remember(r: redis.Redis) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(1000, per_minute=60, burst=10, sessions_per_hour=1)
    batch = [initialized("ana", "t1"), initialized("ana", "t2", "v-100"), paused("ana", 0)]
    assert box.push(batch, limits, T0) == (3, 0, 0)
    # One material: its entries and sessions go (a new session of it is let through again), not
    # the other's. (These entries name no basis: the material's are erased whatever its version.)
    assert box.erase_student("ana", {"v-600": 1}, whole=False)[0] == 2
    assert box.push([initialized("ana", "t3")], limits, T0) == (1, 0, 0)
    assert box.push([initialized("ana", "t4", "v-100")], limits, T0) == (0, 0, 1)
    # The whole student: the bucket and every session are forgotten.
    box.erase_student("ana", {}, whole=True)
    assert r.exists(XAPI.quota("ana"), XAPI.sessions("ana")) == 0


def test_an_entry_an_erasure_refused_spends_no_quota(r: redis.Redis) -> None:
    box = Outbox(r, XAPI)
    limits = Limits(1000, per_minute=1, burst=1, sessions_per_hour=1)
    set_tombstones(r, "ana", {"v-600": 50}, 3600)
    # Made from state 49 of v-600, read before the erasure's cut (tombstone 50): refused,
    # and neither the session slot nor the one token is spent, nor any quota key written.
    stale = with_basis(initialized("ana", "t1"), 49)
    assert box.push([stale], limits, T0) == (0, 1, 0)
    assert r.exists(XAPI.quota("ana"), XAPI.sessions("ana"), XAPI.of("ana")) == 0
    # Made from state 51 (a heartbeat after the cut): the session and the token are there.
    fresh = with_basis(initialized("ana", "t2"), 51)
    assert box.push([fresh], limits, T0) == (1, 0, 0)
    members: list[bytes] = r.zrange(XAPI.sessions("ana"), 0, -1)  # type: ignore[assignment]
    assert [m.split(b"|")[0] for m in members] == [b"v-600"] and r.hexists(XAPI.quota("ana"), "t")
    assert r.smembers(XAPI.of("ana")) == {fresh.id.encode()}
    # Only now are both spent: a third session, or another statement, is past the quota.
    assert box.push([with_basis(initialized("ana", "t3"), 52)], limits, T0) == (0, 0, 1)
    assert box.push([with_basis(paused("ana", 0), 52)], limits, T0) == (0, 0, 1)
    assert drops(r) == {"quota_session": 1, "quota_student": 1}
