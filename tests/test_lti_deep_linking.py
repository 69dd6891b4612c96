"""Deep Linking 2.0 (API.md, "LTI 1.3 Advantage"; shared/lti/deep_linking.py) and the platform
profiles, against a real third-party platform implementation: `lti1p3platform` builds the
`LtiDeepLinkingRequest` (its LtiDeepLinking makes the settings claim) and validates the tool's
response by the tool's own /lti/jwks; the suite's platform server (tests/lti_platform.py)
takes the response's form post at its return URL, as an LMS does. No test sleeps."""

from __future__ import annotations

import time
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import sha256
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient
from pymongo.database import Database

from ingest.app import create_app
from shared.clock import MockedClock
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, make_settings
from tests.lti_platform import (
    CANVAS,
    CLIENT_ID,
    DEEP_LINK_RETURN,
    DEPLOYMENT,
    LEARNER,
    MOODLE,
    PLATFORM_ID,
    Lms,
    Profile,
)

LAUNCH_URL = "https://testserver/lti/launch"
DL = "https://purl.imsglobal.org/spec/lti-dl/claim/"


def expected_item(material_id: str, title: str) -> dict[str, Any]:
    """What API.md asks of one picked video, written out by hand."""
    return {
        "type": "ltiResourceLink",
        "title": title,
        "url": LAUNCH_URL,
        "custom": {"material_id": material_id},
        "lineItem": {
            "scoreMaximum": 100,
            "label": title,
            "resourceId": material_id,
            "tag": "videoprogress",
        },
    }


SPEED, FORCES = expected_item("v-100", "Speed"), expected_item("v-600", "Forces")


@dataclass
class Page(HTMLParser):
    """A page's forms as a browser shows them: the (one) form's action, its hidden fields,
    checkboxes by their label's text, the buttons' names, and inline scripts."""

    action: str = ""
    hidden: dict[str, str] = field(default_factory=dict)
    checkboxes: dict[str, str] = field(default_factory=dict)  # label text -> value
    buttons: list[str] = field(default_factory=list)
    scripts: list[str] = field(default_factory=list)
    forms: int = 0
    _label: list[str] | None = None
    _box: str | None = None
    _button: list[str] | None = None
    _script: list[str] | None = None

    def __post_init__(self) -> None:
        super().__init__()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms += 1
            self.action = a.get("action", "")
        elif tag == "label":
            self._label, self._box = [], None
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a.get("value", "")
        elif tag == "input" and a.get("type") == "checkbox":
            self._box = a.get("value", "")
        elif tag == "button":
            self._button = []
        elif tag == "script":
            self._script = []

    def handle_data(self, data: str) -> None:
        for parts in (self._label, self._button, self._script):
            if parts is not None:
                parts.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "label" and self._label is not None and self._box is not None:
            self.checkboxes["".join(self._label).strip()] = self._box
            self._label = None
        elif tag == "button" and self._button is not None:
            self.buttons.append("".join(self._button).strip())
            self._button = None
        elif tag == "script" and self._script is not None:
            self.scripts.append("".join(self._script))
            self._script = None


def read(text: str) -> Page:
    page = Page()
    page.feed(text)
    return page


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(time.time())  # lti1p3platform checks exp on the system clock


def open_app(settings: Settings, clock: MockedClock, platforms: dict[str, Any]) -> TestClient:
    """The tool with the test course and `platforms` (id -> registration) registered."""
    client = TestClient(create_app(settings, clock=clock), base_url="https://testserver")
    client.__enter__()
    admin = bearer(settings, "admin-1", "admin", now=clock.time())
    assert client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
    for platform_id, body in platforms.items():
        r = client.put(f"/api/admin/lti/platforms/{platform_id}", json=body, headers=admin)
        assert r.status_code == 201, r.text
    return client


@pytest.fixture
def lms() -> Iterator[Lms]:
    platform = Lms()
    yield platform
    platform.close()


