"""Delivery jobs (scheduled by `rq cron`, workers/cron.py): xAPI statements to the LRS in
batches, completion webhooks to each receiver. Both lease due entries from their Redis outbox
(shared/integrations/outbox.py), so concurrent jobs never send the same entry at once, and a
job that dies leaves its entries to the next one after the lease.

- 2xx: sent (the id is recorded for the student, for erasure requests).
- 5xx, a timeout, a connection error, 401/403/404/408/429: the receiver is not ready; retried
  with exponential backoff (OUTBOX_RETRY_BASE_S doubled per attempt, up to OUTBOX_RETRY_MAX_S).
  xAPI statements are retried for as long as they are in the outbox; a webhook older than
  WEBHOOK_MAX_AGE_S is set aside in the dead-letter hash instead.
- Any other 4xx from the LRS: the statements endpoint refuses a whole batch for one bad
  statement, so the batch is split in halves until the refused statements are alone; those are
  set aside in the dead-letter hash and counted, the others are sent.

Every time here (due times, leases, a webhook's age and signature, a job's budget) is read
from the context's clock, so that tests move a `MockedClock` past a backoff instead of sleeping.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from shared.integrations import webhooks
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
SWEEP_LIMIT = 500
# Webhooks go one request each: ten timeouts in a row still end well inside the lease.
WEBHOOK_BATCH = 10


def lease_s(settings: Settings) -> float:
    """Longer than the worst attempt (a batch split down to single statements)."""
    return max(60.0, 20 * settings.delivery_timeout_s)


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
    outbox = Outbox(ctx.redis, XAPI)
    totals = {"sent": 0, "retried": 0, "refused": 0}
    auth = None
    if s.xapi_lrs_username is not None:
        password = s.xapi_lrs_password.get_secret_value() if s.xapi_lrs_password else ""
        auth = httpx.BasicAuth(s.xapi_lrs_username, password)
    clock, started = ctx.clock, ctx.clock.monotonic()
    with httpx.Client(timeout=s.delivery_timeout_s, auth=auth) as client:
        while budget_s is None or clock.monotonic() - started < budget_s:
            now = clock.time()
            batch = outbox.claim(now, lease_s(s), s.xapi_batch_size)
            if not batch:
                break
            settled = send_statements(client, s.xapi_lrs_url + "statements", batch, now, s)
            sent, retried, dead = outbox.settle(settled, clock.time(), s.sent_ids_per_student)
            totals["sent"] += sent
            totals["retried"] += retried
            totals["refused"] += dead
            if settled.retry:  # the LRS is not answering: wait for the backoff
                break
    return totals


def _post_statements(
    client: httpx.Client, url: str, statements: list[dict[str, Any]]
) -> tuple[int | None, str]:
    try:
        reply = client.post(url, json=statements, headers={"X-Experience-API-Version": "1.0.3"})
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return reply.status_code, reply.text[:500]


def send_statements(
    client: httpx.Client, url: str, entries: list[OutboxEntry], now: float, s: Settings
) -> Settled:
    """POST the statements as one batch; on a refusal, split it to find the refused ones."""
    status, text = _post_statements(client, url, [e.payload for e in entries])
    if status is not None and 200 <= status < 300:
        return Settled(entries, [], [])
    if status is None or status >= 500 or status in RETRY_STATUSES:
        log.warning("LRS answered %s (%s); %d statements retried later", status, text, len(entries))
        return Settled([], _retry(entries, now, s), [])
    if len(entries) == 1:
        log.error("LRS refused statement %s: HTTP %s %s", entries[0].id, status, text)
        return Settled([], [], [(entries[0], f"HTTP {status}: {text}")])
    half = len(entries) // 2
    left = send_statements(client, url, entries[:half], now, s)
    right = send_statements(client, url, entries[half:], now, s)
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
    secret = s.webhook_secret.get_secret_value()
    outbox = Outbox(ctx.redis, WEBHOOK)
    totals = {"sent": 0, "retried": 0, "dead": 0}
    failing: set[str] = set()
    clock, started = ctx.clock, ctx.clock.monotonic()
    with httpx.Client(timeout=s.delivery_timeout_s) as client:
        while budget_s is None or clock.monotonic() - started < budget_s:
            batch = outbox.claim(clock.time(), lease_s(s), WEBHOOK_BATCH)
            if not batch:
                break
            settled = Settled([], [], [])
            for entry in batch:  # each signed, and judged for its age, at its own attempt
                _attempt_webhook(client, secret, entry, failing, settled, s, clock.time())
            sent, retried, dead = outbox.settle(settled, clock.time(), s.sent_ids_per_student)
            totals["sent"] += sent
            totals["retried"] += retried
            totals["dead"] += dead
            if not settled.sent:  # every receiver due now is failing: wait for the backoff
                break
    return totals


def _attempt_webhook(
    client: httpx.Client,
    secret: str,
    entry: OutboxEntry,
    failing: set[str],
    out: Settled,
    s: Settings,
    now: float,
) -> None:
    url, event = entry.payload["url"], entry.payload["event"]
    outcome = "receiver failed earlier in this run"
    if url not in failing:
        body, headers = webhooks.signed_request(secret, event, now)
        try:
            reply = client.post(url, content=body, headers=headers)
            if 200 <= reply.status_code < 300:
                out.sent.append(entry)
                return
            outcome = f"HTTP {reply.status_code}"
        except httpx.HTTPError as exc:
            outcome = f"{type(exc).__name__}: {exc}"
        failing.add(url)
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
        out.retry.extend(_retry([entry], now, s))
