"""Roster sync by Names and Role Provisioning Services 2.0 (API.md, "LTI 1.3 Advantage",
Roster (NRPS)): on an instructor's launch (an RQ job, so the launch does not wait) and every
LTI_ROSTER_SYNC_INTERVAL_S after.

A sync reads the context's `context_memberships_url` (NRPS 2.0 §3.6.1, media type
MEMBERSHIPS) with a token for the NRPS scope, following `Link: <...>; rel="next"` (§3.6.2.1)
to the last page, and only then applies it (shared/lti/classes.py `ClassStore.sync`): a page
that fails, or a roster longer than LTI_ROSTER_MAX_PAGES, changes nothing. Every member whose
roles make them a learner (shared/lti/identity.py) and whose `status` is `Active` (the default,
§3.6.1.1) is an active member of the class; everyone else, and whoever left the roster, is not.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
import redis
from rq import Queue, Retry
from starlette.concurrency import run_in_threadpool

from shared.integrations.bounded_http import fetch
from shared.lti.classes import ClassStore, Context, Member, member_of
from shared.lti.identity import role_of, user_id_of
from shared.lti.registry import Platform, PlatformRegistry, service_url
from shared.lti.services import NRPS_SCOPE
from shared.settings import Settings

log = logging.getLogger(__name__)

MEMBERSHIPS = "application/vnd.ims.lti-nrps.v2.membershipcontainer+json"
SYNC_JOB = "workers.roster.sync_roster"  # by name: ingest never imports workers
# A platform's roster is read whole before anything changes: bounded in pages (the setting),
# bytes per page and members (a class of 100,000 is no class; a hostile platform's endless
# invented learners are refused, not enrolled).
MAX_PAGE_BYTES = 8 << 20
MAX_MEMBERS = 100_000
SYNC_RETRY = Retry(max=3, interval=[10, 60, 300])  # a platform that is down for a while


class RosterTokens(Protocol):
    """The service tokens a sync uses (shared/lti/services.py `AsyncServiceTokens`)."""

    async def access_token(self, platform: Platform, scopes: Iterable[str]) -> str: ...

    async def forget(self, platform: Platform, scopes: Iterable[str]) -> None: ...


class RosterUnreadable(Exception):
    """A page of the roster could not be read; nothing was applied. `status`: the page's HTTP
    answer, when it had one."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


async def request_sync(rq: redis.Redis, settings: Settings, context: Context | None) -> None:
    """Enqueue a sync of the context's roster (job id per class; a repeated sync is harmless).
    Nothing when the launch offered no roster."""
    if context is None or context.memberships_url is None:
        return
    queue = Queue(settings.queue_name, connection=rq)
    job_id = f"lti-roster-{context.class_id}"
    await run_in_threadpool(
        queue.enqueue,
        SYNC_JOB,
        context.class_id,
        job_id=job_id,
        retry=SYNC_RETRY,
        job_timeout=600,
        result_ttl=0,
    )


async def read_roster(
    http: httpx.AsyncClient, url: str, token: str, max_pages: int, timeout_s: float = 10.0
) -> list[dict[str, Any]]:
    """Every member of every page, following `rel="next"`. Raises RosterUnreadable for a page
    that is not a 200 membership container, a loop, more than `max_pages` pages or MAX_MEMBERS
    members, or a page not read whole within `timeout_s` or larger than MAX_PAGE_BYTES
    (shared/integrations/bounded_http.py)."""
    members: list[dict[str, Any]] = []
    seen: set[str] = set()
    next_url: str | None = url
    while next_url is not None:
        if next_url in seen or len(seen) >= max_pages:
            raise RosterUnreadable(f"the roster does not end within {max_pages} pages")
        seen.add(next_url)
        headers = {"Authorization": f"Bearer {token}", "Accept": MEMBERSHIPS}
        try:
            answer = await fetch(http, "GET", next_url, timeout_s=timeout_s,
                                 max_bytes=MAX_PAGE_BYTES, headers=headers)  # fmt: skip
            body = answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            raise RosterUnreadable(f"page {len(seen)}: {exc}") from None
        page = body.get("members") if isinstance(body, Mapping) else None
        if not isinstance(page, list):
            status = answer.status_code
            raise RosterUnreadable(f"page {len(seen)}: answered {status}", status)
        members += [m for m in page if isinstance(m, dict)]
        if len(members) > MAX_MEMBERS:
            raise RosterUnreadable(f"the roster has more than {MAX_MEMBERS} members")
        following = answer.links.get("next", {}).get("url")
        next_url = str(answer.url.join(following)) if following else None
        if next_url is not None and service_url(next_url) is None:
            raise RosterUnreadable(f"page {len(seen)}: its next page is no URL the tool calls")
    return members


def learners(platform_id: str, members: list[dict[str, Any]]) -> list[Member]:
    """The roster's active learners as members of the class, with their names."""
    found = []
    for m in members:
        user, roles = m.get("user_id"), m.get("roles")
        if not isinstance(user, str) or not user or not isinstance(roles, list):
            continue
        if m.get("status", "Active") != "Active" or role_of(roles) != "student":
            continue
        found.append(member_of(user_id_of(platform_id, user), user, m))
    return found


@dataclass(frozen=True)
class SyncOutcome:
    active: int
    deactivated: int


async def sync_class(
    store: ClassStore,
    platforms: PlatformRegistry,
    tokens: RosterTokens,
    http: httpx.AsyncClient,
    class_id: str,
    now: float,
    max_pages: int,
    timeout_s: float = 10.0,
) -> SyncOutcome | None:
    """Read the class's whole roster and apply it; None when the class has no roster or its
    platform is gone, or is a context kept before class ids named the deployment (it has
    none: its class mixed every deployment's context of that id, and its roster URL is the
    latest launch's, of any of them). Raises RosterUnreadable (or the token client's error)
    having changed nothing; the outcome (or error) is recorded on the context. A page answered
    `401` drops the cached token, so that RQ's retry asks for a new one."""
    doc = await run_in_threadpool(store.context, class_id)
    if doc is None or not doc.get("memberships_url") or not doc.get("course_id"):
        return None
    if not doc.get("deployment_id"):
        return None
    platform = await run_in_threadpool(platforms.by_id, doc["platform_id"])
    if platform is None:
        return None
    try:
        token = await tokens.access_token(platform, [NRPS_SCOPE])
        members = await read_roster(http, doc["memberships_url"], token, max_pages, timeout_s)
    except Exception as exc:
        if isinstance(exc, RosterUnreadable) and exc.status == 401:
            # The platform no longer takes the cached token (revoked, its key rotated): the
            # retry asks for a new one (docs/lti.md, Tokens: a 401 drops it).
            await tokens.forget(platform, [NRPS_SCOPE])
        await run_in_threadpool(store.mark_synced, class_id, now, str(exc)[:500])
        raise
    context = Context(
        doc["platform_id"], doc["deployment_id"], doc["context_id"], doc.get("title"), None, None
    )
    found = learners(platform.platform_id, members)
    active, gone = await run_in_threadpool(store.sync, context, doc["course_id"], found, now)
    await run_in_threadpool(store.mark_synced, class_id, now, None)
    log.info("roster of %s: %d active learners, %d made inactive", class_id, active, gone)
    return SyncOutcome(active, gone)