@pytest.fixture
def client(settings: Settings, clock: MockedClock, lms: Lms) -> Iterator[TestClient]:
    c = open_app(settings, clock, {PLATFORM_ID: lms.registration_body([DEPLOYMENT])})
    lms.trust_tool_keys(c.get("/lti/jwks").json())  # the platform holds the tool's key set
    yield c
    c.__exit__(None, None, None)


def login(client: TestClient, params: dict[str, str]) -> dict[str, str]:
    """A login the LMS starts (by cookie); the tool's authentication request from its 302."""
    r = client.get("/lti/login", params=params, follow_redirects=False)
    assert r.status_code == 302, r.text
    return dict(parse_qsl(urlsplit(r.headers["location"]).query))


def plain_login(client: TestClient, lms: Lms) -> dict[str, str]:
    params = {"iss": lms.base, "login_hint": "t-1", "target_link_uri": LAUNCH_URL}
    return login(client, {**params, "client_id": CLIENT_ID})


def deep_link(client: TestClient, lms: Lms, auth: dict[str, str], **settings: Any) -> Any:
    form = lms.authorize_deep_link(auth, **settings)
    return client.post("/lti/launch", data=form, follow_redirects=False)


def pick(client: httpx.Client, picker: Page, *material_ids: str) -> Any:
    """The instructor ticks `material_ids` and presses the one button (the app's TestClient,
    or a client of a running stack)."""
    fields: dict[str, Any] = {**picker.hidden, "material_id": list(material_ids)}
    return client.post(picker.action, data=fields, follow_redirects=False)


def to_platform(answer: Any) -> httpx.Response:
    """What the return page's script does: post its form to the platform."""
    page = read(answer.text)
    return httpx.post(page.action, data=page.hidden)


def last_launch(mongo_db: Database[dict[str, Any]], platform_id: str) -> Any:
    return (mongo_db["lti_platforms"].find_one({"_id": platform_id}) or {}).get("last_launch_at")


# -- deep linking --------------------------------------------------------------------------


@pytest.mark.parametrize("data", [None, "csrf-8f1c2e", {"placement": ["a", 1]}])
def test_an_instructor_picks_videos_and_the_platform_accepts_the_signed_items(
    client: TestClient, lms: Lms, clock: MockedClock, data: Any
) -> None:
    r = deep_link(client, lms, plain_login(client, lms), data=data)
    assert r.status_code == 200, r.text
    picker = read(r.text)
    assert picker.forms == 1 and picker.action == "https://testserver/lti/deep-link"
    assert picker.checkboxes == {"Speed": "v-100", "Forces": "v-600"}  # videos only
    assert len(picker.buttons) == 1 and picker.buttons[0].startswith("Add")
    answer = pick(client, picker, "v-600", "v-100")
    assert answer.status_code == 200, answer.text
    back = read(answer.text)
    assert back.action == lms.base + DEEP_LINK_RETURN and set(back.hidden) == {"JWT"}
    accepted = to_platform(answer)
    assert (accepted.status_code, accepted.text) == (200, "added 2")
    claims = lms.deep_links[-1]
    assert claims[DL + "content_items"] == [FORCES, SPEED]  # in the order ticked
    assert (DL + "data" in claims, claims.get(DL + "data")) == (data is not None, data)
    assert claims["iat"] == int(clock.time()) and claims["exp"] - claims["iat"] == 600


def test_the_return_page_runs_its_one_script_under_the_pages_policy(
    client: TestClient, lms: Lms
) -> None:
    picker = read(deep_link(client, lms, plain_login(client, lms)).text)
    answer = pick(client, picker, "v-100")
    [script] = read(answer.text).scripts
    digest = b64encode(sha256(script.encode()).digest()).decode()
    policy = answer.headers["content-security-policy"]
    script_src = next(d for d in policy.split(";") if d.strip().startswith("script-src"))
    assert f"'sha256-{digest}'" in script_src.split() and "'unsafe-inline'" not in script_src
    assert "form-action" not in policy  # the form goes to the LMS's site


