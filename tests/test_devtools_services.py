"""The test stacks' own start-up (shared/devtools/services.py): a free port is picked before the
process binds it, so another process may take it first. `wait_for_port` with a process waits
for that process (or one it started) to be the one listening, not for anything listening: the
browser tests once ran against another xdist worker's web process that way, theirs having
failed to bind ("address already in use"). `Service.start` then starts the process again on
another free port, unless the port is one its clients know (the caller's, or a restart's), and
`Stack.wait_for_web` starts a stack's web again on another port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import tests.stack
from shared.devtools import services
from shared.devtools.services import (
    ProcessStartError,
    Service,
    free_cluster_port,
    free_port,
    mongo_standin_service,
    redis_service,
    wait_for_port,
)

LISTEN = (
    "import socket, sys, time\n"
    "s = socket.socket(); s.bind(('127.0.0.1', int(sys.argv[1]))); s.listen()\n"
    "time.sleep(30)\n"
)


def test_a_port_another_process_holds_is_not_taken_for_the_process_started() -> None:
    with socket.socket() as other:  # this process takes the port the child was given
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        child = subprocess.Popen([sys.executable, "-c", LISTEN, str(port)])  # its bind fails
        try:
            with pytest.raises(ProcessStartError, match="exited"):
                wait_for_port(port, 10, child)  # it cannot bind: it exits, and that is said
        finally:
            child.kill()
            child.wait()


def test_the_process_started_is_found_listening() -> None:
    port = free_port()
    shell = subprocess.Popen(["bash", "-c", f'{sys.executable} -c "{LISTEN}" {port}; true'])
    try:  # a child of the process started (a shell that does not exec) listens: that is it
        wait_for_port(port, 10, shell)
    finally:
        subprocess.run(["pkill", "-P", str(shell.pid)], check=False)
        shell.kill()
        shell.wait()


# `Service.start`: the free port picked for a service may be taken before its process binds it.


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port another process (here, the test's) listens on; one a cluster node
    could have too (at most 55535)."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", free_cluster_port()))
        other.listen()
        yield other.getsockname()[1]


def picks(monkeypatch: pytest.MonkeyPatch, picker: str, *first: int) -> list[int]:
    """`services.<picker>` gives the ports `first`, then free ones as before; returns the list
    of the ports it gave, filled as it gives them."""
    pick = getattr(services, picker)
    given: list[int] = []

    def giving() -> int:
        given.append(first[len(given)] if len(given) < len(first) else pick())
        return given[-1]

    monkeypatch.setattr(services, picker, giving)
    return given


@pytest.mark.parametrize(
    ("factory", "picker"),
    [
        pytest.param(redis_service, "free_port", id="redis-server"),
        pytest.param(lambda d: redis_service(d, cluster=True), "free_cluster_port",
                     id="redis-server-cluster-node"),
        pytest.param(mongo_standin_service, "free_port", id="nx-27017"),
    ],
)  # fmt: skip
def test_a_service_whose_picked_port_was_taken_first_starts_on_another(
    factory: Callable[[Path], Service],
    picker: str,
    taken: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given = picks(monkeypatch, picker, taken)
    service = factory(tmp_path / "data").start()
    try:
        assert given[0] == taken and service.port == given[-1] != taken
        wait_for_port(service.port, 1, service.proc)  # it is the process listening there
        assert "already in use" in service.log_path.read_text()  # its first start's bind
    finally:
        service.stop()


def test_a_service_moved_off_a_taken_port_restarts_on_the_port_it_moved_to(
    taken: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks(monkeypatch, "free_port", taken)
    service = redis_service(tmp_path / "redis").start()
    try:
        port = service.port
        service.stop()
        service.start()  # its clients were told `port`
        assert service.port == port
        wait_for_port(port, 1, service.proc)
    finally:
        service.stop()


def test_a_restart_keeps_its_port_when_another_process_took_it(tmp_path: Path) -> None:
    service = redis_service(tmp_path / "redis").start()
    port = service.port
    service.stop()
    with socket.socket() as other:  # the port is taken while the service is stopped
        other.bind(("127.0.0.1", port))
        other.listen()
        with pytest.raises(ProcessStartError, match="already in use"):
            service.start()
    assert service.port == port and not service.running


def test_a_port_the_caller_chose_is_kept_when_it_is_taken(taken: int, tmp_path: Path) -> None:
    service = redis_service(tmp_path / "redis", port=taken)
    with pytest.raises(ProcessStartError, match="(?s)exited.*already in use"):  # the log's end
        service.start()
    assert service.port == taken and not service.running


def test_picked_ports_all_taken_fail_after_a_bounded_number_of_starts(
    taken: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = picks(monkeypatch, "free_port", *[taken] * 10)
    argv_for = lambda port: [sys.executable, "-c", LISTEN, str(port)]  # noqa: E731
    service = Service("listener", argv_for, tmp_path / "listener.log", services.free_port)
    with pytest.raises(ProcessStartError, match="exited"):
        service.start()
    assert len(given) == services.START_ATTEMPTS and not service.running


def test_a_process_that_fails_for_another_reason_is_not_started_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = picks(monkeypatch, "free_port")
    service = Service("false", lambda port: ["false"], tmp_path / "false.log", services.free_port)
    with pytest.raises(ProcessStartError, match="start 1: .*exited with 1"):
        service.start()
    assert len(given) == 1  # its port is free: nothing took it, so no other port is tried


def test_a_stacks_web_whose_port_was_taken_first_starts_on_another(
    taken: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    web = f'{sys.executable} -c "{LISTEN}" $PORT'  # binds $PORT as uvicorn does, exits if taken
    monkeypatch.setattr(tests.stack, "procfile_commands", lambda: {"web": web})
    stores = redis_service(tmp_path / "redis"), mongo_standin_service(tmp_path / "mongo")
    env = {**os.environ, "PORT": str(taken)}
    stack = tests.stack.Stack(tmp_path, *stores, env, taken)  # neither store started: unused
    try:
        stack.wait_for_web(stack.start("web"), 10)
        assert stack.port != taken and stack.env["PORT"] == str(stack.port)
        assert stack.url == f"http://127.0.0.1:{stack.port}"
        [web_proc] = stack.procs["web"]
        wait_for_port(stack.port, 1, web_proc)
    finally:
        stack.kill_all("web")
