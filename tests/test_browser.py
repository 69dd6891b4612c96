"""End to end in real headless Chromium (Debian's, driven by Playwright) against the real stack:
the built pages served by the API, the Procfile's workers, Redis and the MongoDB stand-in.

Screenshots of the course page, the player and the teacher dashboard go to test-output/.
Needs `frontend/dist` (tests/run.sh builds it) and /usr/bin/chromium (tests/run.sh installs it).
"""

from __future__ import annotations

import json
import re
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from shared.devtools.demo import DEMO_CATALOG, DEMO_COURSE
from shared.settings import Settings
from shared.tokens import mint_token
from tests.helpers import bearer, buffered, wait_until
from tests.lti_platform import CLIENT_ID, DEPLOYMENT, DL_CLAIM, Lms
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
AXE = ROOT / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
# A second course taught by teacher-1 whose class is more than one page of the class table
# (the route's limit is at most 1,000): every row must still be shown.
BIG_COURSE = "big-class"
BIG_CLASS = 1001
# A function, not an expression: Playwright evals an expression in the page, which the pages'
# Content-Security-Policy forbids.
VIDEO_READY = "() => document.querySelector('video').readyState >= 1"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--autoplay-policy=no-user-gesture-required",
]


def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError(
            "Chromium is not installed: run tests/run.sh, or apt-get install chromium"
        )
    return path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    if not Settings.model_fields["frontend_dist"].default.is_dir():
        raise RuntimeError("frontend/dist is missing: run tests/run.sh (it builds the pages)")
    catalog = json.loads(DEMO_CATALOG.read_text())
    catalog["courses"].append(
        {
            "course_id": BIG_COURSE,
            "title": "A very large class",
            "teacher_ids": ["teacher-1"],
            "modules": [
                {
                    "module_id": "b1",
                    "title": "Only module",
                    "materials": [
                        {"material_id": f"big-video-{i}", "title": f"Lecture {i}", "type": "video",
                         "duration": 60, "url": "/media/demo.webm"}
                        for i in range(1, 4)
                    ] + [{"material_id": "big-pdf-1", "title": "Handout", "type": "pdf"}],
                }
            ],
        }
    )  # fmt: skip
    catalog["enrollments"] += [
        {"student_id": f"s-{i:04d}", "course_id": BIG_COURSE} for i in range(1, BIG_CLASS + 1)
    ]
    path = tmp_path_factory.mktemp("catalog") / "catalog.json"
    path.write_text(json.dumps(catalog))
    # The tracker plays in real time: verified watching stays on, as in production. The LMS
    # page of the framing test is served from 127.0.0.1 on a port of its own.
    framing = {"FRAME_ANCESTORS": "'self' http://127.0.0.1:*"}
    yield from running_stack(
        tmp_path_factory, "development", path, max_playback_rate=None, extra_env=framing
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    OUTPUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


def sign_in(browser: Browser, stack: Stack, user: str) -> Page:
    page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()
    page.goto(stack.url + "/")
    page.get_by_test_id(f"signin-{user}").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()  # signed in, at #/
    return page


def check_accessibility(page: Page, name: str) -> None:
    """axe-core on the page as it is: no serious or critical violation."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # evaluated by the browser's devtools side: the page's policy runs no inline <script>
        page.evaluate(AXE.read_text())
    result = page.evaluate(
        "axe.run(document, {resultTypes: ['violations']})"
        ".then(r => r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))})))"
    )
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    assert not bad, f"{name}: {json.dumps(bad, indent=1)}"


def token(stack: Stack, user: str, role: str = "student") -> str:
    return mint_token(stack.settings(), user, role)  # type: ignore[arg-type]


def bar_value(page: Page, material: str) -> float:
    return float(page.get_by_test_id(f"bar-{material}").get_attribute("aria-valuenow") or 0)


def play_for(page: Page, seconds: float) -> float:
    """Play the open video for `seconds` of real time; returns where it stopped."""
    video = page.get_by_test_id("video")
    expect(video).to_be_visible()
    page.wait_for_function(VIDEO_READY)
    page.evaluate("document.querySelector('video').play()")
    page.wait_for_timeout(seconds * 1000)
    stop = (
        "(() => { const v = document.querySelector('video'); v.pause(); return v.currentTime })()"
    )
    return float(page.evaluate(stop))


def server_status(stack: Stack, student: str, material: str) -> dict[str, Any]:
    headers = bearer(stack.settings(), student)
    url = f"{stack.url}/api/progress/video/{material}/status"
    status: dict[str, Any] = httpx.get(url, headers=headers, timeout=10).json()
    return status


def outbox_of(page: Page, user: str) -> list[dict[str, Any]]:
    """The heartbeats waiting in `user`'s outbox in this page's browser profile."""
    items: list[dict[str, Any]] = page.evaluate(
        "key => JSON.parse(localStorage.getItem(key) || '[]')", f"videoprogress.outbox.{user}"
    )
    return items


def test_student_watches_closes_and_resumes(stack: Stack, browser: Browser) -> None:
    page = sign_in(browser, stack, "student-1")
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    expect(page.get_by_test_id("material-demo-video-1")).to_be_visible()
    assert bar_value(page, "demo-video-1") == 0.0
    page.screenshot(path=OUTPUT / "course-page-before.png", full_page=True)

    page.get_by_test_id("material-demo-video-1").get_by_role("button", name="Play").click()
    stopped_at = play_for(page, 5)
    assert stopped_at > 3
    expect(page.get_by_test_id("player-progress")).not_to_have_text(
        "Progress: 0.0%", timeout=10_000
    )
    page.screenshot(path=OUTPUT / "player.png")
    page.get_by_role("button", name="Close player").click()

    # The bars moved, from one batch status request made when the player closed.
    wait_until(lambda: bar_value(page, "demo-video-1") > 0, timeout_s=10)
    assert page.get_by_test_id("bar-demo-video-1").get_attribute("aria-valuenow")
    module_bar = page.get_by_test_id("module-m1").get_by_role("progressbar").first
    expect(module_bar).to_be_visible()
    page.screenshot(path=OUTPUT / "course-page.png", full_page=True)

    page.get_by_test_id("material-demo-video-1").get_by_role("button", name="Resume").click()
    page.wait_for_function(VIDEO_READY)
    page.wait_for_timeout(300)
    resumed_at = float(page.evaluate("document.querySelector('video').currentTime"))
    assert abs(resumed_at - stopped_at) < 1.5, (resumed_at, stopped_at)
    status = server_status(stack, "student-1", "demo-video-1")
    assert abs(status["watch_time"] - stopped_at) < 1.5
    assert 3 <= status["watched_seconds"] <= stopped_at + 0.5  # played, not seeked
    page.get_by_role("button", name="Close player").click()


def test_heartbeats_sent_offline_reach_the_server_when_back_online(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "student-2")
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    expect(page.get_by_test_id("material-demo-video-2")).to_be_visible()
    page.get_by_test_id("material-demo-video-2").get_by_role("button", name="Play").click()
    page.wait_for_function(VIDEO_READY)
    # The session begins online (the tracker reports the start of playing), then the network
    # goes: what is played offline keeps its credit (docs/verified-watching.md).
    page.evaluate("document.querySelector('video').play()")
    wait_until(lambda: server_status(stack, "student-2", "demo-video-2")["last_watched"])
    page.context.set_offline(True)
    stopped_at = play_for(page, 4)
    page.get_by_role("button", name="Close player").click()
    page.wait_for_timeout(500)
    outbox = outbox_of(page, "student-2")
    assert outbox and outbox[-1]["material_id"] == "demo-video-2"
    assert server_status(stack, "student-2", "demo-video-2")["watched_seconds"] == 0.0

    page.context.set_offline(False)  # the page's 'online' handler drains the outbox
    status = wait_until(
        lambda: (
            (s := server_status(stack, "student-2", "demo-video-2"))["watched_seconds"] > 0 and s
        ),
        timeout_s=15,
    )
    assert abs(status["watch_time"] - stopped_at) < 1.5
    wait_until(lambda: outbox_of(page, "student-2") == [], timeout_s=10)


def test_teacher_sees_the_class_and_a_retention_chart(stack: Stack, browser: Browser) -> None:
    headers = bearer(stack.settings(), "student-1")
    body = {"watch_time": 10, "total_duration": 20, "played": [[0, 10]]}
    url = f"{stack.url}/api/progress/video/demo-video-1/watch-time"
    assert httpx.post(url, json=body, headers=headers).status_code == 202
    wait_until(lambda: buffered(stack.redis_client())[0] == 0, timeout_s=30)  # flushed

    page = sign_in(browser, stack, "teacher-1")
    page.goto(f"{stack.url}/#/teacher/{DEMO_COURSE}")
    row = page.get_by_test_id("row-student-1")
    expect(row).to_be_visible()
    expect(page.get_by_test_id("row-student-2")).to_be_visible()
    expect(page.get_by_test_id("stat-enrolled")).to_contain_text("2")
    expect(page.get_by_test_id("retention-viewers")).to_contain_text("1 viewer")
    expect(page.get_by_test_id("retention-chart").locator("canvas")).to_be_visible()
    # student-1 watched 10 s or more of demo-video-1, student-2 about 4 s of demo-video-2
    table = page.get_by_test_id("class-table")
    table.get_by_role("button", name="Watched").click()  # sorts ascending, on the server
    expect(table.get_by_role("columnheader", name="Watched")).to_have_attribute(
        "aria-sort", "ascending"
    )
    expect(table.locator("tbody tr").first).to_have_attribute("data-testid", "row-student-2")
    table.get_by_role("button", name="Watched").click()  # and descending
    expect(table.locator("tbody tr").first).to_have_attribute("data-testid", "row-student-1")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[0].startswith("student_id,progress_percentage")
    assert "student-1" in csv_text
    page.screenshot(path=OUTPUT / "teacher-dashboard.png", full_page=True)
    check_accessibility(page, "teacher dashboard")


def test_the_embedded_tracker_reports_a_bare_video_on_a_plain_page(
    stack: Stack, browser: Browser
) -> None:
    """The tracker bundle around a bare <video>, no React: the heartbeats reach the server."""
    page = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    assert server_status(stack, "student-2", "demo-video-3")["watched_seconds"] == 0.0
    page.goto(
        f"{stack.url}/embed-example.html#token={token(stack, 'student-2')}&video=demo-video-3"
    )
    assert page.evaluate("typeof window.React") == "undefined"
    # the page's script set this once the bundle (the ES module, from /embed/) was loaded
    expect(page.get_by_test_id("embed-progress")).to_have_text("Tracking demo-video-3.")
    page.wait_for_function(VIDEO_READY)
    page.evaluate("document.querySelector('video').play()")
    page.wait_for_timeout(4000)
    pause = (
        "(() => { const v = document.querySelector('video'); v.pause(); return v.currentTime })()"
    )
    stopped_at = float(page.evaluate(pause))
    assert stopped_at > 2.5
    # the pause sends a heartbeat at once; the page shows the server's answer
    expect(page.get_by_test_id("embed-progress")).to_contain_text("s watched", timeout=10_000)
    status = server_status(stack, "student-2", "demo-video-3")
    assert status["watched_seconds"] > 2, status
    assert abs(status["watch_time"] - stopped_at) < 1.5, (status, stopped_at)
    check_accessibility(page, "embed example")
    page.screenshot(path=OUTPUT / "embed-example.png", full_page=True)
    assert not errors, errors


def test_an_hls_video_plays_through_hls_js_and_is_tracked(stack: Stack, browser: Browser) -> None:
    page = sign_in(browser, stack, "student-1")
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    material = page.get_by_test_id("material-demo-hls-1")
    expect(material).to_be_visible()
    material.get_by_role("button", name="Play").click()
    video = page.get_by_test_id("video")
    expect(video).to_have_attribute("data-engine", "hls.js", timeout=10_000)
    src = video.get_attribute("src") or ""
    assert src == "" or src.startswith("blob:")  # MSE from hls.js, never the .m3u8 itself
    stopped_at = play_for(page, 4)
    assert stopped_at > 2.5
    expect(page.get_by_test_id("player-progress")).not_to_have_text(
        "Progress: 0.0%", timeout=10_000
    )
    status = server_status(stack, "student-1", "demo-hls-1")
    assert status["watched_seconds"] > 2, status
    assert abs(status["watch_time"] - stopped_at) < 1.5
    check_accessibility(page, "HLS player")
    page.screenshot(path=OUTPUT / "player-hls.png")
    page.get_by_role("button", name="Close player").click()


# -- issue 15: home pages, the whole class, the drill-down, the matrix --------------------------
# These need the backend's routes: GET /api/me/courses, the class table's filters and
# unverified_seconds, the student drill-down's watched_ranges and the matrix.


def test_a_student_home_lists_their_courses_with_progress(stack: Stack, browser: Browser) -> None:
    signin = browser.new_page()
    signin.goto(stack.url + "/")
    expect(signin.get_by_test_id("signin-student-1")).to_be_visible()
    check_accessibility(signin, "sign-in")
    signin.screenshot(path=OUTPUT / "sign-in.png")
    signin.close()

    page = sign_in(browser, stack, "student-1")
    expect(page).to_have_url(f"{stack.url}/#/")
    card = page.get_by_test_id(f"course-{DEMO_COURSE}")
    expect(card).to_contain_text("Introduction to React")
    expect(page.get_by_test_id(f"course-{BIG_COURSE}")).to_have_count(0)  # not enrolled
    bar = card.get_by_role("progressbar", name="Introduction to React progress")
    expect(bar).to_have_attribute("aria-valuemin", "0")
    expect(bar).to_have_attribute("aria-valuemax", "100")
    check_accessibility(page, "student home")
    page.screenshot(path=OUTPUT / "home-student.png", full_page=True)
    card.get_by_role("link", name="Introduction to React").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{stack.url}/#/course/{DEMO_COURSE}")
    expect(page.get_by_test_id("material-demo-video-1")).to_be_visible()
    check_accessibility(page, "course page")


def test_a_teacher_home_lists_their_classes_and_an_admin_sees_all(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "teacher-1")
    expect(page).to_have_url(f"{stack.url}/#/")
    big = page.get_by_test_id(f"course-{BIG_COURSE}")
    expect(big).to_contain_text("A very large class")
    expect(big.locator("td").nth(1)).to_have_text(str(BIG_CLASS))
    expect(page.get_by_test_id(f"course-{DEMO_COURSE}").locator("td").nth(1)).to_have_text("2")
    expect(big.get_by_role("progressbar")).to_have_count(2)  # average, completion
    check_accessibility(page, "teacher home")
    page.screenshot(path=OUTPUT / "home-teacher.png", full_page=True)

    admin = sign_in(browser, stack, "admin-1")
    expect(admin.get_by_role("heading", name="All courses")).to_be_visible()
    expect(admin.get_by_test_id(f"course-{BIG_COURSE}")).to_be_visible()
    expect(admin.get_by_test_id(f"course-{DEMO_COURSE}")).to_be_visible()
    check_accessibility(admin, "admin home")
    admin.screenshot(path=OUTPUT / "home-admin.png", full_page=True)


def test_an_admin_registers_and_removes_an_lms_in_the_lti_panel(
    stack: Stack, browser: Browser
) -> None:
    """The admin page's LTI panel, through the real API: the form's fields, the listed row, its
    removal; axe-core on the panel with a row and with a removal being confirmed."""
    page = sign_in(browser, stack, "admin-1")
    panel = page.get_by_role("region", name="LMS platforms (LTI 1.3)")
    expect(panel.get_by_test_id("no-platforms")).to_be_visible()
    fields = {
        "Platform ID": "moodle-browser",
        "Name": "Moodle (browser test)",
        "Issuer": "https://moodle.school.test",
        "Client ID": "aW9zZ3",
        "Authorization URL": "https://moodle.school.test/mod/lti/auth.php",
        "Token URL": "https://moodle.school.test/mod/lti/token.php",
        "Key set URL": "https://moodle.school.test/mod/lti/certs.php",
        "Deployment IDs": "1",
    }
    for label, value in fields.items():
        panel.get_by_label(label, exact=True).fill(value)
    panel.get_by_role("button", name="Register platform").click()
    row = panel.get_by_test_id("lti-platform-moodle-browser")
    expect(row).to_contain_text("Moodle (browser test)")
    expect(row.locator("td").nth(2)).to_have_text("never")
    check_accessibility(page, "admin home with an LTI platform")
    row.get_by_role("button", name="Remove Moodle (browser test)").click()
    check_accessibility(page, "admin home confirming a removal")
    row.get_by_role("button", name="Remove Moodle (browser test) now").click()
    expect(panel.get_by_test_id("no-platforms")).to_be_visible()
    panel.get_by_role("button", name="Create a registration link").click()
    link = panel.get_by_label("Registration link")
    expect(link).to_have_value(re.compile(r"^http://127\.0\.0\.1:\d+/lti/register\?invite=\S+$"))
    check_accessibility(page, "admin home with a registration link")


def test_an_instructor_deep_links_a_video_from_the_lms_in_chromium(
    stack: Stack, browser: Browser
) -> None:
    """Deep Linking 2.0 in a real browser: the LMS's login, its form post of the deep-linking
    request, the picker, and the return page's own script posting the signed answer to the LMS
    (another origin) under the page's Content-Security-Policy; the LMS accepts the items."""
    lms = Lms()
    try:
        lms.serve_browser_deep_linking()
        admin = {"Authorization": f"Bearer {token(stack, 'admin-1', 'admin')}"}
        body = lms.registration_body([DEPLOYMENT])
        r = httpx.put(f"{stack.url}/api/admin/lti/platforms/browser-lms", json=body, headers=admin)
        assert r.status_code == 201, r.text
        lms.trust_tool_keys(httpx.get(f"{stack.url}/lti/jwks").json())
        page = browser.new_context().new_page()
        login = {"iss": lms.base, "login_hint": "t-1", "target_link_uri": f"{stack.url}/lti/launch"}
        page.goto(f"{stack.url}/lti/login?{urlencode({**login, 'client_id': CLIENT_ID})}")
        expect(page.get_by_role("heading", name="Add videos to your course")).to_be_visible()
        check_accessibility(page, "deep-linking picker")
        page.get_by_label("Lecture 2", exact=True).check()
        page.get_by_role("button", name=re.compile("^Add")).click()
        expect(page.locator("body")).to_have_text("added 1")  # the LMS's answer to the post
        [items] = [claims[DL_CLAIM + "content_items"] for claims in lms.deep_links]
        assert [(i["title"], i["custom"], i["lineItem"]["scoreMaximum"]) for i in items] == [
            ("Lecture 2", {"material_id": "big-video-2"}, 100)
        ]
    finally:
        lms.close()


def test_the_class_table_shows_a_class_larger_than_a_page_whole(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "teacher-1")
    page.goto(f"{stack.url}/#/teacher/{BIG_COURSE}")
    rows = page.get_by_test_id("class-table").locator("tbody tr")
    expect(rows.first).to_have_attribute("data-testid", "row-s-0001")
    more = page.get_by_test_id("class-more")
    for _ in range(20):  # a page at a time, by the button (scrolling loads them as well)
        if more.count() == 0:
            break
        try:
            more.click(timeout=5_000)
        except PlaywrightTimeoutError:  # the last page came in by scrolling: the button went
            continue
        page.wait_for_timeout(200)
    expect(rows).to_have_count(BIG_CLASS, timeout=15_000)
    expect(page.get_by_test_id("class-count")).to_have_text(
        f"Showing {BIG_CLASS} of {BIG_CLASS} students"
    )
    ids = rows.evaluate_all("rs => rs.map(r => r.dataset.testid)")
    assert len(set(ids)) == BIG_CLASS and ids[-1] == f"row-s-{BIG_CLASS:04d}"
    check_accessibility(page, "class table")
    page.screenshot(path=OUTPUT / "class-table.png")

    # sorted by the server (by student id already: a click reverses it), the last comes first
    page.get_by_test_id("class-table").get_by_role("button", name="Student").click()
    expect(rows.first).to_have_attribute("data-testid", f"row-s-{BIG_CLASS:04d}")
    # searched by the server
    page.get_by_test_id("class-search").fill("s-1000")
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-testid", "row-s-1000")


def test_the_class_table_filters_inactive_students_and_opens_a_drill_down(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "teacher-1")
    page.goto(f"{stack.url}/#/teacher/{DEMO_COURSE}")
    table = page.get_by_test_id("class-table")
    expect(table.locator("tbody tr")).to_have_count(2)
    expect(page.get_by_test_id("unverified-student-1")).to_have_text(re.compile(r"^\d+:\d\d$"))
    page.get_by_test_id("class-inactive").fill("1")  # both watched minutes ago
    expect(page.get_by_test_id("class-empty")).to_be_visible()
    page.get_by_test_id("class-inactive").fill("")
    expect(table.locator("tbody tr")).to_have_count(2)

    # from the keyboard: the row's link, Enter
    page.get_by_test_id("row-student-1").get_by_role("link", name="student-1").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{stack.url}/#/teacher/{DEMO_COURSE}/student/student-1")
    drill = page.get_by_test_id("student-drilldown")
    expect(drill.get_by_role("heading", level=1)).to_have_text("student-1 in Introduction to React")
    watched = page.get_by_test_id("drill-demo-video-1")
    expect(watched.get_by_test_id("coverage-range").first).to_be_visible()
    expect(watched.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile(r"Watched 0:0\d–")
    )
    not_watched = page.get_by_test_id("drill-demo-video-3")  # student-1 never played it
    expect(not_watched.get_by_role("img")).to_have_attribute(
        "aria-label", re.compile("Nothing watched")
    )
    expect(page.get_by_test_id("drill-unverified-demo-video-1")).to_contain_text("unverified")
    check_accessibility(page, "student drill-down")
    page.screenshot(path=OUTPUT / "student-drilldown.png", full_page=True)


def test_the_matrix_shows_every_student_but_renders_only_the_visible_rows(
    stack: Stack, browser: Browser
) -> None:
    page = sign_in(browser, stack, "teacher-1")
    page.goto(f"{stack.url}/#/teacher/{BIG_COURSE}/matrix")
    expect(page.get_by_test_id("matrix-count")).to_have_text(
        f"{BIG_CLASS} students × 4 materials", timeout=20_000
    )
    rendered = page.get_by_test_id("matrix-body").get_by_role("row")
    assert 5 < rendered.count() < 60  # virtualized: the visible rows, not 1,001
    expect(page.get_by_test_id("matrix-row-s-0001")).to_be_visible()
    check_accessibility(page, "matrix")
    page.screenshot(path=OUTPUT / "matrix.png", full_page=True)
    page.get_by_test_id("matrix").evaluate("m => { m.scrollTop = m.scrollHeight }")
    expect(page.get_by_test_id(f"matrix-row-s-{BIG_CLASS:04d}")).to_be_visible()
    expect(page.get_by_test_id("matrix-row-s-0001")).to_have_count(0)

    page.get_by_test_id("matrix-sort").select_option("-student_id")
    page.get_by_test_id("matrix").evaluate("m => { m.scrollTop = 0 }")
    expect(rendered.first).to_have_attribute("data-testid", f"matrix-row-s-{BIG_CLASS:04d}")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0].startswith("student_id")
    assert len(lines) == BIG_CLASS + 1


