"""LTI Dynamic Registration 1.0 (shared/lti/dynamic_registration.py; docs/lti.md, "Dynamic
registration"): the suite's platform (tests/lti_platform.py) serves an OpenID configuration and
a registration endpoint that checks the tool's client registration as Moodle does; the platform
the tool stores then launches and deep links like one an admin registered by hand."""

from __future__ import annotations

import gzip
import html
import time
import tracemalloc
from base64 import b64encode
from collections.abc import Iterator
from hashlib import sha256
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
from fastapi.testclient import TestClient
from pymongo.database import Database

from shared.clock import MockedClock
from shared.lti.dynamic_registration import RegistrationRefused, parse_configuration
from shared.settings import Settings
from tests.helpers import bearer, make_settings
from tests.lti_platform import TOOL_CONFIGURATION, HttpAnswer, Lms
from tests.test_lti_deep_linking import (
    DL,
    LAUNCH_URL,
    SPEED,
    deep_link,
    open_app,
    pick,
    read,
    to_platform,
)
from tests.test_lti_deep_linking import login as tool_login

CLIENT, DEPLOYMENT_ID, TOKEN = "dr-client-7", "3", "reg-token-1"


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def clock() -> MockedClock:
    return MockedClock(time.time())  # lti1p3platform stamps and checks with the system time


@pytest.fixture
def lms() -> Iterator[Lms]:
    platform = Lms()
    yield platform
    platform.close()


@pytest.fixture
def client(settings: Settings, clock: MockedClock) -> Iterator[TestClient]:
    c = open_app(settings, clock, {})  # the course; no platform registered
    yield c
    c.__exit__(None, None, None)


def invitation(client: TestClient, settings: Settings, clock: MockedClock) -> str:
    admin = bearer(settings, "admin-1", "admin", now=clock.time())
    r = client.post("/api/admin/lti/registration-invites", headers=admin)
    assert r.status_code == 201, r.text
    assert r.json()["url"].startswith("https://testserver/lti/register?invite=")
    url: str = r.json()["url"]
    return url


def opened_by_lms(invite_url: str, config_url: str, token: str | None = TOKEN) -> str:
    """The URL the LMS opens: the pasted one with its registration parameters added."""
    params = {
        "openid_configuration": config_url,
        **({"registration_token": token} if token else {}),
    }
    return f"{invite_url}&{urlencode(params)}"


def platforms(client: TestClient, settings: Settings, clock: MockedClock) -> list[dict[str, Any]]:
    admin = bearer(settings, "admin-1", "admin", now=clock.time())
    r = client.get("/api/admin/lti/platforms", headers=admin)
    rows: list[dict[str, Any]] = r.json()["rows"]
    return rows


