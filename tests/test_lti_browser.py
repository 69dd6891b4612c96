"""LTI launches in real headless Chromium across two sites: the LMS (tests/lti_platform.py's
Lms, lti1p3platform signing its id_tokens) serves a course page on `https://lms.test:<port>`
that frames a resource link of the tool, the real stack, on `https://tool.test:<port>`. Both
names map to 127.0.0.1 (Chromium's `--host-resolver-rules`); both serve TLS with a certificate
from `trustme`, which Chromium trusts by its public key (`--ignore-certificate-errors-spki-list`,
no other certificate error is ignored). So the tool's frame is third-party, as in a school.

The LMS's authorization page (its answer to the tool's authentication request) holds the
id_token form; the test posts it (`post_authorization`) where an LMS's own script would at
once. The tool's frame goes tool -> LMS -> tool, so it moves from its own process to the LMS
page's and back (site isolation), and Playwright 1.65 (its `crPage` keeps one session per
frame id) handles the first move's detach after a round trip: when the frame moved back before
that round trip came back, it dropped the new session and kept the frame at the LMS's URL while
the player loaded and played (about 1 launch in 15 on a loaded machine; puppeteer#10715 is
the same kind of race). Waiting until Playwright evaluates in the LMS's page, in the LMS page's
process, orders the form after that round trip: its reply comes first on the same session.

- Third-party cookies blocked (Debian's Chromium's default in a frame, like Safari), from a
  Canvas-like LMS (tests/lti_platform.py's CANVAS profile: the shared issuer, registered with
  any deployment, which its first launch records): the LMS page's storage frame
  (`post_message_forwarding`, as Canvas) answers `lti.capabilities`,
  `lti.put_data` and `lti.get_data`; the learner lands on the player and plays it to the end,
  and the LMS's gradebook (tests/lti_platform.py's Gradebook, AGS) gets their final score from
  the real workers (scores every second here: `LTI_SCORE_INTERVAL_S` 1).
- Cookies allowed (a profile preference, ARCHITECTURE.md facts of 2026-12-06), no platform
  storage: the state cookie carries the login.
- Neither: the launch offers a new window, where the login works first-party.

Needs `frontend/dist` and /usr/bin/chromium, like tests/test_browser.py.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import re
import ssl
import time
from base64 import b64encode
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Frame,
    Page,
    Playwright,
    expect,
    sync_playwright,
)

from shared.devtools.demo import DEMO_CATALOG
from shared.lti.identity import user_id_of
from shared.settings import Settings
from tests.helpers import bearer, wait_until
from tests.lti_platform import (
    CANVAS,
    PLATFORM_ID,
    Gradebook,
    HttpAnswer,
    HttpRequest,
    Lms,
    Profile,
)
from tests.stack import Stack, running_stack
from tests.test_browser import CHROMIUM_ARGS, chromium_path

pytestmark = pytest.mark.system

VIDEO = "demo-video-1"  # 20 s of /media/demo.webm, in the demo course
LEARNER = "http://purl.imsglobal.org/vocab/lis/v2/membership#Learner"
STORAGE_FRAME = "post_message_forwarding"  # Canvas's name for its storage frame
STORAGE_FRAME_DELAY_S = 0.8  # /storage-frame-late's delay: well after the login page asks
# The frame goes through several pages before the player: wait for its video, then its data.
VIDEO_READY = "() => { const v = document.querySelector('video'); return !!v && v.readyState >= 1 }"
CANVAS_ID = "canvas-north"  # the Canvas-like LMS's registration
# Third-party cookies allowed, in a persistent profile (ARCHITECTURE.md, 2026-12-06).
COOKIES_ALLOWED = {"profile": {"block_third_party_cookies": False, "cookie_controls_mode": 0}}


@dataclass(frozen=True)
class Tls:
    ca: Path
    cert: Path
    key: Path
    spki: str  # base64 SHA-256 of the certificate's public key, as Chromium's flag takes it


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    root = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    issued = ca.issue_cert("tool.test", "lms.test", "127.0.0.1")
    paths = Tls(root / "ca.pem", root / "cert.pem", root / "key.pem", "")
    ca.cert_pem.write_to_path(str(paths.ca))
    issued.private_key_pem.write_to_path(str(paths.key))
    paths.cert.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    leaf = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes())
    spki = leaf.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return Tls(paths.ca, paths.cert, paths.key, b64encode(hashlib.sha256(spki).digest()).decode())


# The LMS's platform storage, in its storage frame (as Canvas's post_message_forwarding) or in
# the course page itself (`_parent`, as Moodle and Brightspace): keeps what each tool origin
# puts, answers only that origin, and logs every request for the test.
STORAGE_SCRIPT = """<script>
const data = new Map();
const where = window.parent !== window ? {frame: window.name} : {};
window.received = [];
addEventListener("message", (event) => {
  const m = event.data;
  if (!m || typeof m !== "object" || typeof m.subject !== "string") return;
  window.received.push({origin: event.origin, subject: m.subject, key: m.key});
  const reply = (extra) => event.source.postMessage(
    {subject: m.subject + ".response", message_id: m.message_id, ...extra}, event.origin);
  const key = event.origin + " " + m.key;
  if (m.subject === "lti.capabilities") {
    reply({supported_messages: [{subject: "lti.capabilities"},
      {subject: "lti.put_data", ...where}, {subject: "lti.get_data", ...where}]});
  } else if (m.subject === "lti.put_data") {
    data.set(key, m.value);
    reply({key: m.key, value: m.value});
  } else if (m.subject === "lti.get_data") {
    if (data.has(key)) reply({key: m.key, value: data.get(key)});
    else reply({key: m.key, error: {code: "not_found", message: "no such key"}});
  }
});
</script>"""
STORAGE_PAGE = f"<!doctype html><title>storage</title>{STORAGE_SCRIPT}"

# The course page: the storage frame first (when the LMS offers it), then the tool's frame.
COURSE_PAGE = """<!doctype html><title>Physics: lesson</title><h1>Physics</h1>{storage}
<iframe name="tool" id="tool" title="Video tool" width="960" height="720"
 allow="autoplay" src="{login}"></iframe>"""

# The OIDC authorization endpoint's answer: the id_token form, posted to the tool by
# post_authorization (an LMS's own script posts it at once; the module's docstring says why).
AUTH_PAGE = """<!doctype html><title>Signing in</title><form method="post" action="{action}">
{fields}</form>"""
AT_AUTHORIZATION = "() => location.pathname === '/auth' && document.forms.length === 1"


def html_page(text: str) -> HttpAnswer:
    return HttpAnswer(200, text.encode(), {"Content-Type": "text/html; charset=utf-8"})


@dataclass
class Tool:
    stack: Stack
    base: str  # https://tool.test:<port>
    tls: Tls

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = f"https://127.0.0.1:{self.stack.port}{path}"
        return httpx.request(method, url, verify=str(self.tls.ca), timeout=15, **kwargs)


def serving_lms(tls: Tls, profile: Profile | None = None) -> Iterator[Lms]:
    platform = Lms(profile, public=("lms.test", trustme_server_context(tls)))
    platform.route("GET", "/storage-frame", lambda _: html_page(STORAGE_PAGE))
    platform.route("GET", "/storage-frame-late", late_storage_page)
    platform.route("GET", "/auth", lambda request: authorize(platform, request))
    yield platform
    platform.close()


def late_storage_page(_: HttpRequest) -> HttpAnswer:
    """The storage frame, served after the tool's login page has asked it (the LMS's server
    is slower than the tool's): a question posted before the frame's page listens is lost."""
    time.sleep(STORAGE_FRAME_DELAY_S)
    return html_page(STORAGE_PAGE)


@pytest.fixture(scope="module")
def lms(tls: Tls) -> Iterator[Lms]:
    """A Moodle-like LMS (its own issuer, deployment `dep-1` registered)."""
    yield from serving_lms(tls)


def trustme_server_context(tls: Tls) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def authorize(lms: Lms, request: HttpRequest, ags: dict[str, Any] | None = None) -> HttpAnswer:
    """The platform's authorization endpoint: the user named by `login_hint` launches VIDEO
    (`ags`: the launch's AGS claim, when the LMS grades it)."""
    query = dict(parse_qsl(request.query))
    claims = {"sub": query["login_hint"], "roles": [LEARNER], "material_id": VIDEO, **(ags or {})}
    form = lms.authorize(query, **claims)
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in form.items()
    )
    return html_page(AUTH_PAGE.format(action=html.escape(query["redirect_uri"]), fields=fields))


