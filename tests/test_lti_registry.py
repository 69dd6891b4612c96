"""LTI platform registration (API.md, "LTI 1.3 Advantage", Registration): the admin routes
in-process over the MongoDB stand-in, and the same registry through the CLI's processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymongo
import pytest
from fastapi.testclient import TestClient
from pymongo.database import Database
from typer.testing import CliRunner, Result

from ingest.app import create_app
from shared.clock import MockedClock
from shared.devtools.cli import app as cli_app
from shared.settings import Settings
from tests.helpers import SECRET, bearer, make_settings

ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000.0
CANVAS = {
    "name": "Canvas (Northside)",
    "issuer": "https://canvas.instructure.com",
    "client_id": "10000000000042",
    "auth_login_url": "https://sso.canvaslms.com/api/lti/authorize_redirect",
    "auth_token_url": "https://sso.canvaslms.com/login/oauth2/token",
    "jwks_url": "https://sso.canvaslms.com/api/lti/security/jwks",
    "deployment_ids": [],
    "frame_origins": ["https://northside.instructure.com"],
}
LOCAL_MOODLE = {
    "name": "Moodle on this machine",
    "issuer": "http://127.0.0.1:8081",
    "client_id": "moodle-client",
    "auth_login_url": "http://localhost:8081/mod/lti/auth.php",
    "auth_token_url": "http://[::1]:8081/mod/lti/token.php",
    "jwks_url": "http://127.0.0.1:8081/mod/lti/certs.php",
    "deployment_ids": ["1"],
}


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings, clock=MockedClock(NOW))) as c:
        yield c


@pytest.fixture
def admin(settings: Settings) -> dict[str, str]:
    return bearer(settings, "a-root", "admin", now=NOW)


def put(client: TestClient, headers: dict[str, str], pid: str, body: dict[str, Any]) -> Any:
    return client.put(f"/api/admin/lti/platforms/{pid}", json=body, headers=headers)


def rows(client: TestClient, admin: dict[str, str]) -> list[dict[str, Any]]:
    r = client.get("/api/admin/lti/platforms", headers=admin)
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["rows"]
    return found


def test_register_list_replace_and_remove(client: TestClient, admin: dict[str, str]) -> None:
    assert rows(client, admin) == []
    r = put(client, admin, "canvas-north", CANVAS)
    assert r.status_code == 201, r.text
    assert r.json() == {"platform_id": "canvas-north", **CANVAS}
    r = put(client, admin, "moodle-local", LOCAL_MOODLE)  # http on loopback names: accepted
    assert r.status_code == 201, r.text
    never: dict[str, Any] = {
        "last_launch_at": None,
        "seen_deployment_ids": [],
    }  # what launches record: none
    assert rows(client, admin) == [
        {"platform_id": "canvas-north", **CANVAS, **never},
        {"platform_id": "moodle-local", "frame_origins": [], **LOCAL_MOODLE, **never},
    ]
    replaced = {**CANVAS, "deployment_ids": ["6:8865aa05b4b79b64a91a86042e43af5ea8ae79eb"]}
    assert put(client, admin, "canvas-north", replaced).status_code == 200
    assert client.delete("/api/admin/lti/platforms/moodle-local", headers=admin).status_code == 204
    assert rows(client, admin) == [{"platform_id": "canvas-north", **replaced, **never}]
    r = client.delete("/api/admin/lti/platforms/moodle-local", headers=admin)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_a_launch_finds_its_platform_by_issuer_and_client_id(
    client: TestClient, admin: dict[str, str]
) -> None:
    # Canvas: one issuer for every school; the client id tells the schools apart.
    south = {**CANVAS, "name": "Canvas (Southside)", "client_id": "10000000000077"}
    assert put(client, admin, "canvas-north", CANVAS).status_code == 201
    assert put(client, admin, "canvas-south", south).status_code == 201
    registry = client.app.state.ctx.lti_platforms  # type: ignore[attr-defined]  # Starlette app
    found = registry.find(CANVAS["issuer"], "10000000000077")
    assert found is not None and found.platform_id == "canvas-south"
    assert registry.find(CANVAS["issuer"], "10000000000099") is None


def test_the_same_issuer_and_client_id_twice_is_refused(
    client: TestClient, admin: dict[str, str]
) -> None:
    assert put(client, admin, "canvas-north", CANVAS).status_code == 201
    r = put(client, admin, "canvas-again", {**CANVAS, "name": "A copy"})
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == "duplicate_platform"
    assert error["details"] == {"fields": ["issuer", "client_id"], "platform_id": "canvas-north"}
    # Moving another registration onto the pair is refused the same way, and changes nothing.
    assert put(client, admin, "moodle-local", LOCAL_MOODLE).status_code == 201
    moved = {**LOCAL_MOODLE, "issuer": CANVAS["issuer"], "client_id": CANVAS["client_id"]}
    r = put(client, admin, "moodle-local", moved)
    assert r.status_code == 422 and r.json()["error"]["code"] == "duplicate_platform"
    assert [row["platform_id"] for row in rows(client, admin)] == ["canvas-north", "moodle-local"]
    assert rows(client, admin)[1]["issuer"] == LOCAL_MOODLE["issuer"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("auth_login_url", "http://lms.school.example/auth"),  # http off loopback
        ("jwks_url", "http://127.0.0.1.nip.io/jwks"),  # a name that only looks like loopback
        ("auth_token_url", "ftp://lms.school.example/token"),
        ("auth_token_url", "https://user:pw@lms.school.example/token"),
        ("jwks_url", "/lti/jwks"),
        ("jwks_url", "https://lms.school.example/jwks#frag"),
        ("issuer", "https://lms.school.example/?tenant=1"),  # Security Framework §5.1.2
        ("issuer", "http://lms.school.example"),
        ("client_id", ""),
        ("client_id", "tab\there"),
        ("client_id", "x" * 129),
        ("name", "line\nbreak"),
        ("deployment_ids", ["1", "1"]),
        ("deployment_ids", ["ok", "bad\x00"]),
        ("frame_origins", ["https://lms.school.example/course/1"]),  # not an origin
        ("frame_origins", ["http://lms.school.example"]),
        # An origin goes into every page's CSP: nothing that widens or splits it.
        ("frame_origins", ["https://*"]),
        ("frame_origins", ["https://*.school.example"]),
        ("frame_origins", ["https://lms.school.example;sandbox"]),
        ("frame_origins", ["https://lms.school.example,frame-ancestors"]),
    ],
)
def test_invalid_fields_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], field: str, value: Any
) -> None:
    r = put(client, admin, "p1", {**CANVAS, field: value})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"][0]["field"].split(".")[0] == field
    assert rows(client, admin) == []


@pytest.mark.parametrize("pid", ["has space", "a|b", "x" * 129, "%C3%A9t%C3%A9"])
def test_bad_platform_ids_are_422(client: TestClient, admin: dict[str, str], pid: str) -> None:
    assert put(client, admin, pid, CANVAS).status_code == 422
    assert client.delete(f"/api/admin/lti/platforms/{pid}", headers=admin).status_code == 422
    assert rows(client, admin) == []


def test_missing_and_unknown_fields_are_422(client: TestClient, admin: dict[str, str]) -> None:
    without_jwks = {k: v for k, v in CANVAS.items() if k != "jwks_url"}
    assert put(client, admin, "p1", without_jwks).status_code == 422
    assert put(client, admin, "p1", {**CANVAS, "is_admin": True}).status_code == 422


@pytest.mark.parametrize("role", ["student", "teacher"])
def test_only_admins_manage_platforms(
    client: TestClient, settings: Settings, admin: dict[str, str], role: str
) -> None:
    assert put(client, admin, "canvas-north", CANVAS).status_code == 201
    other = bearer(settings, "someone", role, now=NOW)
    for r in (
        put(client, other, "canvas-south", CANVAS),
        client.get("/api/admin/lti/platforms", headers=other),
        client.delete("/api/admin/lti/platforms/canvas-north", headers=other),
    ):
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    assert client.get("/api/admin/lti/platforms").status_code == 401
    assert [row["platform_id"] for row in rows(client, admin)] == ["canvas-north"]


def test_registration_keeps_what_a_launch_added_to_the_document(
    client: TestClient, admin: dict[str, str], mongo_db: Database[dict[str, Any]]
) -> None:
    # A later step records deployments seen at launch in the same document: a re-registration
    # by the admin must not erase them.
    assert put(client, admin, "canvas-north", CANVAS).status_code == 201
    mongo_db["lti_platforms"].update_one({"_id": "canvas-north"}, {"$set": {"seen": ["d1"]}})
    assert put(client, admin, "canvas-north", {**CANVAS, "name": "Renamed"}).status_code == 200
    doc = mongo_db["lti_platforms"].find_one({"_id": "canvas-north"})
    assert doc is not None and doc["seen"] == ["d1"] and doc["name"] == "Renamed"
    assert doc["created_at"] == NOW


def test_the_unique_index_exists_once_the_app_started(
    client: TestClient, mongo_db: Database[dict[str, Any]]
) -> None:
    indexes = mongo_db["lti_platforms"].index_information().values()
    key = [("issuer", pymongo.ASCENDING), ("client_id", pymongo.ASCENDING)]
    assert [i.get("unique") for i in indexes if i["key"] == key] == [True]


# -- the CLI ------------------------------------------------------------------------------


def cli_env(mongo_url: str) -> dict[str, str]:
    return {**os.environ, "MONGO_URL": mongo_url, "APP_ENV": "production", "JWT_SECRET": SECRET}


def cli_process(mongo_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`videoprogress lti ...` as an operator runs it: a process of its own."""
    return subprocess.run(
        [sys.executable, "-m", "shared.devtools.cli", "lti", *args],
        cwd=ROOT,
        env=cli_env(mongo_url),
        capture_output=True,
        text=True,
        timeout=60,
    )


