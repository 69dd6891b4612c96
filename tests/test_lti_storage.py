"""The login's two ways and what a launch does with each (shared/lti/storage.py, pages.py):
LTI platform storage (`lti_storage_target`: the state and nonce kept by the LMS's frame, read
back by the launch page), the new-window offer when a cookie login's cookie did not come back,
the session renewal (`POST /lti/session`), and the platforms' frame origins in
`frame-ancestors`. The browser side of the same pages runs in tests/test_lti_browser.py.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import jwt
import pytest
from fastapi.testclient import TestClient
from pymongo.database import Database

from shared.clock import MockedClock
from shared.settings import Settings
from tests.helpers import bearer, wait_until
from tests.lti_platform import CLIENT_ID, PLATFORM_ID, VIDEO, Lms
from tests.test_lti_launch import (
    login,
    open_app,
    post_launch,
    session_token,
    stored,
)

LMS_PAGE = "https://lms.school.test"  # where the LMS frames the tool (frame_origins)
SAME_ORIGIN = {"Sec-Fetch-Site": "same-origin"}


@pytest.fixture
def client(settings: Settings, clock: MockedClock, lms: Lms) -> Iterator[TestClient]:
    c = open_app(settings, clock, lms, [])
    admin = bearer(settings, "admin-1", "admin", now=clock.time())
    body = {**lms.registration_body(["dep-1"]), "frame_origins": [LMS_PAGE]}
    r = c.put(f"/api/admin/lti/platforms/{PLATFORM_ID}", json=body, headers=admin)
    assert r.status_code == 200, r.text
    yield c
    c.__exit__(None, None, None)


def login_params(lms: Lms, **extra: str) -> dict[str, str]:
    return {
        "iss": lms.base,
        "login_hint": "u-42",
        "target_link_uri": "https://testserver/lti/launch",
        "lti_message_hint": "rl-1",
        "client_id": CLIENT_ID,
        **extra,
    }


def page_config(text: str) -> dict[str, Any]:
    found = re.search(r'<script type="application/json" id="lti-page">(.*?)</script>', text)
    assert found, text
    config: dict[str, Any] = json.loads(found.group(1))
    return config


def storage_login(client: TestClient, lms: Lms, target: str = "post_message_forwarding") -> Any:
    """The LMS starts a login naming its storage frame; the page's config."""
    r = client.post("/lti/login", data=login_params(lms, lti_storage_target=target))
    assert r.status_code == 200, r.text
    assert "set-cookie" not in r.headers  # nothing for a frame that keeps no cookies
    assert '<script src="/lti/pages.js"' in r.text
    return page_config(r.text)


def auth_request(config: dict[str, Any]) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(config["next"]).query))


def test_a_storage_login_puts_state_and_nonce_in_the_lms_frame_then_goes_to_the_platform(
    client: TestClient, lms: Lms
) -> None:
    config = storage_login(client, lms)
    request = auth_request(config)
    assert config["next"].startswith(f"{lms.base}/auth?")
    assert config["target"] == "post_message_forwarding"
    assert config["origin"] == lms.base  # auth_login_url's origin: messages go only there
    assert config["put"] == {
        f"state-{request['state']}": request["state"],
        f"nonce-{request['nonce']}": request["nonce"],
    }
    # Without an answer from the LMS the page starts the same login the cookie way.
    fallback = urlsplit(config["fallback"])
    assert fallback.path == "/lti/login"
    assert dict(parse_qsl(fallback.query)) == login_params(lms)
    r = client.get(config["fallback"], follow_redirects=False)
    assert r.status_code == 302 and "lti1p3-state-" in r.headers["set-cookie"]


