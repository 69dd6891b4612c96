"""LMS contexts, classes and NRPS rosters (API.md, "LTI 1.3 Advantage": Classes, Roster;
shared/lti/classes.py, shared/lti/roster.py) against the suite's LMS (tests/lti_platform.py):
lti1p3platform signs the launches; the platform's services (`Gradebook`: its one token endpoint,
strict client assertion checks, scopes per endpoint) serve the roster in pages linked by `Link`
headers. The sync job's function runs here in the test (workers/roster.py `run_sync`); in real
RQ worker processes, after an instructor's launch over HTTP, in tests/test_lti_grades_system.py
(the instructor flow). Time moves on a MockedClock."""

from __future__ import annotations

import asyncio
import base64
import csv
import hashlib
import io
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pymongo import ASCENDING
from pymongo.database import Database

from shared.clock import MockedClock
from shared.errors import PlatformCallFailed
from shared.lti.classes import CONTEXTS, MEMBERS, NRPS_CLAIM, class_id_of, context_of
from shared.lti.identity import user_id_of
from shared.lti.launch import CONTEXT
from shared.lti.roster import MEMBERSHIPS, RosterUnreadable
from shared.lti.session import session_claims
from shared.settings import Settings
from tests.helpers import (
    CLASS_COURSE,
    CLASS_COURSE_ID,
    COURSE_ID,
    bearer,
    heartbeat,
    present,
)
from tests.lti_platform import (
    INSTRUCTOR,
    LEARNER,
    NRPS_SCOPE,
    PLATFORM_ID,
    SCORE,
    VIDEO,
    Gradebook,
    Lms,
)
from tests.test_delivery_receivers import server
from tests.test_lti_launch import login, open_app, post_launch
from workers.context import WorkerContext, build_context
from workers.flush import flush_batch
from workers.roster import run_sync

ROSTER_PATH = "/nrps/ctx-1"
TEACHER = [INSTRUCTOR]


@pytest.fixture
def client(settings: Settings, clock: MockedClock, lms: Lms) -> Iterator[TestClient]:
    c = open_app(settings, clock, lms, ["dep-1"])
    yield c
    c.__exit__(None, None, None)


@pytest.fixture
def two_deployments(settings: Settings, clock: MockedClock, lms: Lms) -> Iterator[TestClient]:
    """The app with one registration of two deployments (`deployment_ids` naming both)."""
    c = open_app(settings, clock, lms, ["dep-1", "dep-2"])
    yield c
    c.__exit__(None, None, None)


@pytest.fixture
def services(client: TestClient, clock: MockedClock, lms: Lms) -> Gradebook:
    """The platform's token endpoint and rosters; it checks assertions on the tool's clock."""
    return Gradebook(lms, lambda: client.get("/lti/jwks").json(), now=clock.time)


@pytest.fixture
def worker(settings: Settings, clock: MockedClock) -> Iterator[WorkerContext]:
    ctx = build_context(settings, clock)
    yield ctx
    ctx.mongo.close()


