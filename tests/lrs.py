"""Real receivers for the interoperability tests: Ralph's LRS and a webhook receiver.

Ralph lives in a venv of its own, `.venv-ralph/` (made by `tests/run.sh`: `ralph-malph` 5.1.0
with its `cli,lrs,backend-lrs` extras). The tests that need it fail, rather than skip, when it
is missing: run `bash tests/run.sh` once, or the two lines it uses.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from shared.devtools.services import Service, free_port

ROOT = Path(__file__).resolve().parent.parent
RALPH_BIN = ROOT / ".venv-ralph" / "bin"
LRS_USER, LRS_PASSWORD = "vp-lrs", "vp-lrs-password-0123"


def ralph_bin(name: str) -> Path:
    path = RALPH_BIN / name
    if not path.exists():
        raise AssertionError(
            f"{path} is missing: `bash tests/run.sh` installs Ralph into .venv-ralph/ "
            "(python3 -m venv .venv-ralph && .venv-ralph/bin/pip install "
            "'ralph-malph[cli,lrs,backend-lrs]==5.1.0' requests)"
        )
    return path


def ralph_validate(statements: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    """`ralph validate -f xapi --fail-on-unknown` over the statements, one JSON per line."""
    lines = "".join(json.dumps(s) + "\n" for s in statements)
    return subprocess.run(
        [str(ralph_bin("ralph")), "validate", "-f", "xapi", "--fail-on-unknown"],
        input=lines,
        text=True,
        capture_output=True,
        timeout=120,
    )


class RalphLRS:
    """Ralph's LRS, file-system backend, Basic auth (tests/ralph_lrs.py), on `port`, or with 0
    on a free one picked when it first starts (and picked again if another process took it
    first). A test that gives out its address before starting it chooses the port."""

    def __init__(self, root: Path, port: int = 0) -> None:
        self.root = root
        self.service = Service(
            "ralph", self._argv, root / "ralph.log", free_port, port, env=self._env()
        )

    @property
    def port(self) -> int:
        return self.service.port

    @property
    def base_url(self) -> str:
        assert self.port, "no port before the first start: choose one (port=free_port())"
        return f"http://127.0.0.1:{self.port}/xAPI/"

    @property
    def data_file(self) -> Path:
        return self.root / "data" / "fs_lrs.jsonl"

    def _env(self) -> dict[str, str]:
        return {
            **os.environ,
            "RALPH_APP_DIR": str(self.root / "app"),
            "RALPH_RUNSERVER_BACKEND": "fs",
        }

    def _argv(self, port: int) -> list[str]:
        script = ROOT / "tests" / "ralph_lrs.py"
        return [str(ralph_bin("python")), str(script), str(port), str(self.root / "data")]

    def start(self) -> RalphLRS:
        """Start it, or again after `stop()` (on the same port)."""
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        if not (self.root / "app" / "auth.json").exists():
            subprocess.run(
                [
                    str(ralph_bin("ralph")),
                    "auth",
                    "-u",
                    LRS_USER,
                    "-p",
                    LRS_PASSWORD,
                    "-s",
                    "all",
                    "-M",
                    "mailto:lrs@example.org",
                    "-w",
                ],
                env=self._env(),
                check=True,
                capture_output=True,
                timeout=120,
            )
        self.service.start(timeout_s=60)
        return self

    def stop(self) -> None:
        self.service.stop(timeout_s=15)

    def statements(self) -> list[dict[str, Any]]:
        """Every statement the LRS stores, read back through its API (all pages)."""
        found: list[dict[str, Any]] = []
        url: str | None = self.base_url + "statements?limit=500"
        with httpx.Client(
            auth=(LRS_USER, LRS_PASSWORD), timeout=30, headers={"X-Experience-API-Version": "1.0.3"}
        ) as c:
            while url:
                page = c.get(url)
                page.raise_for_status()
                doc = page.json()
                found += doc["statements"]
                more = doc.get("more")
                url = f"http://127.0.0.1:{self.port}{more}" if more else None
        return found

    def stored_lines(self) -> list[dict[str, Any]]:
        """The backend file itself: one line per statement written (a duplicate would show)."""
        if not self.data_file.exists():
            return []
        return [json.loads(line) for line in self.data_file.read_text().splitlines() if line]


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    status: int


class WebhookReceiver:
    """A real HTTP receiver in a thread. `answer(n)` gives the status of the n-th request
    (from 1); every request is recorded with what it was answered."""

    def __init__(self, answer: Callable[[int], int] = lambda n: 204) -> None:
        self.answer = answer
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                with receiver._lock:
                    status = receiver.answer(len(receiver.deliveries) + 1)
                    headers = {k.lower(): v for k, v in self.headers.items()}
                    receiver.deliveries.append(Delivery(headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def __enter__(self) -> WebhookReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
