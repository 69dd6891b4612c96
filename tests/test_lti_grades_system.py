"""Grades with the Procfile's real processes (web, two RQ workers, clock) and the suite's LMS
(tests/lti_platform.py).

The instructor flow, over HTTP: deep linking makes a gradebook column, a learner's launch of
that link is graded in it, and the instructor's launch shows the class: every learner of the
NRPS roster (three pages), including those who never launched.

A grade outage under load: 200 learners, the platform's score endpoint down
(503, then connections dropped unanswered) while they keep watching. Once it is back, every
learner's final score arrives once, and no accepted score is lower than an earlier one. The
intervals are seconds here (LTI_SCORE_INTERVAL_S 1, retries 1-2 s), so the outage spans several
retries of every score in a few seconds; the 30 s outage on a moved clock, step by step, is in
tests/test_lti_grades.py. A few learners launch for real through /lti/login and /lti/launch;
the others' launches are recorded directly (what a launch records is tested there too)."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
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
from tests.helpers import COURSE_ID, bearer, present, wait_until
from tests.lti_platform import (
    CLIENT_ID,
    DEPLOYMENT,
    INSTRUCTOR,
    LEARNER,
    PLATFORM_ID,
    VIDEO,
    Gradebook,
    Lms,
)
from tests.stack import Stack, running_stack
from tests.test_lti_deep_linking import pick, read, to_platform
from tests.test_lti_roster import ROSTER_PATH, member, roster_of

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


def launched(
    stack: Stack, lms: Lms, sub: str, answer: Callable[[dict[str, str]], dict[str, str]]
) -> str:
    """A launch through the tool's real /lti/login and /lti/launch, the login by cookie:
    `answer` is the platform's form post answering the tool's authentication request. The
    launch's page."""
    with httpx.Client(base_url=stack.url, timeout=15) as http:
        params = {"iss": lms.base, "login_hint": sub, "target_link_uri": f"{stack.url}/lti/launch"}
        r = http.get("/lti/login", params={**params, "client_id": CLIENT_ID})
        assert r.status_code == 302, r.text
        auth = dict(parse_qsl(urlsplit(r.headers["location"]).query))
        cookie = f"lti1p3-state-{auth['state']}={auth['state']}"  # Secure: httpx keeps it for https
        r = http.post("/lti/launch", data=answer(auth), headers={"Cookie": cookie})
        assert r.status_code == 200, r.text
    return r.text


def launch(stack: Stack, lms: Lms, sub: str, claims: dict[str, Any]) -> str:
    """A learner's resource-link launch through the tool's real HTTP endpoints."""
    launched(stack, lms, sub, lambda auth: lms.authorize(auth, sub=sub, **claims))
    return user_id_of(PLATFORM_ID, sub)


def session(page: str) -> dict[str, str]:
    """The bearer header of the session the launch's page hands the pages."""
    found = re.search(r'href="/#/launch/([^/"]+)/', page)
    assert found, page
    return {"Authorization": f"Bearer {found.group(1)}"}


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


@pytest.fixture
def site() -> Iterator[Lms]:
    """Another LMS site (its own issuer), for a test of its own on the module's stack."""
    platform = Lms()
    yield platform
    platform.close()


def test_deep_linking_makes_a_column_graded_by_a_launch_and_the_class_is_the_whole_roster(
    stack: Stack, site: Lms
) -> None:
    lms, platform_id = site, "moodle-flow"
    admin = bearer(stack.settings(), "admin-1", "admin")
    body = lms.registration_body([DEPLOYMENT])
    r = httpx.put(f"{stack.url}/api/admin/lti/platforms/{platform_id}", json=body, headers=admin)
    assert r.status_code == 201, r.text
    book = Gradebook(lms, f"{stack.url}/lti/jwks")
    lms.trust_tool_keys(httpx.get(f"{stack.url}/lti/jwks").json())
    # The instructor adds the video from the LMS's picker: the LMS makes a link and a column.
    picker = read(launched(stack, lms, "t-1", lms.authorize_deep_link))
    with httpx.Client(timeout=15) as http:
        assert to_platform(pick(http, picker, VIDEO)).status_code == 200
    [link] = lms.links
    column = present(link.lineitem)
    made = {"scoreMaximum": 100, "label": "Speed", "resourceId": VIDEO, "tag": "videoprogress",
            "resourceLinkId": link.resource_link_id, "id": column}  # fmt: skip
    assert book.line_items == {column: made}
    # A learner launches that link and watches 90 of its 100 s: the score lands in that column.
    page = launched(stack, lms, "r-01", lambda a: lms.authorize_link(a, link, sub="r-01"))
    body = {"watch_time": 90, "total_duration": 100, "played": [[0, 90]]}
    url = f"{stack.url}/api/progress/video/{VIDEO}/watch-time"
    assert httpx.post(url, json=body, headers=session(page)).status_code == 202
    wait_until(lambda: book.final(column, "r-01"), timeout_s=20)
    [(where, scores)] = book.scores.items()
    assert where == (column, "r-01") and len(scores) == 1
    assert {k: v for k, v in scores[0].items() if k != "timestamp"} == {
        "userId": "r-01", "scoreGiven": 90.0, "scoreMaximum": 100,
        "activityProgress": "Completed", "gradingProgress": "FullyGraded",
    }  # fmt: skip
    # The instructor's launch: the class is every learner of the roster's three pages.
    learners = roster_of(7)  # r-01 among them; the six others never launched
    teacher_member = member("t-1", "Grace Hopper", [INSTRUCTOR])
    members = [*learners[:3], teacher_member, *learners[3:]]
    roster = book.serve_roster(ROSTER_PATH, members, page_size=3)

    def instructor(auth: dict[str, str]) -> dict[str, str]:
        return lms.authorize_link(auth, link, sub="t-1", roles=[INSTRUCTOR], memberships_url=roster)

    teacher = session(launched(stack, lms, "t-1", instructor))
    expected = sorted(
        (user_id_of(platform_id, m["user_id"]), m["name"], 90.0 if m["user_id"] == "r-01" else 0.0)
        for m in learners
    )

    def shown() -> list[tuple[str, Any, Any]]:
        path = f"{stack.url}/api/teacher/courses/{COURSE_ID}/progress"
        rows = httpx.get(path, headers=teacher, params={"limit": 100}).json()["rows"]
        return sorted((r["student_id"], r["name"], r["watched_seconds"]) for r in rows)

    wait_until(lambda: shown() == expected, timeout_s=30)
    assert book.roster_pages_read(ROSTER_PATH) == 3
    assert book.token_refusals == [] and book.conflicts == 0