def test_a_storage_launch_is_checked_by_the_page_before_anything_is_used_or_stored(
    client: TestClient, lms: Lms, mongo_db: Database[dict[str, Any]]
) -> None:
    config = storage_login(client, lms)
    request = auth_request(config)
    form = lms.authorize(request)  # the platform's post: no lti_storage_target, no cookie
    before = stored(mongo_db)
    first = post_launch(client, form)
    assert first.status_code == 200, first.text
    check = page_config(first.text)
    assert check["kind"] == "check"
    assert (check["target"], check["origin"]) == ("post_message_forwarding", lms.base)
    assert check["get"] == {
        f"state-{request['state']}": request["state"],
        f"nonce-{request['nonce']}": request["nonce"],
    }
    assert check["form"] == {**form, "lti_storage_checked": "1"}
    assert stored(mongo_db) == before  # nothing stored before the page has checked

    # The same first post again works: the nonce was only read.
    assert post_launch(client, form).status_code == 200
    second = client.post("/lti/launch", data=check["form"], headers=SAME_ORIGIN)
    assert second.status_code == 200, second.text
    headers = {"Authorization": f"Bearer {session_token(second.text)}"}
    assert client.get(f"/api/progress/video/{VIDEO}/status", headers=headers).status_code == 200
    assert stored(mongo_db)[0] == 1  # enrolled now

    replay = client.post("/lti/launch", data=check["form"], headers=SAME_ORIGIN)
    assert replay.status_code == 401 and "used already" in html.unescape(replay.text)


@pytest.mark.parametrize(
    "headers",
    [
        {"Sec-Fetch-Site": "cross-site"},  # another site's page auto-posting the form
        {"Sec-Fetch-Site": "same-site"},
        {"Origin": "https://attacker.test"},  # a browser without Fetch Metadata
        {},
    ],
)
def test_the_checked_post_is_refused_unless_the_tools_own_page_made_it(
    client: TestClient, lms: Lms, mongo_db: Database[dict[str, Any]], headers: dict[str, str]
) -> None:
    config = storage_login(client, lms)
    form = lms.authorize(auth_request(config))
    checked = {**form, "lti_storage_checked": "1"}
    before = stored(mongo_db)
    r = client.post("/lti/launch", data=checked, headers=headers)
    assert r.status_code == 401, r.text
    assert "did not come from the tool's own page" in html.unescape(r.text)
    assert stored(mongo_db) == before
    own = client.post("/lti/launch", data=checked, headers={"Origin": "https://testserver"})
    assert own.status_code == 200, own.text  # the refusal used nothing


def test_a_storage_target_that_is_not_a_frame_name_is_refused(client: TestClient, lms: Lms) -> None:
    r = client.post("/lti/login", data=login_params(lms, lti_storage_target='x"></script>'))
    assert r.status_code == 400 and "lti_storage_target" in r.text


def test_a_cookie_login_whose_cookie_did_not_come_back_is_refused_with_a_new_window_offer(
    client: TestClient, lms: Lms, mongo_db: Database[dict[str, Any]]
) -> None:
    form = lms.authorize(login(client, lms))
    client.cookies.clear()  # the frame kept no third-party cookie
    before = stored(mongo_db)
    r = post_launch(client, form)
    assert r.status_code == 401, r.text
    assert "the state does not match" in html.unescape(r.text)
    link = re.search(r'<a id="new-window" href="([^"]+)" target="_blank"', r.text)
    assert link, r.text
    url = urlsplit(html.unescape(link.group(1)))
    assert url.path == "/lti/login" and dict(parse_qsl(url.query)) == login_params(lms)
    assert stored(mongo_db) == before
    # In the new window the tool's cookies are first-party: the same login, then the launch.
    again = client.get(html.unescape(link.group(1)), follow_redirects=False)
    assert again.status_code == 302
    request = dict(parse_qsl(urlsplit(again.headers["location"]).query))
    assert post_launch(client, lms.authorize(request)).status_code == 200


def test_a_state_this_tool_never_issued_is_refused_without_an_offer(
    client: TestClient, lms: Lms, mongo_db: Database[dict[str, Any]]
) -> None:
    form = lms.authorize({**login(client, lms), "state": "forged"})
    before = stored(mongo_db)
    r = post_launch(client, form)
    assert r.status_code == 401 and "new-window" not in r.text
    assert "the state does not match" in html.unescape(r.text)
    assert stored(mongo_db) == before


# -- the session's renewal ------------------------------------------------------------------


def claims_of(token: str) -> dict[str, Any]:
    decoded: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return decoded