def cli(mongo_url: str, *args: str) -> Result:
    """The same command in this process (Typer's runner): the rest of the CLI's answers
    without a Python start-up each."""
    return CliRunner().invoke(cli_app, ["lti", *args], env=cli_env(mongo_url))


def add_args(pid: str, body: dict[str, Any]) -> list[str]:
    args = ["add-platform", pid]
    for field in ("name", "issuer", "client_id", "auth_login_url", "auth_token_url", "jwks_url"):
        args += [f"--{field.replace('_', '-')}", body[field]]
    args += [arg for d in body["deployment_ids"] for arg in ("--deployment-id", d)]
    args += [arg for o in body.get("frame_origins", []) for arg in ("--frame-origin", o)]
    return args


def test_the_cli_adds_lists_and_removes_platforms_the_api_sees(
    client: TestClient, admin: dict[str, str], mongo_url: str
) -> None:
    added = cli_process(mongo_url, *add_args("canvas-north", CANVAS))
    assert added.returncode == 0, added.stderr + added.stdout
    never: dict[str, Any] = {"last_launch_at": None, "seen_deployment_ids": []}
    assert rows(client, admin) == [{"platform_id": "canvas-north", **CANVAS, **never}]
    assert put(client, admin, "moodle-local", LOCAL_MOODLE).status_code == 201

    listed = cli(mongo_url, "list-platforms")
    assert listed.exit_code == 0, listed.output
    assert [json.loads(line) for line in listed.stdout.splitlines()] == rows(client, admin)

    duplicate = cli(mongo_url, *add_args("canvas-copy", CANVAS))
    assert duplicate.exit_code == 2 and "canvas-north" in duplicate.stdout
    insecure = cli(mongo_url, *add_args("p2", {**CANVAS, "jwks_url": "http://lms.example/j"}))
    assert insecure.exit_code == 2 and "jwks_url" in insecure.stdout
    assert cli(mongo_url, *add_args("bad id", CANVAS)).exit_code == 2
    assert len(rows(client, admin)) == 2

    assert cli(mongo_url, "remove-platform", "canvas-north").exit_code == 0
    assert cli(mongo_url, "remove-platform", "canvas-north").exit_code == 1
    assert [row["platform_id"] for row in rows(client, admin)] == ["moodle-local"]