def member(sub: str, name: str, roles: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    given, family = name.split(" ", 1)
    return {"user_id": sub, "name": name, "given_name": given, "family_name": family,
            "roles": roles or [LEARNER], **extra}  # fmt: skip


def launch(client: TestClient, lms: Lms, **claims: Any) -> str:
    """A launch through login and the platform; the session token its page hands over."""
    r = post_launch(client, lms.authorize(login(client, lms), **claims))
    assert r.status_code == 200, r.text
    found = re.search(r'href="/#/launch/([^/"]+)/', r.text)
    assert found, r.text
    return found.group(1)


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def table(client: TestClient, headers: dict[str, str], **params: Any) -> list[tuple[str, Any]]:
    r = client.get(f"/api/teacher/courses/{COURSE_ID}/progress", headers=headers, params=params)
    assert r.status_code == 200, r.text
    return [(row["student_id"], row["name"]) for row in r.json()["rows"]]


def uid(sub: str) -> str:
    return user_id_of(PLATFORM_ID, sub)


# -- contexts -----------------------------------------------------------------------------


def test_every_launch_context_is_listed_for_admins_with_its_course(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    launch(client, lms, context=("ctx-1", "Physics"))
    launch(client, lms, context=("ctx:2/b", "Optics"), sub="u-9", roles=TEACHER)
    launch(client, lms, context=("ctx-1", "Physics (renamed)"), sub="u-8")
    admin = bearer(settings, "root", "admin", now=clock.time())
    r = client.get("/api/admin/lti/contexts", headers=admin)
    assert r.status_code == 200, r.text
    never = {"roster_synced_at": None, "roster_error": None}
    assert r.json() == {
        "rows": [
            {"platform_id": PLATFORM_ID, "deployment_id": "dep-1", "context_id": "ctx-1",
             "title": "Physics (renamed)", "course_id": COURSE_ID, **never},
            {"platform_id": PLATFORM_ID, "deployment_id": "dep-1", "context_id": "ctx:2/b",
             "title": "Optics", "course_id": COURSE_ID, **never},
        ]
    }  # fmt: skip
    teacher = bearer(settings, "t-1", "teacher", now=clock.time())
    assert client.get("/api/admin/lti/contexts", headers=teacher).status_code == 403


def test_a_deep_linking_launch_keeps_its_context_before_any_material_is_linked(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    form = lms.authorize_deep_link(login(client, lms), roles=TEACHER, context=("ctx-new", "New"))
    assert post_launch(client, form).status_code == 200
    admin = bearer(settings, "root", "admin", now=clock.time())
    rows = client.get("/api/admin/lti/contexts", headers=admin).json()["rows"]
    never = {"roster_synced_at": None, "roster_error": None}
    assert rows == [{"platform_id": PLATFORM_ID, "deployment_id": "dep-1",
                     "context_id": "ctx-new", "title": "New", "course_id": None,
                     **never}]  # fmt: skip


# -- classes ------------------------------------------------------------------------------


def test_an_instructor_sees_their_class_only_by_roster_names(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    launch(client, lms, sub="u-1", name="Ada Lovelace", context=("ctx-1", "Physics A"))
    launch(client, lms, sub="u-2", name="Alan Turing", context=("ctx-2", "Physics B"))
    token = launch(client, lms, sub="t-1", roles=TEACHER, context=("ctx-1", "Physics A"))
    teacher = auth(token)
    assert table(client, teacher) == [(uid("u-1"), "Ada Lovelace")]
    assert table(client, teacher, format="json", q="lti") == [(uid("u-1"), "Ada Lovelace")]
    assert table(client, teacher, format="json", q="lovelACE") == [(uid("u-1"), "Ada Lovelace")]
    assert table(client, teacher, format="json", q="Turing") == []  # another class's
    matrix = client.get(f"/api/teacher/courses/{COURSE_ID}/matrix", headers=teacher).json()
    assert [(r["student_id"], r["name"]) for r in matrix["rows"]] == [(uid("u-1"), "Ada Lovelace")]
    paged = client.get(
        f"/api/teacher/courses/{COURSE_ID}/matrix", headers=teacher, params={"limit": 10}
    ).json()
    assert [r["student_id"] for r in paged["rows"]] == [uid("u-1")]
    stats = client.get(f"/api/teacher/courses/{COURSE_ID}/stats", headers=teacher).json()
    assert stats["enrolled"] == 1
    course = client.get(f"/api/courses/{COURSE_ID}", headers=teacher)  # the dashboard's read
    assert course.status_code == 200, course.text
    drill = f"/api/teacher/courses/{COURSE_ID}/students/{{}}/progress"
    assert client.get(drill.format(uid("u-1")), headers=teacher).status_code == 200
    assert client.get(drill.format(uid("u-2")), headers=teacher).status_code == 404
    admin = bearer(settings, "root", "admin", now=clock.time())
    assert sorted(table(client, admin)) == sorted(
        [(uid("u-1"), "Ada Lovelace"), (uid("u-2"), "Alan Turing")]
    )
    other = f"/api/courses/{CLASS_COURSE_ID}"
    assert client.put(other, json=CLASS_COURSE, headers=admin).status_code == 201
    r = client.get(f"/api/teacher/courses/{CLASS_COURSE_ID}/progress", headers=teacher)
    assert r.status_code == 403, r.text  # their class is in another course


def test_an_instructor_sees_roster_names_in_both_csvs_the_drill_down_and_their_courses(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    launch(client, lms, sub="u-1", name="Ada Lovelace", context=("ctx-1", "Physics A"))
    launch(client, lms, sub="u-2", name="Alan Turing", context=("ctx-2", "Physics B"))
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, context=("ctx-1", "Physics A")))
    base = f"/api/teacher/courses/{COURSE_ID}"
    r = client.get(f"{base}/matrix", headers=teacher, params={"format": "csv"})
    assert r.status_code == 200, r.text
    lines = list(csv.reader(io.StringIO(r.text)))
    assert [line[:2] for line in lines] == [["student_id", "name"], [uid("u-1"), "Ada Lovelace"]]
    r = client.get(f"{base}/progress", headers=teacher, params={"format": "csv"})
    found = [(row["student_id"], row["name"]) for row in csv.DictReader(io.StringIO(r.text))]
    assert found == [(uid("u-1"), "Ada Lovelace")]
    drill = client.get(f"{base}/students/{uid('u-1')}/progress", headers=teacher)
    assert drill.status_code == 200, drill.text
    assert (drill.json()["student_id"], drill.json()["name"]) == (uid("u-1"), "Ada Lovelace")
    admin = bearer(settings, "root", "admin", now=clock.time())
    drill = client.get(f"{base}/students/{uid('u-2')}/progress", headers=admin).json()
    assert drill["name"] == "Alan Turing"  # an admin's drill-down names any class's learner
    mine = client.get("/api/me/courses", headers=teacher)  # the dashboard's list after a launch
    assert mine.status_code == 200, mine.text
    assert [(c["course_id"], c["enrolled"]) for c in mine.json()["courses"]] == [(COURSE_ID, 1)]


def test_a_renewed_instructor_session_keeps_its_class(client: TestClient, lms: Lms) -> None:
    launch(client, lms, sub="u-1", name="Ada Lovelace", context=("ctx-1", "Physics A"))
    launch(client, lms, sub="u-2", name="Alan Turing", context=("ctx-2", "Physics B"))
    token = launch(client, lms, sub="t-1", roles=TEACHER, context=("ctx-2", "Physics B"))
    renewed = client.post("/lti/session", headers=auth(token))
    assert renewed.status_code == 200, renewed.text
    assert table(client, auth(renewed.json()["token"])) == [(uid("u-2"), "Alan Turing")]


def test_a_class_claim_in_an_identity_provider_token_is_ignored(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    """Only the tool's own sessions scope a teacher to a class: a school token claiming one
    teaches nothing it did not teach before."""
    launch(client, lms, sub="u-1", name="Ada Lovelace")
    scope = {"id": class_id_of(PLATFORM_ID, "dep-1", "ctx-1"), "course_id": COURSE_ID}
    claims = {"sub": "t-x", "role": "teacher", "exp": clock.time() + 600, "lti_class": scope}
    forged = jwt.encode(claims, present(settings.jwt_secret).get_secret_value(), "HS256")
    r = client.get(f"/api/teacher/courses/{COURSE_ID}/progress", headers=auth(forged))
    assert r.status_code == 403, r.text


def test_two_deployments_contexts_with_one_id_are_two_classes(
    two_deployments: TestClient,
    lms: Lms,
    settings: Settings,
    clock: MockedClock,
    worker: WorkerContext,
) -> None:
    """A context id is unique within its deployment only (Core 1.3 §5.4.1: "locally unique to
    the deployment_id"): two deployments of one registration that both send context "101" are
    two classes. Each instructor sees their own context's learners only, in every class read,
    and each class's roster is read from its own deployment's `context_memberships_url`."""
    client = two_deployments
    services = Gradebook(lms, lambda: client.get("/lti/jwks").json(), now=clock.time)
    lms.registration.set_deployment_id("dep-1")
    launch(client, lms, sub="u-1", name="Ada Lovelace", context=("101", "Physics, school A"))
    lms.registration.set_deployment_id("dep-2")
    launch(client, lms, sub="u-2", name="Alan Turing", context=("101", "Chemistry, school B"))
    lms.registration.set_deployment_id("dep-3")  # the deployment claim is sent and checked
    refused = post_launch(client, lms.authorize(login(client, lms), context=("101", "x")))
    assert refused.status_code == 401
    lms.registration.set_deployment_id("dep-1")
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, context=("101", "Physics")))
    base = f"/api/teacher/courses/{COURSE_ID}"
    assert table(client, teacher) == [(uid("u-1"), "Ada Lovelace")]
    csv_rows = client.get(f"{base}/progress", headers=teacher, params={"format": "csv"}).text
    assert [r["student_id"] for r in csv.DictReader(io.StringIO(csv_rows))] == [uid("u-1")]
    matrix = client.get(f"{base}/matrix", headers=teacher).json()
    assert [r["student_id"] for r in matrix["rows"]] == [uid("u-1")]
    assert client.get(f"{base}/stats", headers=teacher).json()["enrolled"] == 1
    assert client.get(f"{base}/students/{uid('u-1')}/progress", headers=teacher).status_code == 200
    assert client.get(f"{base}/students/{uid('u-2')}/progress", headers=teacher).status_code == 404
    lms.registration.set_deployment_id("dep-2")
    other = auth(launch(client, lms, sub="t-2", roles=TEACHER, context=("101", "Chemistry")))
    assert table(client, other) == [(uid("u-2"), "Alan Turing")]
    # Each deployment's instructor launch offers its own roster; each class syncs its own.
    rosters = {
        "dep-1": [member("u-1", "Ada Lovelace"), member("u-3", "Grace Hopper")],
        "dep-2": [member("u-2", "Alan Turing"), member("u-4", "Edsger Dijkstra")],
    }
    titles = {"dep-1": "Physics", "dep-2": "Chemistry"}
    for dep, members in rosters.items():
        lms.registration.set_deployment_id(dep)
        url = services.serve_roster(f"/nrps/{dep}", members, page_size=10)
        launch(client, lms, sub=f"t-{dep}", roles=TEACHER, context=("101", titles[dep]),
               memberships_url=url)  # fmt: skip
    outcome = run_sync(worker, class_id_of(PLATFORM_ID, "dep-1", "101"))
    assert outcome is not None and outcome.active == 2
    read = [services.roster_pages_read(f"/nrps/{dep}") for dep in rosters]
    assert read == [1, 0]  # dep-1's roster, not the other deployment's (the latest launch's)
    run_sync(worker, class_id_of(PLATFORM_ID, "dep-2", "101"))
    mine = sorted(table(client, teacher))
    assert mine == sorted([(uid("u-1"), "Ada Lovelace"), (uid("u-3"), "Grace Hopper")])
    theirs = sorted(table(client, other))
    assert theirs == sorted([(uid("u-2"), "Alan Turing"), (uid("u-4"), "Edsger Dijkstra")])
    admin = bearer(settings, "root", "admin", now=clock.time())
    rows = client.get("/api/admin/lti/contexts", headers=admin).json()["rows"]
    assert [(r["deployment_id"], r["context_id"], r["title"]) for r in rows] == [
        ("dep-1", "101", "Physics"), ("dep-2", "101", "Chemistry")]  # fmt: skip


def old_class_id(platform_id: str, context_id: str) -> str:
    """A class id as the builds before this fix made it: of (platform, context id) only."""
    digest = hashlib.sha256(f"{len(platform_id)}:{platform_id}:{context_id}".encode()).digest()
    return "ltic-" + base64.b32encode(digest).decode().rstrip("=").lower()[:32]


def test_a_context_kept_without_its_deployment_is_no_class_after_the_upgrade(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    settings: Settings,
    clock: MockedClock,
    worker: WorkerContext,
    mongo_db: Database[dict[str, Any]],
) -> None:
    """Before class ids named the deployment a context was unique on (platform, context id),
    its class id made of that pair. At the upgrade that index goes (it would refuse a second
    deployment's context of the same id), the next launch makes the context again in its
    deployment, and the old one is listed without a deployment and never synced again (its
    roster URL may be any deployment's)."""
    url = services.serve_roster(ROSTER_PATH, roster_of(2), page_size=5)
    contexts, old = mongo_db[CONTEXTS], old_class_id(PLATFORM_ID, "ctx-1")
    contexts.drop()
    contexts.create_index([("platform_id", ASCENDING), ("context_id", ASCENDING)], unique=True)
    contexts.insert_one({"_id": old, "platform_id": PLATFORM_ID, "context_id": "ctx-1",
                         "title": "Physics", "course_id": COURSE_ID, "memberships_url": url,
                         "first_seen_at": 0.0, "last_launch_at": 0.0})  # fmt: skip
    classes = client.app.state.ctx.lti_classes  # type: ignore[attr-defined]  # Starlette's state
    classes.ensure_indexes()  # as each process does when it starts
    classes.ensure_indexes()
    keys = [[k for k, _ in i["key"]] for i in contexts.index_information().values()]
    assert ["platform_id", "context_id"] not in keys
    assert ["platform_id", "deployment_id", "context_id"] in keys
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    new = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    assert classes.due_for_sync(clock.time()) == [new]
    assert run_sync(worker, old) is None and services.roster_pages_read(ROSTER_PATH) == 0
    run_sync(worker, new)
    assert len(table(client, teacher)) == 2
    admin = bearer(settings, "root", "admin", now=clock.time())
    rows = client.get("/api/admin/lti/contexts", headers=admin).json()["rows"]
    assert sorted((r["deployment_id"] or "", r["context_id"]) for r in rows) == [
        ("", "ctx-1"), ("dep-1", "ctx-1")]  # fmt: skip
    # An instructor's session launched before the upgrade, scoped to the old class, ends.
    keys = client.app.state.ctx.lti_keys  # type: ignore[attr-defined]  # Starlette's state
    claims = session_claims("t-0", "teacher", clock.time())
    stale = auth(keys.sign({**claims, "lti_class": {"id": old, "course_id": COURSE_ID}}, 600))
    r = client.get(f"/api/teacher/courses/{COURSE_ID}/progress", headers=stale)
    assert r.status_code == 401 and "launch again" in r.text, r.text
    assert client.post("/lti/session", headers=stale).status_code == 401


# -- rosters ------------------------------------------------------------------------------


def roster_of(n: int) -> list[dict[str, Any]]:
    return [member(f"r-{i:02d}", f"Learner{i:02d} Roster") for i in range(n)]


def test_an_instructor_launch_syncs_every_learner_over_three_pages(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    worker: WorkerContext,
    mongo_db: Database[dict[str, Any]],
) -> None:
    learners = roster_of(7)
    others = [
        member("t-1", "Grace Hopper", [INSTRUCTOR]),
        member("r-gone", "Old Student", [LEARNER], status="Inactive"),
    ]
    url = services.serve_roster(ROSTER_PATH, [*learners[:3], *others, *learners[3:]], page_size=3)
    launch(client, lms, sub="r-00", name="Learner00 Roster")  # one of them launched before
    token = launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url)
    class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    outcome = run_sync(worker, class_id)
    assert outcome is not None and (outcome.active, outcome.deactivated) == (7, 0)
    assert services.roster_pages_read(ROSTER_PATH) == 3
    expected = sorted((uid(m["user_id"]), m["name"]) for m in learners)
    assert table(client, auth(token), limit=1000) == expected
    assert mongo_db["lti_contexts"].find_one({"_id": class_id})["roster_error"] is None  # type: ignore[index]
    assert len(services.jtis) == 1  # one token, its assertion checked strictly by the platform


def test_a_failed_page_changes_nothing(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    worker: WorkerContext,
    settings: Settings,
    clock: MockedClock,
) -> None:
    roster = roster_of(7)
    url = services.serve_roster(ROSTER_PATH, roster, page_size=3)
    token = launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url)
    class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, class_id)
    synced_at = clock.time()
    before = table(client, auth(token), limit=1000)
    assert len(before) == 7
    roster[:] = roster_of(5) + [member("n-1", "New Comer")]  # two pages: two left, one came
    services.failing_pages.add(2)
    with pytest.raises(RosterUnreadable):
        run_sync(worker, class_id)
    assert table(client, auth(token), limit=1000) == before
    admin = bearer(settings, "root", "admin", now=clock.time())
    (row,) = client.get("/api/admin/lti/contexts", headers=admin).json()["rows"]
    assert "page 2" in row["roster_error"] and row["roster_synced_at"] == pytest.approx(synced_at)