def test_the_return_page_may_be_framed_where_the_picker_is(
    settings: Settings, clock: MockedClock, lms: Lms
) -> None:
    """A platform trusted to frame the tool through its registration's `frame_origins` frames
    the picker and the page that posts the picked items back alike (that page has a policy of
    its own, for its script, and used to leave the registered origins out)."""
    framing = "https://lms.school.test"
    body = {**lms.registration_body([DEPLOYMENT]), "frame_origins": [framing]}
    client = open_app(settings, clock, {PLATFORM_ID: body})
    try:
        lms.trust_tool_keys(client.get("/lti/jwks").json())
        shown = deep_link(client, lms, plain_login(client, lms))
        answer = pick(client, read(shown.text), "v-100")
        for page in (shown, answer):
            policy = page.headers["content-security-policy"]
            directive = next(d for d in policy.split("; ") if d.startswith("frame-ancestors"))
            assert directive.split()[1:] == ["'self'", framing], policy
    finally:
        client.__exit__(None, None, None)


def test_the_platform_refuses_a_response_whose_signature_does_not_verify(
    client: TestClient, lms: Lms
) -> None:
    """The harness's check can fail: one byte of the signature changed."""
    answer = pick(client, read(deep_link(client, lms, plain_login(client, lms)).text), "v-100")
    token = read(answer.text).hidden["JWT"]
    head, body, signature = token.split(".")
    forged = f"{head}.{body}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    r = httpx.post(lms.base + DEEP_LINK_RETURN, data={"JWT": forged})
    assert r.status_code == 400 and lms.deep_links == []


def test_a_learner_cannot_deep_link_and_nothing_is_recorded(
    client: TestClient, lms: Lms, mongo_db: Database[dict[str, Any]]
) -> None:
    r = deep_link(client, lms, plain_login(client, lms), roles=[LEARNER])
    assert r.status_code == 403, r.text
    assert "only an instructor" in r.text and read(r.text).forms == 0
    assert last_launch(mongo_db, PLATFORM_ID) is None
    assert mongo_db["lti_contexts"].count_documents({}) == 0


def test_a_platform_that_accepts_no_resource_links_is_told_so(client: TestClient, lms: Lms) -> None:
    r = deep_link(client, lms, plain_login(client, lms), accept_types=("link", "file"))
    assert r.status_code == 400 and read(r.text).forms == 0
    assert "this tool adds only LTI resource links (ltiResourceLink)" in r.text
    offered = r.text.split("this LMS accepts ", 1)[1].split(" here", 1)[0]
    assert sorted(offered.split(", ")) == ["file", "link"]  # lti1p3platform sends a set's order


def test_one_video_at_a_time_where_the_platform_accepts_one(client: TestClient, lms: Lms) -> None:
    r = deep_link(client, lms, plain_login(client, lms), accept_multiple=False)
    assert "Pick one video" in r.text
    picker = read(r.text)
    two = pick(client, picker, "v-100", "v-600")
    assert two.status_code == 422 and "one video at a time" in two.text
    one = pick(client, picker, "v-600")  # the same picker: its ticket was kept
    assert one.status_code == 200, one.text
    assert to_platform(one).status_code == 200
    assert lms.deep_links[-1][DL + "content_items"] == [FORCES]


def test_the_form_names_only_materials_and_its_ticket_is_used_once(
    client: TestClient, lms: Lms
) -> None:
    picker = read(deep_link(client, lms, plain_login(client, lms)).text)
    for wrong in ("pdf-1", "no-such-video"):  # a pdf is no video; a made-up id is nothing
        r = pick(client, picker, "v-100", wrong)
        assert r.status_code == 422 and wrong in r.text
    assert pick(client, picker, "v-100").status_code == 200
    again = pick(client, picker, "v-100")
    assert again.status_code == 410 and "sent already" in again.text
    forged = Page(action=picker.action, hidden={"ticket": "made-up"})
    assert pick(client, forged, "v-100").status_code == 410


def test_nothing_picked_returns_no_items(client: TestClient, lms: Lms) -> None:
    """Deep Linking 2.0: an empty `content_items` tells the platform nothing was chosen."""
    answer = pick(client, read(deep_link(client, lms, plain_login(client, lms)).text))
    assert to_platform(answer).status_code == 200
    assert lms.deep_links[-1][DL + "content_items"] == []