@pytest.fixture(scope="module")
def tool(tmp_path_factory: pytest.TempPathFactory, tls: Tls, lms: Lms) -> Iterator[Tool]:
    if not Settings.model_fields["frontend_dist"].default.is_dir():
        raise RuntimeError("frontend/dist is missing: run tests/run.sh (it builds the pages)")
    # The tool's URLs are the request's own (https://tool.test:<port>): no PUBLIC_BASE_URL.
    env = {"UVICORN_SSL_KEYFILE": str(tls.key), "UVICORN_SSL_CERTFILE": str(tls.cert)}
    env.update(LTI_SCORE_INTERVAL_S="1", OUTBOX_TICK_S="1")  # scores within seconds, not a minute
    # Real-time playing: verified watching stays on (max_playback_rate=None, the default).
    for stack in running_stack(
        tmp_path_factory, "production", DEMO_CATALOG, max_playback_rate=None, extra_env=env
    ):
        base = f"https://tool.test:{stack.port}"
        running = Tool(stack, base, tls)
        body = {
            **lms.registration_body(["dep-1"]),
            "auth_login_url": f"{lms.public_base}/auth",  # the browser goes there
            "frame_origins": [lms.public_base],  # the course page frames the tool
        }
        admin = bearer(stack.settings(), "admin-1", "admin")
        r = running.api("PUT", f"/api/admin/lti/platforms/{PLATFORM_ID}", json=body, headers=admin)
        assert r.status_code == 201, r.text
        lms.registration.set_launch_url(f"{base}/lti/launch")
        yield running


