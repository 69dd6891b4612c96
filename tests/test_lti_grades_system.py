"""A grade outage under load with the Procfile's real processes (web, two RQ workers, clock)
and the suite's LMS (tests/lti_platform.py): 200 learners, the platform's score endpoint down
(503, then connections dropped unanswered) while they keep watching. Once it is back, every
learner's final score arrives once, and no accepted score is lower than an earlier one. The
intervals are seconds here (LTI_SCORE_INTERVAL_S 1, retries 1-2 s), so the outage spans several
retries of every score in a few seconds; the 30 s outage on a moved clock, step by step, is in
tests/test_lti_grades.py. A few learners launch for real through /lti/login and /lti/launch;
the others' launches are recorded directly (what a launch records is tested there too)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from shared.integrations.outbox import GRADE
from shared.lti.grades import GradeTargets, record_launch
from shared.lti.identity import user_id_of
from shared.lti.launch import CLAIM, ROLES, Launch
from shared.lti.registry import Platform, PlatformRegistry
from tests.helpers import bearer, present, wait_until
from tests.lti_platform import CLIENT_ID, DEPLOYMENT, LEARNER, PLATFORM_ID, Gradebook, Lms
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.system

LEARNERS, LAUNCHED = 200, 5
# Two retries or more of each score (OUTBOX_RETRY_MAX_S 2 s); the drop outlasts the flush of
# the last heartbeats (FLUSH_INTERVAL_S 3 s in tests/stack.py).
DOWN_S, DROP_S = 3.0, 3.5


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "LTI_SCORE_INTERVAL_S": "1",
        "OUTBOX_TICK_S": "1",
        "OUTBOX_RETRY_BASE_S": "1",
        "OUTBOX_RETRY_MAX_S": "2",
        "DELIVERY_TIMEOUT_S": "3",
    }
    yield from running_stack(tmp_path_factory, extra_env=env)


@pytest.fixture(scope="module")
def lms() -> Iterator[Lms]:
    platform = Lms()
    yield platform
    platform.close()


def launch(stack: Stack, lms: Lms, sub: str, claims: dict[str, Any]) -> str:
    """A learner's resource-link launch through the tool's real HTTP endpoints."""
    with httpx.Client(base_url=stack.url, timeout=15) as http:
        params = {"iss": lms.base, "login_hint": sub, "target_link_uri": f"{stack.url}/lti/launch"}
        r = http.get("/lti/login", params={**params, "client_id": CLIENT_ID})
        assert r.status_code == 302, r.text
        auth = dict(parse_qsl(urlsplit(r.headers["location"]).query))
        form = lms.authorize(auth, sub=sub, **claims)
        cookie = f"lti1p3-state-{auth['state']}={auth['state']}"  # Secure: httpx keeps it for https
        r = http.post("/lti/launch", data=form, headers={"Cookie": cookie})
        assert r.status_code == 200, r.text
    return user_id_of(PLATFORM_ID, sub)


def recorded(
    http: httpx.Client,
    admin: dict[str, str],
    targets: GradeTargets,
    platform: Platform,
    sub: str,
    claims: dict[str, Any],
) -> str:
    """What that launch records, written directly, and the enrollment it makes."""
    user = user_id_of(PLATFORM_ID, sub)
    full = {"sub": sub, ROLES: [LEARNER], CLAIM + "resource_link": {"id": "rl-1"}, **claims}
    launched = Launch(platform, full, DEPLOYMENT, False)
    assert record_launch(targets, launched, user, "v-100", "Speed", time.time())
    r = http.put(f"/api/courses/phys-101/enrollments/{user}", headers=admin)
    assert r.status_code == 201, r.text
    return user


def watch_all(
    http: httpx.Client, headers: dict[str, dict[str, str]], seconds: dict[str, float]
) -> None:
    """Each learner's player reports [0, seconds] of v-100 watched (eight at a time)."""

    def post(sub: str) -> int:
        body = {"watch_time": seconds[sub], "total_duration": 100, "played": [[0, seconds[sub]]]}
        url = "/api/progress/video/v-100/watch-time"
        return http.post(url, json=body, headers=headers[sub]).status_code

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(post, seconds)) == {202}


def test_a_score_outage_under_200_learners_loses_lowers_and_repeats_nothing(
    stack: Stack, lms: Lms
) -> None:
    admin = bearer(stack.settings(), "admin-1", "admin")
    body = lms.registration_body([DEPLOYMENT])
    r = httpx.put(f"{stack.url}/api/admin/lti/platforms/{PLATFORM_ID}", json=body, headers=admin)
    assert r.status_code == 201, r.text
    book = Gradebook(lms, f"{stack.url}/lti/jwks")  # the tool's key set, over HTTP
    item = book.add_line_item("Speed")
    claims = book.claim(item)
    db = stack.db()
    platform, targets = present(PlatformRegistry(db).find(lms.base, CLIENT_ID)), GradeTargets(db)
    subs = [f"u-{i}" for i in range(LEARNERS)]
    http = httpx.Client(base_url=stack.url, timeout=15)
    users = {
        sub: launch(stack, lms, sub, claims)
        if i < LAUNCHED
        else recorded(http, admin, targets, platform, sub, claims)
        for i, sub in enumerate(subs)
    }
    settings = stack.settings()
    headers = {sub: bearer(settings, user) for sub, user in users.items()}
    final = {sub: 60.0 if i % 2 == 0 else 40.0 for i, sub in enumerate(subs)}

    def scores(sub: str) -> list[float]:
        with book.lock:
            return [s["scoreGiven"] for s in book.scores.get((item, sub), [])]

    watch_all(http, headers, dict.fromkeys(subs, 20.0))
    wait_until(lambda: all(scores(sub) == [20.0] for sub in subs), timeout_s=30)
    book.mode, posts = "down", book.score_posts
    watch_all(http, headers, dict.fromkeys(subs, 40.0))
    time.sleep(DOWN_S)
    book.mode = "drop"
    watch_all(http, headers, {sub: 60.0 for sub in subs if final[sub] == 60.0})
    time.sleep(DROP_S)
    assert book.score_posts > posts  # tried during the outage
    book.mode = "up"
    wait_until(lambda: all(scores(sub)[-1] == final[sub] for sub in subs), timeout_s=40)
    rq = stack.rq_client()
    wait_until(lambda: rq.hlen(GRADE.entries) == 0, timeout_s=20)
    time.sleep(1.5)  # more ticks and intervals: nothing else may arrive
    for sub in subs:  # rising (never lower, nothing twice) to the final; 40 only if it was
        got = scores(sub)  # posted before the 60 was flushed
        assert got[0] == 20.0 and got[-1] == final[sub] and got == sorted(set(got)), (sub, got)
    assert book.conflicts == 0 and rq.hlen(GRADE.dead) == 0
    assert book.token_refusals == []
    http.close()
