"""Verified watching: progress no client can forge (docs/verified-watching.md).

Three levels: the pure arithmetic with an adversary (hypothesis), the HTTP API in-process with a
moved clock (no sleeps), and the Procfile's real processes, where each forgery of the issue fails
to complete and honest real-time play completes. Expected values are worked out by hand or by a
small independent reference (`reference_observed`), never by the code under test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.app import create_app
from ingest.progress_service import ProgressService
from shared.clock import MockedClock
from shared.domain.progress import (
    TRUST_CLIENT,
    Heartbeat,
    StudentLedger,
    Verification,
    WatchState,
    budget_needed,
    fold,
    join_receipt,
)
from shared.settings import Settings
from tests.helpers import (
    COURSE,
    COURSE_ID,
    bearer,
    dirty_score,
    heartbeat,
    make_settings,
    wait_until,
)
from tests.stack import Stack, enroll, running_stack

T0 = 1_700_000_000.0


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


RATE, GAP = 2.0, 60.0
STRICT = Verification(max_rate=RATE, slack_s=0.0, gap_s=GAP)
THRESHOLD = 80.0
VIDEO: dict[str, Any] = {"duration": 600.0, "threshold": THRESHOLD, "verification": STRICT}
PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def reference_observed(receipts: list[float], gap: float) -> float:
    """Seconds between consecutive distinct receipts that are no more than `gap` apart."""
    times = sorted({round(r, 3) for r in receipts})
    return sum(b - a for a, b in zip(times, times[1:], strict=False) if b - a <= gap)


def metered(
    items: list[tuple[str, Heartbeat]],
    duration: float = 600.0,
    verification: Verification = STRICT,
    known: dict[str, WatchState] | None = None,
) -> list[tuple[str, Heartbeat]]:
    """(material, heartbeat) pairs stamped with their key's grant as the ingest script would:
    in the order they were received, each asking what its key needs given the key's state so
    far, from one student's ledger. Returned in the order given."""
    ledger, states = StudentLedger(), {m: WatchState() for m, _ in items} | (known or {})
    granted: dict[str, float] = {}
    stamped: list[tuple[str, Heartbeat]] = list(items)
    for i in sorted(range(len(items)), key=lambda i: items[i][1].received_at):
        material, hb = items[i]
        need = budget_needed(states.get(material), [hb], duration)
        granted[material] = round(
            granted.get(material, 0.0) + ledger.grant(hb.received_at, need, verification), 3
        )
        stamped[i] = (material, replace(hb, grant=("e1", granted[material])))
        states[material] = fold(
            states.get(material),
            [stamped[i][1]],
            duration=duration,
            threshold=THRESHOLD,
            verification=verification,
        )
    return stamped


def stamp(
    hbs: list[Heartbeat], verification: Verification = STRICT, base: WatchState | None = None
) -> list[Heartbeat]:
    """One key's heartbeats, stamped as the ingest script would (`metered`)."""
    known = {"m": base} if base else None
    return [hb for _, hb in metered([("m", hb) for hb in hbs], 600.0, verification, known)]


def claim(received: float, ranges: list[tuple[float, float]], **extra: Any) -> Heartbeat:
    return Heartbeat(received_at=T0 + received, watch_time=0.0, played=tuple(ranges), **extra)


# -- the pure arithmetic, with an adversary ---------------------------------------------------