def test_a_session_is_renewed_with_every_claim_but_its_times_and_jti(
    client: TestClient, lms: Lms, clock: MockedClock
) -> None:
    first = session_token(post_launch(client, lms.authorize(login(client, lms))).text)
    keys = client.app.state.ctx.lti_keys  # type: ignore[attr-defined]  # Starlette's state
    scoped = keys.sign({**claims_of(first), "class_id": "c-9"}, 600)  # a claim added elsewhere
    clock.advance(500)
    r = client.post("/lti/session", headers={"Authorization": f"Bearer {scoped}"})
    assert r.status_code == 200, r.text
    renewed = r.json()["token"]
    old, new = claims_of(scoped), claims_of(renewed)
    times = ("iat", "exp", "jti")
    assert {k: v for k, v in new.items() if k not in times} == {
        k: v for k, v in old.items() if k not in times
    }
    assert new["jti"] != old["jti"] and new["iat"] == int(clock.time())
    assert new["exp"] == int(clock.time() + 900) and r.json()["expires_at"] == clock.time() + 900
    clock.advance(600)  # the first token has expired; the renewed one still works
    headers = {"Authorization": f"Bearer {renewed}"}
    assert client.get(f"/api/progress/video/{VIDEO}/status", headers=headers).status_code == 200
    stale = client.post("/lti/session", headers={"Authorization": f"Bearer {scoped}"})
    assert stale.status_code == 401


def test_renewals_end_lti_session_max_age_s_after_the_launch(
    client: TestClient, lms: Lms, clock: MockedClock, settings: Settings
) -> None:
    token = session_token(post_launch(client, lms.authorize(login(client, lms))).text)
    launched = claims_of(token)["auth_time"]  # the launch's time, in whole seconds
    assert launched == int(clock.time())
    # The page renews every 800 s, as long as the tab stays open: each renewal keeps the
    # launch's time, so the session ends a school day after the launch, renewed or not.
    while clock.time() + 800 - launched <= settings.lti_session_max_age_s:
        clock.advance(800)
        r = client.post("/lti/session", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        assert claims_of(token)["auth_time"] == launched
    clock.advance(800)  # past the maximum age, the token itself still unexpired
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get(f"/api/progress/video/{VIDEO}/status", headers=headers).status_code == 200
    r = client.post("/lti/session", headers=headers)
    assert r.status_code == 401 and "launch again" in r.json()["error"]["message"], r.text


def test_only_the_tools_own_sessions_are_renewed(
    client: TestClient, settings: Settings, clock: MockedClock
) -> None:
    provider = bearer(settings, "student-1", "student", now=clock.time())
    r = client.post("/lti/session", headers=provider)
    assert r.status_code == 403, r.text
    assert client.post("/lti/session").status_code == 401


def test_the_renewal_is_in_the_openapi_schema(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/lti/session"]["post"]
    schema = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == {"$ref": "#/components/schemas/SessionToken"}


# -- frame-ancestors ------------------------------------------------------------------------


def ancestors(client: TestClient, path: str) -> list[str]:
    policy = client.get(path, follow_redirects=False).headers["content-security-policy"]
    directive = next(d for d in policy.split("; ") if d.startswith("frame-ancestors "))
    return [str(source) for source in directive.split()[1:]]


def test_registered_frame_origins_join_frame_ancestors(
    client: TestClient, lms: Lms, settings: Settings, clock: MockedClock
) -> None:
    # Known to this process at start, or from the platform's first login: its own page.
    r = client.post("/lti/login", data=login_params(lms, lti_storage_target="_parent"))
    assert f"frame-ancestors 'self' {LMS_PAGE};" in r.headers["content-security-policy"] + ";"
    assert ancestors(client, "/lti/login") == ["'self'", LMS_PAGE]  # every page after it
    admin = bearer(settings, "admin-1", "admin", now=clock.time())
    assert client.delete(f"/api/admin/lti/platforms/{PLATFORM_ID}", headers=admin).status_code
    clock.advance(31)  # past the held origins' refresh period
    ancestors(client, "/lti/login")  # a page asks for the stale origins: they are read again
    wait_until(lambda: ancestors(client, "/lti/login") == ["'self'"], timeout_s=5)


def test_the_pages_script_is_served(client: TestClient) -> None:
    r = client.get("/lti/pages.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert "lti.capabilities" in r.text and "lti.get_data" in r.text
