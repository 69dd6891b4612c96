"""Hostile clients for the load generator (`loadgen.py --adversaries N`), beside honest ones.

N hostile students, enrolled like the honest ones, each play one role in turn of `ROLES`:
- `forger`: one request claiming a whole video (`played: [[0, duration]]`), then a batch of
  heartbeats with `client_ts` a week in the past claiming every video;
- `tabs`: ten tabs (ten session_ids) at once, each claiming its own video at 2x;
- `garbage`: control characters in session ids and path ids, NaN, Infinity, huge numbers,
  bad dates, bodies that are not JSON objects;
- `oversized`: bodies over MAX_BODY_BYTES, batches over 500 items;
- `flood`: a new session_id on every request, batches of many events.

Every reply is counted by status (and error code for a 4xx); a 5xx is a bug. For each student
the wall time from the start of their first accepted request to the end of their last is kept,
so that `credit_report` can check the per-student budget afterwards: their credited
watched_seconds over all videos (MongoDB) <= MAX_PLAYBACK_RATE x that time (+ 1 ms per
accepted heartbeat, the ledger's rounding).
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from tests.benchmarks.http_pool import HttpError, HttpPool

ROLES = ("forger", "tabs", "garbage", "oversized", "flood")
TABS = 10
FLOOD_EVENTS = 50  # heartbeats per flood batch
PACE_S = 0.5  # real seconds between a hostile student's requests (tabs: per tab, 10 s)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


@dataclass
class Ledger:
    """What one hostile student got accepted: wall times and heartbeat count."""

    first: float | None = None
    last: float | None = None
    heartbeats: int = 0

    def took(self, started: float, n: int) -> None:
        if n <= 0:
            return
        self.first = started if self.first is None else min(self.first, started)
        self.last = max(self.last or 0.0, time.time())
        self.heartbeats += n


@dataclass
class Outcome:
    """What the hostile students got: replies by status (and error code), the 5xx, ledgers."""

    replies: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    ledgers: dict[str, Ledger] = field(default_factory=dict)


class Adversary:
    """Hostile students sending at the same time as the honest ones, on their own connections
    (so the generator's own concurrency bound never shields or slows the honest load)."""

    def __init__(
        self,
        http: HttpPool,
        tokens: dict[str, str],
        videos: dict[str, float],
        max_body_bytes: int,
        seed: int,
        roles: tuple[str, ...] = ROLES,
    ) -> None:
        self.http = http
        self.headers = {sid: {"Authorization": f"Bearer {t}"} for sid, t in tokens.items()}
        self.videos = videos
        self.max_body_bytes = max_body_bytes
        self.rng = random.Random(f"{seed}:adversary")
        self.outcome = Outcome(ledgers={sid: Ledger() for sid in tokens})
        self.replies, self.server_errors = self.outcome.replies, self.outcome.server_errors
        self.ledgers = self.outcome.ledgers
        self.tasks: list[asyncio.Task[None]] = []
        self.stopping = False
        self.roles = roles

    # -- running --------------------------------------------------------------------------

    def start(self) -> None:
        for i, sid in enumerate(sorted(self.headers)):
            role = self.roles[i % len(self.roles)]
            self.tasks.append(asyncio.create_task(getattr(self, f"_{role}")(sid)))

    async def stop(self) -> None:
        self.stopping = True
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _pace(self, seconds: float = PACE_S) -> bool:
        """Sleep (jittered); False once stopping."""
        await asyncio.sleep(seconds * self.rng.uniform(0.5, 1.5))
        return not self.stopping

    async def post(self, sid: str, path: str, raw: bytes) -> None:
        """Send one hostile request; count the reply; credit the ledger with what was taken."""
        started = time.time()
        try:
            reply = await self.http.request("POST", path, self.headers[sid], raw)
        except HttpError as exc:
            self.replies[f"no reply ({exc})"[:60]] += 1
            return
        status = reply.status
        if status >= 500 and status != 503:
            self.replies[f"{status}"] += 1
            self.server_errors.append(f"{status} for POST {path[:80]}: {reply.body[:200]!r}")
            return
        if status == 202:
            self.replies["202"] += 1
            self.ledgers[sid].took(started, _accepted(path, reply.body))
            return
        self.replies[f"{status} {_error_code(reply.body)}"] += 1

    # -- roles ----------------------------------------------------------------------------

    def _body(self, mid: str, played: list[list[float]], ts: float, **extra: Any) -> dict[str, Any]:
        d = self.videos[mid]
        return {
            "watch_time": min(d, played[-1][1]) if played else 0.0,
            "total_duration": d,
            "client_ts": _iso(ts),
            "session_id": uuid.uuid4().hex,
            "seq": 0,
            "played": played,
            "playback_rate": 1.0,
            **extra,
        }

    async def _forger(self, sid: str) -> None:
        ids = list(self.videos)
        i = 0
        while await self._pace():
            mid = ids[i % len(ids)]
            i += 1
            whole = self._body(mid, [[0.0, self.videos[mid]]], time.time())
            await self.post(sid, f"/api/progress/video/{mid}/watch-time", _dumps(whole))
            week_ago = time.time() - 7 * 86400
            batch = [
                {"material_id": m, **self._body(m, [[0.0, self.videos[m]]], week_ago + 10 * k)}
                for k, m in enumerate(ids * 3)
            ]
            await self.post(sid, "/api/progress/heartbeats", _dumps({"heartbeats": batch}))

    async def _tabs(self, sid: str) -> None:
        ids = list(self.videos)
        await asyncio.gather(*(self._tab(sid, ids[k % len(ids)]) for k in range(TABS)))

    async def _tab(self, sid: str, mid: str) -> None:
        session, seq, position, d = uuid.uuid4().hex, 0, 0.0, self.videos[mid]
        while await self._pace(10.0) and position < d:
            end = min(d, position + 20.0)  # 2x, like an honest player at the top rate
            body = self._body(mid, [[position, end]], time.time(), session_id=session, seq=seq)
            body["playback_rate"] = 2.0
            await self.post(sid, f"/api/progress/video/{mid}/watch-time", _dumps(body))
            position, seq = end, seq + 1

    async def _garbage(self, sid: str) -> None:
        mid = next(iter(self.videos))
        cases = _garbage_cases(mid, self.videos[mid])
        i = 0
        while await self._pace():
            path, raw = cases[i % len(cases)]
            i += 1
            await self.post(sid, path, raw)

    async def _oversized(self, sid: str) -> None:
        mid = next(iter(self.videos))
        d = self.videos[mid]
        pad = "x" * self.max_body_bytes
        single = _dumps({**self._body(mid, [[0.0, d]], time.time()), "pad": pad})
        many = [
            {"material_id": mid, **self._body(mid, [[0.0, 1.0]], time.time())} for _ in range(501)
        ]
        batch = _dumps({"heartbeats": many})
        path = f"/api/progress/video/{mid}/watch-time"
        while await self._pace():
            await self.post(sid, path, single)
            await self.post(sid, "/api/progress/heartbeats", batch)

    async def _flood(self, sid: str) -> None:
        ids = list(self.videos)
        while await self._pace():
            now = time.time()
            beats = [
                {"material_id": (m := self.rng.choice(ids)), **self._body(m, [[k, k + 1.0]], now)}
                for k in range(FLOOD_EVENTS)
            ]
            await self.post(sid, "/api/progress/heartbeats", _dumps({"heartbeats": beats}))
            mid = self.rng.choice(ids)
            one = self._body(mid, [[0.0, 5.0]], now)
            await self.post(sid, f"/api/progress/video/{mid}/watch-time", _dumps(one))


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc).encode()


