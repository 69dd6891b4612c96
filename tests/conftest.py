"""Real services for the tests that need them.

Redis: a real `redis-server` started on a free port (or the one `REDIS_URL` names). A test
that uses Redis runs with the heartbeat buffer on that Redis (`single`); one marked `cluster`
(it depends on the buffer's layout) runs again with the buffer on a real three-primary Redis
Cluster (`BUFFER_REDIS_URL` and `BUFFER_REDIS_CLUSTER` set in the environment, which settings
read), RQ staying on the plain Redis.
MongoDB: the `nx-27017` wire-protocol server started on a free port, or a real MongoDB when
`MONGO_URL` is set (each test then gets its own database, dropped afterwards).
Tests that do not ask for these fixtures cannot reach a service.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pymongo
import pytest
import redis

from shared.clock import MockedClock
from shared.devtools.services import (
    RedisCluster,
    Service,
    mongo_standin_service,
    redis_service,
    start_redis_cluster,
)
from shared.settings import Settings
from shared.storage.clients import Buffer, buffer_client
from tests.helpers import make_settings
from tests.lti_platform import Lms
from tests.stack import Stack, running_stack


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def redis_server(services_dir: Path) -> Iterator[Service | None]:
    if os.environ.get("REDIS_URL"):
        yield None
        return
    service = redis_service(services_dir / "redis").start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def redis_base_url(redis_server: Service | None) -> str:
    """A Redis database of this test process's own: the redis-server it started, or, when
    `REDIS_URL` names one, its database (under xdist, that database + n for worker gw<n>: the
    tests empty it)."""
    if redis_server is None:
        url = os.environ["REDIS_URL"]
        worker = os.environ.get("PYTEST_XDIST_WORKER")
        if worker is None:
            return url
        base = int(urlsplit(url).path.strip("/") or 0)
        return with_database(url, str(base + int(worker.removeprefix("gw"))))
    return f"redis://127.0.0.1:{redis_server.port}/0"


@pytest.fixture(scope="session")
def mongo_server(services_dir: Path) -> Iterator[Service | None]:
    if os.environ.get("MONGO_URL"):
        yield None
        return
    service = mongo_standin_service(services_dir / "mongo").start()
    yield service
    service.stop()


@pytest.fixture(scope="session")
def mongo_base_url(mongo_server: Service | None) -> str:
    if mongo_server is None:
        return os.environ["MONGO_URL"]
    return f"mongodb://127.0.0.1:{mongo_server.port}/videoprogress"


@pytest.fixture(scope="session")
def redis_cluster(services_dir: Path) -> Iterator[RedisCluster]:
    """Three redis-servers in cluster mode, joined by `redis-cli --cluster create`."""
    cluster = start_redis_cluster(services_dir / "cluster", primaries=3)
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def buffer_kind(request: pytest.FixtureRequest) -> str:
    """`single`, or `cluster` in the second run of a test marked `cluster`."""
    kind: str = getattr(request, "param", "single")
    return kind


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Tests that depend on the buffer's layout (marked `cluster`: scripts, claims, key spread)
    run on one Redis and on the cluster; every other test runs once, on one Redis."""
    if "buffer_kind" in metafunc.fixturenames and metafunc.definition.get_closest_marker("cluster"):
        metafunc.parametrize("buffer_kind", ["single", "cluster"], indirect=True, scope="session")


@pytest.fixture(scope="session")
def system_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The Procfile's processes over a redis-server and the MongoDB stand-in, shared by the
    system tests (tests/test_system.py, tests/test_teacher.py: one work unit under xdist).
    A test that stops a part of it starts it again; the fault tests have stacks of their own."""
    yield from running_stack(tmp_path_factory)


@pytest.fixture(scope="session")
def cluster_system_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The same with the buffer on a three-primary Redis Cluster, two web processes and three
    workers: for the system tests marked `cluster`."""
    yield from running_stack(tmp_path_factory, buffer="cluster")


@pytest.fixture
def stack(buffer_kind: str, request: pytest.FixtureRequest) -> Stack:
    """The shared system stack of the test's buffer kind (both, for a test marked `cluster`);
    only for the modules of its work unit, which xdist runs in one process."""
    module = request.node.path.stem
    assert module in SHARED_STACK_MODULES, f"{module}: add it to SHARED_STACK_MODULES first"
    name = "cluster_system_stack" if buffer_kind == "cluster" else "system_stack"
    found: Stack = request.getfixturevalue(name)
    return found


def flush_buffer(buffer_urls: list[str]) -> None:
    for url in buffer_urls:
        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()