def test_a_roster_answered_401_drops_the_cached_token_so_the_retry_can_succeed(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    worker: WorkerContext,
    clock: MockedClock,
) -> None:
    """docs/lti.md, Tokens: a `401` drops the cached token. Kept, every RQ retry (10 s, 60 s,
    300 s) would fail the same way until the token's expires_in ran out (kept up to a day)."""
    roster = roster_of(2)
    url = services.serve_roster(ROSTER_PATH, roster, page_size=5)
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, class_id)
    issued = len(services.tokens_issued)
    lms.rotate()  # the platform's new key: tokens it issued before are refused (401)
    roster.append(member("n-1", "New Comer"))
    clock.advance(10)
    with pytest.raises(RosterUnreadable, match="401"):
        run_sync(worker, class_id)  # the first attempt meets the 401
    clock.advance(10)  # RQ's first retry, 10 s later
    run_sync(worker, class_id)  # a new token
    assert len(services.tokens_issued) == issued + 1
    assert uid("n-1") in [s for s, _ in table(client, teacher)]


def test_a_learner_who_left_the_roster_is_hidden_and_keeps_their_progress(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    worker: WorkerContext,
    clock: MockedClock,
    settings: Settings,
    mongo_db: Database[dict[str, Any]],
) -> None:
    roster = roster_of(3)
    url = services.serve_roster(ROSTER_PATH, roster, page_size=2)
    learner = launch(client, lms, sub="r-01", name="Learner01 Roster")
    r = client.post(
        f"/api/progress/video/{VIDEO}/watch-time",
        json=heartbeat(40, played=[[0, 40]]),
        headers=auth(learner),
    )
    assert r.status_code == 202, r.text
    clock.advance(settings.flush_interval_s + 1)
    flush_batch(worker, 1000)
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, class_id)
    rows = client.get(f"/api/teacher/courses/{COURSE_ID}/progress", headers=teacher).json()["rows"]
    watched = {row["student_id"]: row["watched_seconds"] for row in rows}
    assert watched == {uid("r-00"): 0.0, uid("r-01"): 40.0, uid("r-02"): 0.0}

    del roster[1]  # r-01 left the course in the LMS
    outcome = run_sync(worker, class_id)
    assert outcome is not None and (outcome.active, outcome.deactivated) == (2, 1)
    assert [s for s, _ in table(client, teacher)] == [uid("r-00"), uid("r-02")]
    admin = bearer(settings, "root", "admin", now=clock.time())
    assert uid("r-01") not in [s for s, _ in table(client, admin)]
    kept = mongo_db["watch_progress"].find_one({"student_id": uid("r-01"), "material_id": VIDEO})
    assert kept is not None and kept["watched_seconds"] == 40.0

    roster.insert(1, member("r-01", "Learner01 Roster"))  # back on the roster
    run_sync(worker, class_id)
    rows = client.get(f"/api/teacher/courses/{COURSE_ID}/progress", headers=teacher).json()["rows"]
    assert {row["student_id"]: row["watched_seconds"] for row in rows} == watched

    roster[2] = {**roster[2], "status": "Inactive"}  # listed, but no longer active
    outcome = run_sync(worker, class_id)
    assert outcome is not None and (outcome.active, outcome.deactivated) == (2, 1)
    assert [s for s, _ in table(client, teacher)] == [uid("r-00"), uid("r-01")]


