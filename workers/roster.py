"""NRPS roster jobs (shared/lti/roster.py): `sync_roster`, enqueued by an instructor's launch,
and `sync_rosters`, scheduled by `rq cron` (workers/cron.py), which enqueues a sync for every
class not synced within LTI_ROSTER_SYNC_INTERVAL_S.

A sync reads the whole roster before it changes anything and applies it idempotently, so a
retried, repeated or concurrent job is harmless; a failed read leaves the class as it was and
is retried (RQ's `Retry`), its error recorded on the context.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from rq import Queue

from shared.lti.classes import ClassStore
from shared.lti.keys import ToolKeys
from shared.lti.registry import PlatformRegistry
from shared.lti.roster import SYNC_JOB, SYNC_RETRY, SyncOutcome, sync_class
from shared.lti.services import AsyncServiceTokens
from workers.context import WorkerContext, get_context

log = logging.getLogger(__name__)


def _stores(ctx: WorkerContext) -> tuple[ClassStore, PlatformRegistry, ToolKeys]:
    return (
        ClassStore(ctx.mongo, ctx.buffer, ctx.key_schema),
        PlatformRegistry(ctx.mongo.db),
        ToolKeys(ctx.settings, ctx.mongo.db, ctx.clock),
    )


def sync_roster(class_id: str) -> str:
    """RQ job: read the class's whole roster and apply it (nothing on a failed page). Raises
    on failure, so RQ retries it."""
    outcome = run_sync(get_context(), class_id)
    return (
        "no roster" if outcome is None else f"{outcome.active} active, {outcome.deactivated} gone"
    )


def run_sync(ctx: WorkerContext, class_id: str) -> SyncOutcome | None:
    """One sync with the context's connections and clock (the job's body; tests call it)."""
    store, platforms, keys = _stores(ctx)

    async def run() -> SyncOutcome | None:
        timeout = httpx.Timeout(ctx.settings.delivery_timeout_s)
        async with httpx.AsyncClient(timeout=timeout) as http:
            # Cached for every worker, in Redis; asked, when it must be, bounded as the pages.
            tokens = AsyncServiceTokens(ctx.lti_tokens, http, ctx.settings.delivery_timeout_s)
            return await sync_class(
                store,
                platforms,
                tokens,
                http,
                class_id,
                ctx.clock.time(),
                ctx.settings.lti_roster_max_pages,
                ctx.settings.delivery_timeout_s,
            )

    return asyncio.run(run())


def sync_rosters() -> int:
    """Cron job: enqueue a sync of every class whose roster is due. Returns how many."""
    ctx = get_context()
    store, _, _ = _stores(ctx)
    due = store.due_for_sync(ctx.clock.time() - ctx.settings.lti_roster_sync_interval_s)
    queue = Queue(ctx.settings.queue_name, connection=ctx.redis)
    for class_id in due:
        queue.enqueue(
            SYNC_JOB, class_id, job_id=f"lti-roster-{class_id}", retry=SYNC_RETRY, job_timeout=600
        )
    return len(due)
