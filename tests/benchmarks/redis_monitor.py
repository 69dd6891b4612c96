"""Where a running stack's Redis commands go: MONITOR for a while, then each command attributed
to the script call it ran in (by SHA: ingest, read, claim, ...) or to the process that sent it.

    .venv/bin/python -m tests.benchmarks.redis_monitor --port PORT [--seconds 60]

Run it beside a benchmark (e.g. `loadgen --watchers 1000 --minutes 3`: its redis-server is the
one started with `--appendonly yes` on a free port; `--port` names it). Prints, per script, its
calls and the commands inside one call on average (by command), and, per client process
(web, worker, clock, loadgen: found with `ss -tnp`) the commands sent outside scripts, RQ's own
(keys `rq:*`) apart. Per heartbeat is per RPUSH inside ingest.lua (one per heartbeat accepted).
MONITOR costs Redis time; the counts, not the rates, are what it is for.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import time
from collections import Counter, defaultdict

import redis

from shared.storage.scripts import SHAS

_LINE = re.compile(r"^[\d.]+ \[\d+ (?P<client>[^\]]+)\] (?P<command>.*)$")
_WORDS = re.compile(r'^"([^"]*)"(?: "((?:[^"\\]|\\.)*)")?')
_BY_SHA = {sha: name for name, sha in SHAS.items()}


def process_of_ports() -> dict[str, str]:
    """Local TCP port -> the owning process's short name (`ss -tnp`)."""
    out = subprocess.run(["ss", "-tnpH"], capture_output=True, text=True, check=False).stdout
    ports: dict[str, str] = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) < 6:
            continue
        local, users = cols[3], cols[5]
        pid = re.search(r"pid=(\d+)", users)
        if pid:
            ports[local.rsplit(":", 1)[1]] = role_of(pid.group(1))
    return ports


def role_of(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return f"pid {pid}"
    text = " ".join(argv)
    for needle, role in (
        ("uvicorn", "web"),
        ("rq worker", "worker"),
        ("rq cron", "clock"),
        ("loadgen", "loadgen"),
        ("adversary", "adversary"),
    ):
        if needle in text:
            return role
    return " ".join(argv[:3])[:40]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()
    r = redis.Redis(port=args.port)
    ports = process_of_ports()
    conn = r.connection_pool.get_connection()
    conn.send_command("MONITOR")  # type: ignore[no-untyped-call]  # redis-py
    conn.read_response()
    scripts: Counter[str] = Counter()
    inside: dict[str, Counter[str]] = defaultdict(Counter)
    outside: dict[str, Counter[str]] = defaultdict(Counter)
    current = ""
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        raw = conn.read_response()
        line = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        m = _LINE.match(line)
        if not m:
            continue
        client, command = m.group("client"), m.group("command")
        parsed = _WORDS.match(command)
        words = [w for w in parsed.groups() if w is not None] if parsed else []
        name = words[0].lower() if words else "?"
        if client == "lua":
            inside[current][name] += 1
            continue
        if name in ("evalsha", "eval"):
            current = _BY_SHA.get(words[1], "eval (other)") if name == "evalsha" else "eval"
            scripts[current] += 1
            continue
        port = client.rsplit(":", 1)[-1]
        if port not in ports:
            ports = process_of_ports()
        role = ports.get(port, "?")
        key = words[1] if len(words) > 1 else ""
        if key.startswith("rq:"):
            role += " (RQ's own)"
        outside[role][name] += 1
    heartbeats = inside["ingest"]["rpush"] or 1
    print(f"MONITOR {args.seconds:g} s; heartbeats (RPUSH in ingest.lua): {heartbeats:,}")
    print(f"{'script':<14}{'calls':>8}{'per hb':>8}{'cmds/call':>10}  inside one call")
    for name, calls in scripts.most_common():
        per = {c: n / calls for c, n in inside[name].most_common()}
        body = ", ".join(f"{c} {v:.2f}" for c, v in per.items())
        total = sum(inside[name].values()) / calls
        print(f"{name:<14}{calls:>8,}{calls / heartbeats:>8.3f}{total:>10.2f}  {body}")
    print(f"{'sender':<22}{'cmds':>8}{'per hb':>8}  outside scripts")
    for role, counts in sorted(outside.items(), key=lambda kv: -sum(kv[1].values())):
        n = sum(counts.values())
        body = ", ".join(f"{c} {v}" for c, v in counts.most_common(14))
        print(f"{role:<22}{n:>8,}{n / heartbeats:>8.3f}  {body}")
    all_inside = sum(sum(c.values()) for c in inside.values())
    all_outside = sum(sum(c.values()) for c in outside.values())
    print(
        f"total: {sum(scripts.values()) + all_inside + all_outside:,} commands = "
        f"{(sum(scripts.values()) + all_inside + all_outside) / heartbeats:.2f} per heartbeat "
        f"(scripts {sum(scripts.values()):,}, inside {all_inside:,}, outside {all_outside:,})"
    )


if __name__ == "__main__":
    main()