def test_only_a_token_with_the_nrps_scope_reads_the_roster(
    client: TestClient, lms: Lms, services: Gradebook, settings: Settings, clock: MockedClock
) -> None:
    url = services.serve_roster(ROSTER_PATH, roster_of(2), page_size=5)
    launch(client, lms)  # the tool's key exists
    tokens = client.app.state.ctx.lti_tokens  # type: ignore[attr-defined]  # Starlette's state
    platform = client.app.state.ctx.lti_platforms.by_id(PLATFORM_ID)  # type: ignore[attr-defined]

    async def token(scope: str) -> str:
        found: str = await tokens.access_token(platform, [scope])
        return found

    ags_only = asyncio.run(token(SCORE))
    assert services.tokens_issued == [SCORE]  # a valid token, granted the score scope only
    assert httpx.get(url, headers=auth(ags_only)).status_code == 403
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=auth("not-a-token")).status_code == 401
    nrps = asyncio.run(token(NRPS_SCOPE))
    assert httpx.get(url, headers=auth(nrps)).status_code == 200


# -- erasure and export ---------------------------------------------------------------------


def test_export_shows_and_erasure_removes_the_identity_mapping_and_roster_entries(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    launch(client, lms, sub="u-1", name="Ada Lovelace", context=("ctx-1", "Physics A"))
    admin = bearer(settings, "root", "admin", now=clock.time())
    export = f"/api/admin/students/{uid('u-1')}/export"
    shown = client.get(export, headers=admin).json()["lti_memberships"]
    assert [(m["platform_id"], m["deployment_id"], m["sub"], m["name"], m["context_id"],
             m["active"]) for m in shown] == [
        (PLATFORM_ID, "dep-1", "u-1", "Ada Lovelace", "ctx-1", True)]  # fmt: skip
    r = client.delete("/api/admin/progress", headers=admin, params={"student_id": uid("u-1")})
    assert r.status_code == 200 and r.json()["lti_members"] == 1, r.text
    assert client.get(export, headers=admin).json()["lti_memberships"] == []
    assert table(client, admin) == [(uid("u-1"), None)]  # still enrolled, no name kept


def test_an_erasure_while_a_sync_reads_the_roster_wins_over_that_sync(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    worker: WorkerContext,
    settings: Settings,
    clock: MockedClock,
    mongo_db: Database[dict[str, Any]],
) -> None:
    """API.md: erasure wins over everything in flight. The sync read page 1 (r-00, r-01)
    before the erasure of r-01 answered: it writes nothing of r-01. A sync that reads the roster
    after the erasure enrolls r-01 again, named, as a launch would: erasure is no ban."""
    url = services.serve_roster(ROSTER_PATH, roster_of(4), page_size=2)
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, class_id)
    named = sorted((uid(f"r-{i:02d}"), f"Learner{i:02d} Roster") for i in range(4))
    assert table(client, teacher) == named
    admin = bearer(settings, "root", "admin", now=clock.time())

    def erase_r01() -> None:  # in the LMS's thread, before it answers page 2
        r = client.delete("/api/admin/progress", headers=admin, params={"student_id": uid("r-01")})
        assert r.status_code == 200 and r.json()["lti_members"] == 1, r.text

    services.before_page[2] = erase_r01
    clock.advance(1)
    outcome = run_sync(worker, class_id)
    assert outcome is not None and (outcome.active, outcome.deactivated) == (3, 0)
    assert mongo_db["lti_members"].count_documents({"user_id": uid("r-01")}) == 0
    expected = sorted((s, None if s == uid("r-01") else n) for s, n in named)  # no name kept
    assert table(client, bearer(settings, "root", "admin", now=clock.time())) == expected

    del services.before_page[2]
    clock.advance(1)  # a sync that starts reading after the erasure
    run_sync(worker, class_id)
    assert mongo_db["lti_members"].count_documents({"user_id": uid("r-01")}) == 1
    assert table(client, teacher) == named


