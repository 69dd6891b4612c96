"""Schemathesis against the app's own OpenAPI schema, with valid tokens: no 5xx, and every
response (status, content type, body) matches the schema."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import schemathesis.checks as checks
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from ingest.app import create_app
from shared.settings import Settings
from tests.helpers import COURSE, COURSE_ID, bearer, make_settings


@pytest.fixture
def app_settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url, rate_limit_per_minute=0)


@pytest.fixture
def api_schema(app_settings: Settings) -> Iterator[schemathesis.BaseSchema]:
    app = create_app(app_settings)
    with TestClient(app) as client:  # runs the lifespan; the schema's calls reuse the app
        admin = bearer(app_settings, "root", "admin")
        client.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin)
        client.put(f"/api/courses/{COURSE_ID}/enrollments/s-ana", headers=admin)
        yield schemathesis.openapi.from_asgi("/openapi.json", app)


# No 5xx, and every response documented: status, content type, headers, body. (Requests the
# schema allows but a cross-field rule refuses, e.g. watch_time > total_duration, are fine.)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
]


def role_for(path: str, method: str) -> tuple[str, str]:
    if path.startswith("/api/teacher"):
        return "t-phys", "teacher"
    if path.startswith("/api/admin") or (path.startswith("/api/courses") and method != "GET"):
        return "root", "admin"
    return "s-ana", "student"


def test_every_operation_matches_the_schema(
    api_schema: schemathesis.BaseSchema, app_settings: Settings
) -> None:
    operations = []
    for result in api_schema.get_all_operations():
        assert isinstance(result, Ok), result  # the schema of every operation loads
        operations.append(result.ok())
    assert len(operations) >= 15
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def check(case: schemathesis.Case[Any]) -> None:
            user, role = role_for(case.path, case.method.upper())
            case.call_and_validate(headers=bearer(app_settings, user, role), checks=CHECKS)

        check()
