"""AGS grades back (docs/lti.md, Grades; shared/lti/grades.py, shared/lti/services.py,
workers/grades.py) against the suite's LMS (tests/lti_platform.py): lti1p3platform signs the
launches and issues the service tokens, the harness's gradebook checks every client assertion,
scope, content type and timestamp. The app, the flush and the delivery run in-process on one
MockedClock, moved past each interval and backoff instead of sleeping; the platform is real
HTTP on loopback. Expected scores are the seconds sent over the video's 100 s."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pymongo.database import Database

from ingest.app import create_app
from shared.clock import MockedClock
from shared.errors import PlatformCallFailed
from shared.integrations.outbox import GRADE, Outbox
from shared.lti.grades import (
    TEST_USER,
    GradeTarget,
    GradeTargets,
    iso,
    next_timestamp,
    record_launch,
    score_body,
    scores_url,
    target_id,
)
from shared.lti.identity import user_id_of
from shared.lti.keys import load_private_key
from shared.lti.launch import CLAIM, ROLES, Launch
from shared.lti.registry import Platform, PlatformRegistry, service_url
from shared.lti.services import (
    AsyncServiceTokens,
    client_assertion,
    read_token_answer,
    token_form,
)
from shared.settings import Settings
from shared.storage.keys import STATS
from tests.helpers import COURSE, COURSE_ID, bearer, make_settings, present
from tests.lti_platform import (
    CLIENT_ID,
    DEPLOYMENT,
    INSTRUCTOR,
    LEARNER,
    LINEITEM,
    NRPS_SCOPE,
    PLATFORM_ID,
    SCORE,
    Gradebook,
    HttpAnswer,
    HttpRequest,
    Lms,
    new_key_pem,
)
from tests.test_delivery_receivers import server
from workers import grades, maintenance
from workers.context import WorkerContext, build_context
from workers.flush import flush_batch
from workers.grades import repair_grades, send_due_grades

INTERVAL_S = 10.0
RESOURCE_LINK_CLAIM = CLAIM + "resource_link"


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(time.time())  # lti1p3platform stamps its tokens with the system time


# Scores every INTERVAL_S, retries within seconds.
GRADING = {"lti_score_interval_s": INTERVAL_S, "outbox_retry_base_s": 1.0,
           "outbox_retry_max_s": 4.0, "delivery_timeout_s": 5.0}  # fmt: skip


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, **GRADING)


class World:
    """The tool (app and worker context on one clock) and the LMS with its gradebook."""

    def __init__(self, settings: Settings, clock: MockedClock, db: Database[dict[str, Any]]):
        self.settings, self.clock, self.db = settings, clock, db
        self.lms = Lms()
        self.client = TestClient(create_app(settings, clock=clock), base_url="https://testserver")
        self.client.__enter__()
        self.ctx: WorkerContext = build_context(settings, clock)
        self.book = Gradebook(self.lms, self.ctx.lti_keys.jwks, now=clock.time)
        admin = bearer(settings, "admin-1", "admin", now=clock.time())
        r = self.client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin)
        assert r.status_code == 201
        body = self.lms.registration_body([DEPLOYMENT])
        r = self.client.put(f"/api/admin/lti/platforms/{PLATFORM_ID}", json=body, headers=admin)
        assert r.status_code == 201, r.text

    def launch(self, sub: str, roles: list[str] | None = None, **claims: Any) -> str:
        """A resource-link launch of v-100 through /lti/login and /lti/launch; the user id."""
        r = self.client.get(
            "/lti/login",
            params={
                "iss": self.lms.base,
                "login_hint": sub,
                "target_link_uri": "https://testserver/lti/launch",
                "client_id": CLIENT_ID,
            },
            follow_redirects=False,
        )
        assert r.status_code == 302, r.text
        auth = dict(parse_qsl(urlsplit(r.headers["location"]).query))
        form = self.lms.authorize(auth, sub=sub, roles=roles or [LEARNER], **claims)
        r = self.client.post("/lti/launch", data=form, follow_redirects=False)
        assert r.status_code == 200, r.text
        return user_id_of(PLATFORM_ID, sub)

    def watch(self, user_id: str, seconds: float) -> None:
        """The player reports [0, seconds] of v-100 watched."""
        body = {"watch_time": seconds, "total_duration": 100, "played": [[0, seconds]]}
        headers = bearer(self.settings, user_id, now=self.clock.time())
        r = self.client.post("/api/progress/video/v-100/watch-time", json=body, headers=headers)
        assert r.status_code == 202, r.text

    def flush(self) -> None:
        self.clock.advance(2.0)  # past FLUSH_INTERVAL_S
        while flush_batch(self.ctx, 500).claimed:
            pass

    def deliver(self, seconds: float = 0.0) -> dict[str, int]:
        self.clock.advance(seconds)
        return send_due_grades(self.ctx)

    def deliver_over(self, seconds: float) -> None:
        """Delivery runs a second apart, as the clock's ticks would run them."""
        for _ in range(int(seconds)):
            self.deliver(1.0)

    def scores(self, lineitem: str, sub: str) -> list[dict[str, Any]]:
        with self.book.lock:
            return list(self.book.scores.get((lineitem, sub), []))

    def close(self) -> None:
        self.client.__exit__(None, None, None)
        self.lms.close()


@pytest.fixture
def world(
    settings: Settings, clock: MockedClock, mongo_db: Database[dict[str, Any]]
) -> Iterator[World]:
    w = World(settings, clock, mongo_db)
    yield w
    w.close()


def targets(db: Database[dict[str, Any]]) -> list[dict[str, Any]]:
    return list(db["lti_grade_targets"].find({}))


