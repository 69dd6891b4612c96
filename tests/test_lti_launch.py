"""LTI 1.3 login and launch (API.md, "LTI 1.3 Advantage"; shared/lti/launch.py) against a real
third-party platform implementation: `lti1p3platform` builds the id_token from the tool's
authentication request and signs it with its key; the suite's platform server
(tests/lti_platform.py) publishes that key set, as an LMS does. Time moves on a MockedClock:
no test sleeps."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
import redis
from fastapi.testclient import TestClient
from pymongo.database import Database

from ingest.app import create_app
from shared.clock import MockedClock
from shared.lti.identity import role_of, user_id_of
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, heartbeat
from tests.lti_platform import CLIENT_ID, DEPLOYMENT, MESSAGE_TYPE, PLATFORM_ID, VIDEO, Lms


def open_app(settings: Settings, clock: MockedClock, lms: Lms, deployments: list[str]) -> Any:
    client = TestClient(create_app(settings, clock=clock), base_url="https://testserver")
    client.__enter__()
    admin = bearer(settings, "admin-1", "admin", now=clock.time())
    assert client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
    r = client.put(
        f"/api/admin/lti/platforms/{PLATFORM_ID}",
        json=lms.registration_body(deployments),
        headers=admin,
    )
    assert r.status_code == 201, r.text
    return client


@pytest.fixture
def client(settings: Settings, clock: MockedClock, lms: Lms) -> Iterator[TestClient]:
    c = open_app(settings, clock, lms, [DEPLOYMENT])
    yield c
    c.__exit__(None, None, None)


def login(client: TestClient, lms: Lms) -> dict[str, str]:
    """The LMS starts a login; the tool's 302 carries its authentication request."""
    r = client.get(
        "/lti/login",
        params={
            "iss": lms.base,
            "login_hint": "u-42",
            "target_link_uri": "https://testserver/lti/launch",
            "lti_message_hint": "rl-1",
            "client_id": CLIENT_ID,
        },
        follow_redirects=False,
    )
    assert r.status_code == 302, r.text
    location = urlsplit(r.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{lms.base}/auth"
    return dict(parse_qsl(location.query))


def post_launch(client: TestClient, form: dict[str, str]) -> Any:
    return client.post("/lti/launch", data=form, follow_redirects=False)


def session_token(page: str) -> str:
    found = re.search(rf'href="/#/launch/([^/"]+)/student/course/{COURSE_ID}/play/{VIDEO}"', page)
    assert found, page
    return found.group(1)


def stored(mongo_db: Database[dict[str, Any]]) -> tuple[int, dict[str, Any]]:
    """What a launch stores: enrollments, and the platform's launch record."""
    platform = mongo_db["lti_platforms"].find_one({"_id": PLATFORM_ID}) or {}
    record: dict[str, Any] = {
        k: platform[k] for k in ("last_launch_at", "seen_deployment_ids") if k in platform
    }
    return mongo_db["enrollments"].count_documents({}), record


# -- login --------------------------------------------------------------------------------


def test_login_redirects_with_the_authentication_request_and_keeps_state_in_a_cookie(
    client: TestClient, lms: Lms
) -> None:
    r = client.post(
        "/lti/login",
        data={"iss": lms.base, "login_hint": "u-42", "target_link_uri": "https://x/lti/launch"},
        follow_redirects=False,
    )
    assert r.status_code == 302
    query = dict(parse_qsl(urlsplit(r.headers["location"]).query))
    fixed = {k: query.pop(k) for k in ("state", "nonce")}
    assert query == {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": CLIENT_ID,
        "redirect_uri": "https://testserver/lti/launch",
        "login_hint": "u-42",
    }  # no lti_message_hint: the login had none
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"lti1p3-state-{fixed['state']}={fixed['state']};")
    for attribute in ("HttpOnly", "Secure", "SameSite=none", "Path=/lti"):
        assert attribute.lower() in cookie.lower()


def test_login_from_an_unknown_platform_is_refused(client: TestClient) -> None:
    r = client.get(
        "/lti/login",
        params={"iss": "https://nobody.test", "login_hint": "u", "target_link_uri": "https://x"},
        follow_redirects=False,
    )
    assert r.status_code == 401 and "no platform is registered" in r.text


# -- launch -------------------------------------------------------------------------------