def _accepted(path: str, body: bytes) -> int:
    """Heartbeats a 202 took: one, or the batch's accepted items."""
    if not path.endswith("/heartbeats"):
        return 1
    return sum(1 for r in json.loads(body).get("results", []) if r.get("accepted"))


def _error_code(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"]["code"])
    except (ValueError, KeyError, TypeError):
        return "(not the error shape)"


def _garbage_cases(mid: str, d: float) -> list[tuple[str, bytes]]:
    """(path, raw body) pairs that must each get a 4xx."""
    path = f"/api/progress/video/{mid}/watch-time"
    now = _iso(time.time())

    def body(**over: Any) -> dict[str, Any]:
        base = {"watch_time": 1.0, "total_duration": d, "client_ts": now, "session_id": "s1"}
        return {**base, **over}

    def raw(text: str) -> bytes:
        return text.encode()

    nan_body = json.dumps(body()).replace('"watch_time": 1.0', '"watch_time": NaN')
    inf_body = json.dumps(body()).replace(f'"total_duration": {d}', '"total_duration": Infinity')
    return [
        (path, _dumps(body(session_id="a\x00b"))),
        (path, _dumps(body(session_id="line\nbreak"))),
        (path, _dumps(body(session_id="x" * 129))),
        (path, _dumps(body(session_id="$where"))),
        (f"/api/progress/video/{mid}%01/watch-time", _dumps(body())),
        ("/api/progress/video/lv%0A01/watch-time", _dumps(body())),
        (f"/api/progress/video/{'v' * 300}/watch-time", _dumps(body())),
        ("/api/progress/video/%24set/watch-time", _dumps(body())),
        (path, raw(nan_body)),
        (path, raw(inf_body)),
        (path, raw(json.dumps(body()).replace('"watch_time": 1.0', '"watch_time": 1e400'))),
        (path, _dumps(body(watch_time=1e308, total_duration=1e308))),
        (path, _dumps(body(seq=10**40))),
        (path, _dumps(body(seq=-1))),
        (path, _dumps(body(played=[[0.0, 1e308]], watch_time=d))),
        (path, raw(json.dumps(body()).replace('"watch_time": 1.0, ', '"played": [[NaN, 5]], '))),
        (path, _dumps(body(client_ts="not a date"))),
        (path, _dumps(body(client_ts="1970-01-01T00:00:00Z"))),
        (path, _dumps(body(client_ts="99999-01-01T00:00:00Z"))),
        (path, _dumps(body(watch_time=-5.0))),
        (path, _dumps(body(total_duration=0))),
        (path, _dumps(body(playback_rate=1e300, event="\x07"))),
        (path, raw("[1, 2, 3]")),
        (path, raw("{not json")),
        (path, raw('"just a string"')),
        ("/api/progress/heartbeats", _dumps({"heartbeats": [body(material_id="lv\x0001")]})),
        ("/api/progress/heartbeats", _dumps({"heartbeats": "many"})),
    ]


class AdversaryProcess:
    """The hostile students in a process of their own, so that building and parsing their
    bodies never stalls the generator's event loop (which times the honest requests)."""

    def __init__(self, host: str, port: int, *args: Any) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.stopping = ctx.Event()
        self.results, child = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=_child, args=(host, port, args, self.stopping, child))
        self.child = child
        self.hostile = len(args[0])

    def start(self) -> None:
        self.proc.start()
        self.child.close()  # ours closed: recv raises EOFError if the process dies

    async def stop(self) -> Outcome:
        """Stop sending; what they got (raises if the process died without a word)."""
        self.stopping.set()
        outcome: Outcome = await asyncio.to_thread(self.results.recv)
        await asyncio.to_thread(self.proc.join, 30.0)
        return outcome