# -- issue 19: students sharing one browser -----------------------------------------------------
# Both sign in on one browser profile (one context: one localStorage), as on a school computer.
# Student-1 watches demo-video-2 offline; nothing of it may be filed under student-2, and none of
# it may be lost unless student-1 says so.

SHARED_VIDEO = "demo-video-2"


def claimed(stack: Stack, student: str) -> float:
    """Seconds of SHARED_VIDEO the student's player reported as played, verified or not."""
    status = server_status(stack, student, SHARED_VIDEO)
    return float(status["watched_seconds"] + status["unverified_seconds"])


def sign_in_here(page: Page, stack: Stack, user: str) -> None:
    page.goto(stack.url + "/#/")
    page.get_by_test_id(f"signin-{user}").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def watch_offline(page: Page, stack: Stack, seconds: float) -> float:
    """student-1 starts SHARED_VIDEO online (verified watching starts its clock at the server's
    first heartbeat), goes offline, plays `seconds` more and closes the player; returns where
    it stopped. The context stays offline."""
    seen = server_status(stack, "student-1", SHARED_VIDEO)["last_watched"]
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    page.get_by_test_id(f"material-{SHARED_VIDEO}").get_by_role("button").click()
    page.wait_for_function(VIDEO_READY)
    page.evaluate("document.querySelector('video').play()")
    wait_until(lambda: server_status(stack, "student-1", SHARED_VIDEO)["last_watched"] != seen)
    page.context.set_offline(True)
    stopped_at = play_for(page, seconds)
    page.get_by_role("button", name="Close player").click()
    return stopped_at