# -- what a launch records ------------------------------------------------------------------


def test_a_learners_launch_records_a_grade_target_others_do_not(world: World) -> None:
    item = world.book.add_line_item("Speed")
    claim = world.book.claim(item)
    world.launch("teacher-1", [INSTRUCTOR], **claim)
    world.launch("student-view", [LEARNER, TEST_USER.replace("testuser", "TestUser")], **claim)
    world.launch("no-ags")  # a launch without the AGS claim
    assert targets(world.db) == []
    user = world.launch("u-1", **claim)
    (doc,) = targets(world.db)
    assert {k: doc[k] for k in ("platform_id", "sub", "user_id", "material_id", "lineitem")} == {
        "platform_id": PLATFORM_ID,
        "sub": "u-1",
        "user_id": user,
        "material_id": "v-100",
        "lineitem": item,
    }
    assert doc["lineitems"] == world.book.line_items_url and doc["resource_link_id"] == "rl-1"
    assert set(doc["scopes"]) == set(world.book.offered)
    world.launch("u-1", **claim)  # launching again records the same target
    assert len(targets(world.db)) == 1
    keys = [list(i["key"]) for i in world.db["lti_grade_targets"].list_indexes()]
    assert ["user_id", "material_id"] in keys


# -- scores -----------------------------------------------------------------------------------


def test_scores_follow_the_credited_progress_once_an_interval_and_complete(world: World) -> None:
    item = world.book.add_line_item("Speed")
    user = world.launch("u-1", **world.book.claim(item))
    world.watch(user, 30)
    world.flush()
    world.watch(user, 45)
    world.flush()
    world.deliver_over(2 * INTERVAL_S)
    world.watch(user, 90)  # past COMPLETION_THRESHOLD (80 %)
    world.flush()
    world.deliver_over(2 * INTERVAL_S)
    posts = world.book.score_posts
    world.watch(user, 90)  # nothing new to say: no post
    world.flush()
    world.deliver_over(2 * INTERVAL_S)
    assert world.book.score_posts == posts
    got = world.scores(item, "u-1")
    # 30 is posted only if the interval ended between the two flushes.
    assert [(s["scoreGiven"], s["activityProgress"]) for s in got if s["scoreGiven"] != 30] == [
        (45.0, "InProgress"),
        (90.0, "Completed"),
    ]
    stamps = [_parse(s["timestamp"]) for s in got]
    assert all(b - a >= INTERVAL_S for a, b in zip(stamps, stamps[1:], strict=False))
    for s in got:
        assert s["scoreMaximum"] == 100 and s["gradingProgress"] == "FullyGraded"
        assert s["timestamp"].endswith("+00:00") and s["userId"] == "u-1"
    assert world.book.score_posts == len(got)
    assert world.book.tokens_issued == [" ".join(sorted([LINEITEM, SCORE]))]  # one, reused


def _parse(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp).timestamp()


def test_a_line_item_is_created_once_when_the_launch_names_none(world: World) -> None:
    claim = world.book.claim()  # lineitems only
    users = [world.launch(sub, **claim) for sub in ("u-1", "u-2")]
    for n, user in enumerate(users):
        world.watch(user, 20 + n)
    world.flush()
    world.deliver(INTERVAL_S)
    (item,) = world.book.line_items.values()
    assert {k: item[k] for k in ("label", "scoreMaximum", "resourceLinkId", "resourceId")} == {
        "label": "Speed",
        "scoreMaximum": 100,
        "resourceLinkId": "rl-1",
        "resourceId": "v-100",
    }
    assert [s["scoreGiven"] for s in world.scores(item["id"], "u-1")] == [20.0]
    assert [s["scoreGiven"] for s in world.scores(item["id"], "u-2")] == [21.0]
    world.launch("u-3", **claim)  # a later learner's launch finds the column made
    world.watch(user_id_of(PLATFORM_ID, "u-3"), 5)
    world.flush()
    world.deliver(INTERVAL_S)
    assert len(world.book.line_items) == 1
    assert [s["scoreGiven"] for s in world.scores(item["id"], "u-3")] == [5.0]


def test_a_line_item_the_tool_made_then_named_by_the_launch_is_graded_once(world: World) -> None:
    """AGS 2.0 §3.2: once the resource link has its line item, the platform names it in the
    launch's `lineitem`. The learner is then still one learner on one line item: at most one
    post per interval, nothing posted that repeats the last score sent (docs/lti.md)."""
    user = world.launch("u-1", **world.book.claim())  # lineitems only: the tool makes the column
    world.watch(user, 20)
    world.flush()
    world.deliver(INTERVAL_S)
    (item,) = world.book.line_items
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [20.0]

    world.clock.advance(INTERVAL_S)
    world.launch("u-1", **world.book.claim(item))  # the LMS now names the column it holds
    world.watch(user, 60)
    world.flush()
    world.deliver_over(3 * INTERVAL_S)
    given = [s["scoreGiven"] for s in world.scores(item, "u-1")]
    assert given == [20.0, 60.0], given
    assert len(targets(world.db)) == 1
    world.launch("u-1", **world.book.claim())  # a launch naming none again: the same target
    world.watch(user, 60)
    world.flush()
    world.deliver_over(3 * INTERVAL_S)
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [20.0, 60.0]
    assert len(targets(world.db)) == 1 and len(world.book.line_items) == 1


