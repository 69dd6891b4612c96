"""Delivery jobs (scheduled by `rq cron`, workers/cron.py): xAPI statements to the LRS in
batches, completion webhooks to each receiver. Both lease due entries from their Redis outbox
(shared/integrations/outbox.py), so concurrent jobs never send the same entry at once, and a
job that dies leaves its entries to the next one after the lease.

- 2xx: sent (the id is recorded for the student, for erasure requests).
- 5xx, a timeout, a connection error, a redirect (never followed), 401/403/404/408/429: the
  receiver is not ready; retried with exponential backoff (OUTBOX_RETRY_BASE_S doubled per
  attempt, up to OUTBOX_RETRY_MAX_S). xAPI statements are retried for as long as they are in
  the outbox; a webhook older than WEBHOOK_MAX_AGE_S is set aside in the dead-letter hash
  instead.
- Any other 4xx from the LRS: the statements endpoint refuses a whole batch for one bad
  statement, so the batch is split in halves until the refused statements are alone; those are
  set aside in the dead-letter hash and counted, the others are sent.
- Any other 4xx from a webhook receiver (400, 409, 413, 422, ...; 410 Gone is the receiver's,
  like 404): the receiver is up and refuses that one event (a student it does not know yet,
  say). The event is retried on its own backoff until WEBHOOK_MAX_AGE_S; the receiver is not
  left alone, so one student's refused events never hold up the others'. A receiver that
  refuses every event so gets one request per queued event per backoff (at most
  OUTBOX_RETRY_MAX_S apart), as an LRS's statements would.

A receiver cannot hold a worker or its memory (shared/integrations/bounded_http.py): each
request has DELIVERY_TIMEOUT_S in all (headers trickled a byte at a time included), at most
ANSWER_BYTES of an answer are read, and a compressed answer is not read at all. A webhook
receiver that fails is left alone until its backoff ends, by every job (`failing`, in Redis):
its backlog is pushed back without requests, so the other receivers' deliveries go on.

Every time here (due times, leases, a webhook's age and signature, a job's budget) is read
from the context's clock, so that tests move a `MockedClock` past a backoff instead of sleeping.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import redis

from shared.integrations import webhooks
from shared.integrations.bounded_http import fetch
from shared.integrations.outbox import (
    WEBHOOK,
    XAPI,
    Limits,
    Outbox,
    OutboxEntry,
    Settled,
    backoff_s,
)
from shared.integrations.sessions import drop_in
from shared.integrations.xapi import Video
from shared.settings import Settings
from shared.storage.keys import XAPI_SESSIONS, ProgressKey
from workers.context import WorkerContext, get_context
from workers.interop import builder, statement_entry

log = logging.getLogger(__name__)

# Answers that say "not now" rather than "never": retried like a 5xx.
RETRY_STATUSES = {401, 403, 404, 407, 408, 425, 429}
# A webhook receiver's answers about itself, not the event: it is left alone for its backoff.
# Any other 4xx refuses that one event (retried on its own backoff).
RECEIVER_STATUSES = RETRY_STATUSES | {410}
SWEEP_LIMIT = 500  # silent sessions ended, or webhook entries handled, per job at most
# Webhooks go one request each: ten timeouts in a row still end well inside the lease.
WEBHOOK_BATCH = 10
ANSWER_BYTES = 500  # of an LRS's answer, kept for the log; a webhook's answer is not read


def lease_s(settings: Settings) -> float:
    """How long a job's claimed entries are its own: twenty requests' time. A statement batch
    split to find the refused ones stops splitting at half of it (the rest retried)."""
    return max(60.0, 20 * settings.delivery_timeout_s)


async def post(
    client: httpx.AsyncClient, url: str, timeout_s: float, keep: int = 0, **request: Any
) -> tuple[int | None, str]:
    """POST within `timeout_s` in all; (status, at most `keep` bytes of the answer) or (None,
    why) for a transport error, no whole answer in time, or a compressed one."""
    try:
        answer = await fetch(client, "POST", url, timeout_s=timeout_s, max_bytes=keep,
                             truncate=True, **request)  # fmt: skip
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return answer.status_code, answer.content.decode("utf-8", "replace")


def _retry(entries: list[OutboxEntry], now: float, s: Settings) -> list[tuple[OutboxEntry, float]]:
    return [
        (e, now + backoff_s(e.attempts + 1, s.outbox_retry_base_s, s.outbox_retry_max_s))
        for e in entries
    ]


# ---- xAPI ------------------------------------------------------------------------------------


def deliver_statements() -> dict[str, int]:
    """RQ job: `send_due_statements` with this process's connections."""
    ctx = get_context()
    return send_due_statements(ctx, job_budget_s(ctx.settings))