class Sent:
    """Every progress request the browser made, with the user of its bearer token."""

    def __init__(self, page: Page) -> None:
        self.items: list[tuple[str, dict[str, Any]]] = []  # (token's sub, heartbeat)
        page.context.on("request", self._record)

    def _record(self, request: Any) -> None:
        if request.method != "POST" or "/api/progress/" not in request.url:
            return
        auth = request.headers.get("authorization", "")
        sub = jwt.decode(auth.removeprefix("Bearer "), options={"verify_signature": False})["sub"]
        body = request.post_data_json or {}
        for heartbeat in body.get("heartbeats", [body]):
            self.items.append((sub, heartbeat))

    def users_of(self, sessions: set[str]) -> set[str]:
        """Whose tokens carried heartbeats of these player sessions."""
        return {sub for sub, hb in self.items if hb.get("session_id") in sessions}


def test_sign_out_warns_of_unsent_watching_and_sends_it_when_asked(
    stack: Stack, browser: Browser
) -> None:
    page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()
    sent = Sent(page)
    sign_in_here(page, stack, "student-1")
    student_2 = server_status(stack, "student-2", SHARED_VIDEO)
    stopped_at = watch_offline(page, stack, 4)
    before = claimed(stack, "student-1")  # the online start is in
    waiting = outbox_of(page, "student-1")
    assert waiting and {i["material_id"] for i in waiting} == {SHARED_VIDEO}
    offline_played = sum(b - a for i in waiting for a, b in i["played"])
    assert offline_played > 3

    page.get_by_role("button", name="Sign out").click()
    dialog = page.get_by_role("dialog", name="Unsent watching")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"{SHARED_VIDEO}: 0:0")  # what would be lost, and how much
    expect(dialog).to_contain_text("Signing out now deletes them")
    check_accessibility(page, "sign-out warning")
    page.screenshot(path=OUTPUT / "sign-out-warning.png")
    dialog.get_by_role("button", name="Send them now").click()
    expect(dialog.get_by_test_id("signout-note")).to_contain_text("offline")
    assert outbox_of(page, "student-1") == waiting  # nothing lost by trying

    page.context.set_offline(False)
    dialog.get_by_role("button", name="Send them now").click()
    expect(page.get_by_test_id("signin-student-2")).to_be_visible()  # signed out
    assert outbox_of(page, "student-1") == []
    after = server_status(stack, "student-1", SHARED_VIDEO)
    assert abs(after["watch_time"] - stopped_at) < 1.5, (after, stopped_at)
    assert claimed(stack, "student-1") - before > offline_played - 1

    sign_in_here(page, stack, "student-2")
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    expect(page.get_by_test_id(f"material-{SHARED_VIDEO}")).to_be_visible()
    assert server_status(stack, "student-2", SHARED_VIDEO) == student_2
    assert sent.users_of({i["session_id"] for i in waiting}) == {"student-1"}