def test_two_targets_of_one_line_item_stored_by_an_older_build_post_once(world: World) -> None:
    """Before the fix, a launch naming the line item the tool had made recorded a second target
    (keyed by the line item's URL) beside the first (keyed by `lineitems#<link>`). Such pairs,
    already stored, are merged into the older when read: its score sent and timestamp kept, the
    other's queued entries sending nothing."""
    user = world.launch("u-1", **world.book.claim())
    world.watch(user, 20)
    world.flush()
    world.deliver(INTERVAL_S)
    (item,) = world.book.line_items
    (first,) = targets(world.db)
    second = {
        **first,
        "_id": target_id(PLATFORM_ID, item, "u-1"),
        "created_at": first["created_at"] + 1,
    }
    second.pop("sent")
    world.db["lti_grade_targets"].insert_one(second)  # what the older build's launch stored
    world.watch(user, 40)
    world.flush()  # queues nothing for the second: merged away
    world.deliver_over(3 * INTERVAL_S)
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [20.0, 40.0]
    [kept] = targets(world.db)
    assert kept["_id"] == first["_id"] and kept["sent"]["score"] == 40.0
    late = {**second, "last_ts": kept["last_ts"] + 5}  # its last timestamp used the latest
    world.db["lti_grade_targets"].insert_one(late)
    grades._queue(world.ctx, [(GradeTarget.from_doc(late), 1)], world.clock.time())  # queued
    world.deliver_over(3 * INTERVAL_S)  # by the older build: merged away, it sends nothing
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [20.0, 40.0]
    [kept] = targets(world.db)
    assert kept["_id"] == first["_id"] and kept["last_ts"] == late["last_ts"]
    world.db["lti_grade_targets"].insert_one(second)  # nothing sent: the repair finds it behind
    assert repair_grades(world.ctx) == 0  # merged away; the one kept has sent 40 already
    assert len(targets(world.db)) == 1


def test_the_token_asks_only_offered_scopes_and_is_fetched_again_once_expired(
    world: World,
) -> None:
    world.book.token_lifetime_s = 120
    item = world.book.add_line_item("Speed")
    user = world.launch("u-1", **world.book.claim(item, scopes=(SCORE,)))
    for seconds in (10, 20, 30):
        world.watch(user, seconds)
        world.flush()
        world.deliver(INTERVAL_S)
    assert world.book.tokens_issued == [SCORE]  # reused within its 120 s (less the margin)
    world.clock.advance(110)  # 108 s is where the tool stops using it (a tenth of its life)
    world.watch(user, 40)
    world.flush()
    world.deliver(INTERVAL_S)
    assert world.book.tokens_issued == [SCORE, SCORE]
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [10.0, 20.0, 30.0, 40.0]
    assert world.book.token_refusals == []


def test_the_async_interface_shares_the_workers_cached_token(world: World) -> None:
    """What the roster sync uses: `access_token(platform, scopes)`, async, from the same cache
    as the workers' (one token for the platform and scope set)."""
    platform = present(PlatformRegistry(world.db).find(world.lms.base, CLIENT_ID))
    tokens = AsyncServiceTokens(world.ctx.lti_tokens)
    first = asyncio.run(tokens.access_token(platform, [NRPS_SCOPE]))
    assert world.ctx.lti_tokens.access_token(platform, [NRPS_SCOPE]) == first
    assert world.book.tokens_issued == [NRPS_SCOPE]
    assert asyncio.run(tokens.access_token(platform, [SCORE])) != first  # another scope set
    assert world.book.tokens_issued == [NRPS_SCOPE, SCORE]