def test_a_learners_launch_enrolls_them_and_its_session_token_reads_progress(
    client: TestClient, lms: Lms, clock: MockedClock, mongo_db: Database[dict[str, Any]]
) -> None:
    r = post_launch(client, lms.authorize(login(client, lms)))
    assert r.status_code == 200, r.text
    headers = {"Authorization": f"Bearer {session_token(r.text)}"}
    status = client.get(f"/api/progress/video/{VIDEO}/status", headers=headers)
    assert status.status_code == 200, status.text
    assert status.json()["material_id"] == VIDEO
    watched = client.post(
        f"/api/progress/video/{VIDEO}/watch-time", json=heartbeat(5), headers=headers
    )
    assert watched.status_code == 202, watched.text  # enrolled: a stranger gets 403
    enrollments, record = stored(mongo_db)
    assert enrollments == 1 and record == {"last_launch_at": pytest.approx(clock.time())}


def test_the_same_lms_user_maps_to_one_id(client: TestClient, lms: Lms) -> None:
    """Two launches of one LMS user: the second session resumes where the first stopped, and
    another user of the same platform starts from nothing."""
    first = session_token(post_launch(client, lms.authorize(login(client, lms))).text)
    r = client.post(
        f"/api/progress/video/{VIDEO}/watch-time",
        json=heartbeat(42),
        headers={"Authorization": f"Bearer {first}"},
    )
    assert r.status_code == 202, r.text
    again = session_token(post_launch(client, lms.authorize(login(client, lms))).text)
    other = session_token(post_launch(client, lms.authorize(login(client, lms), sub="u-7")).text)
    seen = [
        client.get(
            f"/api/progress/video/{VIDEO}/status", headers={"Authorization": f"Bearer {t}"}
        ).json()["watch_time"]
        for t in (again, other)
    ]
    assert seen == [42, 0]


def test_an_instructor_is_a_teacher_and_an_administrator_is_not_an_admin(
    client: TestClient, lms: Lms, mongo_db: Database[dict[str, Any]]
) -> None:
    teacher = ["http://purl.imsglobal.org/vocab/lis/v2/membership#INSTRUCTOR"]
    r = post_launch(client, lms.authorize(login(client, lms), roles=teacher))
    assert r.status_code == 200 and "/teacher/" + COURSE_ID in r.text
    admin = ["http://purl.imsglobal.org/vocab/lis/v2/institution/person#Administrator"]
    r = post_launch(client, lms.authorize(login(client, lms), roles=admin))
    assert r.status_code == 403 and "neither learner nor instructor" in r.text
    assert stored(mongo_db)[0] == 0  # an instructor is not enrolled as a learner


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("replayed nonce", "used already"),
        ("wrong aud", "no platform is registered"),
        ("unknown deployment", "deployment 'dep-other' is not registered"),
        ("bad message type", "is not one this tool accepts"),
        ("state mismatch", "the state does not match"),
        ("expired token", "out of date"),
        ("rotated-out key", "a key the platform does not publish"),
    ],
)
def test_refused_launches_get_401_and_store_nothing(
    case: str,
    reason: str,
    client: TestClient,
    lms: Lms,
    clock: MockedClock,
    mongo_db: Database[dict[str, Any]],
) -> None:
    claims: dict[str, Any] = {
        "wrong aud": {"aud": "another-tool", "azp": "another-tool"},
        "unknown deployment": {
            "https://purl.imsglobal.org/spec/lti/claim/deployment_id": "dep-other"
        },
        "bad message type": {MESSAGE_TYPE: "LtiSubmissionReviewRequest"},
    }.get(case, {})
    request = login(client, lms)
    form = lms.authorize(request, **claims)
    if case == "replayed nonce":
        assert post_launch(client, form).status_code == 200
        client.cookies.set(f"lti1p3-state-{form['state']}", form["state"], path="/lti")
    before = stored(mongo_db)
    if case == "state mismatch":
        client.cookies.clear()
    elif case == "expired token":
        # Past the token's own `exp` (lti1p3platform stamps it with the system's time, later
        # than the fixture's clock by however long the setup took) and our 30 s leeway.
        expires = jwt.decode(form["id_token"], options={"verify_signature": False})["exp"]
        clock.advance(expires + 30 + 1 - clock.time())
    elif case == "rotated-out key":
        post_launch(client, lms.authorize(login(client, lms)))  # the set with the old key held
        lms.rotate()
        clock.advance(3600)  # an hour on: the held set is stale, fetched again
        before = stored(mongo_db)
    r = post_launch(client, form)
    assert r.status_code == 401, r.text
    assert r.headers["content-type"].startswith("text/html")
    assert reason in html.unescape(r.text)
    assert stored(mongo_db) == before