def test_a_learner_who_launches_while_a_sync_reads_the_roster_stays_enrolled(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    worker: WorkerContext,
    clock: MockedClock,
) -> None:
    """The sync read page 1 before n-1's first launch (n-1 was just added to the LMS course);
    applying that older roster must not take away the membership and enrollment the newer
    launch made: a repeated or concurrent sync ends the same (docs/lti.md, Rosters)."""
    roster = roster_of(4)
    url = services.serve_roster(ROSTER_PATH, roster, page_size=2)
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, class_id)
    clock.advance(60)
    tokens: list[str] = []

    def newcomer_launches() -> None:  # in the LMS's thread, while the sync reads page 2
        tokens.append(launch(client, lms, sub="n-1", name="New Comer"))

    services.before_page[2] = newcomer_launches
    outcome = run_sync(worker, class_id)
    assert outcome is not None and (outcome.active, outcome.deactivated) == (4, 0)
    (learner,) = tokens
    # The learner is on the player right now: their watching must be accepted.
    r = client.post(
        f"/api/progress/video/{VIDEO}/watch-time", json=heartbeat(5), headers=auth(learner)
    )
    assert r.status_code == 202, r.text
    assert uid("n-1") in [s for s, _ in table(client, teacher)]

    del services.before_page[2]
    clock.advance(60)  # the next sync reads a roster without them: they leave the class then
    outcome = run_sync(worker, class_id)
    assert outcome is not None and (outcome.active, outcome.deactivated) == (4, 1)
    assert uid("n-1") not in [s for s, _ in table(client, teacher)]