def job_budget_s(settings: Settings) -> float:
    """How long one delivery job drains: half a tick, so that the two delivery jobs of a tick
    never keep the queue's flush jobs waiting; the next tick's job goes on."""
    return max(1.0, settings.outbox_tick_s / 2)


def send_due_statements(ctx: WorkerContext, budget_s: float | None = None) -> dict[str, int]:
    """End silent sessions, then send due statements until none is due, the LRS fails, or the
    time budget is spent. Returns the counts."""
    s = ctx.settings
    if not s.xapi_lrs_url:
        return {}
    end_silent_sessions(ctx, ctx.clock.time())
    return asyncio.run(_send_due_statements(ctx, budget_s))


async def _send_due_statements(ctx: WorkerContext, budget_s: float | None) -> dict[str, int]:
    s = ctx.settings
    assert s.xapi_lrs_url is not None
    outbox = Outbox(ctx.redis, XAPI)
    totals = {"sent": 0, "retried": 0, "refused": 0}
    auth = None
    if s.xapi_lrs_username is not None:
        password = s.xapi_lrs_password.get_secret_value() if s.xapi_lrs_password else ""
        auth = httpx.BasicAuth(s.xapi_lrs_username, password)
    clock, started = ctx.clock, ctx.clock.monotonic()
    async with httpx.AsyncClient(timeout=s.delivery_timeout_s, auth=auth) as client:
        lrs = _Lrs(client, s.xapi_lrs_url + "statements", s, ctx)
        while budget_s is None or clock.monotonic() - started < budget_s:
            now = clock.time()
            batch = outbox.claim(now, lease_s(s), s.xapi_batch_size)
            if not batch:
                break
            lrs.stop_at = clock.monotonic() + lease_s(s) / 2
            settled = await lrs.send(batch, now)
            sent, retried, dead = outbox.settle(settled, clock.time(), s.sent_ids_per_student)
            totals["sent"] += sent
            totals["retried"] += retried
            totals["refused"] += dead
            if settled.retry:  # the LRS is not answering: wait for the backoff
                break
    return totals


class _Lrs:
    """One job's statements endpoint."""

    def __init__(self, client: httpx.AsyncClient, url: str, s: Settings, ctx: WorkerContext):
        self.client, self.url, self.s, self.clock = client, url, s, ctx.clock
        self.stop_at = float("inf")  # (monotonic) no more splitting past it: retried

    async def send(self, entries: list[OutboxEntry], now: float) -> Settled:
        """POST the statements as one batch; on a refusal, split it to find the refused ones."""
        if self.clock.monotonic() >= self.stop_at:
            return Settled([], _retry(entries, now, self.s), [])
        status, text = await post(
            self.client, self.url, self.s.delivery_timeout_s, ANSWER_BYTES,
            json=[e.payload for e in entries], headers={"X-Experience-API-Version": "1.0.3"},
        )  # fmt: skip
        if status is not None and 200 <= status < 300:
            return Settled(entries, [], [])
        if status is not None and 300 <= status < 400:
            log.error("the LRS redirects (HTTP %s): is XAPI_LRS_URL its address? %d statements "
                      "retried later", status, len(entries))  # fmt: skip
            return Settled([], _retry(entries, now, self.s), [])
        if status is None or status >= 500 or status in RETRY_STATUSES:
            log.warning("LRS answered %s (%s); %d statements retried later", status, text,
                        len(entries))  # fmt: skip
            return Settled([], _retry(entries, now, self.s), [])
        if len(entries) == 1:
            log.error("LRS refused statement %s: HTTP %s %s", entries[0].id, status, text)
            return Settled([], [], [(entries[0], f"HTTP {status}: {text}")])
        half = len(entries) // 2
        left = await self.send(entries[:half], now)
        right = await self.send(entries[half:], now)
        return Settled(left.sent + right.sent, left.retry + right.retry, left.dead + right.dead)


