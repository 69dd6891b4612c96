"""A running system for tests: the Procfile's processes over a redis-server and the MongoDB
stand-in of its own, plus HTTP helpers. Used as a module-scoped fixture.

`buffer="cluster"` puts the heartbeat buffer on a three-primary Redis Cluster (AOF on), RQ
staying on the plain redis-server, with two web processes (`WEB_CONCURRENCY=2`) and three
workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pymongo
import pytest
import redis
from pymongo.database import Database
from redis import Redis
from redis.cluster import RedisCluster as RedisClusterClient

from shared.devtools.services import (
    START_ATTEMPTS,
    ProcessStartError,
    RedisCluster,
    Service,
    free_port,
    mongo_standin_service,
    port_taken,
    procfile_commands,
    redis_service,
    start_procfile_process,
    start_redis_cluster,
    wait_for_port,
)
from shared.storage.clients import Buffer, buffer_client
from shared.storage.keys import ProgressKey
from tests.helpers import (
    CLASS_COURSE,
    CLASS_COURSE_ID,
    COURSE,
    COURSE_ID,
    KEY_SCHEMA,
    SECRET,
    make_settings,
)
from tests.helpers import bearer as _bearer

FLUSH_INTERVAL_S = 3  # heartbeats sent within ~2 s of each other share one MongoDB write
# Enrollment rollups live in Redis this long before the persister writes them (production:
# 600 s); the teacher views read Redis beside MongoDB either way.
ROLLUP_PERSIST_S = 2
CLAIM_LEASE_S = 3


@dataclass
class Stack:
    root: Path
    redis: Service
    mongo: Service
    env: dict[str, str]
    port: int
    cluster: RedisCluster | None = None
    workers: int = 2
    procs: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, name: str) -> subprocess.Popen[bytes]:
        command = procfile_commands()[name]
        proc = start_procfile_process(command, self.env, self.root / f"{name}.log")
        self.procs.setdefault(name, []).append(proc)
        return proc

    def wait_for_web(self, web: subprocess.Popen[bytes], timeout_s: float) -> None:
        """Until the web process started listens on `port`. The port was picked free before the
        web bound it: when another process took it first (the web exits, its log says "address
        already in use"), the web again on another one, START_ATTEMPTS starts in all. Raises
        ProcessStartError."""
        for start in range(1, START_ATTEMPTS + 1):
            try:
                wait_for_port(self.port, timeout_s, web)
                return
            except ProcessStartError:
                if start == START_ATTEMPTS or web.poll() is None or not port_taken(self.port):
                    raise
            self.kill_all("web")
            self.port = free_port()
            self.env["PORT"] = str(self.port)
            web = self.start("web")

    def restart_workers(self) -> None:
        """As many workers as the stack started with (after a test stopped them)."""
        self.procs["worker"] = [p for p in self.procs.get("worker", []) if p.poll() is None]
        for _ in range(self.workers - len(self.procs["worker"])):
            self.start("worker")

    def kill_all(self, name: str, sig: int = signal.SIGKILL) -> None:
        for proc in self.procs.pop(name, []):
            if proc.poll() is None:
                proc.send_signal(sig)
            proc.wait(15)

    def settings(self) -> Any:
        rate = float(self.env.get("MAX_PLAYBACK_RATE", "2"))
        return make_settings(
            self.env["REDIS_URL"], self.env["MONGO_URL"], max_playback_rate=rate,
            buffer_redis_url=self.env.get("BUFFER_REDIS_URL"),
            buffer_redis_cluster=self.cluster is not None,
        )  # fmt: skip

    def buffer_server(self, student: str) -> Service:
        """The redis-server holding the student's buffer keys."""
        if self.cluster is None:
            return self.redis
        client = self.redis_client()
        assert isinstance(client, RedisClusterClient)
        node = client.get_node_from_key(ProgressKey(student, "", KEY_SCHEMA).pending)  # type: ignore[no-untyped-call]  # redis-py
        client.close()
        return next(n for n in self.cluster.nodes if n.port == node.port)

    def redis_client(self) -> Buffer:
        """The heartbeat buffer's client (RQ's Redis unless the stack runs a cluster)."""
        return buffer_client(self.settings(), socket_timeout=5)

    def rq_client(self) -> Redis:
        return redis.Redis.from_url(self.env["REDIS_URL"], socket_timeout=5)

    def db(self) -> Database[dict[str, Any]]:
        return pymongo.MongoClient(
            self.env["MONGO_URL"], serverSelectionTimeoutMS=5000
        ).get_default_database()


def running_stack(
    tmp_path_factory: pytest.TempPathFactory,
    environment: str = "production",
    catalog_file: Path | None = None,
    max_playback_rate: float | None = 0.0,
    extra_env: dict[str, str] | None = None,
    buffer: str = "single",
) -> Iterator[Stack]:
    """Start a whole system; the caller wraps it in a fixture of the scope it wants.

    The catalog is the tests' two courses (tests/helpers.py) unless `catalog_file` names another.
    Verified watching is off (`max_playback_rate=0`) for tests that replay players faster than
    real time; `None` keeps the product's default (the browser tests play in real time).
    `extra_env` adds settings (e.g. XAPI_LRS_URL).
    """
    root = tmp_path_factory.mktemp("stack")
    redis_svc = redis_service(root / "redis", appendonly=True).start()
    mongo_svc = mongo_standin_service(root / "mongo").start()
    port = free_port()
    env = dict(os.environ)
    env.update(
        REDIS_URL=f"redis://127.0.0.1:{redis_svc.port}/0",
        MONGO_URL=f"mongodb://127.0.0.1:{mongo_svc.port}/videoprogress",
        APP_ENV=environment,
        JWT_SECRET=SECRET,
        FLUSH_INTERVAL_S=str(FLUSH_INTERVAL_S),
        FLUSH_TICK_S="1",
        ROLLUP_PERSIST_S=str(ROLLUP_PERSIST_S),
        CLAIM_LEASE_S=str(CLAIM_LEASE_S),
        MONGO_TIMEOUT_MS="1500",
        PORT=str(port),
        HOST="127.0.0.1",
    )
    if max_playback_rate is not None:
        env["MAX_PLAYBACK_RATE"] = str(max_playback_rate)
    env.update(extra_env or {})
    env.pop("BUFFER_REDIS_URL", None)
    env.pop("BUFFER_REDIS_CLUSTER", None)
    cluster, workers = None, 2
    if buffer == "cluster":
        cluster, workers = start_redis_cluster(root / "cluster", appendonly=True), 3
        env.update(BUFFER_REDIS_URL=cluster.url, BUFFER_REDIS_CLUSTER="true", WEB_CONCURRENCY="2")
    if catalog_file is None:
        catalog_file = root / "catalog.json"
        courses = [
            {"course_id": COURSE_ID, **COURSE},
            {"course_id": CLASS_COURSE_ID, **CLASS_COURSE},
        ]
        catalog_file.write_text(json.dumps({"courses": courses}))
    subprocess.run(
        [sys.executable, "-m", "shared.devtools.cli", "load-catalog", str(catalog_file)],
        env=env,
        check=True,
    )
    s = Stack(root, redis_svc, mongo_svc, env, port, cluster, workers)
    try:  # the processes stop even when the web never listened (nothing is left running)
        web = s.start("web")
        for _ in range(workers):
            s.start("worker")
        s.start("clock")
        s.wait_for_web(web, 60)  # a generous bound for a busy machine
        yield s
    finally:
        for name in list(s.procs):
            s.kill_all(name, signal.SIGTERM)
        mongo_svc.stop()
        redis_svc.stop()
        if cluster is not None:
            cluster.stop()


def enroll(stack: Stack, student: str, course_id: str = COURSE_ID) -> dict[str, str]:
    admin = _bearer(stack.settings(), "admin", "admin")
    r = httpx.put(f"{stack.url}/api/courses/{course_id}/enrollments/{student}", headers=admin)
    assert r.status_code == 201, r.text
    return _bearer(stack.settings(), student)


def post(
    stack: Stack, headers: dict[str, str], video: str = "v-100", **body: Any
) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/api/progress/video/{video}/watch-time", json=body, headers=headers, timeout=15
    )


def stored(stack: Stack, student: str, video: str = "v-100") -> dict[str, Any] | None:
    return stack.db().watch_progress.find_one(
        {"student_id": student, "material_id": video}, {"_id": 0}
    )