def _child(host: str, port: int, args: tuple[Any, ...], stopping: Any, results: Any) -> None:
    async def main() -> Outcome:
        http = HttpPool(host, port)
        adversary = Adversary(http, *args)
        adversary.start()
        while not stopping.is_set():
            await asyncio.sleep(0.2)
        await adversary.stop()
        await http.aclose()
        return adversary.outcome

    results.send(asyncio.run(main()))


def credit_report(
    adversary: Outcome, progress_docs: list[dict[str, Any]], max_rate: float
) -> tuple[float, list[str]]:
    """(the worst credited / bound ratio over hostile students, the students over it).

    The bound: max_rate x (last - first accepted request, wall time) + 1 ms per heartbeat."""
    credited: dict[str, float] = {}
    for doc in progress_docs:
        if doc.get("student_id") in adversary.ledgers:
            sid = doc["student_id"]
            credited[sid] = credited.get(sid, 0.0) + float(doc.get("watched_seconds") or 0.0)
    worst, over = 0.0, []
    for sid, ledger in sorted(adversary.ledgers.items()):
        span = (ledger.last - ledger.first) if ledger.first and ledger.last else 0.0
        bound = max_rate * span + 0.001 * ledger.heartbeats
        got = credited.get(sid, 0.0)
        ratio = got / bound if bound > 0 else (0.0 if got == 0 else float("inf"))
        worst = max(worst, ratio)
        if ratio > 1.0:
            over.append(f"{sid}: credited {got:.3f} s > bound {bound:.3f} s (span {span:.1f} s)")
    return worst, over