def test_the_platform_checks_every_client_assertion(world: World) -> None:
    """The harness's strictness, which the tool's own assertions pass (the tests above)."""
    platform = present(PlatformRegistry(world.db).find(world.lms.base, CLIENT_ID))
    keys, url = world.ctx.lti_keys, world.book.token_url
    form = token_form(keys, platform, SCORE)
    assert httpx.post(url, data=form).status_code == 200
    assert httpx.post(url, data=form).status_code == 400  # the same jti again

    def signed(**claims: str) -> dict[str, str]:
        base = {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": url, "jti": claims.pop("jti")}
        return {**form, "client_assertion": keys.sign({**base, **claims}, 300)}

    assert httpx.post(url, data=signed(jti="j-1", aud=world.lms.base)).status_code == 400
    assert httpx.post(url, data=signed(jti="j-2", sub="someone")).status_code == 400
    assert httpx.post(url, data=signed(jti="j-3", iss="someone")).status_code == 400
    other = new_key_pem()[0].encode()
    forged = jwt.encode(
        {"iss": CLIENT_ID, "sub": CLIENT_ID, "aud": url, "jti": "j-4", "iat": 1, "exp": 2**40},
        load_private_key(other),
        algorithm="RS256",
        headers={"kid": keys.signing_key().kid},
    )
    assert httpx.post(url, data={**form, "client_assertion": forged}).status_code == 400
    unoffered = token_form(keys, platform, SCORE + " https://example.test/scope")
    assert httpx.post(url, data=unoffered).status_code == 400
    assert [r.partition(": ")[0] for r in world.book.token_refusals] == [
        "jti",
        "aud",
        "iss/sub",
        "iss/sub",
        "signature",
        f"scope {[SCORE, 'https://example.test/scope']}",
    ]
    assert assertion_claims(client_assertion(keys, platform)) == {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": url,
    }


def test_the_platform_checks_each_endpoints_scope(world: World) -> None:
    platform = present(PlatformRegistry(world.db).find(world.lms.base, CLIENT_ID))
    item = world.book.add_line_item("Speed")

    def token(scope: str) -> str:
        answer = httpx.post(
            world.book.token_url, data=token_form(world.ctx.lti_keys, platform, scope)
        )
        assert answer.status_code == 200, answer.text
        return str(answer.json()["access_token"])

    kind = {"Content-Type": "application/vnd.ims.lis.v1.score+json"}
    score = {
        "userId": "u-1",
        "scoreGiven": 1,
        "scoreMaximum": 100,
        "timestamp": "2026-12-06T10:00:00+00:00",
        "activityProgress": "InProgress",
        "gradingProgress": "FullyGraded",
    }

    def post_score(bearer_token: str) -> int:
        auth = {"Authorization": f"Bearer {bearer_token}", **kind}
        return httpx.post(f"{item}/scores", json=score, headers=auth).status_code

    assert post_score(token(LINEITEM)) == 403
    assert post_score("not-a-token") == 401
    assert post_score(token(SCORE)) == 204
    lineitems = world.book.line_items_url
    assert (
        httpx.get(lineitems, headers={"Authorization": f"Bearer {token(SCORE)}"}).status_code == 403
    )
    assert (
        httpx.get(lineitems, headers={"Authorization": f"Bearer {token(LINEITEM)}"}).status_code
        == 200
    )


def assertion_claims(token: str) -> dict[str, Any]:
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 300 and len(claims["jti"]) >= 16
    return {k: claims[k] for k in ("iss", "sub", "aud")}


def test_a_429_holds_the_platform_until_retry_after(world: World) -> None:
    item = world.book.add_line_item("Speed")
    users = [world.launch(sub, **world.book.claim(item)) for sub in ("u-1", "u-2")]
    for user in users:
        world.watch(user, 50)
    world.flush()
    world.book.mode, world.book.retry_after = "429", 30
    world.deliver(INTERVAL_S)
    assert world.book.score_posts == 1  # the first answer held the platform for both
    world.deliver(29)
    assert world.book.score_posts == 1  # Retry-After: 30 s, not the 1 s backoff
    world.book.mode = "up"
    world.deliver(1.5)
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [50.0]
    assert [s["scoreGiven"] for s in world.scores(item, "u-2")] == [50.0]
    assert world.book.score_posts == 3


def test_a_learner_the_platform_refuses_is_recorded_and_not_retried(world: World) -> None:
    item = world.book.add_line_item("Speed")
    refused, graded = (world.launch(sub, **world.book.claim(item)) for sub in ("u-no", "u-ok"))
    world.book.refuse.add("u-no")
    for user in (refused, graded):
        world.watch(user, 40)
    world.flush()
    world.deliver(INTERVAL_S)
    posts = world.book.score_posts
    assert posts == 2 and world.scores(item, "u-ok")[-1]["scoreGiven"] == 40.0
    outbox = Outbox(world.ctx.redis, GRADE)
    assert len(outbox.entries_of(refused)[1]) == 1  # set aside, with the reason
    admin = bearer(world.settings, "admin-1", "admin", now=world.clock.time())
    url = f"/api/admin/lti/platforms/{PLATFORM_ID}/grades"
    health = world.client.get(url, headers=admin).json()
    assert [(r["user_id"], r["status"]) for r in health["refused"]] == [(refused, 422)]
    assert (health["targets"], health["queued"], health["dead"]) == (2, 0, 1)
    assert world.client.get(url, headers=bearer(world.settings, refused)).status_code == 403
    world.watch(refused, 60)  # more watching queues nothing for them
    world.flush()
    world.deliver(INTERVAL_S)
    assert world.book.score_posts == posts and outbox.depth() == 0
    world.book.refuse.clear()
    world.launch("u-no", **world.book.claim(item))  # a new launch: graded again
    world.watch(refused, 70)
    world.flush()
    world.deliver(INTERVAL_S)
    assert [s["scoreGiven"] for s in world.scores(item, "u-no")] == [70.0]


def grade_health(world: World) -> dict[str, Any]:
    """What `GET /api/admin/lti/platforms/{id}/grades` tells an admin now."""
    admin = bearer(world.settings, "admin-1", "admin", now=world.clock.time())
    r = world.client.get(f"/api/admin/lti/platforms/{PLATFORM_ID}/grades", headers=admin)
    assert r.status_code == 200, r.text
    health: dict[str, Any] = r.json()
    return health


def test_a_token_the_platform_refuses_refuses_no_learner_and_is_retried(world: World) -> None:
    item = world.book.add_line_item("Speed")
    user = world.launch("u-1", **world.book.claim(item, scopes=(SCORE,)))
    world.book.offered = (LINEITEM,)  # the registration lost its score scope
    world.watch(user, 40)
    world.flush()
    world.deliver(INTERVAL_S)
    assert world.book.score_posts == 0 and world.book.token_refusals == [f"scope {[SCORE]}"]
    health = grade_health(world)
    assert health["refused"] == [] and "invalid_scope" in health["last_error"]["error"]
    world.book.offered = (LINEITEM, SCORE)
    world.book.withheld = {SCORE}  # asked, offered, not granted: no call it would refuse
    world.deliver_over(2)
    assert world.book.score_posts == 0 and len(world.book.tokens_issued) == 1
    health = grade_health(world)
    assert health["refused"] == [] and SCORE in health["last_error"]["error"]
    world.book.withheld = set()  # fixed: the retry goes through
    world.deliver_over(5)
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [40.0]


def test_a_delivery_out_of_time_with_scores_due_hands_over_to_a_follow_up(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    item = world.book.add_line_item("Speed")
    user = world.launch("u-1", **world.book.claim(item))
    world.watch(user, 40)
    world.flush()
    world.clock.advance(INTERVAL_S)
    assert send_due_grades(world.ctx, budget_s=0)["more_due"] == 1  # nothing done, say so
    assert world.book.score_posts == 0
    monkeypatch.setattr(grades, "send_due_grades", lambda ctx, budget_s: {"more_due": 1})
    monkeypatch.setattr(grades, "get_context", lambda: world.ctx)
    queued = world.ctx.queue.count
    grades.deliver_grades()
    assert world.ctx.queue.count == queued + 1
    assert world.ctx.queue.jobs[-1].func_name == "workers.grades.deliver_grades"
    assert send_due_grades(world.ctx)["posted"] == 1  # the follow-up's work
    assert send_due_grades(world.ctx, budget_s=0)["more_due"] == 0


# -- a grade outage ---------------------------------------------------------------------------

LEARNERS = 200
OUTAGE_S = 30


def record_learner(world: World, platform: Platform, sub: str, lineitem: str) -> str:
    """What a learner's launch records (the launch itself is tested above), and their
    enrollment, without 200 signed launches."""
    claims = {
        "sub": sub,
        ROLES: [LEARNER],
        RESOURCE_LINK_CLAIM: {"id": "rl-1"},
        **world.book.claim(lineitem),
    }
    user = user_id_of(PLATFORM_ID, sub)
    assert record_launch(
        GradeTargets(world.db),
        Launch(platform, claims, DEPLOYMENT, False),
        user,
        "v-100",
        "Speed",
        world.clock.time(),
    )
    admin = bearer(world.settings, "admin-1", "admin", now=world.clock.time())
    r = world.client.put(f"/api/courses/{COURSE_ID}/enrollments/{user}", headers=admin)
    assert r.status_code == 201
    return user


def test_a_30_s_score_outage_under_200_learners_loses_lowers_and_repeats_nothing(
    world: World,
) -> None:
    item = world.book.add_line_item("Speed")
    subs = [f"u-{i}" for i in range(LEARNERS)]
    platform = present(PlatformRegistry(world.db).find(world.lms.base, CLIENT_ID))
    users = {sub: record_learner(world, platform, sub, item) for sub in subs}
    final = {sub: 60.0 if i % 2 == 0 else 40.0 for i, sub in enumerate(subs)}
    for user in users.values():
        world.watch(user, 20)
    world.flush()
    world.deliver(INTERVAL_S)
    assert all(len(world.scores(item, sub)) == 1 for sub in subs)
    posts = world.book.score_posts
    world.book.mode = "down"  # 503 for the first half, then connections dropped unanswered
    for second in range(OUTAGE_S):
        if second == 5:
            for user in users.values():
                world.watch(user, 40)
            world.flush()
        if second == 15:
            world.book.mode = "drop"
            for sub, user in users.items():
                if final[sub] == 60.0:
                    world.watch(user, 60)
            world.flush()
        world.deliver(1.0)
    attempts = world.book.score_posts - posts
    assert 0 < attempts < OUTAGE_S * 2  # tried, held back by the backoff, not per learner
    world.book.mode = "up"
    outbox = Outbox(world.ctx.redis, GRADE)
    for _ in range(20):
        world.deliver(1.0)
        if outbox.depth() == 0:
            break
    assert outbox.depth() == 0 and world.ctx.redis.hlen(GRADE.dead) == 0
    for sub in subs:
        given = [s["scoreGiven"] for s in world.scores(item, sub)]
        assert given == [20.0, final[sub]], sub  # the final once, nothing lower after higher
    assert world.book.conflicts == 0  # every timestamp rose


# -- a full outbox ----------------------------------------------------------------------------

OUTBOX_BOUND = 2


@pytest.fixture
def small_world(
    redis_url: str, mongo_url: str, clock: MockedClock, mongo_db: Database[dict[str, Any]]
) -> Iterator[World]:
    """The world with a grade outbox that holds two entries."""
    settings = make_settings(redis_url, mongo_url, **GRADING, outbox_max_entries=OUTBOX_BOUND)
    w = World(settings, clock, mongo_db)
    yield w
    w.close()


def drain(world: World) -> None:
    outbox = Outbox(world.ctx.redis, GRADE)
    for _ in range(3 * int(INTERVAL_S)):
        world.deliver(1.0)
        if outbox.depth() == 0:
            return
    raise AssertionError(f"{outbox.depth()} grade entries left")


def given(world: World, item: str, sub: str) -> list[tuple[float, str]]:
    return [(s["scoreGiven"], s["activityProgress"]) for s in world.scores(item, sub)]


def test_a_final_score_the_full_outbox_dropped_reaches_the_gradebook_once_by_the_repair(
    small_world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = small_world
    item = world.book.add_line_item("Speed")
    a, b, last = (world.launch(sub, **world.book.claim(item)) for sub in ("u-a", "u-b", "u-z"))
    world.watch(last, 40)
    world.flush()
    world.deliver(INTERVAL_S)
    assert given(world, item, "u-z") == [(40.0, "InProgress")]
    world.book.mode = "down"
    world.clock.advance(INTERVAL_S)
    for user in (a, b):
        world.watch(user, 20)
    world.flush()  # the outbox's two places taken
    world.watch(last, 90)  # u-z completes and stops watching
    world.flush()
    outbox = Outbox(world.ctx.redis, GRADE)
    dropped = "grade_dropped_reserve_full"
    assert outbox.depth() == OUTBOX_BOUND and outbox.entries_of(last)[0] == []
    assert int(world.ctx.redis.hget(STATS, dropped) or 0) == 1
    world.deliver_over(3)
    assert repair_grades(world.ctx) == 1  # u-z only: u-a and u-b have entries queued
    assert int(world.ctx.redis.hget(STATS, dropped) or 0) == 2  # still no room: dropped again
    world.book.mode = "up"
    drain(world)
    assert given(world, item, "u-a") == given(world, item, "u-b") == [(20.0, "InProgress")]
    assert given(world, item, "u-z") == [(40.0, "InProgress")]  # lost without the repair
    monkeypatch.setattr(maintenance, "get_context", lambda: world.ctx)
    assert maintenance.repair_grades() == 1  # the maintenance job, now with room
    drain(world)
    final = [(40.0, "InProgress"), (90.0, "Completed")]
    assert given(world, item, "u-z") == final
    assert maintenance.repair_grades() == 0  # nothing behind: nothing queued, nothing posted
    world.deliver_over(2 * INTERVAL_S)
    assert given(world, item, "u-z") == final
    assert given(world, item, "u-a") == given(world, item, "u-b") == [(20.0, "InProgress")]
    assert world.book.conflicts == 0


def test_the_repair_examines_a_bounded_page_a_run_resumes_and_skips_refused_targets(
    small_world: World,
) -> None:
    world = small_world
    item = world.book.add_line_item("Speed")
    platform = present(PlatformRegistry(world.db).find(world.lms.base, CLIENT_ID))
    subs = [f"u-{i}" for i in range(6)]
    users = {sub: record_learner(world, platform, sub, item) for sub in subs}
    for user in users.values():
        world.watch(user, 30)
    world.flush()  # two queued, four dropped
    outbox = Outbox(world.ctx.redis, GRADE)
    lost = [sub for sub, user in users.items() if not outbox.entries_of(user)[0]]
    assert len(lost) == len(subs) - OUTBOX_BOUND
    drain(world)
    store = GradeTargets(world.db)
    ids = {d["sub"]: d["_id"] for d in targets(world.db)}
    refused = lost[0]
    store.record_refused(ids[refused], 422, "not gradable", world.clock.time())
    repaired = {s for s in lost if s != refused}
    order = sorted(ids, key=lambda sub: ids[sub])  # the pass's order: by target id
    pages = [order[i : i + 2] for i in range(0, len(order), 2)]
    for page in pages:
        assert repair_grades(world.ctx, limit=2) == len(repaired & set(page)), page
        drain(world)
    assert repair_grades(world.ctx, limit=2) == 0  # past the last: back to the first next
    assert repair_grades(world.ctx, limit=2) == 0  # the first page again: all sent
    world.deliver_over(2 * INTERVAL_S)
    for sub in subs:
        expected = [] if sub == refused else [(30.0, "InProgress")]
        assert given(world, item, sub) == expected, sub


def test_the_repair_leaves_alone_a_platform_no_longer_registered(small_world: World) -> None:
    """Its entries could only be set aside: one a run would fill the dead letters."""
    world = small_world
    item = world.book.add_line_item("Speed")
    platform = present(PlatformRegistry(world.db).find(world.lms.base, CLIENT_ID))
    users = [record_learner(world, platform, f"u-{i}", item) for i in range(OUTBOX_BOUND + 1)]
    for user in users:
        world.watch(user, 30)
    world.flush()  # one dropped
    drain(world)
    assert world.book.score_posts == OUTBOX_BOUND
    assert PlatformRegistry(world.db).remove(PLATFORM_ID)
    assert repair_grades(world.ctx) == 0
    world.deliver_over(2 * INTERVAL_S)
    assert Outbox(world.ctx.redis, GRADE).depth() == 0 and world.ctx.redis.hlen(GRADE.dead) == 0


# -- erasure and export -----------------------------------------------------------------------


def test_export_and_erasure_cover_grade_targets_and_scores_queued_and_sent(world: World) -> None:
    item = world.book.add_line_item("Speed")
    user = world.launch("u-1", **world.book.claim(item))
    other = world.launch("u-2", **world.book.claim(item))
    for who in (user, other):
        world.watch(who, 30)
    world.flush()
    world.deliver(INTERVAL_S)  # 30 sent for both
    world.watch(user, 50)
    world.flush()  # 50 queued for u-1
    admin = bearer(world.settings, "admin-1", "admin", now=world.clock.time())
    r = world.client.get(f"/api/admin/students/{user}/export", headers=admin)
    assert r.status_code == 200, r.text
    body = r.json()
    (target,) = body["lti_grades"]
    assert (target["lineitem"], target["sub"], target["sent"]["score"]) == (item, "u-1", 30.0)
    (queued,) = body["outbox"]["grade"]["queued"]
    assert queued["payload"]["target"] == target["_id"]
    r = world.client.delete(f"/api/admin/progress?student_id={user}", headers=admin)
    assert r.status_code == 200, r.text
    report = r.json()
    assert report["grade_targets"] == 1 and report["outbox_entries"] == 1
    assert report["sent_grades"] == [{"platform_id": PLATFORM_ID, "lineitem": item, "user": "u-1"}]
    left = world.client.get(f"/api/admin/students/{user}/export", headers=admin).json()
    assert left["lti_grades"] == [] and left["outbox"]["grade"]["queued"] == []
    assert [t["user_id"] for t in targets(world.db)] == [other]  # the other learner's kept
    world.deliver_over(2 * INTERVAL_S)
    assert [s["scoreGiven"] for s in world.scores(item, "u-1")] == [30.0]  # nothing after


# -- the score's shape --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lineitem", "scores"),
    [
        (
            "https://moodle.test/mod/lti/services.php/2/lineitems/5/lineitem?type_id=1",
            "https://moodle.test/mod/lti/services.php/2/lineitems/5/lineitem/scores?type_id=1",
        ),
        (
            "https://school.instructure.com/api/lti/courses/7/line_items/9/",
            "https://school.instructure.com/api/lti/courses/7/line_items/9/scores",
        ),
    ],
)
def test_scores_go_to_the_line_item_path_plus_scores_keeping_its_query(
    lineitem: str, scores: str
) -> None:
    assert scores_url(lineitem) == scores


def test_timestamps_are_zoned_milliseconds_and_rise_past_the_last_one() -> None:
    assert iso(1_767_000_000.1234) == "2025-12-29T09:20:00.123+00:00"
    assert next_timestamp(100.0, 0.0) == 100.0
    assert next_timestamp(100.0, 100.0) == 100.001  # the same millisecond: one later
    assert next_timestamp(99.0, 100.0) == 100.001  # a worker whose clock is behind
    assert score_body("u-1", 81.5, True, 100.0) == {
        "userId": "u-1",
        "scoreGiven": 81.5,
        "scoreMaximum": 100,
        "activityProgress": "Completed",
        "gradingProgress": "FullyGraded",
        "timestamp": "1970-01-01T00:01:40.000+00:00",
    }


# -- one platform's odd answers are that platform's trouble ---------------------------------

OTHER_PLATFORM = "other-lms"


def register_other_platform(w: World, **registered: Any) -> tuple[Lms, Gradebook]:
    """A second LMS, registered as OTHER_PLATFORM (with `registered` fields instead of its
    own), and its gradebook (close the LMS after)."""
    other = Lms()
    book = Gradebook(other, w.ctx.lti_keys.jwks, now=w.clock.time)
    admin = bearer(w.settings, "admin-1", "admin", now=w.clock.time())
    body = {**other.registration_body(["dep-1"]), **registered}
    r = w.client.put(f"/api/admin/lti/platforms/{OTHER_PLATFORM}", json=body, headers=admin)
    assert r.status_code == 201, r.text
    return other, book


def launch_from(w: World, lms: Lms, platform_id: str, sub: str, **claims: Any) -> str:
    """A learner's launch of v-100 from another registered platform; the user id."""
    r = w.client.get("/lti/login", params={"iss": lms.base, "login_hint": sub,
                     "target_link_uri": "https://testserver/lti/launch", "client_id": CLIENT_ID},
                     follow_redirects=False)  # fmt: skip
    assert r.status_code == 302, r.text
    form = lms.authorize(dict(parse_qsl(urlsplit(r.headers["location"]).query)), sub=sub,
                         roles=[LEARNER], **claims)  # fmt: skip
    r = w.client.post("/lti/launch", data=form, follow_redirects=False)
    assert r.status_code == 200, r.text
    return user_id_of(platform_id, sub)


@pytest.mark.parametrize("odd", ["a line item made without an id", "line items as HTML"])
def test_one_platforms_odd_answers_do_not_hold_up_another_platforms_scores(
    world: World, odd: str
) -> None:
    """A second registered platform answers the line item the tool makes without its id, or
    its line items with a web page: its learner's score is retried, and the first platform's
    learners, in the same delivery batch, get theirs (each once). (A line item URL that does
    not parse is not even recorded: see the test after the next.)"""
    other, book = register_other_platform(world)
    claim = book.claim(None)
    if odd == "a line item made without an id":
        json_type = {"Content-Type": "application/json"}
        other.route("GET", "/lineitems", lambda _: HttpAnswer(200, b"[]", json_type))
        other.route("POST", "/lineitems", lambda _: HttpAnswer(200, b"{}", json_type))
    else:
        other.route("GET", "/lineitems", lambda _: HttpAnswer(
            200, b"<html>sign in</html>", {"Content-Type": "text/html"}))  # fmt: skip
    item = world.book.add_line_item("Speed")
    learners = [world.launch(f"u-{i}", **world.book.claim(item)) for i in range(5)]
    odd_learner = launch_from(world, other, OTHER_PLATFORM, "e-1", **claim)
    for user in [*learners, odd_learner]:
        world.watch(user, 30)
    world.flush()
    world.clock.advance(2 * INTERVAL_S)  # all due: the first run claims them in one batch
    try:
        world.deliver_over(30)
        assert all(len(world.scores(item, f"u-{i}")) == 1 for i in range(5))
        [target] = world.db["lti_grade_targets"].find({"platform_id": OTHER_PLATFORM})
        assert not target.get("sent_at") and target.get("last_error")  # retried, said why
    finally:
        other.close()


def test_an_access_token_never_shows_in_the_admins_grade_health(world: World) -> None:
    """A token answer the tool cannot use (here `expires_in: -1`) is recorded as the target's
    last error, served to the admin API: it says what was wrong, never the answer's body (it
    holds an access token)."""
    issue = world.book._token  # the platform's own token endpoint, whose answer is altered
    issued: list[str] = []

    def odd_token(request: HttpRequest) -> HttpAnswer:
        answer = issue(request)
        body = json.loads(answer.body)
        issued.append(body["access_token"])
        body["expires_in"] = -1
        return HttpAnswer.json(body)

    world.lms.route("POST", "/token", odd_token)
    item = world.book.add_line_item("Speed")
    user = world.launch("u-1", **world.book.claim(item))
    world.watch(user, 20)
    world.flush()
    world.deliver(INTERVAL_S)
    error = grade_health(world)["last_error"]["error"]
    assert issued and not quotes(error, issued[0]) and "access_token" not in error, error
    assert "expires_in" in error, error  # what was wrong, said


def quotes(text: str, secret: str) -> bool:
    """Whether `text` holds any 16 characters of `secret` in a row (a quote cut short too)."""
    return any(secret[i : i + 16] in text for i in range(len(secret) - 15))


def test_a_refusal_that_echoes_the_access_token_is_shown_without_it(world: World) -> None:
    """A score endpoint that refuses the learner and echoes the request (its `Authorization`
    header) is quoted to the admin with the token cut out; what it said stays."""
    item = world.book.add_line_item("Speed")
    echoed: list[str] = []

    def echo(request: HttpRequest) -> HttpAnswer:
        echoed.append(request.headers["authorization"])
        return HttpAnswer.json({"error": "user not in course", "request": request.headers}, 422)

    world.lms.route("POST", urlsplit(item).path + "/scores", echo)
    user = world.launch("u-1", **world.book.claim(item))
    world.watch(user, 20)
    world.flush()
    world.deliver(INTERVAL_S)
    (refused,) = grade_health(world)["refused"]
    token = echoed[0].removeprefix("Bearer ")
    assert "user not in course" in refused["detail"] and not quotes(refused["detail"], token)


def test_a_token_endpoints_refusal_is_told_by_its_oauth_error_code_only() -> None:
    """A refused token request says its status and OAuth `error` code, never its body: not the
    `error_description` (free text, here echoing the client assertion), not a token that came
    with a status other than 200."""
    described = {"error": "invalid_client", "error_description": "bad assertion eyJhbGciOi.x.y"}
    with pytest.raises(PlatformCallFailed) as refused:
        read_token_answer(httpx.Response(401, json=described), SCORE, 1000.0)
    assert str(refused.value) == "token request refused: HTTP 401 error invalid_client"
    with pytest.raises(PlatformCallFailed) as odd:
        read_token_answer(httpx.Response(201, json={"access_token": "s3cret"}), SCORE, 1000.0)
    assert "s3cret" not in str(odd.value) and odd.value.status == 201
    with pytest.raises(PlatformCallFailed, match="expires_in is no number") as big:
        read_token_answer(
            httpx.Response(
                200, content=b'{"access_token": "s3cret", "expires_in": 1' + b"0" * 400 + b"}"
            ),
            SCORE,
            1000.0,
        )
    assert "s3cret" not in str(big.value)


def test_a_token_answer_or_retry_after_beyond_range_is_bounded() -> None:
    """An `expires_in` of 1e400 (infinity once read) is kept a day, NaN is unreadable; a
    `Retry-After` of inf is no value, a huge one an hour."""

    def token_reply(expires: str) -> httpx.Response:
        body = '{"access_token": "t", "token_type": "Bearer", "expires_in": ' + expires + "}"
        return httpx.Response(200, content=body.encode())

    _, until = read_token_answer(token_reply("1e400"), SCORE, 1000.0)
    assert until == 1000.0 + 86_400 - 60
    with pytest.raises(PlatformCallFailed):
        read_token_answer(token_reply("NaN"), SCORE, 1000.0)
    held = [grades._retry_after(httpx.Response(429, headers={"Retry-After": v}))
            for v in ("inf", "1e12", "30", "soon")]  # fmt: skip
    assert held == [None, 3600.0, 30.0, None]


@pytest.mark.parametrize("where", ["score", "token"])
def test_a_platform_that_trickles_its_answer_is_cut_off_and_the_others_scores_go(
    world: World, where: str
) -> None:
    """A second platform's score (or token) endpoint answers a byte at a time, never silent
    for a whole read timeout: its call is cut off at DELIVERY_TIMEOUT_S in all, its target
    retried, and the first platform's learners get their scores in the same run."""

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(120):  # 60 s at most: the test's bound on a hang, not on speed
            conn.sendall(b"X")
            time.sleep(0.5)

    world.ctx.settings = world.ctx.settings.model_copy(update={"delivery_timeout_s": 1.0})
    with server(trickle) as slow:
        token_url = {"auth_token_url": slow.url} if where == "token" else {}
        other, book = register_other_platform(world, **token_url)
        lineitem = f"{slow.url}/lineitems/1" if where == "score" else book.add_line_item("X")
        try:
            slow_learner = launch_from(world, other, OTHER_PLATFORM, "e-1",
                                       **book.claim(lineitem))  # fmt: skip
            item = world.book.add_line_item("Speed")
            learners = [world.launch(f"u-{i}", **world.book.claim(item)) for i in range(3)]
            for user in [slow_learner, *learners]:
                world.watch(user, 30)
            world.flush()
            world.clock.advance(2 * INTERVAL_S)
            totals = world.deliver()
        finally:
            other.close()
    assert all(len(world.scores(item, f"u-{i}")) == 1 for i in range(3))
    assert totals["posted"] == 3 and totals["retried"] == 1
    [target] = world.db["lti_grade_targets"].find({"platform_id": OTHER_PLATFORM})
    assert "no whole answer within 1 s" in target["last_error"]["error"]


@pytest.mark.parametrize(
    "url",
    ["http://lms.example/lineitems/1", "https://user:pw@lms.example/lineitems/1",
     "https://lms.example/lineitems/1#x", "https://lms.example/" + "a" * 5000, "ftp://lms/1"],
)  # fmt: skip
def test_a_line_item_url_the_tool_may_not_call_records_no_grade_target(
    world: World, url: str
) -> None:
    """The tool calls a platform's URLs with its token: a launch naming a line item that is not
    https (http only on a loopback host), holds credentials or a fragment, or is too long, is
    taken as naming none (no grade target; the launch itself goes on)."""
    claim = world.book.claim(url)
    [ags] = claim.values()
    ags["lineitems"] = url  # the container too: nothing the tool may call to post to
    world.launch("u-1", **claim)
    assert targets(world.db) == []
    assert service_url(url) is None
    assert service_url("https://lms.example/lineitems/1?type=x") is not None
