"""The web edge in real headless Chromium against the real stack (docs/browser.md, "Embedding
the tracker in an LMS page"): the embed example served by a second HTTP server of this test's
own, as an LMS page would be, on an origin the API lists in `CORS_ORIGINS` and on one it does
not; and the service's own pages under their Content-Security-Policy.

The second server answers at two origins: `http://127.0.0.1:<port>` (listed in CORS_ORIGINS and
FRAME_ANCESTORS) and `http://localhost:<port>` (in neither).
Needs `frontend/dist` and /usr/bin/chromium, like tests/test_browser.py.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect, sync_playwright

from shared.devtools.demo import DEMO_CATALOG, DEMO_COURSE
from shared.settings import Settings
from tests.helpers import wait_until
from tests.stack import Stack, running_stack
from tests.test_browser import (
    CHROMIUM_ARGS,
    VIDEO_READY,
    chromium_path,
    server_status,
    sign_in,
    token,
)

pytestmark = pytest.mark.system

VIDEO = "demo-video-3"  # 20 s, /media/demo.webm; student-1 and student-2 are enrolled
# Every Content-Security-Policy violation the page reports, kept where the test can read it.
RECORD_VIOLATIONS = """
window.__violations = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__violations.push(e.violatedDirective + " " + e.blockedURI));
"""


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass  # no line per request in the test output


# The LMS's lesson page framing the address in its fragment (#http://...).
LESSON_PAGE = """<!doctype html><title>Lesson</title><body><script>
const frame = document.createElement("iframe");
frame.src = decodeURIComponent(location.hash.slice(1));
document.body.append(frame);
</script>"""


@pytest.fixture(scope="module")
def lms_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A plain static server standing for a learning platform's own web server: the built
    pages (the embed example and its script) and a lesson page that frames another page."""
    dist = Settings.model_fields["frontend_dist"].default
    if not dist.is_dir():
        raise RuntimeError("frontend/dist is missing: run tests/run.sh (it builds the pages)")
    root = tmp_path_factory.mktemp("lms")
    for entry in dist.iterdir():
        (root / entry.name).symlink_to(entry)
    (root / "lesson.html").write_text(LESSON_PAGE)
    handler = functools.partial(Quiet, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, lms_port: int) -> Iterator[Stack]:
    listed = f"http://127.0.0.1:{lms_port}"
    env = {"CORS_ORIGINS": listed, "FRAME_ANCESTORS": f"'self' {listed}"}
    yield from running_stack(
        tmp_path_factory, "development", DEMO_CATALOG, max_playback_rate=None, extra_env=env
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


def open_embed_example(browser: Browser, stack: Stack, origin: str, student: str) -> Page:
    page = browser.new_context().new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    fragment = urlencode(
        {"api": stack.url, "token": token(stack, student), "video": VIDEO,
         "src": f"{stack.url}/media/demo.webm"}
    )  # fmt: skip
    page.goto(f"{origin}/embed-example.html#{fragment}")
    # The page imported the tracker module from the API's /embed/: readable from any origin.
    expect(page.get_by_test_id("embed-progress")).to_have_text(f"Tracking {VIDEO}.")
    return page


def play_until(page: Page, position_s: float) -> float:
    """Play the page's video until it passed `position_s` (real time), pause; where it stopped."""
    page.wait_for_function(VIDEO_READY)
    page.evaluate("document.querySelector('video').play()")
    page.wait_for_function(f"() => document.querySelector('video').currentTime > {position_s}")
    return float(
        page.evaluate("(v => (v.pause(), v.currentTime))(document.querySelector('video'))")
    )


def test_a_page_on_a_listed_origin_tracks_a_video_into_the_service(
    stack: Stack, browser: Browser, lms_port: int
) -> None:
    assert server_status(stack, "student-1", VIDEO)["watched_seconds"] == 0.0
    page = open_embed_example(browser, stack, f"http://127.0.0.1:{lms_port}", "student-1")
    stopped_at = play_until(page, 3)
    # The pause sends a heartbeat at once; the page shows the server's answer, which the
    # browser let it read.
    expect(page.get_by_test_id("embed-progress")).to_contain_text("s watched", timeout=10_000)
    status = server_status(stack, "student-1", VIDEO)
    assert status["watched_seconds"] > 2, status
    assert abs(status["watch_time"] - stopped_at) < 1.5, (status, stopped_at)


def test_a_page_on_an_unlisted_origin_is_refused_and_nothing_is_stored(
    stack: Stack, browser: Browser, lms_port: int
) -> None:
    page = open_embed_example(browser, stack, f"http://localhost:{lms_port}", "student-2")

    def refused(message: ConsoleMessage) -> bool:
        return "blocked by CORS policy" in message.text and "/watch-time" in message.text

    with page.expect_console_message(refused, timeout=10_000) as refusal:
        play_until(page, 2)  # the pause sends a heartbeat at once: its preflight is refused
    text = refusal.value.text
    assert "preflight" in text and "No 'Access-Control-Allow-Origin' header" in text, text
    # The browser sent no heartbeat after the refused preflight: the server holds nothing.
    status = server_status(stack, "student-2", VIDEO)
    assert status["watched_seconds"] == 0.0 and status["last_watched"] is None, status
    expect(page.get_by_test_id("embed-progress")).to_have_text(f"Tracking {VIDEO}.")


def violations(page: Page) -> list[str]:
    found: list[str] = page.evaluate("window.__violations")
    return found


def test_the_pages_run_under_their_policy_and_inline_scripts_do_not(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "student-1")
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    response = page.reload()  # a new document: the init script runs, the headers are seen
    assert response is not None
    assert "script-src 'self';" in response.headers["content-security-policy"]
    page.get_by_test_id("material-demo-hls-1").get_by_role("button", name="Play").click()
    video = page.get_by_test_id("video")
    expect(video).to_have_attribute("data-engine", "hls.js", timeout=10_000)  # blob: media
    play_until(page, 1)
    assert violations(page) == []

    # The policy is enforced, not only sent: an injected inline script does not run.
    page.evaluate(
        "document.body.append(Object.assign(document.createElement('script'),"
        " {textContent: 'window.__injected = true'}))"
    )
    wait_until(lambda: violations(page), timeout_s=5)
    assert violations(page)[0].startswith("script-src")
    assert page.evaluate("window.__injected") is None


def test_the_teacher_pages_and_the_embed_example_run_under_their_policy(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "teacher-1")
    page.add_init_script(RECORD_VIOLATIONS)
    page.goto(f"{stack.url}/#/teacher/{DEMO_COURSE}")
    page.reload()
    expect(page.get_by_test_id("row-student-1")).to_be_visible()
    expect(page.get_by_test_id("retention-chart").locator("canvas")).to_be_visible()
    page.goto(f"{stack.url}/#/teacher/{DEMO_COURSE}/matrix")
    expect(page.get_by_test_id("matrix-row-student-1")).to_be_visible()
    assert violations(page) == []

    embed = open_embed_example(browser, stack, stack.url, "student-2")  # the API's own page
    play_until(embed, 1)
    expect(embed.get_by_test_id("embed-progress")).to_contain_text("s watched", timeout=10_000)
    assert violations(embed) == []


SWAGGER_DIST = Path(__file__).parent.parent / "frontend" / "node_modules" / "swagger-ui-dist"


def test_the_api_docs_page_runs_swagger_ui_from_its_cdn_under_its_policy(
    stack: Stack, browser: Browser
) -> None:
    """The machine has no internet: the CDN's answers are played by the test, with the real
    files of the version the page names (the frontend's dev dependency swagger-ui-dist@5.36.0),
    after Chromium's policy check; Swagger UI then shows the API. A file that is not the one
    the page's hash names (as a compromised CDN would serve) is refused by the browser."""

    def visit(tampered: bool) -> tuple[Any, list[str]]:
        page = browser.new_context().new_page()
        page.add_init_script(RECORD_VIOLATIONS)
        fetched: list[str] = []

        def cdn(route: Route) -> None:
            fetched.append(route.request.url)
            name = route.request.url.rsplit("/", 1)[-1]
            if "swagger-ui-dist@5.36.0/" not in route.request.url or name not in (
                "swagger-ui-bundle.js",
                "swagger-ui.css",
            ):
                route.fulfill(status=404)
                return
            body = (SWAGGER_DIST / name).read_bytes()
            if tampered and name.endswith(".js"):
                body += b"\n;window.TAMPERED = true;"
            kind = "text/javascript" if name.endswith(".js") else "text/css"
            route.fulfill(body=body, content_type=kind,
                          headers={"Access-Control-Allow-Origin": "*"})  # fmt: skip

        page.route("https://cdn.jsdelivr.net/**", cdn)
        page.route("https://fastapi.tiangolo.com/**", cdn)
        page.goto(f"{stack.url}/docs")
        return page, fetched

    page, fetched = visit(tampered=False)
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Video progress")
    assert any(u.endswith("swagger-ui.css") for u in fetched), fetched
    assert violations(page) == []
    page, _ = visit(tampered=True)
    page.wait_for_load_state("load")
    assert page.evaluate("window.TAMPERED === undefined && window.SwaggerUIBundle === undefined")
    expect(page.locator(".swagger-ui .info .title")).to_have_count(0)


def test_the_pages_can_be_framed_only_by_the_listed_ancestors(
    stack: Stack, browser: Browser, lms_port: int
) -> None:
    """A lesson page of each LMS origin frames the service's home page; FRAME_ANCESTORS lists
    only the first."""
    listed = browser.new_context().new_page()
    listed.goto(f"http://127.0.0.1:{lms_port}/lesson.html#{stack.url}/")
    expect(listed.frame_locator("iframe").get_by_test_id("signin-student-1")).to_be_visible()

    unlisted = browser.new_context().new_page()
    with unlisted.expect_console_message(lambda m: "frame-ancestors" in m.text) as refusal:
        unlisted.goto(f"http://localhost:{lms_port}/lesson.html#{stack.url}/")
    assert "frame-ancestors 'self' http://127.0.0.1:" in refusal.value.text, refusal.value.text
    expect(unlisted.frame_locator("iframe").get_by_test_id("signin-student-1")).to_have_count(0)