@pytest.fixture
def redis_url(
    redis_base_url: str,
    buffer_kind: str,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[str]:
    """RQ's Redis URL, emptied; the buffer (the same Redis, or the cluster) is emptied too."""
    urls = [redis_base_url]
    if buffer_kind == "cluster":
        cluster: RedisCluster = request.getfixturevalue("redis_cluster")
        monkeypatch.setenv("BUFFER_REDIS_URL", cluster.url)
        monkeypatch.setenv("BUFFER_REDIS_CLUSTER", "true")
        urls += [f"redis://127.0.0.1:{node.port}/0" for node in cluster.nodes]
    else:
        monkeypatch.delenv("BUFFER_REDIS_URL", raising=False)
        monkeypatch.delenv("BUFFER_REDIS_CLUSTER", raising=False)
    flush_buffer(urls)
    yield redis_base_url
    flush_buffer(urls)


@pytest.fixture
def rq_client(redis_url: str) -> Iterator[redis.Redis]:
    """RQ's Redis (always a plain Redis): queues, worker statistics and the outboxes."""
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[Buffer]:
    """The buffer's client (a cluster client in the `cluster` runs)."""
    from tests.helpers import make_settings

    client = buffer_client(make_settings(redis_url, "mongodb://127.0.0.1:1/unused"))
    yield client
    client.close()


@pytest.fixture
def mongo_url(mongo_base_url: str) -> Iterator[str]:
    """A URL naming a database of this test's own, dropped afterwards."""
    name = f"vp_test_{uuid.uuid4().hex[:12]}"
    url = with_database(mongo_base_url, name)
    yield url
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        url, serverSelectionTimeoutMS=5000
    )
    client.drop_database(name)
    client.close()


@pytest.fixture
def mongo_db(mongo_url: str) -> Iterator[pymongo.database.Database[dict[str, Any]]]:
    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(
        mongo_url, serverSelectionTimeoutMS=5000, socketTimeoutMS=10000
    )
    yield client.get_default_database()
    client.close()


# Defaults a module may override with its own fixture of the same name.
@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    """The service's settings over the test's own Redis database and MongoDB database."""
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def clock() -> MockedClock:
    """An injected clock starting now (lti1p3platform stamps iat/exp with the system time)."""
    return MockedClock(time.time())


@pytest.fixture
def lms() -> Iterator[Lms]:
    """The suite's LTI platform (tests/lti_platform.py), serving until the test ends."""
    platform = Lms()
    yield platform
    platform.close()


# Work units for pytest-xdist (tests/run.sh): a module is one unit, so its module-scoped fixtures
# start once; the modules sharing the system stack (`system_stack` above) are one unit; units
# start longest first (measured with --durations), so the last to finish is a short one.
SHARED_STACK_MODULES = {"test_system", "test_teacher"}
LONGEST_FIRST = [
    "test_browser", "test_lti_browser", "test_faults", "system-stack", "test_hot_store",
    "test_lti_grades_system", "test_interop_system", "test_lti_grades", "test_verified_watching",
    "test_outbox_quota_system", "test_interop", "test_api", "test_schema", "test_lti_roster",
    "test_watch_time_route", "test_erasure", "test_browser_edge", "test_progress",
]  # fmt: skip


def work_unit(path: str) -> str:
    module = Path(path.split("::")[0]).stem
    return "system-stack" if module in SHARED_STACK_MODULES else module


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Units in LONGEST_FIRST's order (the order xdist hands them out), tests kept in order."""
    rank = {unit: i for i, unit in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(work_unit(item.nodeid), len(rank)))


@pytest.hookimpl(optionalhook=True)  # xdist may be off (-p no:xdist)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's scope scheduling over `work_unit` (xdist_group marks do not reach pytest 9's
    node ids), handing units out in collection order."""
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnits(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped here
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    config.option.loadscopereorder = False
    return WorkUnits(config, log)


FAULT_SUMMARY: list[Any] = []  # rows reported by the tests, gathered where the run ends


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Rows the test added to `tests.helpers.FAULT_ROWS` travel with its report (to the
    controller under xdist)."""
    from tests.helpers import FAULT_ROWS

    outcome = yield
    report: pytest.TestReport = outcome.get_result()  # type: ignore[attr-defined]
    while FAULT_ROWS:
        report.user_properties.append(("fault_row", FAULT_ROWS.pop(0)))


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    FAULT_SUMMARY.extend(v for k, v in report.user_properties if k == "fault_row")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_SUMMARY:
        return
    rows = sorted(FAULT_SUMMARY, key=lambda row: str(row[0]))
    header = ("fault", "injected", "accepted", "stored", "lost", "duplicated")
    width = max(len(str(row[0])) for row in [header, *rows])
    lines = [f"{header[0]:{width}} " + " ".join(f"{h:>10}" for h in header[1:])]
    lines += [f"{row[0]:{width}} " + " ".join(f"{v:>10}" for v in row[1:]) for row in rows]
    terminalreporter.write_sep("=", "fault summary")
    for line in lines:
        terminalreporter.write_line(line)
    out = Path(__file__).resolve().parent.parent / "test-output"
    out.mkdir(exist_ok=True)
    (out / "faults-summary.txt").write_text("\n".join(lines) + "\n")
