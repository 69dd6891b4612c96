"""Test helpers shared by the API and system tests (no fixtures here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from shared.settings import Settings
from shared.tokens import mint_token

T = TypeVar("T")

SECRET = "test-secret-" + "0123456789abcdef" * 3  # long enough for production settings

# A course of the tests' own, so expected numbers are easy to work out by hand.
COURSE = {
    "title": "Physics 101",
    "teacher_ids": ["t-phys"],
    "modules": [
        {
            "module_id": "mod-a",
            "title": "Motion",
            "materials": [
                {"material_id": "v-100", "title": "Speed", "type": "video", "duration": 100},
                {"material_id": "v-600", "title": "Forces", "type": "video", "duration": 600},
            ],
        },
        {
            "module_id": "mod-b",
            "title": "Reading",
            "materials": [
                {"material_id": "pdf-1", "title": "Notes", "type": "pdf"},
                {"material_id": "link-1", "title": "More", "type": "link", "url": "https://x.test"},
            ],
        },
    ],
}
COURSE_ID = "phys-101"


def make_settings(redis_url: str, mongo_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "environment": "production",
        "jwt_secret": SECRET,
        "redis_url": redis_url,
        "mongo_url": mongo_url,
        "flush_interval_s": 1.0,
        "flush_tick_s": 1,
        "claim_lease_s": 3.0,
        "mongo_timeout_ms": 2000,
        # These tests replay players much faster than real time, so verified watching would
        # (rightly) credit almost nothing: it is off here, and on, with a moved clock, in
        # tests/test_verified_watching.py.
        "max_playback_rate": 0.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def bearer(settings: Settings, user_id: str, role: str = "student") -> dict[str, str]:
    return {"Authorization": f"Bearer {mint_token(settings, user_id, role)}"}  # type: ignore[arg-type]


def heartbeat(watch_time: float, total: float = 100.0, **extra: Any) -> dict[str, Any]:
    return {"watch_time": watch_time, "total_duration": total, **extra}


def wait_until(predicate: Callable[[], Any], timeout_s: float = 20.0, step_s: float = 0.1) -> Any:
    """Poll until `predicate()` is truthy (returns it) or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(step_s)


# Rows of the fault suite's summary: (fault, injected, accepted, stored, lost, duplicated);
# printed by conftest.py at the end of the run.
FAULT_SUMMARY: list[tuple[str, int, int, int, int, int]] = []


def present(value: T | None) -> T:
    """`value`, which the test expects to be there (a find_one that must find, a started
    process); fails the test when it is None."""
    assert value is not None
    return value