ranges_st = st.lists(
    st.tuples(st.floats(-50, 700), st.floats(0, 300)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=4,
)
adversary_st = st.builds(
    lambda r, ranges, ts, session, seq: Heartbeat(
        received_at=T0 + r,
        watch_time=0.0,
        client_ts=T0 + ts,
        session_id=session,
        seq=seq,
        played=tuple(ranges),
    ),
    st.floats(0, 3000),  # server receive times: at most 50 chains 60 s apart fit in here
    ranges_st,
    st.floats(-1e6, 1e6),  # backdated, future, anything: the player's clock is never used
    st.sampled_from([f"s{i}" for i in range(20)]),  # many parallel sessions
    st.integers(0, 10**6),
)


@PROPS
@given(st.lists(adversary_st, min_size=1, max_size=40))
def test_property_whatever_is_claimed_the_credit_stays_within_the_budget(
    hbs: list[Heartbeat],
) -> None:
    state = fold(None, stamp(hbs), duration=600.0, threshold=THRESHOLD, verification=STRICT)
    observed = reference_observed([h.received_at for h in hbs], GAP)
    slack = RATE * 0.001  # receive times and figures are kept to the millisecond
    assert state.watched_seconds <= RATE * observed + slack
    assert state.progress <= (RATE * observed + slack) / 600.0 * 100.0 + 5e-4
    if state.completed:  # 80 % of a 10-minute video needs 480 / rate seconds of sending
        assert observed >= 480.0 / RATE - 0.001


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.floats(0, 40_000), ranges_st), min_size=60, max_size=120))
def test_property_the_bound_holds_past_the_banked_chains(
    receipts: list[tuple[float, list[tuple[float, float]]]],
) -> None:
    # Sittings spread over 11 hours: more than MAX_CHAINS chains, so the oldest are banked.
    hbs = [claim(r, ranges) for r, ranges in receipts]
    state = fold(None, stamp(hbs), duration=600.0, threshold=THRESHOLD, verification=STRICT)
    observed = reference_observed([h.received_at for h in hbs], GAP)
    assert state.observed_seconds <= observed + 1e-3  # banking only ever counts less
    assert state.watched_seconds <= RATE * (observed + 1e-3)  # (receive times kept to 1 ms)


