"""Receivers that misbehave (docs/interop.md): a webhook receiver or an LRS that trickles its
answer, answers a compressed bomb, hangs with a backlog, or redirects, holds no worker, no
worker's memory, and no other receiver's deliveries, and loses nothing. Real Redis, the
delivery jobs' own code, and real TCP servers written byte by byte (tests/helpers'
WebhookReceiver answers too well for these)."""

from __future__ import annotations

import base64
import gzip
import json
import os
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from shared.clock import MockedClock, SystemClock
from shared.integrations import webhooks
from shared.integrations.outbox import WEBHOOK, XAPI, Limits, Outbox, OutboxEntry
from tests.helpers import make_settings
from workers.context import WorkerContext, build_context
from workers.deliver import send_due_statements, send_due_webhooks

SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # made per run, never stored


class RawServer:
    """A TCP server: each connection's request is read whole, then `answer(conn)` writes."""

    def __init__(self, answer: Callable[[socket.socket], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.answer, self.requests = answer, 0
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.requests += 1
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
                while len(body) < length:
                    body += conn.recv(65536)
                self.answer(conn)
            except OSError:  # the client went away
                pass

    def close(self) -> None:
        self.sock.close()


@contextmanager
def server(answer: Callable[[socket.socket], None]) -> Iterator[RawServer]:
    s = RawServer(answer)
    try:
        yield s
    finally:
        s.close()


def no_content(conn: socket.socket) -> None:
    conn.sendall(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n")


def context(redis_url: str, mongo_url: str, **settings: object) -> WorkerContext:
    return build_context(make_settings(redis_url, mongo_url, **settings), SystemClock())


def queue_webhook(ctx: WorkerContext, url: str, student: str, now: float) -> None:
    event = webhooks.material_completed(student, "phys-101", "v-100", now, 90.0)
    Outbox(ctx.redis, WEBHOOK).push(webhooks.deliveries(event, [url], now, {"v-100": 1}),
                                    Limits(1000), now)  # fmt: skip


def test_a_receiver_that_trickles_its_answer_is_cut_off_at_the_timeout(
    redis_url: str, mongo_url: str
) -> None:
    """Its headers a byte every 0.2 s for 20 s: never silent for a whole read timeout, so only
    a limit on the whole request cuts it off; the other receiver's delivery, in the same job,
    goes."""

    def trickle(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\n")
        for _ in range(100):
            conn.sendall(b"X")
            time.sleep(0.2)
        conn.sendall(b": y\r\ncontent-length: 0\r\n\r\n")

    with server(trickle) as slow, server(no_content) as good:
        ctx = context(redis_url, mongo_url, webhook_urls=f"{slow.url},{good.url}",
                      webhook_secret=SECRET, delivery_timeout_s=1.0)  # fmt: skip
        now = time.time()
        queue_webhook(ctx, slow.url, "s-1", now - 1)
        queue_webhook(ctx, good.url, "s-2", now)
        totals = send_due_webhooks(ctx)
    assert totals == {"sent": 1, "retried": 1, "dead": 0}
    [kept] = ctx.redis.hvals(WEBHOOK.entries)
    assert json.loads(kept)["payload"]["url"] == slow.url  # the trickler's, kept for later


def test_a_receivers_compressed_answer_is_never_inflated(redis_url: str, mongo_url: str) -> None:
    """100 MB of zeros compressed into ~100 KB: the job reads none of a webhook's answer and
    at most 500 bytes, as sent, of an LRS's."""
    bomb = gzip.compress(bytes(100 << 20), compresslevel=9)
    head = b"HTTP/1.1 %d X\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"

    def answer(status: int) -> Callable[[socket.socket], None]:
        return lambda conn: conn.sendall(head % (status, len(bomb)) + bomb)

    with server(answer(200)) as hook, server(answer(400)) as lrs:
        ctx = context(redis_url, mongo_url, webhook_urls=hook.url, webhook_secret=SECRET,
                      xapi_lrs_url=lrs.url + "/")  # fmt: skip
        now = time.time()
        queue_webhook(ctx, hook.url, "s-1", now)
        Outbox(ctx.redis, XAPI).push(statements(1, now), Limits(100), now)
        tracemalloc.start()
        try:
            sent = send_due_webhooks(ctx)
            refused = send_due_statements(ctx)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert sent == {"sent": 1, "retried": 0, "dead": 0}
    assert refused == {"sent": 0, "retried": 0, "refused": 1}
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MB"  # the bomb would be 100


def test_a_hanging_receiver_with_a_backlog_leaves_the_others_deliveries_going(
    redis_url: str, mongo_url: str
) -> None:
    """30 events for a receiver that takes the connection and never answers, queued before one
    for a healthy receiver: one job delivers the healthy one, having asked the hanging one
    once; the next job leaves it alone until its backoff ends. Nothing is lost."""
    with server(lambda conn: time.sleep(30)) as hang, server(no_content) as good:
        ctx = context(redis_url, mongo_url, webhook_urls=f"{hang.url},{good.url}",
                      webhook_secret=SECRET, delivery_timeout_s=0.5,
                      outbox_retry_base_s=60.0)  # fmt: skip
        now = time.time()
        for i in range(30):
            queue_webhook(ctx, hang.url, f"s-{i}", now - 100 + i)
        queue_webhook(ctx, good.url, "s-good", now)
        first = send_due_webhooks(ctx)
        asked = hang.requests
        # Its entries come due again before its own backoff ends: left alone all the same.
        box = Outbox(ctx.redis, WEBHOOK)
        members: list[bytes] = ctx.redis.zrange(WEBHOOK.due, 0, -1)  # type: ignore[assignment]
        ctx.redis.zadd(WEBHOOK.due, dict.fromkeys(members, now))
        second = send_due_webhooks(ctx)
    assert first == {"sent": 1, "retried": 30, "dead": 0}
    assert asked == 1 and hang.requests == 1
    assert second == {"sent": 0, "retried": 30, "dead": 0}
    assert box.redis.hlen(WEBHOOK.entries) == 30  # all kept for later
    assert ctx.redis.hexists(WEBHOOK.failing, hang.url)


class Refusing(BaseHTTPRequestHandler):
    """A receiver that refuses (422) the events of students it does not know, and takes
    (204) the others'; `known` and `arrived` are the server's."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        student = body["data"]["student_id"]
        server = self.server
        assert isinstance(server, RefusingServer)
        taken = student in server.known
        if taken:
            server.arrived.append(student)
        self.send_response(204 if taken else 422)
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


class RefusingServer(ThreadingHTTPServer):
    def __init__(self, known: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), Refusing)
        self.known, self.arrived = known, list[str]()


def test_one_students_refused_events_hold_up_no_other_students_events(
    redis_url: str, mongo_url: str
) -> None:
    """A receiver answers 422 to the 20 events of a student it does not know (yet), queued
    first, and 204 to another student's event queued after them: that one arrives in the
    same job. (Before, every refusal was taken as the receiver failing, every event to it was
    left alone, and that one waited until it was set aside unsent, a day later.) The refused
    events are retried on their own backoff, and arrive once the receiver knows the student."""
    srv = RefusingServer({"s-honest"})
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/hook"
    try:
        clock = MockedClock(1_800_000_000.0)
        settings = make_settings(redis_url, mongo_url, webhook_urls=url, webhook_secret=SECRET,
                                 outbox_retry_base_s=10.0, outbox_retry_max_s=600.0)  # fmt: skip
        ctx = build_context(settings, clock)
        now = clock.time()
        box = Outbox(ctx.redis, WEBHOOK)
        for i in range(20):
            event = webhooks.material_completed("s-unknown", "phys-101", f"m-{i}", now, 90.0)
            box.push(webhooks.deliveries(event, [url], now - 1, {f"m-{i}": 1}), Limits(1000),
                     now - 1)  # fmt: skip
        queue_webhook(ctx, url, "s-honest", now)
        assert send_due_webhooks(ctx) == {"sent": 1, "retried": 20, "dead": 0}
        assert srv.arrived == ["s-honest"]
        assert not ctx.redis.hexists(WEBHOOK.failing, url)  # up: nobody else's event waits
        srv.known.add("s-unknown")
        clock.advance(10.0)  # the refused events' first backoff (OUTBOX_RETRY_BASE_S)
        assert send_due_webhooks(ctx) == {"sent": 20, "retried": 0, "dead": 0}
        assert sorted(srv.arrived) == ["s-honest"] + ["s-unknown"] * 20
    finally:
        srv.shutdown()


def test_a_receiver_that_is_gone_is_left_alone_not_asked_per_event(
    redis_url: str, mongo_url: str
) -> None:
    """410 Gone is the receiver's answer about itself, as 404 is, not a refusal of one event:
    asked once, then left alone for its backoff, its events kept."""

    def gone(conn: socket.socket) -> None:
        conn.sendall(b"HTTP/1.1 410 Gone\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    with server(gone) as srv:
        ctx = context(redis_url, mongo_url, webhook_urls=srv.url, webhook_secret=SECRET,
                      outbox_retry_base_s=60.0)  # fmt: skip
        now = time.time()
        for i in range(5):
            queue_webhook(ctx, srv.url, f"s-{i}", now - 10 + i)
        assert send_due_webhooks(ctx) == {"sent": 0, "retried": 5, "dead": 0}
    assert srv.requests == 1
    assert ctx.redis.hexists(WEBHOOK.failing, srv.url)
    assert ctx.redis.hlen(WEBHOOK.entries) == 5


def statements(n: int, now: float) -> list[OutboxEntry]:
    ids = [f"00000000-0000-5000-8000-{i:012d}" for i in range(n)]
    return [OutboxEntry(i, f"s-{k}", {"id": i, "actor": {}, "verb": {"id": "x"}}, now, "v-100",
                        basis=(("v-100", 1),)) for k, i in enumerate(ids)]  # fmt: skip


def test_an_lrs_that_redirects_keeps_its_statements_queued(redis_url: str, mongo_url: str) -> None:
    """A redirect (the LRS moved, or a proxy's login page) is not followed and refuses
    nothing: the statements wait for XAPI_LRS_URL to be put right."""
    moved = b"HTTP/1.1 301 Moved\r\nlocation: http://169.254.169.254/\r\ncontent-length: 0\r\n\r\n"
    with server(lambda conn: conn.sendall(moved)) as lrs:
        ctx = context(redis_url, mongo_url, xapi_lrs_url=lrs.url + "/")
        now = time.time()
        Outbox(ctx.redis, XAPI).push(statements(8, now), Limits(100), now)
        totals = send_due_statements(ctx)
    assert totals == {"sent": 0, "retried": 8, "refused": 0}
    assert lrs.requests == 1  # the batch once, not split
    assert ctx.redis.hlen(XAPI.dead) == 0 and ctx.redis.hlen(XAPI.entries) == 8
