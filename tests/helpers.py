"""Test helpers shared by the API and system tests (no fixtures here)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pymongo.monitoring import (
    CommandFailedEvent,
    CommandListener,
    CommandStartedEvent,
    CommandSucceededEvent,
)

from shared.settings import Settings
from shared.storage.clients import AsyncBuffer, Buffer, async_buffer_client
from shared.storage.ingest_store import AsyncHotStore
from shared.storage.keys import KeySchema, ProgressKey
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


def course_copy(prefix: str) -> dict[str, Any]:
    """COURSE again with every material id prefixed (material ids are unique in a catalog): a
    course of a test module's own on a stack shared with other modules."""
    copy: dict[str, Any] = json.loads(json.dumps(COURSE))
    for module in copy["modules"]:
        for material in module["materials"]:
            material["material_id"] = prefix + material["material_id"]
    return copy


# The class of tests/test_teacher.py, on the system stack it shares with tests/test_system.py.
CLASS_COURSE_ID, CLASS_COURSE = "phys-201", course_copy("k-")


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
        # In-process tests read the enrollment documents right after a flush: each flush
        # writes them (records left in Redis are settled). The persister's path, the default,
        # is the system stack's (tests/stack.py) and tests/test_live_rollups.py's.
        "rollup_persist_s": 0.0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


# The tests' key schema, built as every process of theirs builds its own (from make_settings).
KEY_SCHEMA = KeySchema.from_settings(
    make_settings("redis://127.0.0.1:1/0", "mongodb://127.0.0.1:1/x")
)


def bearer(
    settings: Settings, user_id: str, role: str = "student", now: float | None = None
) -> dict[str, str]:
    """An Authorization header; `now` is the time of an app's moved clock, when it has one."""
    token = mint_token(settings, user_id, role, now=now)  # type: ignore[arg-type]
    return {"Authorization": f"Bearer {token}"}


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


async def wait_until_async(
    predicate: Callable[[], Any], timeout_s: float = 20.0, step_s: float = 0.01
) -> Any:
    """`wait_until` inside an event loop: the loop runs on while it waits."""
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        await asyncio.sleep(step_s)
    return value


# Rows of the fault suite's summary: (fault, injected, accepted, stored, lost, duplicated);
# printed by conftest.py at the end of the run.
FAULT_ROWS: list[tuple[str, int, int, int, int, int]] = []  # see tests/conftest.py


def present(value: T | None) -> T:
    """`value`, which the test expects to be there (a find_one that must find, a started
    process); fails the test when it is None."""
    assert value is not None
    return value


# The buffer as tests look at it (keys are spelled only in shared/storage/keys.py).


def async_buffer(redis_url: str) -> AsyncBuffer:
    """The buffer's asyncio client for tests given RQ's URL (a cluster when the environment
    says so: BUFFER_REDIS_URL, BUFFER_REDIS_CLUSTER)."""
    return async_buffer_client(make_settings(redis_url, "mongodb://127.0.0.1:1/unused"))


@asynccontextmanager
async def hot_store(client: AsyncBuffer) -> AsyncIterator[AsyncHotStore]:
    """The web process's view of the buffer over `client`; both are closed on the way out."""
    store = AsyncHotStore(client, KEY_SCHEMA)
    try:
        yield store
    finally:
        await store.aclose()
        await client.aclose()


def dirty_score(r: Buffer, student: str, material: str) -> float | None:
    """When the key is due (None: clean), from its partition's dirty index."""
    key = ProgressKey(student, material, KEY_SCHEMA)
    score: float | None = r.zscore(key.partition.dirty, key.member)
    return score


def leased(r: Buffer, student: str, material: str) -> bool:
    key = ProgressKey(student, material, KEY_SCHEMA)
    return bool(r.hexists(key.partition.leases, key.member))


def buffered(r: Buffer) -> tuple[int, int]:
    """(dirty keys, pending heartbeats), summed over the partitions."""
    pipe = r.pipeline(transaction=False)
    for part in KEY_SCHEMA.partitions():
        pipe.zcard(part.dirty)
        pipe.get(part.pending)
    replies = pipe.execute()
    return sum(replies[0::2]), sum(int(p or 0) for p in replies[1::2])


def lease_expiries(r: Buffer) -> list[float]:
    pipe = r.pipeline(transaction=False)
    for part in KEY_SCHEMA.partitions():
        pipe.hvals(part.leases)
    return [float(v) for values in pipe.execute() for v in values]


def inject_pending(r: Buffer, student: str, raw: dict[str, Any], material: str = "v-100") -> None:
    """A pending heartbeat written straight into the buffer, as an older version could have
    left it: counted and due at once like one ingest appended, but never checked."""
    key = ProgressKey(student, material, KEY_SCHEMA)
    r.rpush(key.pending, json.dumps(raw))
    r.incr(key.partition.pending)
    r.zadd(key.partition.dirty, {key.member: 0}, nx=True)


def poisoned(r: Buffer) -> list[bytes]:
    pipe = r.pipeline(transaction=False)
    for part in KEY_SCHEMA.partitions():
        pipe.zrange(part.poison, 0, -1)
    return [m for members in pipe.execute() for m in members]


class DocumentsRead(CommandListener):
    """Counts the documents MongoDB returned in cursor replies."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def started(self, event: CommandStartedEvent) -> None:
        pass

    def succeeded(self, event: CommandSucceededEvent) -> None:
        cursor = event.reply.get("cursor") if isinstance(event.reply, dict) else None
        if isinstance(cursor, dict):
            batch: list[Any] = cursor.get("firstBatch", cursor.get("nextBatch")) or []
            with self._lock:
                self.count += len(batch)

    def failed(self, event: CommandFailedEvent) -> None:
        pass
