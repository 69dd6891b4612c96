"""One student floods the xAPI outbox, with the Procfile's real processes and Ralph's LRS: many
tabs of one video, each a new session full of player events, every request accepted. The LRS
is away meanwhile, so the outbox only fills. The flooder gets no more than the quotas allow,
the outbox stops other statements at its bound less the reserve, and both the flooder's and
another student's `completed` still reach the LRS; /metrics says what was dropped and why.

The limits are small so that every figure can be worked out by hand: an outbox of 40 with a
quarter kept for completions (30 for other statements), a bucket of 36 statements refilled at
one a minute, 4 new sessions per (student, video) per hour."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.devtools.services import free_port
from shared.integrations.xapi import EXT, VERBS
from tests.helpers import buffered, wait_until
from tests.lrs import LRS_PASSWORD, LRS_USER, RalphLRS
from tests.stack import Stack, enroll, running_stack

pytestmark = pytest.mark.system

MAX, ROOM, BURST, PER_MINUTE, SESSIONS = 40, 30, 36, 1, 4
TABS = 24
# Each tab: initialized, then play, seek, pause, play, seek (five events), then exit
# (terminated): seven statements, two of them the session's.
TAB_EVENTS = ["play", "seek", "pause", "play", "seek", "exit"]


@pytest.fixture(scope="module")
def lrs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RalphLRS]:
    # Started by the test (away at first); the stack is told its port before.
    server = RalphLRS(tmp_path_factory.mktemp("ralph"), port=free_port())
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lrs: RalphLRS) -> Iterator[Stack]:
    env = {
        "XAPI_LRS_URL": lrs.base_url,
        "XAPI_LRS_USERNAME": LRS_USER,
        "XAPI_LRS_PASSWORD": LRS_PASSWORD,
        "OUTBOX_TICK_S": "1",
        "OUTBOX_RETRY_BASE_S": "1",
        "OUTBOX_RETRY_MAX_S": "2",
        "OUTBOX_MAX_ENTRIES": str(MAX),
        "OUTBOX_RESERVED_SHARE": str((MAX - ROOM) / MAX),
        "OUTBOX_STATEMENTS_PER_MINUTE": str(PER_MINUTE),
        "OUTBOX_STATEMENTS_BURST": str(BURST),
        "OUTBOX_SESSIONS_PER_HOUR": str(SESSIONS),
    }
    yield from running_stack(tmp_path_factory, extra_env=env)


def tab(stack: Stack, headers: dict[str, str], n: int) -> list[int]:
    """One tab of v-600: its own session, a heartbeat per player event; the statuses."""
    url = f"{stack.url}/api/progress/video/v-600/watch-time"
    statuses = []
    with httpx.Client(timeout=15) as client:
        for seq, event in enumerate(TAB_EVENTS):
            body = {
                "watch_time": seq + 1,
                "total_duration": 600,
                "session_id": f"tab-{n}",
                "seq": seq,
                "played": [[seq, seq + 1]],
                "event": event,
            }
            statuses.append(client.post(url, json=body, headers=headers).status_code)
    return statuses


def complete_v100(stack: Stack, headers: dict[str, str], session: str) -> None:
    url = f"{stack.url}/api/progress/video/v-100/watch-time"
    bodies = [
        {"watch_time": 0, "session_id": session, "seq": 0, "event": "play"},
        {"watch_time": 85, "session_id": session, "seq": 1, "played": [[0, 85]], "event": "pause"},
    ]
    for body in bodies:
        r = httpx.post(url, json={"total_duration": 100, **body}, headers=headers, timeout=15)
        assert r.status_code == 202, r.text


def outbox_depth(stack: Stack) -> int:
    return int(httpx.get(f"{stack.url}/readyz", timeout=10).json()["outbox"]["xapi"])


def dropped(stack: Stack) -> dict[str, float]:
    text = httpx.get(f"{stack.url}/metrics", timeout=10).text
    family = next(f for f in text_string_to_metric_families(text) if f.name.endswith("dropped"))
    return {
        s.labels["reason"]: s.value
        for s in family.samples
        if s.labels["outbox"] == "xapi" and s.name.endswith("_total")
    }


def verb(statement: dict[str, Any]) -> str:
    return str(statement["verb"]["id"])


def test_a_flooding_student_cannot_keep_completed_statements_from_the_lrs(
    stack: Stack, lrs: RalphLRS
) -> None:
    mal, ana = enroll(stack, "mal"), enroll(stack, "ana")
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        statuses = [s for got in pool.map(lambda n: tab(stack, mal, n), range(TABS)) for s in got]
    assert statuses == [202] * TABS * len(TAB_EVENTS)  # the quotas never refuse a heartbeat
    buffer = stack.redis_client()
    wait_until(lambda: buffered(buffer) == (0, 0), timeout_s=30)
    # Offered: 4 sessions let through x 7 + 20 refused sessions x 5 events = 128 statements
    # past the session quota, of which the bucket lets 36 (and a token a minute) through: the
    # first 30 fill the room, the rest are dropped as full.
    assert outbox_depth(stack) == ROOM

    complete_v100(stack, ana, "ana-tab")
    complete_v100(stack, mal, "mal-tab")
    # The two `completed` go into the reserve; ana's three other statements find no room.
    wait_until(lambda: outbox_depth(stack) == ROOM + 2, timeout_s=30)
    minutes = (time.monotonic() - started) / 60

    lrs.start()
    wait_until(lambda: outbox_depth(stack) == 0, timeout_s=60)
    stored = lrs.statements()
    of = {s: [x for x in stored if x["actor"]["account"]["name"] == s] for s in ("ana", "mal")}
    assert [(verb(s), s["object"]["id"].rsplit("/", 1)[1]) for s in of["ana"]] == [
        (VERBS["completed"], "v-100")
    ]
    mal_completed = [s for s in of["mal"] if verb(s) == VERBS["completed"]]
    assert [s["object"]["id"].rsplit("/", 1)[1] for s in mal_completed] == ["v-100"]
    assert len(of["mal"]) == ROOM + 1 and len(stored) == ROOM + 2
    # At most 4 of the 24 tabs' sessions have their initialized or terminated in the LRS.
    session_verbs = {VERBS["initialized"], VERBS["terminated"]}
    sessions = {
        s["context"]["extensions"][EXT + "session-id"]
        for s in of["mal"]
        if verb(s) in session_verbs and s["object"]["id"].endswith("/v-600")
    }
    assert 1 <= len(sessions) <= SESSIONS

    drops = dropped(stack)
    assert drops["reserve_full"] == 0
    # 20 refused sessions, each an initialized and a terminated (an initialized offered again
    # by a later fold is counted again).
    assert drops["quota_session"] >= 2 * (TABS - SESSIONS)
    refills = int(minutes * PER_MINUTE) + 1
    assert drops["quota_student"] >= 128 - (BURST + refills)
    # The flooder's 36 passed the bucket for a room of 30; ana's initialized, played, paused.
    assert drops["full"] >= (BURST - ROOM) + 3