@pytest.fixture(scope="module")
def canvas(tls: Tls, tool: Tool) -> Iterator[Lms]:
    """A Canvas-like LMS on the same tool: the shared issuer, registered (as CANVAS_ID) with
    `deployment_ids: []`, so its deployment is recorded at its first launch."""
    for platform in serving_lms(tls, CANVAS):
        body = {
            **platform.profile_registration(CANVAS.client_ids[0]),
            "auth_login_url": f"{platform.public_base}/auth",
            "frame_origins": [platform.public_base],
        }
        admin = bearer(tool.stack.settings(), "admin-1", "admin")
        r = tool.api("PUT", f"/api/admin/lti/platforms/{CANVAS_ID}", json=body, headers=admin)
        assert r.status_code == 201, r.text
        platform.registration.set_launch_url(f"{tool.base}/lti/launch")
        yield platform


@pytest.fixture(scope="module")
def grades(canvas: Lms, tool: Tool) -> tuple[Gradebook, str]:
    """The Canvas-like LMS's gradebook (AGS) and its column for VIDEO, offered by its every
    launch. The platform reads the tool's key set over TLS, as it fetches `/lti/jwks`."""
    book = Gradebook(canvas, lambda: tool.api("GET", "/lti/jwks").json())
    column = book.add_line_item("Demo video 1")
    canvas.route("GET", "/auth", lambda request: authorize(canvas, request, book.claim(column)))
    return book, column