def test_an_expired_session_keeps_its_outbox_for_its_student_only(
    stack: Stack, browser: Browser
) -> None:
    """The token runs out while student-1 is offline: back online, the 401 ends the session but
    keeps the outbox. Student-2 signs in, online, on the same profile: none of it is sent with
    student-2's token. Student-1 signs in again: it is sent, to student-1."""
    page = browser.new_context(viewport={"width": 1000, "height": 800}).new_page()
    sent = Sent(page)
    sign_in_here(page, stack, "student-1")
    student_2 = server_status(stack, "student-2", SHARED_VIDEO)
    stopped_at = watch_offline(page, stack, 4)
    student_1 = server_status(stack, "student-1", SHARED_VIDEO)  # the online start is in
    before = claimed(stack, "student-1")
    waiting = outbox_of(page, "student-1")
    offline_played = sum(b - a for i in waiting for a, b in i["played"])
    assert offline_played > 3
    expired = mint_token(stack.settings(), "student-1", "student", ttl_s=-120)
    page.evaluate("t => localStorage.setItem('videoprogress.token', t)", expired)
    page.context.set_offline(False)  # the flush is refused (401): back to sign-in
    expect(page.get_by_test_id("signin-student-2")).to_be_visible(timeout=10_000)
    assert outbox_of(page, "student-1") == waiting

    sign_in_here(page, stack, "student-2")
    page.goto(f"{stack.url}/#/course/{DEMO_COURSE}")
    expect(page.get_by_test_id(f"material-{SHARED_VIDEO}")).to_be_visible()
    assert outbox_of(page, "student-1") == waiting  # not sent with student-2's token
    assert server_status(stack, "student-2", SHARED_VIDEO) == student_2
    assert server_status(stack, "student-1", SHARED_VIDEO) == student_1
    page.get_by_role("button", name="Sign out").click()  # student-2 has nothing waiting
    expect(page.get_by_test_id("signin-student-1")).to_be_visible()
    expect(page.get_by_role("dialog")).to_have_count(0)

    sign_in_here(page, stack, "student-1")  # the outbox goes at sign-in
    wait_until(lambda: outbox_of(page, "student-1") == [], timeout_s=15)
    after = server_status(stack, "student-1", SHARED_VIDEO)
    assert abs(after["watch_time"] - stopped_at) < 1.5, (after, stopped_at)
    assert claimed(stack, "student-1") - before > offline_played - 1
    assert server_status(stack, "student-2", SHARED_VIDEO) == student_2
    assert sent.users_of({i["session_id"] for i in waiting}) == {"student-1"}


