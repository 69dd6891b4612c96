"""The web edge (API.md, "Hostile input (every route)"), in-process over real Redis and the
MongoDB stand-in: CSV cells a spreadsheet would run, cross-origin calls (the heartbeat's fast
path and FastAPI routes alike), security headers, and material urls.

tests/test_browser_edge.py shows the same in real Chromium.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pymongo
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from ingest.app import create_app
from shared.domain.catalog import Catalog, Course
from shared.ops.safe_csv import safe_cell
from shared.settings import Settings
from shared.storage.mongo_store import MongoStore
from tests.helpers import COURSE, COURSE_ID, SECRET, bearer, heartbeat, make_settings
from tests.test_api import flush

LMS = "https://lms.school.example"
ELSEWHERE = "https://attacker.example"
STUDENT, TEACHER, ADMIN = "s-ana", "t-phys", "a-root"
HYPERLINK = '=HYPERLINK("attacker.example","open me")'
HEARTBEAT = "/api/progress/video/v-100/watch-time"
STATUS = "/api/progress/video/v-100/status"
TRACKER = "/embed/videoprogress-tracker.js"


@pytest.fixture
def buffer_kind() -> str:
    """Nothing here depends on where the heartbeat buffer lives: one Redis (not also the
    cluster, as conftest.py's fixture would)."""
    return "single"


@pytest.fixture
def pages(tmp_path: Path) -> Path:
    """A stand-in for frontend/dist: a page and the tracker bundle."""
    (tmp_path / "index.html").write_text("<!doctype html><title>Course progress</title>")
    (tmp_path / "embed").mkdir()
    (tmp_path / TRACKER.lstrip("/")).write_text("export function track() {}\n")
    return tmp_path


@contextmanager
def started(settings: Settings) -> Iterator[TestClient]:
    """The app with the tests' course, and STUDENT enrolled in it."""
    with TestClient(create_app(settings)) as c:
        admin = bearer(settings, ADMIN, "admin")
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        r = c.put(f"/api/courses/{COURSE_ID}/enrollments/{STUDENT}", headers=admin)
        assert r.status_code == 201
        yield c


@pytest.fixture
def settings(redis_url: str, mongo_url: str, pages: Path) -> Settings:
    return make_settings(
        redis_url, mongo_url, cors_origins=f"{LMS}, http://127.0.0.1:8080", frontend_dist=pages
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with started(settings) as c:
        yield c


def preflight(c: TestClient, path: str, origin: str, method: str = "POST") -> Any:
    headers = {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    return c.options(path, headers=headers)


# -- CSV -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        pytest.param(HYPERLINK, "'" + HYPERLINK, id="equals"),
        pytest.param("+1+2", "'+1+2", id="plus"),
        pytest.param("-2-3", "'-2-3", id="minus"),
        pytest.param("@SUM(A1)", "'@SUM(A1)", id="at"),
        pytest.param("\t=1", "'\t=1", id="tab"),
        pytest.param("\r=1", "'\r=1", id="carriage-return"),
        pytest.param("ana=1", "ana=1", id="formula-sign-inside"),
        pytest.param(" =1", " =1", id="leading-space"),
        pytest.param(-1.5, -1.5, id="negative-number"),
        pytest.param(0, 0, id="zero"),
        pytest.param(None, None, id="empty"),
    ],
)
def test_a_cell_a_spreadsheet_would_run_gets_a_quote(cell: Any, written: Any) -> None:
    assert safe_cell(cell) == written


def test_a_formula_student_id_comes_out_inert_in_the_class_table_and_the_matrix_csv(
    client: TestClient, settings: Settings
) -> None:
    admin = bearer(settings, ADMIN, "admin")
    for student in (HYPERLINK, "-1+1", "@me"):
        path = f"/api/courses/{COURSE_ID}/enrollments/{quote(student, safe='')}"
        assert client.put(path, headers=admin).status_code == 201
    hostile = bearer(settings, HYPERLINK)
    body = heartbeat(50, played=[[0, 50]])
    assert client.post(HEARTBEAT, json=body, headers=hostile).status_code == 202
    flush(settings)
    teacher = bearer(settings, TEACHER, "teacher")

    r = client.get(f"/api/teacher/courses/{COURSE_ID}/progress?format=csv", headers=teacher)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = {row[0]: row for row in csv.reader(io.StringIO(r.text))}
    assert set(rows) == {"student_id", "'" + HYPERLINK, "'-1+1", "'@me", STUDENT}
    # progress 0 % (no material complete), 0 completed, 50 s watched, nothing unverified
    assert rows["'" + HYPERLINK][1:5] == ["0.0", "0", "50.0", "0.0"]

    r = client.get(f"/api/teacher/courses/{COURSE_ID}/matrix?format=csv", headers=teacher)
    assert r.status_code == 200
    rows = {row[0]: row for row in csv.reader(io.StringIO(r.text))}
    assert set(rows) == {"student_id", "'" + HYPERLINK, "'-1+1", "'@me", STUDENT}
    assert rows["'" + HYPERLINK][1:] == ["", "50.0", "0.0", "0.0", "0.0"]  # no name; v-100 half


def test_a_formula_material_id_is_inert_in_the_matrix_header(
    client: TestClient, settings: Settings
) -> None:
    course = {
        "title": "Tricks",
        "teacher_ids": [TEACHER],
        "modules": [
            {"module_id": "m", "title": "M", "materials": [
                {"material_id": "-2-3", "title": "Minus", "type": "pdf"},
                {"material_id": "plain", "title": "Plain", "type": "pdf"},
            ]}
        ],
    }  # fmt: skip
    admin = bearer(settings, ADMIN, "admin")
    assert client.put("/api/courses/tricks", json=course, headers=admin).status_code == 201
    teacher = bearer(settings, TEACHER, "teacher")
    r = client.get("/api/teacher/courses/tricks/matrix?format=csv", headers=teacher)
    assert r.text.splitlines()[0] == "student_id,name,'-2-3,plain"


# -- cross-origin --------------------------------------------------------------------------


@pytest.mark.parametrize("path", [HEARTBEAT, STATUS], ids=["fast-path", "fastapi-route"])
def test_a_listed_origin_gets_its_preflight_answered(client: TestClient, path: str) -> None:
    r = preflight(client, path, LMS, "POST" if path == HEARTBEAT else "GET")
    assert r.status_code == 200, r.text
    assert r.headers["access-control-allow-origin"] == LMS
    allowed = {h.strip().lower() for h in r.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed
    assert "POST" in r.headers["access-control-allow-methods"]
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize("path", [HEARTBEAT, STATUS], ids=["fast-path", "fastapi-route"])
@pytest.mark.parametrize("origin", [ELSEWHERE, LMS + ":8443", "null", LMS.replace("s:", ":")])
def test_any_other_origin_is_refused_in_the_error_shape(
    client: TestClient, path: str, origin: str
) -> None:
    r = preflight(client, path, origin)
    assert r.status_code == 403
    assert r.json()["error"]["code"] == "cors_refused"
    assert "access-control-allow-origin" not in r.headers


def test_a_preflight_asking_for_another_header_is_refused(client: TestClient) -> None:
    headers = {
        "Origin": LMS,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,x-student-id",
    }
    r = client.options(HEARTBEAT, headers=headers)
    assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


def test_the_answers_name_only_a_listed_origin(client: TestClient, settings: Settings) -> None:
    student = bearer(settings, STUDENT)
    for origin, allowed in ((LMS, LMS), ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
                            (ELSEWHERE, None)):  # fmt: skip
        headers = {**student, "Origin": origin}
        answers = [
            client.post(HEARTBEAT, json=heartbeat(5), headers=headers),  # the bare ASGI route
            client.post(HEARTBEAT, json={"watch_time": -1}, headers=headers),  # its 422
            client.get(STATUS, headers=headers),
            client.get("/api/progress/video/nope/status", headers=headers),  # a 404
        ]
        assert [a.status_code for a in answers] == [202, 422, 200, 404]
        for answer in answers:
            assert answer.headers.get("access-control-allow-origin") == allowed
            assert "Origin" in answer.headers["vary"]


def test_retry_after_is_readable_by_a_listed_origins_scripts(
    redis_url: str, mongo_url: str, pages: Path
) -> None:
    settings = make_settings(
        redis_url, mongo_url, cors_origins=LMS, frontend_dist=pages, rate_limit_per_minute=1
    )
    with started(settings) as c:
        headers = {**bearer(settings, STUDENT), "Origin": LMS}
        assert c.post(HEARTBEAT, json=heartbeat(5), headers=headers).status_code == 202
        r = c.post(HEARTBEAT, json=heartbeat(6), headers=headers)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
        assert r.headers["access-control-allow-origin"] == LMS
        assert "retry-after" in r.headers["access-control-expose-headers"].lower()


def test_without_cors_origins_every_origin_is_refused(
    redis_url: str, mongo_url: str, pages: Path
) -> None:
    with started(make_settings(redis_url, mongo_url, frontend_dist=pages)) as c:
        for origin in (LMS, "http://127.0.0.1:8080"):
            r = preflight(c, HEARTBEAT, origin)
            assert r.status_code == 403 and "access-control-allow-origin" not in r.headers


@pytest.mark.parametrize("origin", [LMS, ELSEWHERE])
def test_the_tracker_bundle_is_readable_from_any_page(client: TestClient, origin: str) -> None:
    r = client.get(TRACKER, headers={"Origin": origin})
    assert r.status_code == 200 and r.text.startswith("export function track")
    assert r.headers["access-control-allow-origin"] == "*"
    assert r.headers["cross-origin-resource-policy"] == "cross-origin"
    assert r.headers["content-type"].startswith("text/javascript")  # what nosniff requires
    assert r.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "origins",
    ["https://lms.example/", "https://lms.example/path", "lms.example", "*",
     "https://LMS.example", "ftp://lms.example", "https://lms.example:99999"],
)  # fmt: skip
def test_a_cors_origin_that_no_browser_sends_stops_the_start(origins: str) -> None:
    with pytest.raises(ValidationError, match="CORS_ORIGINS"):
        Settings(_env_file=None, jwt_secret=SECRET, cors_origins=f"{LMS},{origins}")


# -- security headers ----------------------------------------------------------------------


def test_every_answer_says_nosniff(client: TestClient, settings: Settings) -> None:
    student = bearer(settings, STUDENT)
    answers = {
        "heartbeat": client.post(HEARTBEAT, json=heartbeat(5), headers=student),
        "heartbeat 401": client.post(HEARTBEAT, json=heartbeat(5)),
        "heartbeat 413": client.post(HEARTBEAT, content=b"x" * 70_000, headers=student),
        "route": client.get(STATUS, headers=student),
        "unknown path": client.get("/api/nope"),
        "page": client.get("/"),
        "bundle": client.get(TRACKER),
        "docs": client.get("/docs"),
        "openapi": client.get("/openapi.json"),
        "metrics": client.get("/metrics"),
        "health": client.get("/healthz"),
    }
    for name, answer in answers.items():
        assert answer.headers.get("x-content-type-options") == "nosniff", name


def policy(response: Any) -> dict[str, list[str]]:
    directives = [d.split() for d in response.headers["content-security-policy"].split(";")]
    return {d[0]: d[1:] for d in directives if d}


def test_the_pages_carry_a_policy_and_a_referrer_policy(client: TestClient) -> None:
    for path in ("/", "/index.html"):
        r = client.get(path)
        assert r.headers["content-type"].startswith("text/html")
        found = policy(r)
        assert found["script-src"] == ["'self'"]  # no inline script, no other site's
        assert found["frame-ancestors"] == ["'self'"]  # the default
        assert "blob:" in found["media-src"]  # hls.js's Media Source
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"  # frame-ancestors may change
    json_answer = client.get("/healthz")
    assert "content-security-policy" not in json_answer.headers


def test_frame_ancestors_comes_from_the_setting(
    redis_url: str, mongo_url: str, pages: Path
) -> None:
    ancestors = "'self' https://canvas.school.example https://*.moodle.example"
    settings = make_settings(redis_url, mongo_url, frontend_dist=pages, frame_ancestors=ancestors)
    with started(settings) as c:
        assert policy(c.get("/"))["frame-ancestors"] == ancestors.split()


@pytest.mark.parametrize("value", ["'self'; script-src *", "'self', https://x.example", " "])
def test_a_frame_ancestors_value_that_is_not_a_source_list_stops_the_start(value: str) -> None:
    with pytest.raises(ValidationError, match="FRAME_ANCESTORS"):
        Settings(_env_file=None, jwt_secret=SECRET, frame_ancestors=value)


def test_the_docs_page_may_load_what_it_uses_and_nothing_inline_else(client: TestClient) -> None:
    r = client.get("/docs")
    found = policy(r)
    html = r.text
    for src in re.findall(r'<script src="([^"]+)"', html):
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(src))
        assert origin in found["script-src"], src
    for href in re.findall(r'<link type="text/css" rel="stylesheet" href="([^"]+)"', html):
        assert "{0.scheme}://{0.netloc}".format(urlsplit(href)) in found["style-src"], href
    inline = [s for s in found["script-src"] if s.startswith("'sha256-")]
    assert len(inline) == 1 and "'unsafe-inline'" not in found["script-src"]
    assert found["frame-ancestors"] == ["'self'"]
    assert client.get("/redoc").status_code == 404  # one docs page, under its policy