# -- platform profiles ---------------------------------------------------------------------


def session_subject(page: str) -> str:
    """The user id of the session token the launch page hands the frontend."""
    token = page.split("/#/launch/", 1)[1].split("/", 1)[0]  # read, not verified, here
    sub: str = jwt.decode(token, options={"verify_signature": False})["sub"]
    return sub


@pytest.mark.parametrize("profile", [CANVAS, MOODLE], ids=lambda p: p.name)
def test_a_launch_and_a_deep_link_work_under_each_platform_profile(
    profile: Profile, settings: Settings, clock: MockedClock, mongo_db: Database[dict[str, Any]]
) -> None:
    """Canvas-like: one issuer shared by two registrations told apart by client id, the
    deployment learned at the first launch; Moodle-like: the site's URL as issuer, deployment
    "1" registered. Each registration: a learner's launch, an instructor's deep link.
    (Logins by cookie: the `lti_storage_target` login is the launch slice's.)"""
    lms = Lms(profile)
    ids = {cid: f"{profile.name}-{n}" for n, cid in enumerate(profile.client_ids)}
    client = open_app(settings, clock, {ids[c]: lms.profile_registration(c) for c in ids})
    try:
        lms.trust_tool_keys(client.get("/lti/jwks").json())
        learners = []
        for client_id, platform_id in ids.items():
            lms.use_client(client_id)
            auth = login(client, lms.login_params(LAUNCH_URL, storage=False))
            launched = client.post("/lti/launch", data=lms.authorize(auth), follow_redirects=False)
            assert launched.status_code == 200, launched.text
            learners.append(session_subject(launched.text))
            auth = login(client, lms.login_params(LAUNCH_URL, storage=False))
            picker = read(deep_link(client, lms, auth, data="d-" + client_id).text)
            assert to_platform(pick(client, picker, "v-100")).status_code == 200
            assert lms.deep_links[-1][DL + "content_items"] == [SPEED]
            doc = mongo_db["lti_platforms"].find_one({"_id": platform_id}) or {}
            expected_seen = [] if profile.registered_deployments else [profile.deployment_id]
            assert doc.get("seen_deployment_ids", []) == expected_seen
        assert len(set(learners)) == len(ids)  # one sub, two registrations: two people
        admin = bearer(settings, "admin-1", "admin", now=clock.time())
        listed = client.get("/api/admin/lti/platforms", headers=admin).json()["rows"]
        launched = {p["platform_id"]: p["last_launch_at"] for p in listed}
        assert set(launched) == set(ids.values())
        for at in launched.values():  # the clock never moved: every launch at its time
            parsed = datetime.fromisoformat(at)
            assert parsed.tzinfo is not None and parsed.timestamp() == pytest.approx(clock.time())
    finally:
        client.__exit__(None, None, None)
        lms.close()


def test_a_login_without_client_id_for_a_shared_issuer_says_why_it_is_refused(
    settings: Settings, clock: MockedClock, mongo_db: Database[dict[str, Any]]
) -> None:
    """Canvas's issuer is every school's: without `client_id` the login cannot tell which
    registration it is for, and says so (not "no platform is registered"); nothing is kept."""
    lms = Lms(CANVAS)
    ids = {cid: f"canvas-{n}" for n, cid in enumerate(CANVAS.client_ids)}
    client = open_app(settings, clock, {ids[c]: lms.profile_registration(c) for c in ids})
    try:
        params = lms.login_params(LAUNCH_URL, storage=False)
        del params["client_id"]
        r = client.get("/lti/login", params=params, follow_redirects=False)
        assert r.status_code == 401, r.text
        assert "must name its client_id" in r.text and "set-cookie" not in r.headers
        params["client_id"] = CANVAS.client_ids[1]
        assert client.get("/lti/login", params=params, follow_redirects=False).status_code == 302
    finally:
        client.__exit__(None, None, None)
        lms.close()
