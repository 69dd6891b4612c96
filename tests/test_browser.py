"""End to end in real headless Chromium (Debian's, driven by Playwright) against the real stack:
the built pages served by the API, the Procfile's workers, Redis and the MongoDB stand-in.

Screenshots of the course page, the player and the teacher dashboard go to test-output/.
Needs `frontend/dist` (tests/run.sh builds it) and /usr/bin/chromium (tests/run.sh installs it).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from shared.devtools.demo import DEMO_CATALOG, DEMO_COURSE
from shared.settings import Settings
from tests.helpers import bearer, buffered, wait_until
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.system

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "test-output"
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
    yield from running_stack(
        tmp_path_factory, "development", DEMO_CATALOG, max_playback_rate=None
    )  # the tracker plays in real time: verified watching stays on, as in production


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
    return page


def bar_value(page: Page, material: str) -> float:
    return float(page.get_by_test_id(f"bar-{material}").get_attribute("aria-valuenow") or 0)


def play_for(page: Page, seconds: float) -> float:
    """Play the open video for `seconds` of real time; returns where it stopped."""
    video = page.get_by_test_id("video")
    expect(video).to_be_visible()
    page.wait_for_function("document.querySelector('video').readyState >= 1")
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


def test_student_watches_closes_and_resumes(stack: Stack, browser: Browser) -> None:
    page = sign_in(browser, stack, "student-1")
    expect(page).to_have_url(f"{stack.url}/#/course/{DEMO_COURSE}")
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
    page.wait_for_function("document.querySelector('video').readyState >= 1")
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
    expect(page.get_by_test_id("material-demo-video-2")).to_be_visible()
    page.get_by_test_id("material-demo-video-2").get_by_role("button", name="Play").click()
    page.wait_for_function("document.querySelector('video').readyState >= 1")
    # The session begins online (the tracker reports the start of playing), then the network
    # goes: what is played offline keeps its credit (verified watching, README).
    page.evaluate("document.querySelector('video').play()")
    wait_until(lambda: server_status(stack, "student-2", "demo-video-2")["last_watched"])
    page.context.set_offline(True)
    stopped_at = play_for(page, 4)
    page.get_by_role("button", name="Close player").click()
    page.wait_for_timeout(500)
    outbox = page.evaluate("JSON.parse(localStorage.getItem('videoprogress.outbox') || '[]')")
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
    wait_until(
        lambda: (
            page.evaluate("JSON.parse(localStorage.getItem('videoprogress.outbox') || '[]')") == []
        ),
        timeout_s=10,
    )


def test_teacher_sees_the_class_and_a_retention_chart(stack: Stack, browser: Browser) -> None:
    headers = bearer(stack.settings(), "student-1")
    body = {"watch_time": 10, "total_duration": 20, "played": [[0, 10]]}
    url = f"{stack.url}/api/progress/video/demo-video-1/watch-time"
    assert httpx.post(url, json=body, headers=headers).status_code == 202
    wait_until(lambda: buffered(stack.redis_client())[0] == 0, timeout_s=30)  # flushed

    page = sign_in(browser, stack, "teacher-1")
    expect(page).to_have_url(f"{stack.url}/#/teacher/{DEMO_COURSE}")
    row = page.get_by_test_id("row-student-1")
    expect(row).to_be_visible()
    expect(page.get_by_test_id("row-student-2")).to_be_visible()
    expect(page.get_by_test_id("stat-enrolled")).to_contain_text("2")
    expect(page.get_by_test_id("retention-viewers")).to_contain_text("1 viewer")
    expect(page.get_by_test_id("retention-chart").locator("canvas")).to_be_visible()
    # student-1 watched 10 s or more of demo-video-1, student-2 about 4 s of demo-video-2
    page.get_by_test_id("class-table").get_by_role(
        "columnheader", name="Watched"
    ).click()  # sorts ascending
    expect(page.locator("tbody tr").first).to_have_attribute("data-testid", "row-student-2")
    page.get_by_test_id("class-table").get_by_role(
        "columnheader", name="Watched"
    ).click()  # and descending
    expect(page.locator("tbody tr").first).to_have_attribute("data-testid", "row-student-1")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download CSV").click()
    csv_text = Path(download.value.path()).read_text()
    assert csv_text.splitlines()[0].startswith("student_id,progress_percentage")
    assert "student-1" in csv_text
    page.screenshot(path=OUTPUT / "teacher-dashboard.png", full_page=True)


def test_the_dev_sign_in_does_not_exist_in_production(redis_url: str, mongo_url: str) -> None:
    from fastapi.testclient import TestClient

    from ingest.app import create_app
    from tests.helpers import make_settings

    with TestClient(create_app(make_settings(redis_url, mongo_url))) as client:
        assert client.get("/dev/users").status_code == 404
        r = client.post("/dev/token", json={"user_id": "admin-1", "role": "admin"})
        assert r.status_code in (404, 405)
        assert client.get("/api/nope").json()["error"]["code"] == "not_found"