def end_silent_sessions(ctx: WorkerContext, now: float) -> int:
    """Queue `terminated` for sessions silent for XAPI_SESSION_TIMEOUT_S before `now`, with the
    state as it is (hot state, else MongoDB's), due at once. Returns how many were ended."""
    s = ctx.settings
    silent: list[tuple[bytes, float]] = ctx.redis.zrangebyscore(  # type: ignore[assignment]
        XAPI_SESSIONS,
        "-inf",
        now - s.xapi_session_timeout_s,
        start=0,
        num=SWEEP_LIMIT,
        withscores=True,
    )
    if not silent:
        return 0
    sessions: list[tuple[list[str], float]] = [(json.loads(m), t) for m, t in silent]
    keys = [ProgressKey(member[1], member[0], ctx.key_schema) for member, _ in sessions]
    hot = ctx.hot.read(keys)
    cold = [
        (k.student_id, k.material_id)
        for k, e in zip(keys, hot, strict=True)
        if e is None or e.state is None
    ]
    stored = ctx.mongo.find_states(cold) if cold else {}
    catalog, b = ctx.catalog(), builder(s)
    entries = []
    for (member, last), key, entry in zip(sessions, keys, hot, strict=True):
        mid, sid, session_id = member[0], member[1], member[2]
        state, version = None, 0
        if entry is not None and entry.state is not None and entry.version is not None:
            state, version = entry.state, entry.version
        elif (found := stored.get((sid, mid))) is not None:
            state, version = found.state, found.version
        ref = catalog.material(mid)
        if state is None or ref is None or ref.material.duration is None:
            continue  # erased or removed from the catalog: nothing to report
        video = Video(key.student_id, mid, ref.material.title, ref.material.duration)
        stmt = b.terminated(video, session_id, state, last)
        entries.append(statement_entry(sid, mid, stmt, now, version))
    pipe = ctx.redis.pipeline(transaction=False)
    Outbox(ctx.redis, XAPI).push_in(pipe, entries, Limits.of(s), ctx.clock.time())
    drop_in(pipe, [m for m, _ in silent])
    pipe.execute()
    return len(entries)


# ---- webhooks --------------------------------------------------------------------------------


def deliver_webhooks() -> dict[str, int]:
    """RQ job: `send_due_webhooks` with this process's connections."""
    ctx = get_context()
    return send_due_webhooks(ctx, job_budget_s(ctx.settings))


def send_due_webhooks(ctx: WorkerContext, budget_s: float | None = None) -> dict[str, int]:
    """Send due webhook deliveries, each signed at its attempt, until none is due or the time
    budget is spent. A receiver that fails is not tried again in the same run."""
    s = ctx.settings
    if not s.webhook_receivers or s.webhook_secret is None:
        return {}
    return asyncio.run(_send_due_webhooks(ctx, s.webhook_secret.get_secret_value(), budget_s))