def course_page(
    lms: Lms,
    tool: Tool,
    user: str,
    target: str | None,
    storage: bool | None = None,
    frame_path: str = "/storage-frame",
) -> str:
    """Serves the LMS course page for `user` (its own path) and returns its URL. `target`: the
    login's `lti_storage_target` (None: none); `storage`: whether the LMS answers there
    (default: when there is a target); `frame_path`: the storage frame's page."""
    params = {
        "iss": str(lms.registration.get_iss()),
        "login_hint": user,
        "target_link_uri": f"{tool.base}/lti/launch",
        "lti_message_hint": "rl-1",
        "client_id": str(lms.registration.get_client_id()),
    }
    if lms.profile is not None:  # as Canvas sends it
        params["lti_deployment_id"] = lms.profile.deployment_id
    if target is not None:
        params["lti_storage_target"] = target
    answering = ""
    if (target is not None) if storage is None else storage:
        frame = f'<iframe name="{STORAGE_FRAME}" src="{frame_path}" hidden></iframe>'
        answering = STORAGE_SCRIPT if target == "_parent" else frame
    text = COURSE_PAGE.format(
        storage=answering, login=html.escape(f"{tool.base}/lti/login?{urlencode(params)}")
    )
    lms.route("GET", f"/course/{user}", lambda _: html_page(text))
    return f"{lms.public_base}/course/{user}"


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


def chromium_args(tls: Tls) -> list[str]:
    return [
        *CHROMIUM_ARGS,
        "--host-resolver-rules=MAP lms.test 127.0.0.1, MAP tool.test 127.0.0.1",
        f"--ignore-certificate-errors-spki-list={tls.spki}",
    ]


@pytest.fixture(scope="module")
def chromium(playwright: Playwright, tls: Tls) -> Iterator[Browser]:
    browser = playwright.chromium.launch(executable_path=chromium_path(), args=chromium_args(tls))
    yield browser
    browser.close()


@pytest.fixture
def blocking(chromium: Browser) -> Iterator[BrowserContext]:
    """Debian Chromium's default profile: third-party cookies (and storage) refused. A fresh
    profile per test: the tool's pages cached under one LMS's policy stay in that test."""
    context = chromium.new_context(viewport={"width": 1100, "height": 900})
    yield context
    context.close()


def tool_frame(page: Page) -> Frame:
    frame = page.frame(name="tool")
    assert frame is not None
    return frame


def post_authorization(frame: Frame) -> None:
    """Posts the LMS's authorization page's form (the id_token) to the tool once `frame` is at
    that page, as the LMS's own script would."""
    frame.wait_for_function(AT_AUTHORIZATION, timeout=30_000)
    frame.evaluate("() => document.forms[0].submit()")


def player_ready(page: Page, started: float, case: str) -> Frame:
    """Signs in through the LMS, then waits for the tool frame's player to have its video;
    prints launch -> player ready."""
    frame = tool_frame(page)
    post_authorization(frame)
    frame.wait_for_function(VIDEO_READY, timeout=30_000)
    print(f"\nlaunch -> player ready ({case}): {time.perf_counter() - started:.2f} s")
    return frame


def play_a_little(frame: Frame | Page) -> None:
    """Play past the first second, then pause: the pause sends a heartbeat at once."""
    frame.evaluate("() => document.querySelector('video').play()")
    frame.wait_for_function("() => document.querySelector('video').currentTime > 1")
    frame.evaluate("() => document.querySelector('video').pause()")


def learner_state(tool: Tool, user: str, platform_id: str = PLATFORM_ID) -> dict[str, Any]:
    """What the service holds for the LTI user's VIDEO (the status API, as the learner)."""
    headers = bearer(tool.stack.settings(), user_id_of(platform_id, user))
    r = tool.api("GET", f"/api/progress/video/{VIDEO}/status", headers=headers)
    assert r.status_code == 200, r.text
    state: dict[str, Any] = r.json()
    return state