def test_a_class_is_due_for_its_next_sync_one_interval_after_the_last(
    client: TestClient, lms: Lms, services: Gradebook, worker: WorkerContext, clock: MockedClock
) -> None:
    url = services.serve_roster(ROSTER_PATH, roster_of(2), page_size=5)
    launch(client, lms, sub="u-1", context=("ctx-0", "No roster"))  # never due: no roster URL
    launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url)
    classes = client.app.state.ctx.lti_classes  # type: ignore[attr-defined]  # Starlette's state
    class_id, interval = class_id_of(PLATFORM_ID, "dep-1", "ctx-1"), 3600
    assert classes.due_for_sync(clock.time() - interval) == [class_id]  # never synced
    run_sync(worker, class_id)
    clock.advance(interval - 1)
    assert classes.due_for_sync(clock.time() - interval) == []
    clock.advance(2)
    assert classes.due_for_sync(clock.time() - interval) == [class_id]
    services.failing_pages.add(1)
    with pytest.raises(RosterUnreadable):
        run_sync(worker, class_id)
    assert classes.due_for_sync(clock.time() - interval) == [class_id]  # a failure is no sync


def test_a_roster_page_trickled_in_is_cut_off_and_changes_nothing(
    client: TestClient, lms: Lms, services: Gradebook, worker: WorkerContext,
    mongo_db: Database[dict[str, Any]],
) -> None:  # fmt: skip
    """A platform that answers its roster page a byte at a time, never silent for a whole read
    timeout, holds the sync no longer than DELIVERY_TIMEOUT_S: unreadable, nothing changed,
    the error recorded (and RQ retries the job)."""

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: " + MEMBERSHIPS.encode() + b"\r\n\r\n")
        for _ in range(120):  # 60 s, at most: the test's bound on a hang, not on speed
            conn.sendall(b" ")
            time.sleep(0.5)

    with server(trickle) as slow:
        launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=slow.url)
        class_id = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
        worker.settings = worker.settings.model_copy(update={"delivery_timeout_s": 1.0})
        with pytest.raises(RosterUnreadable, match="no whole answer within 1 s"):
            run_sync(worker, class_id)
    assert mongo_db[MEMBERS].count_documents({}) == 0
    [context] = mongo_db[CONTEXTS].find({})
    assert "no whole answer" in context["roster_error"]