def test_the_docs_page_loads_one_version_of_swagger_ui_with_its_hashes(
    client: TestClient,
) -> None:
    """Every file the page loads from the CDN names an exact version and carries its SHA-384
    (Subresource Integrity): what a CDN serves otherwise does not run. The hashes were taken
    from npm's package of that version, apart from the code."""
    html = client.get("/docs").text
    loaded = re.findall(r'<(?:script src|link type="text/css" rel="stylesheet" href)="([^"]+)"'
                        r'([^>]*)>', html)  # fmt: skip
    assert len(loaded) == 2
    for url, attributes in loaded:
        assert "swagger-ui-dist@5.36.0/" in url, url
        assert re.search(r'integrity="sha384-[A-Za-z0-9+/]{64}"', attributes), attributes
        assert 'crossorigin="anonymous"' in attributes


# -- material urls -------------------------------------------------------------------------


def course_with_url(url: str) -> dict[str, Any]:
    return {
        "title": "Links",
        "modules": [
            {"module_id": "m", "title": "M", "materials": [
                {"material_id": "ok-pdf", "title": "Fine", "type": "pdf", "url": "/media/a.pdf"},
                {"material_id": "the-link", "title": "Link", "type": "link", "url": url},
            ]}
        ],
    }  # fmt: skip