@PROPS
@given(st.lists(adversary_st, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_property_permutations_and_duplicates_credit_the_same(
    hbs: list[Heartbeat], rnd: Any
) -> None:
    stamped = stamp(hbs)  # stamped once, as they were received; then delivered in any order
    expected = fold(None, stamped, duration=600.0, threshold=THRESHOLD, verification=STRICT)
    shuffled = stamped + rnd.sample(stamped, k=min(len(stamped), 5))  # some delivered twice
    rnd.shuffle(shuffled)
    got = fold(None, shuffled, duration=600.0, threshold=THRESHOLD, verification=STRICT)
    assert got.watched_seconds == expected.watched_seconds
    assert got.unverified_seconds == expected.unverified_seconds
    assert (got.progress, got.completed) == (expected.progress, expected.completed)
    assert got.observed_seconds == expected.observed_seconds


@PROPS
@given(st.lists(st.floats(0, 239.9), min_size=1, max_size=200))
def test_property_a_forger_cannot_complete_ten_minutes_in_under_four(
    receipts: list[float],
) -> None:
    # Every request claims the whole video, from any number of sessions: within 240 s of
    # real time (480 s / rate 2) it never completes.
    hbs = [claim(r, [(0, 600)], session_id=f"s{i % 20}") for i, r in enumerate(receipts)]
    state = fold(None, stamp(hbs), duration=600.0, threshold=THRESHOLD, verification=STRICT)
    assert not state.completed
    span = max(receipts) - min(receipts)
    assert state.watched_seconds <= RATE * (span + 0.001)  # receive times are kept to 1 ms


materials_st = st.sampled_from([f"m{i}" for i in range(10)])


crowded_st = st.tuples(  # three tabs on three videos within five minutes
    st.sampled_from(["m0", "m1", "m2"]),
    adversary_st.map(lambda h: replace(h, received_at=T0 + (h.received_at - T0) % 300)),
)


@PROPS
@given(st.lists(crowded_st, min_size=10, max_size=60))
def test_property_over_all_materials_the_student_earns_what_one_player_could(
    items: list[tuple[str, Heartbeat]],
) -> None:
    # Ten tabs on ten videos, each claiming anything at any time: their credits together stay
    # within rate x the student's observed time, and each within its own key's bound.
    stamped = metered(items)
    total = 0.0
    for material in {m for m, _ in items}:
        hbs = [hb for m, hb in stamped if m == material]
        state = fold(None, hbs, duration=600.0, threshold=THRESHOLD, verification=STRICT)
        own = reference_observed([h.received_at for h in hbs], GAP)
        assert state.watched_seconds <= RATE * own + 0.001 * len(hbs)
        total += state.watched_seconds
    observed = reference_observed([hb.received_at for _, hb in items], GAP)
    assert total <= RATE * observed + 0.001 * len(items)


@PROPS
@given(
    st.lists(st.tuples(materials_st, st.floats(0, 300), st.sampled_from(["pause", "seek"]))),
    st.randoms(use_true_random=False),
)
def test_property_idle_tabs_spend_nothing_of_an_honest_players_budget(
    idle: list[tuple[str, float, str]], rnd: Any
) -> None:
    honest = [("h", claim(0, [], event="play"))] + [
        ("h", claim(t, [(t - 10, t)])) for t in range(10, 310, 10)
    ]
    noise = [(m, claim(r, [], event=event)) for m, r, event in idle]
    stamped = metered(honest + noise)
    mine = [hb for m, hb in stamped if m == "h"]
    rnd.shuffle(mine)  # and delivered in any order
    state = fold(None, mine, duration=600.0, threshold=THRESHOLD, verification=STRICT)
    assert (state.watched_seconds, state.unverified_seconds) == (300.0, 0.0)


@PROPS
@given(st.lists(st.tuples(materials_st, adversary_st), min_size=1, max_size=30))
def test_property_duplicates_of_heartbeats_taken_change_no_credit(
    items: list[tuple[str, Heartbeat]],
) -> None:
    # Delivered again inside the pipeline (a retried fold, a takeover): the same stamps.
    stamped = metered(items)
    for material in {m for m, _ in items}:
        hbs = [hb for m, hb in stamped if m == material]
        once = fold(None, hbs, **VIDEO)
        twice = fold(None, hbs + hbs[::-1], **VIDEO)
        assert twice.watched_seconds == once.watched_seconds
        assert twice.granted_seconds == once.granted_seconds


def test_ten_tabs_on_ten_videos_earn_what_one_player_could() -> None:
    # The forgery: a course of ten 60-s videos, each claimed whole in its own tab every
    # 4 s. Per video that completed all ten in 32 s; per student it earns 2 s a second.
    items = [
        (f"m{i}", claim(t + i * 0.01, [(0, 60)], session_id=f"tab{i}"))
        for t in range(0, 36, 4)
        for i in range(10)
    ]
    stamped = metered(items, duration=60.0)
    minute = {**VIDEO, "duration": 60.0}
    states = [fold(None, [hb for m, hb in stamped if m == f"m{i}"], **minute) for i in range(10)]
    span = 32.09  # the first receipt at 0, the last at 32 + 0.09
    assert sum(s.watched_seconds for s in states) <= RATE * span
    assert sum(s.completed for s in states) <= int(RATE * span // 48)  # 80 % of 60 s: 48 s


def test_honest_play_at_one_and_two_times_is_credited_in_full() -> None:
    # A play heartbeat at start, then one every 10 s of real time, each with what it played.
    for speed in (1.0, 2.0):
        hbs = [claim(0, [])]
        for t in range(10, 310, 10):
            hbs.append(claim(t, [((t - 10) * speed, t * speed)]))
        state = fold(None, stamp(hbs), duration=600.0, threshold=THRESHOLD, verification=STRICT)
        assert state.watched_seconds == 300 * speed  # budget 2 x 300 s covers both speeds
        assert state.unverified_seconds == 0.0


def test_a_silence_longer_than_the_gap_is_not_observed() -> None:
    hbs = [claim(0, []), claim(10, [(0, 10)]), claim(20, [(10, 20)]), claim(100, [(20, 600)])]
    state = fold(None, stamp(hbs), duration=600.0, threshold=THRESHOLD, verification=STRICT)
    assert state.observed_seconds == 20.0  # 20 -> 100 is 80 s > 60 s: not counted
    assert state.watched_seconds == 40.0 and state.unverified_seconds == 560.0


def test_the_slack_and_the_rate_are_the_budget() -> None:
    loose = Verification(max_rate=1.5, slack_s=20.0, gap_s=GAP)
    hbs = [claim(0, []), claim(30, [(0, 600)])]
    state = fold(None, stamp(hbs, loose), duration=600.0, threshold=THRESHOLD, verification=loose)
    assert state.watched_seconds == 1.5 * 30 + 20  # 65 of the 600 claimed


def test_rate_zero_trusts_the_client_as_before() -> None:
    state = fold(None, [claim(0, [(0, 600)])], duration=600.0, threshold=THRESHOLD)
    assert TRUST_CLIENT.trusted and state.watched_seconds == 600.0 and state.completed


def test_later_watching_credits_earlier_unverified_seconds() -> None:
    # An outbox delivered after a long outage: unverified at first, credited as play goes on.
    hbs = [claim(0, []), claim(10, [(0, 10)]), claim(400, [(10, 100)])]
    later = [claim(400 + t, [(100 + t - 10, 100 + t)]) for t in range(10, 70, 10)]
    stamped = stamp(hbs + later)
    state = fold(None, stamped[:3], duration=600.0, threshold=THRESHOLD, verification=STRICT)
    assert (state.watched_seconds, state.unverified_seconds) == (20.0, 80.0)
    state = fold(state, stamped[3:], duration=600.0, threshold=THRESHOLD, verification=STRICT)
    # observed 10 + 60 s: a budget of 140 s of the 160 claimed; the rest credits as play goes on
    assert (state.watched_seconds, state.unverified_seconds) == (140.0, 20.0)


def test_receipts_join_into_chains_in_any_order() -> None:
    chains: list[list[float]] = []
    for r in (100.0, 0.0, 50.0, 200.0, 160.0, 0.0):
        join_receipt(chains, r, 60.0)
    # 0-50-100-160-200: every step <= 60 s, one chain; order and the repeat did not matter
    assert chains == [[0.0, 200.0]]
    apart: list[list[float]] = []
    for r in (0.0, 100.0, 30.0):
        join_receipt(apart, r, 60.0)
    assert apart == [[0.0, 30.0], [100.0, 100.0]]
    join_receipt(apart, 65.0, 60.0)  # within 60 s of both: bridges them
    assert apart == [[0.0, 100.0]]


def test_states_from_before_verified_watching_keep_their_credit() -> None:
    old = {"position": 500.0, "covered": [[0, 500]], "progress": 83.333, "completed": True}
    state = WatchState.from_dict(old)
    assert state.watched_seconds == 500.0 and state.legacy_credit == 500.0
    after = fold(
        state,
        stamp([claim(0, [(500, 600)])], base=state),
        duration=600.0,
        threshold=THRESHOLD,
        verification=STRICT,
    )
    assert after.watched_seconds == 500.0 and after.unverified_seconds == 100.0
    assert after.completed and after.progress == 83.333


def test_the_last_reported_playback_rate_is_kept_never_trusted() -> None:
    hbs = [
        claim(0, [], client_ts=T0 + 0, playback_rate=1.0),
        claim(10, [(0, 600)], client_ts=T0 + 10, playback_rate=16.0),
    ]
    state = fold(None, stamp(hbs), duration=600.0, threshold=THRESHOLD, verification=STRICT)
    assert state.playback_rate == 16.0 and state.watched_seconds == 20.0  # rate 2 x 10 s


# -- through the HTTP API, in-process, with a moved clock --------------------------------------


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(T0)


@pytest.fixture
def client(redis_url: str, mongo_url: str, clock: MockedClock) -> Iterator[TestClient]:
    strict = make_settings(redis_url, mongo_url, max_playback_rate=RATE, viewing_gap_s=GAP)
    with TestClient(create_app(strict, clock=clock)) as c:
        admin = bearer(strict, "admin", "admin", now=clock.time())
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code < 300
        put = c.put(f"/api/courses/{COURSE_ID}/enrollments/s-ana", headers=admin)
        assert put.status_code < 300
        c.headers.update(bearer(strict, "s-ana", now=clock.time()))
        yield c


def watch(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post("/api/progress/video/v-100/watch-time", json=body)
    assert r.status_code == 202, r.text
    reply: dict[str, Any] = r.json()
    return reply


def test_one_request_claiming_the_whole_video_completes_nothing(client: TestClient) -> None:
    reply = watch(client, **heartbeat(100, played=[[0, 100]], session_id="x"))
    assert reply["completed"] is False and reply["watched_seconds"] == 0.0
    status = client.get("/api/progress/video/v-100/status").json()
    assert status["unverified_seconds"] == 100.0 and status["progress_percentage"] == 0.0


def test_honest_play_completes_as_the_clock_moves(client: TestClient, clock: MockedClock) -> None:
    watch(client, **heartbeat(0, played=[], session_id="p", seq=0, playback_rate=1))
    for t in range(10, 110, 10):
        clock.advance(10)
        reply = watch(client, **heartbeat(t, played=[[t - 10, t]], session_id="p", seq=t))
        assert reply["watched_seconds"] == t  # credited as it is played, never ahead
    assert reply["completed"] is True
    status = client.get("/api/progress/video/v-100/status").json()
    assert status["unverified_seconds"] == 0.0 and status["playback_rate"] == 1.0


def test_a_backdated_batch_is_credited_by_when_it_arrived(
    client: TestClient, clock: MockedClock
) -> None:
    items = [
        {
            "material_id": "v-100",
            **heartbeat(
                t,
                played=[[t - 5, t]],
                session_id="b",
                seq=t,
                client_ts=iso(T0 - 86400 + t),  # a day back (within MAX_CLIENT_AGE_S)
            ),
        }
        for t in range(5, 105, 5)
    ]
    r = client.post("/api/progress/heartbeats", json={"heartbeats": items})
    assert r.status_code == 202 and all(x["accepted"] for x in r.json()["results"])
    clock.advance(30)  # half a minute later, one more heartbeat: 30 s observed, 60 s budget
    reply = watch(client, **heartbeat(100, played=[], session_id="b", seq=200))
    assert reply["watched_seconds"] == 60.0 and reply["completed"] is False


CAP = RATE * GAP  # the unspent budget kept (slack 0): 120 s


def batch(client: TestClient, items: list[dict[str, Any]]) -> None:
    r = client.post("/api/progress/heartbeats", json={"heartbeats": items})
    assert r.status_code == 202 and all(x["accepted"] for x in r.json()["results"]), r.text


def watched(client: TestClient, video: str) -> float:
    return float(client.get(f"/api/progress/video/{video}/status").json()["watched_seconds"])


def idle(video: str, total: float) -> dict[str, Any]:
    """A heartbeat that plays nothing (a position, no range, no event): it claims nothing."""
    return {"material_id": video, **heartbeat(0, total, session_id="s")}


def whole(video: str, total: float) -> dict[str, Any]:
    return {"material_id": video, **heartbeat(total, total, session_id="s", played=[[0, total]])}


# Seven minutes of heartbeats that claim nothing, then one request claiming two whole videos:
# the student may gain at most rate x the stretch + the cap (docs/verified-watching.md). Through
# the batch route (no state of the key: it asked for a whole video each time) the idle
# heartbeats moved the budget into their keys, past the cap, and the last request was credited
# 700 s in 10 s, completing both.
@pytest.mark.parametrize("idling", ["batch route", "watch-time route"])
def test_idle_heartbeats_bank_no_budget_past_the_cap(
    client: TestClient, clock: MockedClock, idling: str
) -> None:
    for i in range(15):
        if i:
            clock.advance(30)
        order = [idle("v-600", 600), idle("v-100", 100)]
        for item in order if i < 12 else order[::-1]:  # the last ones: v-100 first
            if idling == "batch route":
                batch(client, [item])
            else:
                body = {k: v for k, v in item.items() if k != "material_id"}
                url = f"/api/progress/video/{item['material_id']}/watch-time"
                assert client.post(url, json=body).status_code == 202
    assert watched(client, "v-100") == watched(client, "v-600") == 0.0
    before = clock.time()
    clock.advance(10)
    batch(client, [whole("v-600", 600), whole("v-100", 100)])
    gained = watched(client, "v-100") + watched(client, "v-600")
    assert 0 < gained <= RATE * (clock.time() - before) + CAP


# A batch that claims the same seconds again and again (no state of the key in the process)
# asks for them once: the script takes off what the key was granted already.
def test_a_batch_claiming_the_same_seconds_again_banks_nothing(
    client: TestClient, clock: MockedClock
) -> None:
    for i in range(15):
        if i:
            clock.advance(30)
        batch(client, [{"material_id": "v-600", **heartbeat(50, 600, session_id="s",
                                                              played=[[0, 50]])}])  # fmt: skip
    assert watched(client, "v-600") == 50.0  # credited once its 50 s were granted
    before = clock.time()
    clock.advance(10)
    batch(client, [whole("v-600", 600)])
    gained = watched(client, "v-600") - 50.0
    assert 0 < gained <= RATE * (clock.time() - before) + CAP


# An honest player whose heartbeats all go through the batch route (the tracker's offline
# outbox, or a client that batches), playing in real time: credited as it plays. (A version of
# the fix above asked, for every batch, without a state: its own seconds less the key's whole
# grant, so nothing after the first batch was granted.)
def test_an_honest_player_on_the_batch_route_is_credited_in_full(
    client: TestClient, clock: MockedClock
) -> None:
    batch(client, [{"material_id": "v-100", **heartbeat(0, played=[], session_id="p", seq=0)}])
    for t in range(10, 110, 10):
        clock.advance(10)
        hb = heartbeat(t, played=[[t - 10, t]], session_id="p", seq=t, playback_rate=1)
        batch(client, [{"material_id": "v-100", **hb}])
    # Read once, at the end: a status read in between would leave a state in the cache.
    assert watched(client, "v-100") == 100.0


# The batch route folds each key's state after buffering its heartbeats, only to cache it: a
# state that cannot be made (here: the fold raises) leaves the batch accepted, not a 500 for
# heartbeats already buffered.
def test_a_state_the_batch_route_cannot_make_leaves_the_batch_accepted(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("a state that cannot be made")

    monkeypatch.setattr(ProgressService, "_fold_view", broken)
    batch(client, [{"material_id": "v-100", **heartbeat(5, played=[[0, 5]], session_id="p")}])
    monkeypatch.undo()
    status = client.get("/api/progress/video/v-100/status").json()
    assert status["watch_time"] == 5.0  # buffered all the same


# -- the Procfile's real processes: each forgery of the issue fails, honest play completes ------

SHORT = 16.0  # seconds: honest real-time play of it is the slowest part of this module


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    course = json.loads(json.dumps(COURSE))
    course["modules"][0]["materials"].append(
        {"material_id": "v-short", "title": "Short", "type": "video", "duration": SHORT}
    )
    course["modules"].append(  # the forged course: ten one-minute videos
        {
            "module_id": "tabs",
            "title": "Ten tabs",
            "materials": [
                {"material_id": f"v-tab-{i}", "title": f"Tab {i}", "type": "video", "duration": 60}
                for i in range(10)
            ],
        }
    )
    catalog = Path(tmp_path_factory.mktemp("catalog")) / "catalog.json"
    catalog.write_text(json.dumps({"courses": [{"course_id": COURSE_ID, **course}]}))
    yield from running_stack(tmp_path_factory, catalog_file=catalog, max_playback_rate=None)


def send(stack: Stack, headers: dict[str, str], video: str, **body: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{stack.url}/api/progress/video/{video}/watch-time",
        json=body,
        headers=headers,
        timeout=15,
    )
    assert r.status_code == 202, r.text
    reply: dict[str, Any] = r.json()
    return reply


def status(stack: Stack, headers: dict[str, str], video: str) -> dict[str, Any]:
    r = httpx.get(f"{stack.url}/api/progress/video/{video}/status", headers=headers, timeout=15)
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def stored_when_flushed(stack: Stack, student: str, video: str) -> dict[str, Any]:
    doc: dict[str, Any] = {}

    def flushed() -> bool:  # clean first, then read: a doc read before a last flush is stale
        if dirty_score(stack.redis_client(), student, video) is not None:
            return False
        found = stack.db().watch_progress.find_one({"_id": f"{video}|{student}"})
        if found is None:
            return False
        doc.update(found)
        return True

    wait_until(flushed, timeout_s=30)
    return doc


def assert_not_completed_anywhere(stack: Stack, student: str, headers: dict[str, str]) -> None:
    st = status(stack, headers, "v-600")
    assert st["completed"] is False and st["unverified_seconds"] > 0
    doc = stored_when_flushed(stack, student, "v-600")
    assert not doc["completed"] and doc["watched_seconds"] == st["watched_seconds"]
    enrollment = stack.db().enrollments.find_one({"_id": f"{COURSE_ID}|{student}"})
    assert "v-600" not in (enrollment or {}).get("completed_materials", [])


@pytest.mark.system
def test_forgery_one_request_claiming_the_whole_video(stack: Stack) -> None:
    headers = enroll(stack, "forger-1")
    reply = send(stack, headers, "v-600", watch_time=600, total_duration=600, played=[[0, 600]])
    assert reply["completed"] is False
    assert_not_completed_anywhere(stack, "forger-1", headers)


@pytest.mark.system
def test_forgery_a_backdated_history_through_the_batch_route(stack: Stack) -> None:
    headers = enroll(stack, "forger-2")
    items = [
        {
            "material_id": "v-600",
            "watch_time": t,
            "total_duration": 600,
            "session_id": "h",
            "seq": t,
            "played": [[t - 10, t]],
            "client_ts": iso(time.time() - 86400 + t),  # a day back, within MAX_CLIENT_AGE_S
        }
        for t in range(10, 610, 10)
    ]
    r = httpx.post(
        f"{stack.url}/api/progress/heartbeats",
        json={"heartbeats": items},
        headers=headers,
        timeout=15,
    )
    assert r.status_code == 202 and all(x["accepted"] for x in r.json()["results"])
    assert_not_completed_anywhere(stack, "forger-2", headers)


@pytest.mark.system
def test_forgery_twenty_parallel_sessions(stack: Stack) -> None:
    headers = enroll(stack, "forger-3")
    for i in range(20):  # each session claims its own 30 s, all at once
        send(
            stack,
            headers,
            "v-600",
            watch_time=30 * (i + 1),
            total_duration=600,
            session_id=f"tab-{i}",
            seq=1,
            played=[[30 * i, 30 * (i + 1)]],
        )
    assert_not_completed_anywhere(stack, "forger-3", headers)


@pytest.mark.system
def test_forgery_replaying_an_honest_history(stack: Stack) -> None:
    headers = enroll(stack, "forger-4")
    honest = [
        {
            "watch_time": t,
            "total_duration": 600,
            "session_id": "rec",
            "seq": t // 10,
            "played": [[t - 10, t]],
            "client_ts": iso(time.time() - 86400 + t),  # recorded a day ago
        }
        for t in range(10, 610, 10)
    ]
    for _ in range(2):  # a recorded real session, replayed twice as fast as it can go
        for body in honest:
            send(stack, headers, "v-600", **body)
    assert_not_completed_anywhere(stack, "forger-4", headers)


def forge_ten_tabs(stack: Stack, headers: dict[str, str], stop: threading.Event) -> float:
    """Claim each of the ten one-minute videos whole, from a tab of its own, every 4 s, until
    `stop`; return the wall time from the first request sent to the last reply."""
    started = time.monotonic()
    while not stop.is_set():
        for i in range(10):
            claim_all = {"watch_time": 60, "total_duration": 60, "played": [[0, 60]]}
            send(stack, headers, f"v-tab-{i}", session_id=f"tab-{i}", **claim_all)
        stop.wait(4)
    return time.monotonic() - started


@pytest.mark.system
def test_ten_forging_tabs_against_one_honest_tab(stack: Stack) -> None:
    # While one student plays a video honestly in real time, another claims ten whole videos
    # from ten tabs every 4 s (per video, that completed all ten in 32 s). The forger earns at
    # most what one player at the top rate could in the time it kept sending.
    forger = enroll(stack, "forger-tabs")
    stop = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        span = pool.submit(forge_ten_tabs, stack, forger, stop)
        try:
            honest_real_time_play(stack)
        finally:
            stop.set()
        elapsed = span.result()
    credited = [status(stack, forger, f"v-tab-{i}") for i in range(10)]
    assert sum(st["watched_seconds"] for st in credited) <= RATE * elapsed
    assert not any(st["completed"] for st in credited)  # 2 x ~16 s < the 48 s of one video
    for i, shown in enumerate(credited):
        doc = stored_when_flushed(stack, "forger-tabs", f"v-tab-{i}")
        assert doc["watched_seconds"] == shown["watched_seconds"]
        assert doc["unverified_seconds"] == shown["unverified_seconds"] > 0


def honest_real_time_play(stack: Stack) -> None:
    """One tab plays the short video at 1x in real time; it completes, credited in full, and
    what MongoDB stores is what the student was shown."""
    headers = enroll(stack, "honest-1")
    send(
        stack,
        headers,
        "v-short",
        watch_time=0,
        total_duration=SHORT,
        session_id="p",
        seq=0,
        played=[],
    )  # the tracker's heartbeat at play
    started = time.monotonic()
    for step in range(1, 5):  # a heartbeat every 4 s of real time, at 1x
        time.sleep(max(0.0, started + 4 * step - time.monotonic()))
        t = 4.0 * step
        reply = send(
            stack,
            headers,
            "v-short",
            watch_time=t,
            total_duration=SHORT,
            session_id="p",
            seq=step,
            played=[[t - 4, t]],
        )
    assert reply["completed"] is True and reply["watched_seconds"] == SHORT
    shown = status(stack, headers, "v-short")
    doc = stored_when_flushed(stack, "honest-1", "v-short")
    assert doc["completed"]  # (the stand-in returns booleans as 0/1)
    assert doc["watched_seconds"] == shown["watched_seconds"] == SHORT
    assert doc["progress_percentage"] == shown["progress_percentage"] == 100.0
    assert doc["unverified_seconds"] == shown["unverified_seconds"] == 0.0


def test_settings_default_to_the_bound_on() -> None:
    defaults = Settings(_env_file=None, environment="development")
    assert defaults.verification == Verification(max_rate=2.0, slack_s=0.0, gap_s=60.0)


def test_forged_ranges_do_not_move_the_retention_curve() -> None:
    from shared.domain.analytics import retention

    honest = ([[0.0, 50.0]], 1.0)  # watched the first half, all of it credited
    forger = ([[0.0, 100.0]], 0.1)  # claims everything, a tenth of it credited
    curve = retention(100.0, [honest, forger], buckets=2)
    assert [b["share"] for b in curve] == [0.5, 0.0]  # only the honest half counts
    trusted = retention(100.0, [honest, ([[0.0, 100.0]], 1.0)], buckets=2)
    assert [b["share"] for b in trusted] == [1.0, 0.5]


def _retention_by_definition(
    duration: float, viewers: list[tuple[list[list[float]], float]], buckets: int
) -> list[float]:
    """Each slice against each viewer's every range: the curve's definition, in full."""
    width, shares = duration / buckets, []
    for i in range(buckets):
        start, end = i * width, (i + 1) * width
        enough = sum(1 for ranges, share in viewers
                     if share * sum(max(0.0, min(b, end) - max(a, start)) for a, b in ranges)
                     >= (end - start) / 2)  # fmt: skip
        shares.append(round(enough / len(viewers), 4) if viewers else 0.0)
    return shares


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.floats(1.0, 7200.0),
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.floats(-10, 7300), st.floats(0, 900)), max_size=12),
            st.floats(0.0, 1.0),
        ),
        max_size=8,
    ),
    st.integers(1, 300),
)
def test_the_retention_curve_is_its_definition_however_it_is_summed(
    duration: float, raw: list[tuple[list[tuple[float, float]], float]], buckets: int
) -> None:
    """`retention` adds a viewer's ranges only to the slices they touch (viewers x (ranges +
    slices) instead of viewers x ranges x slices): the shares are exactly the definition's."""
    from shared.domain.analytics import retention

    viewers = [([[a, a + length] for a, length in ranges], share) for ranges, share in raw]
    got = [b["share"] for b in retention(duration, viewers, buckets)]
    assert got == _retention_by_definition(duration, viewers, buckets)