@pytest.mark.parametrize(
    ("url", "kept"),
    [("https://lms.example/nrps/1", True), ("http://127.0.0.1:8080/nrps/1", True),
     ("http://lms.example/nrps/1", False), ("https://a:b@lms.example/nrps", False),
     (7, False)],
)  # fmt: skip
def test_a_roster_url_the_tool_may_not_call_is_not_kept(url: object, kept: bool) -> None:
    """The tool calls the roster URL with its token: only https (http on loopback)."""
    claims = {CONTEXT: {"id": "ctx-1", "title": "Physics"},
              NRPS_CLAIM: {"context_memberships_url": url}}  # fmt: skip
    context = context_of(PLATFORM_ID, "dep-1", claims)
    assert context is not None and (context.memberships_url == url) is kept


def test_an_erased_learner_who_then_leaves_the_lms_course_leaves_the_class(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    settings: Settings,
    clock: MockedClock,
    worker: WorkerContext,
    mongo_db: Database[dict[str, Any]],
) -> None:
    """Erasure forgets the learner's LMS identity (their member entries); while the LMS still
    lists them their row stays, nameless; once they leave, the next sync takes the class off
    their enrollment (it reads the enrollments the class holds, not only the members)."""
    admin = bearer(settings, "root", "admin", now=clock.time())
    roster = [member("r-01", "Learner01 Roster"), member("r-02", "Learner02 Roster")]
    url = services.serve_roster(ROSTER_PATH, roster, page_size=5)
    teacher = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    cid = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, cid)
    r = client.delete("/api/admin/progress", params={"student_id": uid("r-01")}, headers=admin)
    assert r.status_code == 200 and r.json()["lti_members"] == 1
    roster.pop(0)  # r-01 leaves the LMS course
    clock.advance(5)
    run_sync(worker, cid)
    # docs/lti.md: a member who left the roster is made inactive, the class id pulled from their
    # enrollment, and unenrolled when in no class of the course: no view lists them.
    enrollment = mongo_db["enrollments"].find_one({"student_id": uid("r-01")})
    assert enrollment is None or cid not in (enrollment.get("classes") or []), enrollment
    assert [s for s, _ in table(client, teacher)] == [uid("r-02")]


