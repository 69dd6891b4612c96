"""The test stacks' own start-up (shared/devtools/services.py): a free port is picked before the
process binds it, so another process may take it first. `wait_for_port` with a process waits
for that process (or one it started) to be the one listening, not for anything listening: the
browser tests once ran against another xdist worker's web process that way, theirs having
failed to bind ("address already in use")."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from shared.devtools.services import ProcessStartError, free_port, wait_for_port

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