def test_a_learner_launches_with_cookies_blocked_through_platform_storage_and_plays_to_the_end(
    canvas: Lms, tool: Tool, blocking: BrowserContext, grades: tuple[Gradebook, str]
) -> None:
    page = blocking.new_page()
    started = time.perf_counter()
    page.goto(course_page(canvas, tool, "learner-a", CANVAS.storage_target))
    frame = player_ready(page, started, "cookies blocked, platform storage")
    # The frame really is third-party here: its storage is refused, and no cookie was kept.
    refused = frame.evaluate(
        "() => { try { localStorage.getItem('x'); return false } catch (e) { return e.name } }"
    )
    assert refused == "SecurityError"
    assert not [c for c in blocking.cookies() if c["domain"] == "tool.test"]
    storage = page.frame(name=STORAGE_FRAME)
    assert storage is not None
    received = storage.evaluate("() => window.received")
    subjects = [m["subject"] for m in received if m["origin"] == tool.base]
    assert subjects.count("lti.put_data") == 2 and subjects.count("lti.get_data") == 2, received
    assert re.search(r"^#/course/[^/]+/play/" + VIDEO + "$", frame.evaluate("location.hash"))

    frame.evaluate("() => document.querySelector('video').play()")
    frame.wait_for_function("() => document.querySelector('video').ended", timeout=60_000)
    expect(frame.get_by_test_id("player-completed")).to_be_visible(timeout=15_000)
    learner = "learner-a"
    state = wait_until(lambda: (s := learner_state(tool, learner, CANVAS_ID))["completed"] and s)
    assert state["progress_percentage"] >= 80
    book, column = grades  # the workers post the credited score back to the LMS

    def completed() -> dict[str, Any] | None:
        score = book.final(column, "learner-a")
        return score if score and score["activityProgress"] == "Completed" else None

    score = wait_until(completed, timeout_s=20)
    assert score["scoreGiven"] >= 80 and score["gradingProgress"] == "FullyGraded", score
    assert book.token_refusals == [] and book.conflicts == 0
    admin = bearer(tool.stack.settings(), "admin-1", "admin")
    rows = tool.api("GET", "/api/admin/lti/platforms", headers=admin).json()["rows"]
    [registered] = [row for row in rows if row["platform_id"] == CANVAS_ID]
    assert registered["seen_deployment_ids"] == [CANVAS.deployment_id]  # its first launch's


def test_a_learner_launches_with_cookies_allowed_and_no_platform_storage(
    lms: Lms, tool: Tool, playwright: Playwright, tls: Tls, tmp_path: Path
) -> None:
    profile = tmp_path / "profile"
    (profile / "Default").mkdir(parents=True)
    (profile / "Default" / "Preferences").write_text(json.dumps(COOKIES_ALLOWED))
    context = playwright.chromium.launch_persistent_context(
        str(profile), executable_path=chromium_path(), args=chromium_args(tls)
    )
    try:
        page = context.new_page()
        started = time.perf_counter()
        page.goto(course_page(lms, tool, "learner-b", None))
        frame = player_ready(page, started, "cookies allowed, no platform storage")
        assert frame.evaluate("() => localStorage.getItem('videoprogress.token')") is None
        play_a_little(frame)
        stopped = wait_until(lambda: learner_state(tool, "learner-b")["watch_time"], timeout_s=15)
        # The next launch of the same learner resumes where they stopped.
        page.reload()
        frame = player_ready(page, time.perf_counter(), "cookies allowed, second launch")
        position = float(frame.evaluate("() => document.querySelector('video').currentTime"))
        assert abs(position - stopped) < 0.5, (position, stopped)
    finally:
        context.close()


def test_a_learner_launches_with_the_lms_page_itself_as_platform_storage(
    lms: Lms, tool: Tool, blocking: BrowserContext
) -> None:
    """`lti_storage_target=_parent` (as Moodle and Brightspace): the course page answers."""
    page = blocking.new_page()
    started = time.perf_counter()
    page.goto(course_page(lms, tool, "learner-d", "_parent"))
    player_ready(page, started, "cookies blocked, the LMS page as storage")
    received = page.evaluate("() => window.received")
    # lti.capabilities may be asked more than once: it is sent again until answered.
    asked = [m["subject"] for m in received if m["origin"] == tool.base]
    subjects = [subject for subject, _ in itertools.groupby(asked)]
    assert subjects == ["lti.capabilities", "lti.put_data", "lti.capabilities",
                        "lti.get_data"], received  # fmt: skip
    assert asked.count("lti.put_data") == 2 and asked.count("lti.get_data") == 2, received


