"""What the benchmarks share: a whole stack of their own, bulk enrollment, Redis counters, CPU.

The stack is started the way `tests.stack.running_stack` starts it (redis-server with AOF,
nx-27017, the Procfile's processes via `shared.devtools.services`), but with the flush settings
and the number of workers a benchmark asks for (the product defaults unless told), and without
pytest.
`tests.stack.Stack` is reused as is for the process bookkeeping.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from shared.devtools.services import (
    Service,
    free_port,
    mongo_standin_service,
    redis_service,
)
from shared.domain.catalog import Course
from shared.ops import admin_ops
from shared.settings import Settings
from shared.storage.keys import ENROLLMENT_LOADED, KeySchema
from shared.storage.mongo_store import MongoStore, enrollment_id
from shared.tokens import mint_token
from tests.helpers import SECRET, present
from tests.stack import Stack


@dataclass
class BenchStack:
    stack: Stack
    settings: Settings
    mongo: MongoStore
    r: redis.Redis
    key_schema: KeySchema
    wire_counts: Path | None = None  # the write-counting proxy's totals (mongo_wire.py)

    @property
    def url(self) -> str:
        return self.stack.url

    def pids(self) -> dict[str, int]:
        """Process name -> pid, for CPU accounting (web#0, worker#0, ..., redis, mongo)."""
        out = {
            "redis": present(self.stack.redis.proc).pid,
            "mongo": present(self.stack.mongo.proc).pid,
        }
        for name, procs in self.stack.procs.items():
            for i, proc in enumerate(procs):
                out[f"{name}#{i}" if len(procs) > 1 else name] = proc.pid
        return out

    def token(self, user_id: str, role: str = "student") -> str:
        return mint_token(self.settings, user_id, role, ttl_s=6 * 3600)  # type: ignore[arg-type]


@contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A folder of the system's temp dir for a benchmark's servers and data (a run writes up to
    ~150 MB there): removed on the way out after a run that went well, kept and named after one
    that did not, for its logs. Meanwhile a SIGTERM ends the run as Ctrl-C does, so that the
    `finally` blocks stop the servers instead of leaving them running."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    previous = signal.getsignal(signal.SIGTERM)
    if previous is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield root
    except BaseException:
        print(f"kept {root} for its logs", file=sys.stderr)
        raise
    else:
        shutil.rmtree(root, ignore_errors=True)
    finally:
        if previous is signal.SIG_DFL:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def bench_stack(
    prefix: str,
    courses: list[Course],
    *,
    workers: int = 1,
    clock: bool = True,
    web: bool = True,
    flush_interval_s: float = 30.0,
    flush_tick_s: int = 5,
    extra_env: dict[str, str] | None = None,
    count_writes: bool = False,
) -> Iterator[BenchStack]:
    """Start redis-server (AOF everysec, as docs/operations.md recommends), nx-27017, publish the
    courses, then the Procfile's web, `workers` workers and clock; stop them all at the end.
    `count_writes`: the stack's processes reach nx-27017 through mongo_wire.py's proxy, which
    counts the documents written per collection (this process's own reads and writes bypass
    it)."""
    with scratch_dir(prefix) as root:
        redis_svc = redis_service(root / "redis", appendonly=True).start()
        mongo_svc = mongo_standin_service(root / "mongo").start()
        started: list[Service] = [mongo_svc, redis_svc]
        mongo_port, wire_counts = mongo_svc.port, None
        if count_writes:
            wire_counts = root / "wire-counts.json"

            def proxy_argv(port: int) -> list[str]:
                return [sys.executable, "-m", "tests.benchmarks.mongo_wire", "--port", str(port),
                        "--upstream", str(mongo_svc.port), "--out", str(wire_counts)]  # fmt: skip

            proxy = Service("mongo-wire", proxy_argv, root / "mongo-wire.log", free_port).start()
            started.insert(0, proxy)
            mongo_port = proxy.port
        port = free_port()
        env = dict(os.environ)
        env.update(
            REDIS_URL=f"redis://127.0.0.1:{redis_svc.port}/0",
            MONGO_URL=f"mongodb://127.0.0.1:{mongo_port}/videoprogress",
            APP_ENV="production",
            JWT_SECRET=SECRET,
            FLUSH_INTERVAL_S=str(flush_interval_s),
            FLUSH_TICK_S=str(flush_tick_s),
            MONGO_TIMEOUT_MS="30000",
            PORT=str(port),
            HOST="127.0.0.1",
            WEB_CONCURRENCY="1",
        )
        env.update(extra_env or {})
        os.environ.update(env)  # this process reads the same settings as the stack's processes
        settings = Settings(_env_file=None)
        direct = f"mongodb://127.0.0.1:{mongo_svc.port}/videoprogress"
        mongo = MongoStore(direct, settings.mongo_timeout_ms)
        r = redis.Redis.from_url(settings.redis_url, socket_timeout=30)
        stack = Stack(root, redis_svc, mongo_svc, env, port)
        try:
            mongo.ensure_indexes()
            for course in courses:
                admin_ops.save_course(mongo, r, course)
            if web:
                proc = stack.start("web")
            for _ in range(workers):
                stack.start("worker")
            if clock:
                stack.start("clock")
            if web:
                stack.wait_for_web(proc, 30)  # on another port if another process took this one
            yield BenchStack(
                stack, settings, mongo, r, KeySchema.from_settings(settings), wire_counts
            )
        finally:
            for name in list(stack.procs):
                stack.kill_all(name, signal.SIGTERM)
            mongo.close()
            r.close()
            for svc in started:
                svc.stop()


@contextmanager
def bare_stores(prefix: str, database: str = "bench") -> Iterator[tuple[str, str]]:
    """A redis-server and the MongoDB stand-in of their own, without the service's processes
    (a benchmark that runs the code in process): their (REDIS_URL, MONGO_URL), both stopped
    on the way out."""
    with scratch_dir(prefix) as root:
        redis_svc = redis_service(root / "redis").start()
        try:
            mongo_svc = mongo_standin_service(root / "mongo").start()
            try:
                yield (f"redis://127.0.0.1:{redis_svc.port}/0",
                       f"mongodb://127.0.0.1:{mongo_svc.port}/{database}")  # fmt: skip
            finally:
                mongo_svc.stop()
        finally:
            redis_svc.stop()


def enroll_bulk(bs: BenchStack, students: list[str], course_id: str) -> None:
    """Enroll many students at once: the documents `MongoStore.enroll` creates, inserted in one
    `insert_many`, and the Redis mirror `admin_ops.mirror_enrollments` keeps, in one pipeline."""
    now = time.time()
    for i in range(0, len(students), 5000):
        chunk = students[i : i + 5000]
        bs.mongo.enrollments.insert_many(
            [
                {
                    "_id": enrollment_id(s, course_id),
                    "student_id": s,
                    "course_id": course_id,
                    "completed_materials": [],
                    "progress_percentage": 0.0,
                    "enrolled_at": now,
                }
                for s in chunk
            ],
            ordered=False,
        )
        pipe = bs.r.pipeline(transaction=False)
        for s in chunk:
            key = bs.key_schema.enrollments_key(s)
            pipe.delete(key)
            pipe.sadd(key, ENROLLMENT_LOADED, course_id)
        pipe.execute()


# -- Redis counters -------------------------------------------------------------------------


@dataclass
class RedisCounters:
    calls: dict[str, int]  # command -> calls (INFO commandstats), INFO itself left out
    reads: int  # total_reads_processed: read events, about one per client round trip

    @classmethod
    def take(cls, r: redis.Redis) -> RedisCounters:
        info = r.info("all")
        calls = {
            k.removeprefix("cmdstat_"): int(v["calls"])
            for k, v in info.items()
            if k.startswith("cmdstat_") and k != "cmdstat_info"
        }
        return cls(calls, int(info.get("total_reads_processed", 0)))

    def minus(self, earlier: RedisCounters) -> RedisCounters:
        calls = {k: v - earlier.calls.get(k, 0) for k, v in self.calls.items()}
        return RedisCounters({k: v for k, v in calls.items() if v}, self.reads - earlier.reads)

    @property
    def total(self) -> int:
        return sum(self.calls.values())


# -- CPU ------------------------------------------------------------------------------------

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command's name (None when the process is gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def cpu_seconds(pid: int, descendants: bool = False) -> float:
    """User + system CPU seconds of a process (0 when it is gone); with `descendants`, plus
    those of its live descendants (uvicorn's worker processes under `WEB_CONCURRENCY` > 1)."""
    children: dict[int, list[int]] = {}
    if descendants:
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        if (fields := _stat(current)) is not None:
            total += (int(fields[11]) + int(fields[12])) / _TICK
        todo.extend(children.get(current, []))
    return total


def cpu_snapshot(pids: dict[str, int]) -> dict[str, float]:
    """Process name -> CPU seconds; a web process's count includes its worker processes (the
    generator's own would include the whole stack, its children)."""
    return {name: cpu_seconds(pid, name.startswith("web")) for name, pid in pids.items()}


def cpu_share(
    before: dict[str, float], after: dict[str, float], seconds: float
) -> dict[str, float]:
    """Process -> percent of one core over `seconds`."""
    return {k: 100.0 * (after.get(k, 0.0) - v) / seconds for k, v in before.items()}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(q / 100.0 * len(ordered))))
    return ordered[rank - 1]