async def _send_due_webhooks(
    ctx: WorkerContext, secret: str, budget_s: float | None
) -> dict[str, int]:
    s = ctx.settings
    outbox = Outbox(ctx.redis, WEBHOOK)
    totals = {"sent": 0, "retried": 0, "dead": 0}
    clock, started = ctx.clock, ctx.clock.monotonic()
    receivers = _Receivers(ctx.redis, s)
    handled = 0
    async with httpx.AsyncClient(timeout=s.delivery_timeout_s) as client:
        while budget_s is None or clock.monotonic() - started < budget_s:
            if handled >= SWEEP_LIMIT:
                break
            batch = outbox.claim(clock.time(), lease_s(s), WEBHOOK_BATCH)
            if not batch:
                break
            handled += len(batch)
            settled = Settled([], [], [])
            for entry in batch:  # each signed, and judged for its age, at its own attempt
                await _attempt_webhook(client, secret, entry, receivers, settled, s, clock.time())
            sent, retried, dead = outbox.settle(settled, clock.time(), s.sent_ids_per_student)
            totals["sent"] += sent
            totals["retried"] += retried
            totals["dead"] += dead
    return totals


class _Receivers:
    """Which webhook receivers failed and until when they are left alone, shared by every job
    through Redis: a receiver that is down or hangs costs one request per backoff, not one per
    job, and its backlog waits without requests while the other receivers' deliveries go."""

    def __init__(self, r: redis.Redis, s: Settings) -> None:
        self.redis, self.s = r, s
        self.until: dict[str, float] = {}
        self.failures: dict[str, int] = {}
        for url, raw in r.hgetall(WEBHOOK.failing).items():
            doc = json.loads(raw)
            key = url.decode() if isinstance(url, bytes) else str(url)
            self.until[key], self.failures[key] = float(doc["until"]), int(doc["failures"])

    def left_alone(self, url: str, now: float) -> float | None:
        """Until when `url` is left alone (None: try it)."""
        until = self.until.get(url)
        return until if until is not None and until > now else None

    def failed(self, url: str, now: float) -> None:
        failures = self.failures.get(url, 0) + 1
        until = now + backoff_s(failures, self.s.outbox_retry_base_s, self.s.outbox_retry_max_s)
        self.until[url], self.failures[url] = until, failures
        self.redis.hset(WEBHOOK.failing, url, json.dumps({"until": until, "failures": failures}))

    def answered(self, url: str) -> None:
        if self.failures.pop(url, None) is not None:
            self.until.pop(url, None)
            self.redis.hdel(WEBHOOK.failing, url)


async def _attempt_webhook(
    client: httpx.AsyncClient,
    secret: str,
    entry: OutboxEntry,
    receivers: _Receivers,
    out: Settled,
    s: Settings,
    now: float,
) -> None:
    url, event = entry.payload["url"], entry.payload["event"]
    outcome = "the receiver failed and is left alone until its backoff ends"
    alone = receivers.left_alone(url, now)
    if alone is None:
        body, headers = webhooks.signed_request(secret, event, now)
        status, why = await post(client, url, s.delivery_timeout_s, content=body, headers=headers)
        if status is not None and 200 <= status < 300:
            receivers.answered(url)
            out.sent.append(entry)
            return
        outcome = f"HTTP {status}" if status is not None else why
        refused = status is not None and 400 <= status < 500 and status not in RECEIVER_STATUSES
        if not refused:  # a refusal of this event: up for the others, its backoff (if any) kept
            receivers.failed(url, now)
            alone = receivers.left_alone(url, now)
    if now - entry.created_at >= s.webhook_max_age_s:
        log.error(
            "webhook %s to %s set aside after %d attempts: %s",
            event["id"],
            url,
            entry.attempts + 1,
            outcome,
        )
        out.dead.append((entry, f"gave up after {s.webhook_max_age_s:.0f} s: {outcome}"))
    else:
        [(_, due)] = _retry([entry], now, s)
        out.retry.append((entry, max(due, alone or 0.0)))