def test_a_storage_frame_that_loads_after_the_tools_page_is_asked_again_and_answers(
    lms: Lms, tool: Tool, blocking: BrowserContext
) -> None:
    """The LMS page's storage frame loads after the tool's login page has sent its first
    `lti.capabilities` (lost: nothing listened yet). The page asks again until the frame
    answers, within STORAGE_TIMEOUT_MS, and the launch goes the platform storage way."""
    page = blocking.new_page()
    started = time.perf_counter()
    url = course_page(lms, tool, "learner-e", STORAGE_FRAME, frame_path="/storage-frame-late")
    page.goto(url)
    frame = player_ready(page, started, "cookies blocked, a storage frame loading late")
    storage = page.frame(name=STORAGE_FRAME)
    assert storage is not None
    received = storage.evaluate("() => window.received")
    subjects = [m["subject"] for m in received if m["origin"] == tool.base]
    assert subjects.count("lti.put_data") == 2 and subjects.count("lti.get_data") == 2, received
    assert re.search(r"^#/course/[^/]+/play/" + VIDEO + "$", frame.evaluate("location.hash"))


def test_a_storage_target_without_its_frame_sends_the_login_the_cookie_way(
    lms: Lms, tool: Tool, blocking: BrowserContext
) -> None:
    """With a storage target but no frame to answer, the login page starts the same login
    the cookie way (no `lti_storage_target`), which goes on to the LMS's authentication.

    From there the launch is the cookie way's, which the next test follows to the new window."""
    page = blocking.new_page()
    logins: list[dict[str, str]] = []
    blocking.on(
        "request",
        lambda r: (
            logins.append(dict(parse_qsl(urlsplit(r.url).query)))
            if r.url.startswith(f"{tool.base}/lti/login?")
            else None
        ),
    )
    auth = f"{lms.public_base}/auth?"
    reached: list[str] = []  # the frame's URL as it navigated (Frame.url moves on)

    def at_auth(frame: Frame) -> bool:
        if frame.name == "tool" and frame.url.startswith(auth):
            reached.append(frame.url)
        return bool(reached)

    with page.expect_event("framenavigated", at_auth, timeout=30_000):
        page.goto(course_page(lms, tool, "learner-c-missing", STORAGE_FRAME, storage=False))
    assert [q.get("lti_storage_target") for q in logins] == [STORAGE_FRAME, None]
    assert logins[1] == {k: v for k, v in logins[0].items() if k != "lti_storage_target"}
    request = dict(parse_qsl(urlsplit(reached[0]).query))
    assert request["login_hint"] == "learner-c-missing" and request["state"]


def test_without_cookies_or_platform_storage_the_launch_offers_a_new_window(
    lms: Lms, tool: Tool, blocking: BrowserContext
) -> None:
    """No storage target: the login goes the cookie way; the cookie is refused too, so the
    launch offers the new window."""
    user = "learner-c"
    page = blocking.new_page()
    page.goto(course_page(lms, tool, user, None, storage=False))
    post_authorization(tool_frame(page))
    offer = page.frame_locator("#tool").locator("#new-window")
    expect(offer).to_be_visible(timeout=15_000)
    with blocking.expect_page() as opened:
        offer.click()
    window = opened.value  # top level: the tool's cookies are first-party here
    post_authorization(window.main_frame)
    window.wait_for_function(VIDEO_READY, timeout=30_000)
    assert window.url.startswith(f"{tool.base}/#/course/")
    play_a_little(window)
    wait_until(lambda: learner_state(tool, user)["watch_time"] > 0, timeout_s=15)
