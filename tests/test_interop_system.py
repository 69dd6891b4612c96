"""The LRS away under load, with the Procfile's real processes (web, two workers, clock) and
Ralph's LRS: heartbeats keep being accepted and flushed, statements wait in the outbox, and once
the LRS is back every statement arrives, once. The one real-time test of an LRS outage: the
backoff, max age and dead letters are proven on a moved clock in tests/test_interop.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import FAULT_ROWS, buffered, wait_until
from tests.lrs import LRS_PASSWORD, LRS_USER, RalphLRS
from tests.stack import Stack, enroll, running_stack

pytestmark = pytest.mark.system

STUDENTS = [f"lrs-load-{i}" for i in range(8)]
OUTAGE_S = 10  # several retries (OUTBOX_RETRY_MAX_S 4 s); tests/test_interop.py has the rest


@pytest.fixture(scope="module")
def lrs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RalphLRS]:
    server = RalphLRS(tmp_path_factory.mktemp("ralph")).start()
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
        "OUTBOX_RETRY_MAX_S": "4",
        "MAX_PLAYBACK_RATE": "0",
    }
    yield from running_stack(tmp_path_factory, extra_env=env)


class Load:
    """Each student plays v-600 in one session, one heartbeat with a player event every
    half second (alternately play and pause): one statement per accepted heartbeat, plus one
    `initialized` per session. 1 s of video per heartbeat never reaches the threshold."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.headers = {s: enroll(stack, s) for s in STUDENTS}
        self.accepted = dict.fromkeys(STUDENTS, 0)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        url = f"{self.stack.url}/api/progress/video/v-600/watch-time"
        with httpx.Client(timeout=15) as client:
            seq = 0
            while not self.stop.is_set():
                for student in STUDENTS:
                    body = {
                        "watch_time": seq + 1,
                        "total_duration": 600,
                        "session_id": "s",
                        "seq": seq,
                        "played": [[seq, seq + 1]],
                        "event": "play" if seq % 2 == 0 else "pause",
                    }
                    r = client.post(url, json=body, headers=self.headers[student])
                    if r.status_code == 202:
                        self.accepted[student] += 1
                seq += 1
                time.sleep(0.5)


def outbox_depth(stack: Stack) -> int:
    return int(httpx.get(f"{stack.url}/readyz", timeout=10).json()["outbox"]["xapi"])


def test_an_lrs_outage_under_load_loses_and_duplicates_nothing(stack: Stack, lrs: RalphLRS) -> None:
    load = Load(stack)
    load.thread.start()
    try:
        wait_until(lambda: len(lrs.statements()) >= len(STUDENTS), timeout_s=30)
        lrs.stop()
        r = stack.rq_client()  # vp:stats lives with RQ
        flushed_before = int(float(r.hget("vp:stats", "flushed_heartbeats") or 0))
        time.sleep(OUTAGE_S)
        # Meanwhile the flushes went on and the statements waited.
        assert int(float(r.hget("vp:stats", "flushed_heartbeats") or 0)) > flushed_before
        assert outbox_depth(stack) > 0
        assert int(float(r.hget("vp:stats", "xapi_retried") or 0)) > 0
        lrs.start()
        time.sleep(3)  # the load goes on a while with the LRS back
    finally:
        load.stop.set()
        load.thread.join(30)
    expected = sum(n + 1 for n in load.accepted.values())  # + one initialized per session
    buffer = stack.redis_client()
    wait_until(lambda: buffered(buffer)[0] == 0 and outbox_depth(stack) == 0, timeout_s=90)
    stored = [s for s in lrs.statements() if s["actor"]["account"]["name"] in STUDENTS]
    ids = [s["id"] for s in stored]
    lines = [s for s in lrs.stored_lines() if s["actor"]["account"]["name"] in STUDENTS]
    lost = expected - len(set(ids))
    duplicated = len(lines) - len({s["id"] for s in lines})
    FAULT_ROWS.append(
        (f"LRS down {OUTAGE_S} s (statements)", 1, expected, len(set(ids)), lost, duplicated)
    )
    assert lost == 0 and duplicated == 0 and len(ids) == len(set(ids)) == expected
    per_student = {s: 0 for s in STUDENTS}
    for s in stored:
        per_student[s["actor"]["account"]["name"]] += 1
    assert per_student == {s: n + 1 for s, n in load.accepted.items()}
    assert int(float(r.hget("vp:stats", "xapi_dead") or 0)) == 0
