"""The buffer's durability (docs/operations.md, "Redis durability"): the web process and the
worker log at start-up whether the buffer's Redis has AOF, and `/readyz` reports it, without
changing its status rules. Against real redis-servers: the suite's (no AOF; also as a
3-primary cluster), one of this module's own with AOF, and that one again for a user whose ACL
denies CONFIG (as managed Redis services do), where the durability is unknown, not guessed."""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from ingest.app import create_app
from shared.devtools.services import Service, free_port, redis_service
from tests.helpers import SECRET, make_settings

pytestmark = pytest.mark.cluster  # what a cluster reports (the weakest primary)

LOGGER = "shared.storage.durability"


@pytest.fixture(scope="module")
def aof_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    service = redis_service(tmp_path_factory.mktemp("aof") / "redis", appendonly=True).start()
    yield service
    service.stop()


@pytest.fixture
def aof_url(aof_redis: Service, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The AOF server's URL, as both REDIS_URL and the buffer; emptied, its fsync everysec."""
    monkeypatch.delenv("BUFFER_REDIS_URL", raising=False)
    monkeypatch.delenv("BUFFER_REDIS_CLUSTER", raising=False)
    url = f"redis://127.0.0.1:{aof_redis.port}/0"
    admin = redis.Redis.from_url(url)
    admin.flushall()
    yield url
    admin.config_set("appendfsync", "everysec")
    admin.close()


def readyz(redis_url: str, mongo_url: str, caplog: pytest.LogCaptureFixture) -> dict[str, Any]:
    """A web app's start-up log lines on durability and its /readyz answer."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    with TestClient(create_app(make_settings(redis_url, mongo_url))) as client:
        r = client.get("/readyz")
        after_fsync_always = None
        if r.status_code == 200 and r.json()["buffer_durability"]["aof"]:
            client_redis = redis.Redis.from_url(redis_url)
            client_redis.config_set("appendfsync", "always")  # read live, not at start-up
            after_fsync_always = client.get("/readyz").json()["buffer_durability"]
            client_redis.close()
    lines = [(rec.levelname, rec.getMessage()) for rec in caplog.records if rec.name == LOGGER]
    return {"status": r.status_code, "body": r.json(), "log": lines, "always": after_fsync_always}


def test_no_aof_is_logged_and_reported(
    redis_url: str, mongo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = readyz(redis_url, mongo_url, caplog)
    assert seen["status"] == 200 and seen["body"]["redis"] == "ok"
    assert seen["body"]["buffer_durability"] == {"aof": False, "appendfsync": None}
    [(level, message)] = seen["log"]
    assert level == "WARNING" and "has no AOF" in message


def test_aof_everysec_is_logged_and_reported(
    aof_url: str, mongo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    seen = readyz(aof_url, mongo_url, caplog)
    assert seen["status"] == 200
    assert seen["body"]["buffer_durability"] == {"aof": True, "appendfsync": "everysec"}
    assert seen["always"] == {"aof": True, "appendfsync": "always"}
    assert seen["log"] == [("INFO", "the buffer's Redis has AOF, appendfsync everysec")]


def test_a_refused_config_makes_durability_unknown(
    aof_url: str, mongo_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    password = secrets.token_hex(16)  # a throwaway user of this test's own server
    admin = redis.Redis.from_url(aof_url)
    every_key, all_but_config = ["*"], ["+@all", "-config"]
    admin.acl_setuser(
        "vp-app", enabled=True, passwords=[f"+{password}"], keys=every_key, commands=all_but_config
    )
    admin.close()
    user_url = aof_url.replace("redis://", f"redis://vp-app:{password}@")
    seen = readyz(user_url, mongo_url, caplog)
    assert seen["status"] == 200  # unknown durability is reported, not a reason to be unready
    assert seen["body"]["buffer_durability"] == {"aof": None, "appendfsync": None}
    [(level, message)] = seen["log"]
    assert level == "WARNING" and "durability is unknown (CONFIG GET refused" in message
    assert password not in message


def test_without_redis_readyz_stays_503_and_durability_is_unknown(
    mongo_url: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BUFFER_REDIS_URL", raising=False)
    monkeypatch.delenv("BUFFER_REDIS_CLUSTER", raising=False)
    seen = readyz(f"redis://127.0.0.1:{free_port()}/0", mongo_url, caplog)
    assert seen["status"] == 503 and seen["body"]["redis"] == "unavailable"
    assert seen["body"]["buffer_durability"] == {"aof": None, "appendfsync": None}
    [(level, message)] = seen["log"]
    assert level == "WARNING" and "unknown (Redis did not answer" in message


def worker_start_up_lines(redis_url: str) -> list[dict[str, Any]]:
    """The durability lines a real `rq worker` (the Procfile's, in burst mode: it exits once
    the queue is empty) logs at start-up, as JSON objects."""
    env = {**os.environ, "REDIS_URL": redis_url, "APP_ENV": "production", "JWT_SECRET": SECRET}
    rq = str(Path(sys.executable).parent / "rq")
    result = subprocess.run(
        [rq, "worker", "-c", "workers.rq_settings", "--worker-class", "rq.worker.SimpleWorker",
         "--burst", "--logging_level", "WARNING"],
        env=env, capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = [json.loads(x) for x in result.stderr.splitlines() if x.startswith("{")]
    return [line for line in lines if line.get("logger") == LOGGER]


def test_the_worker_logs_no_aof_at_start_up(redis_url: str) -> None:
    [line] = worker_start_up_lines(redis_url)
    assert line["level"] == "WARNING" and "has no AOF" in line["message"]


def test_the_worker_logs_aof_at_start_up(aof_url: str) -> None:
    [line] = worker_start_up_lines(aof_url)
    assert line["level"] == "INFO"
    assert line["message"] == "the buffer's Redis has AOF, appendfsync everysec"