REFUSED_URLS = [
    "javascript:alert(document.cookie)",
    "JavaScript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//attacker.example/video.mp4",
    "/\\attacker.example/video.mp4",
    "/\t/attacker.example",
    "media/video.mp4",
    "http:attacker.example",
    "https:/attacker.example",
    "https://",
    "ftp://files.example/a.pdf",
    " https://cdn.example/a.mp4",
]


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_a_material_url_elsewhere_than_http_or_this_service_is_refused(
    client: TestClient, settings: Settings, url: str
) -> None:
    admin = bearer(settings, ADMIN, "admin")
    r = client.put("/api/courses/links", json=course_with_url(url), headers=admin)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["details"][0]["field"] == "modules.0.materials.1.url"
    assert error["message"].startswith("modules.0.materials.1.url:")
    assert client.get("/api/courses/links", headers=admin).status_code == 404  # nothing stored


@pytest.mark.parametrize(
    "url",
    ["/media/hls/demo.m3u8", "https://cdn.school.example/lesson 3.mp4",
     "HTTP://127.0.0.1:8000/media/a.webm", "https://[::1]:8443/a.pdf"],
)  # fmt: skip
def test_a_material_url_on_http_or_this_service_is_kept_as_given(
    client: TestClient, settings: Settings, url: str
) -> None:
    admin = bearer(settings, ADMIN, "admin")
    r = client.put("/api/courses/links", json=course_with_url(url), headers=admin)
    assert r.status_code == 201, r.text
    stored = client.get("/api/courses/links", headers=admin).json()
    assert stored["modules"][0]["materials"][1]["url"] == url