def test_a_learner_who_leaves_an_lms_course_linking_two_of_ours_leaves_both(
    client: TestClient,
    lms: Lms,
    services: Gradebook,
    settings: Settings,
    clock: MockedClock,
    worker: WorkerContext,
    mongo_db: Database[dict[str, Any]],
) -> None:
    """An LMS course can link videos of two of our courses: a learner who leaves its roster is
    taken off the class in both, not only in the course of the context's latest launch."""
    admin = bearer(settings, "root", "admin", now=clock.time())
    assert (
        client.put(f"/api/courses/{CLASS_COURSE_ID}", json=CLASS_COURSE, headers=admin).status_code
        == 201
    )
    roster = [member("r-01", "Learner01 Roster")]
    url = services.serve_roster(ROSTER_PATH, roster, page_size=5)
    launch(client, lms, sub="r-01", name="Learner01 Roster")  # ctx-1, a video of phys-101
    teacher_a = auth(launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url))
    cid = class_id_of(PLATFORM_ID, "dep-1", "ctx-1")
    run_sync(worker, cid)
    # the same LMS course also links a video of phys-201 (the picker offers the whole catalog)
    other = CLASS_COURSE["modules"][0]["materials"][0]["material_id"]
    launch(
        client,
        lms,
        sub="t-1",
        roles=TEACHER,
        memberships_url=url,
        material_id=other,
        resource_link=("rl-2", "Other"),
    )
    run_sync(worker, cid)
    clock.advance(60)  # later (a sync that began as they launched would keep them)
    roster.clear()  # r-01 leaves the LMS course
    run_sync(worker, cid)
    assert not present(mongo_db[MEMBERS].find_one({"user_id": uid("r-01")}))["active"]
    # inactive members are not listed (docs/lti.md), yet phys-101's class table still shows them
    assert table(client, teacher_a) == [], table(client, teacher_a)


def test_a_token_endpoint_trickling_its_answer_is_cut_off_and_changes_nothing(
    client: TestClient, lms: Lms, services: Gradebook, worker: WorkerContext, clock: MockedClock,
    settings: Settings, mongo_db: Database[dict[str, Any]],
) -> None:  # fmt: skip
    """The sync's token request (made in a thread by the shared token client) is bounded like
    its pages: a platform answering it a byte at a time holds the sync DELIVERY_TIMEOUT_S."""

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(120):  # 60 s at most: the test's bound on a hang, not on speed
            conn.sendall(b"X")
            time.sleep(0.5)

    url = services.serve_roster(ROSTER_PATH, roster_of(2), page_size=5)
    launch(client, lms, sub="t-1", roles=TEACHER, memberships_url=url)
    with server(trickle) as slow:
        admin = bearer(settings, "admin-1", "admin", now=clock.time())
        body = {**lms.registration_body(["dep-1"]), "auth_token_url": slow.url}
        r = client.put(f"/api/admin/lti/platforms/{PLATFORM_ID}", json=body, headers=admin)
        assert r.status_code == 200, r.text
        worker.settings = worker.settings.model_copy(update={"delivery_timeout_s": 1.0})
        with pytest.raises(PlatformCallFailed, match="no whole answer within 1 s"):
            run_sync(worker, class_id_of(PLATFORM_ID, "dep-1", "ctx-1"))
    assert mongo_db[MEMBERS].count_documents({}) == 0
    [context] = mongo_db[CONTEXTS].find({})
    assert "no whole answer" in context["roster_error"]