@contextmanager
def lms_page(html: str) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 serving `html` at every path: the LMS's page."""

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.end_headers()
            self.wfile.write(html.encode())

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/lesson.html"
    finally:
        server.shutdown()
        server.server_close()


def test_the_tracker_keeps_working_in_a_frame_that_may_not_use_storage(
    stack: Stack, browser: Browser
) -> None:
    """An LMS page (127.0.0.1) frames the tracker from another site (localhost): Chromium
    refuses such a frame localStorage. The outbox lives in the frame's memory: what is watched
    offline reaches the server when the network is back."""
    page = browser.new_context(viewport={"width": 1000, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    framed = (
        f"http://localhost:{stack.port}/embed-example.html"
        f"#token={token(stack, 'student-2')}&video=demo-video-3"
    )
    html = (
        '<!doctype html><html lang="en"><head><title>LMS lesson</title></head><body><main>'
        f'<h1>Lesson</h1><iframe title="Lesson video" src="{framed}" width="960" height="800">'
        "</iframe></main></body></html>"
    )
    with lms_page(html) as lms:
        page.goto(lms)
        watch_offline_in_frame(page, stack)
    check_accessibility(page, "LMS page framing the tracker")
    assert not errors, errors


def watch_offline_in_frame(page: Page, stack: Stack) -> None:
    """In the framed embed example (student-2, demo-video-3): check that storage is refused,
    play online, go offline, play and pause, come back: the pause's position reaches the server
    only then, from the outbox the frame kept in memory."""
    frame = page.frame_locator("iframe")
    expect(frame.get_by_test_id("embed-progress")).to_have_text("Tracking demo-video-3.")
    inner = next(f for f in page.frames if "/embed-example.html" in f.url)
    refused = (
        "(() => { try { localStorage.setItem('x', '1'); return 'stored' }"
        " catch (e) { return e.name } })()"
    )
    assert inner.evaluate(refused) == "SecurityError"  # the browser's rule this test is about

    seen = server_status(stack, "student-2", "demo-video-3")["last_watched"]
    inner.wait_for_function(VIDEO_READY)
    inner.evaluate("document.querySelector('video').play()")
    wait_until(lambda: server_status(stack, "student-2", "demo-video-3")["last_watched"] != seen)
    assert server_status(stack, "student-2", "demo-video-3")["watch_time"] < 1  # the play
    page.context.set_offline(True)
    inner.wait_for_timeout(3000)  # real-time playback
    pause = (
        "(() => { const v = document.querySelector('video'); v.pause(); return v.currentTime })()"
    )
    stopped_at = float(inner.evaluate(pause))
    assert stopped_at > 2
    assert server_status(stack, "student-2", "demo-video-3")["watch_time"] < 1  # kept, in memory

    page.context.set_offline(False)  # the frame's 'online' handler sends it
    status = wait_until(
        lambda: (s := server_status(stack, "student-2", "demo-video-3"))["watch_time"] > 1 and s,
        timeout_s=15,
    )
    assert abs(status["watch_time"] - stopped_at) < 1, (status, stopped_at)


def test_the_dev_sign_in_does_not_exist_in_production(redis_url: str, mongo_url: str) -> None:
    from fastapi.testclient import TestClient

    from ingest.app import create_app
    from tests.helpers import make_settings

    with TestClient(create_app(make_settings(redis_url, mongo_url))) as client:
        assert client.get("/dev/users").status_code == 404
        r = client.post("/dev/token", json={"user_id": "admin-1", "role": "admin"})
        assert r.status_code in (404, 405)
        assert client.get("/api/nope").json()["error"]["code"] == "not_found"