def test_the_cli_refuses_a_catalog_file_with_such_a_url_and_stores_none_of_it(
    redis_url: str, mongo_url: str, tmp_path: Path
) -> None:
    catalog = {"courses": [{"course_id": "links", **course_with_url("//attacker.example/x")}]}
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(catalog))
    env = {**os.environ, "REDIS_URL": redis_url, "MONGO_URL": mongo_url, "JWT_SECRET": SECRET}
    done = subprocess.run(
        [sys.executable, "-m", "shared.devtools.cli", "load-catalog", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "courses.0.modules.0.materials.1.url" in done.stdout, done.stdout
    mongo = MongoStore(mongo_url, 2000)
    assert mongo.course("links") is None
    mongo.close()


def test_a_course_stored_before_the_url_rule_still_loads(mongo_url: str) -> None:
    """An older version stored any string: that course must not stop the whole catalog."""
    old = {"course_id": "old", **course_with_url("media/relative.mp4")}
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    client.get_default_database().courses.insert_one({"_id": "old", **old})
    client.close()
    mongo = MongoStore(mongo_url, 2000)
    loaded = mongo.all_courses()
    mongo.close()
    assert [c.materials[1].url for c in loaded] == ["media/relative.mp4"]
    catalog = Catalog.from_json(json.dumps([old]))
    assert catalog.courses["old"].materials[1].url == "media/relative.mp4"
    with pytest.raises(ValidationError, match="url"):
        Course.model_validate(old)  # as input, the same course is refused