def test_a_platform_registers_the_tool_and_then_launches_and_deep_links(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    config_url = lms.serve_dynamic_registration(CLIENT, DEPLOYMENT_ID, TOKEN)
    page = client.get(opened_by_lms(invitation(client, settings, clock), config_url))
    assert page.status_code == 200, page.text
    confirm = read(page.text)
    assert confirm.buttons == ["Register the tool"] and set(confirm.hidden) == {"ticket"}
    assert lms.base in page.text and lms.tool_registrations == []  # nothing posted yet
    done = client.post(confirm.action, data=confirm.hidden)
    assert done.status_code == 200, done.text

    [sent] = lms.tool_registrations
    assert sent["redirect_uris"] == [LAUNCH_URL]
    assert sent["initiate_login_uri"] == "https://testserver/lti/login"
    assert sent["jwks_uri"] == "https://testserver/lti/jwks"
    assert set(sent["scope"].split()) == {
        "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
        "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
        "https://purl.imsglobal.org/spec/lti-ags/scope/score",
        "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
    }
    messages = sent[TOOL_CONFIGURATION]["messages"]
    assert {k: v for k, v in messages[1].items() if k != "label"} == {
        "type": "LtiDeepLinkingRequest",
        "target_link_uri": LAUNCH_URL,
    }
    [stored] = platforms(client, settings, clock)
    assert {k: stored[k] for k in ("issuer", "client_id", "deployment_ids", "jwks_url")} == {
        "issuer": lms.base,
        "client_id": CLIENT,
        "deployment_ids": [DEPLOYMENT_ID],
        "jwks_url": f"{lms.base}/jwks",
    }
    [script] = read(done.text).scripts  # step 4: the LMS is told to close the registration
    assert "postMessage({subject: 'org.imsglobal.lti.close'}, '*')" in script
    digest = b64encode(sha256(script.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in done.headers["content-security-policy"]

    lms.trust_tool_keys(client.get("/lti/jwks").json())
    params = {"iss": lms.base, "login_hint": "t-1", "target_link_uri": LAUNCH_URL}
    auth = tool_login(client, {**params, "client_id": CLIENT})
    assert auth["client_id"] == CLIENT
    picker = read(deep_link(client, lms, auth).text)
    assert to_platform(pick(client, picker, "v-100")).status_code == 200
    assert lms.deep_links[-1][DL + "content_items"] == [SPEED]


def test_an_invitation_registers_once(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    config_url = lms.serve_dynamic_registration(CLIENT, None, None)  # no token, no deployment
    url = opened_by_lms(invitation(client, settings, clock), config_url, token=None)
    confirm = read(client.get(url).text)
    assert client.post(confirm.action, data=confirm.hidden).status_code == 200
    assert client.post(confirm.action, data=confirm.hidden).status_code == 410
    again = client.get(url)
    assert again.status_code == 403 and "unknown, used or expired" in again.text
    [stored] = platforms(client, settings, clock)
    assert stored["deployment_ids"] == []  # any deployment, recorded at its first launch


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("no invitation", 403, "unknown, used or expired"),
        ("made-up invitation", 403, "unknown, used or expired"),
        ("wrong registration token", 502, "answered HTTP 401"),
        ("issuer of another site", 400, "not served from its issuer's site"),
        ("configuration not https", 400, "not an https URL"),
    ],
)
def test_refused_registrations_store_nothing(
    case: str,
    status: int,
    reason: str,
    client: TestClient,
    lms: Lms,
    settings: Settings,
    clock: MockedClock,
    mongo_db: Database[dict[str, Any]],
) -> None:
    issuer = "https://elsewhere.test" if case == "issuer of another site" else ""
    config_url = lms.serve_dynamic_registration(CLIENT, DEPLOYMENT_ID, TOKEN, issuer=issuer)
    invite_url = invitation(client, settings, clock)
    token = "not-the-token" if case == "wrong registration token" else TOKEN
    if case == "configuration not https":
        config_url = "http://lms.example/.well-known/openid-configuration"
    url = opened_by_lms(invite_url, config_url, token)
    if case == "no invitation":
        url = "/lti/register?" + urlencode(
            [(k, v) for k, v in parse_qsl(urlsplit(url).query) if k != "invite"]
        )
    elif case == "made-up invitation":
        url = url.replace("invite=", "invite=x", 1)
    r = client.get(url)
    if r.status_code == 200:  # the configuration passed: the platform refuses at step 3
        confirm = read(r.text)
        r = client.post(confirm.action, data=confirm.hidden)
    assert (r.status_code, reason in html.unescape(r.text)) == (status, True), r.text
    assert mongo_db["lti_platforms"].count_documents({}) == 0


def configuration(issuer: str) -> dict[str, Any]:
    site = "https://lms.test"
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{site}/auth",
        "token_endpoint": f"{site}/token",
        "jwks_uri": f"{site}/jwks",
        "registration_endpoint": f"{site}/register",
    }


@pytest.mark.parametrize(
    ("config_url", "issuer", "accepted"),
    [
        (
            "https://moodle.school.test/mod/lti/openid-configuration.php",
            "https://moodle.school.test",
            True,
        ),
        # Canvas: the shared issuer, the configuration on the school's own host
        (
            "https://north.instructure.com/api/lti/security/openid-configuration",
            "https://canvas.instructure.com",
            True,
        ),
        ("https://evil.test/openid-configuration", "https://canvas.instructure.com", False),
        ("https://instructure.com.evil.test/c", "https://canvas.instructure.com", False),
        ("http://127.0.0.2:80/c", "http://127.0.0.1:80", False),
        ("https://lms.test/c", "https://lms.test?x=1", False),  # an issuer has no query
    ],
)
def test_a_configuration_must_come_from_its_issuers_site(
    config_url: str, issuer: str, accepted: bool
) -> None:
    """Dynamic Registration 1.0 §3.5.1 (issuer and OpenID configuration URL match)."""
    try:
        parsed = parse_configuration(configuration(issuer), config_url)
    except RegistrationRefused:
        assert not accepted
    else:
        assert accepted and parsed.issuer == issuer and parsed.product == "LMS"


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "is not JSON"),  # deeper than the decoder goes
        (b'{"issuer": "' + b"x" * 300_000 + b'"}', "larger than"),
        (gzip.compress(b" " * (300 << 20)), "is compressed"),  # 300 MB once inflated
    ],
    ids=["nested 100,000 deep", "300 KB", "a gzip bomb"],
)
def test_a_configuration_the_tool_cannot_read_is_refused_with_a_page(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock, answer: bytes, reason: str
) -> None:
    """Refused with the registration's error page (502), never a 500; its body is read as it
    arrives and no further than MAX_BODY_BYTES, and a compressed one not at all."""
    headers = {"Content-Type": "application/json"}
    if answer.startswith(b"\x1f\x8b"):
        headers["Content-Encoding"] = "gzip"
    lms.route("GET", "/.well-known/odd", lambda _: HttpAnswer(200, answer, headers))
    url = opened_by_lms(invitation(client, settings, clock), f"{lms.base}/.well-known/odd", TOKEN)
    tracemalloc.start()
    try:
        r = client.get(url)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.status_code == 502 and reason in html.unescape(r.text), r.text[:300]
    assert peak < 32 << 20, f"{peak / 2**20:.0f} MB"  # the bomb inflated would be 300