def test_a_new_platform_key_after_rotation_is_fetched_once(
    client: TestClient, lms: Lms, clock: MockedClock
) -> None:
    assert post_launch(client, lms.authorize(login(client, lms))).status_code == 200
    assert lms.fetches == 1
    old_kid = lms.kid
    lms.rotate()
    assert lms.kid != old_kid
    clock.advance(10)  # the platform rotates later than the last fetch's rate limit
    assert post_launch(client, lms.authorize(login(client, lms))).status_code == 200
    assert lms.fetches == 2  # the unknown kid fetched the set again, once
    assert post_launch(client, lms.authorize(login(client, lms))).status_code == 200
    assert lms.fetches == 2  # and it is cached again


def test_a_deployment_is_recorded_on_first_launch_where_the_registration_names_none(
    settings: Settings, clock: MockedClock, lms: Lms, mongo_db: Database[dict[str, Any]]
) -> None:
    c = open_app(settings, clock, lms, [])
    try:
        assert post_launch(c, lms.authorize(login(c, lms))).status_code == 200
        assert stored(mongo_db)[1].get("seen_deployment_ids") == [DEPLOYMENT], stored(mongo_db)
        platform = c.get(
            "/api/admin/lti/platforms", headers=bearer(settings, "a", "admin", now=clock.time())
        ).json()["rows"][0]
        assert platform["deployment_ids"] == []  # the admin's field is left alone
    finally:
        c.__exit__(None, None, None)


def test_user_ids_of_two_platforms_never_collide_even_when_ids_hold_the_separator() -> None:
    pairs = [("a:b", "c"), ("a", "b:c"), ("a", "b\x00c"), ("a\x00b", "c")]
    ids = {user_id_of(platform_id, sub) for platform_id, sub in pairs}
    assert len(ids) == len(pairs)
    assert all(re.fullmatch(r"lti-[a-z2-7]{32}", i) for i in ids)


@pytest.mark.parametrize(
    ("roles", "role"),
    [
        (["Learner"], "student"),
        (["http://purl.imsglobal.org/vocab/lis/v2/membership#learner"], "student"),
        (
            ["http://purl.imsglobal.org/vocab/lis/v2/membership/Instructor#TeachingAssistant"],
            "teacher",
        ),
        (["ContentDeveloper", "Learner"], "teacher"),
        (["http://purl.imsglobal.org/vocab/lis/v2/system/person#Administrator"], None),
        (["http://purl.imsglobal.org/vocab/lis/v2/membership#Administrator"], None),
    ],
)
def test_context_roles_decide_the_role(roles: list[str], role: str | None) -> None:
    assert role_of(roles) == role


@pytest.mark.parametrize(
    "claims",
    [
        {"role": "admin"},  # no launch makes an admin, and no token of the tool's does either
        {"aud": "a-platform"},  # what the tool signs for platforms is no session
        {"iss": "tool-client-1"},
    ],
)
def test_the_tool_signed_tokens_the_api_refuses(
    client: TestClient, lms: Lms, claims: dict[str, str]
) -> None:
    session = session_token(post_launch(client, lms.authorize(login(client, lms))).text)
    me = client.get("/api/me/courses", headers={"Authorization": f"Bearer {session}"})
    assert me.status_code == 200, me.text
    base = {"iss": "urn:videoprogress:lti-session", "aud": "urn:videoprogress:lti-session"}
    keys = client.app.state.ctx.lti_keys  # type: ignore[attr-defined]  # Starlette's state
    token = keys.sign({**base, "sub": "lti-x", "role": "student", **claims}, 60)
    r = client.get("/api/me/courses", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401, r.text


@pytest.mark.parametrize("param", ["target_link_uri", "login_hint", "lti_message_hint"])
def test_a_login_parameter_longer_than_4096_characters_is_refused_and_nothing_kept(
    client: TestClient, lms: Lms, redis_url: str, param: str
) -> None:
    """A login is anyone's (no token yet) and its parameters wait in Redis for the launch: each
    is at most 4,096 characters (Canvas's `lti_message_hint`, a JWT, is about 1,000)."""
    r = redis.Redis.from_url(redis_url)
    before = set(r.scan_iter("*lti*login*"))
    params = {"iss": lms.base, "client_id": CLIENT_ID, "login_hint": "u-1",
              "target_link_uri": "https://testserver/lti/launch", param: "A" * 60_000}  # fmt: skip
    refused = client.post("/lti/login", data=params, follow_redirects=False)
    assert refused.status_code == 400 and param in refused.text
    assert set(r.scan_iter("*lti*login*")) == before
    params[param] = "A" * 4096
    assert client.post("/lti/login", data=params, follow_redirects=False).status_code == 302
