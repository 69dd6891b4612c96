"""LTI platform registration (admin): API.md, "LTI 1.3 Advantage", Registration."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from starlette.concurrency import run_in_threadpool

from ingest.deps import Admin, Ctx
from ingest.models import LtiContext, LtiContexts, LtiGrades, LtiPlatforms, LtiRegistrationInvite
from shared.domain.catalog import ID_PATTERN
from shared.errors import NotFound
from shared.integrations.outbox import GRADE
from shared.lti.dynamic_registration import invite
from shared.lti.registry import Platform, PlatformBody

router = APIRouter(prefix="/api/admin/lti", tags=["lti"])

PlatformId = Annotated[
    str, Path(pattern=ID_PATTERN, description="the platform id (letters, digits, _ . : -)")
]


@router.put(
    "/platforms/{platform_id}",
    response_model=Platform,
    responses={201: {"model": Platform, "description": "Created"}},
)
async def put_platform(
    platform_id: PlatformId, body: PlatformBody, admin: Admin, ctx: Ctx, response: Response
) -> Platform:
    """Register (201) or replace (200) a platform. 422 `duplicate_platform` when another
    platform has the same issuer and client_id (a launch is matched by that pair)."""
    created = await run_in_threadpool(ctx.lti_platforms.save, platform_id, body, ctx.clock.time())
    response.status_code = 201 if created else 200
    return Platform(platform_id=platform_id, **body.model_dump())


@router.get("/platforms", response_model=LtiPlatforms)
async def list_platforms(admin: Admin, ctx: Ctx) -> LtiPlatforms:
    """Every registered platform, by platform id."""
    return LtiPlatforms(rows=await run_in_threadpool(ctx.lti_platforms.all))


@router.post("/registration-invites", status_code=201, response_model=LtiRegistrationInvite)
async def registration_invite(request: Request, admin: Admin, ctx: Ctx) -> LtiRegistrationInvite:
    """An invitation to register an LMS by LTI Dynamic Registration: the URL its admin pastes
    into the LMS, usable once within LTI_REGISTRATION_INVITE_TTL_S."""
    ttl = ctx.settings.lti_registration_invite_ttl_s
    token = await invite(ctx.redis_async, ttl)
    base = (ctx.settings.public_base_url or str(request.base_url)).rstrip("/")
    expires = datetime.fromtimestamp(ctx.clock.time() + ttl, UTC)
    return LtiRegistrationInvite(url=f"{base}/lti/register?invite={token}", expires_at=expires)


@router.delete("/platforms/{platform_id}", status_code=204)
async def delete_platform(platform_id: PlatformId, admin: Admin, ctx: Ctx) -> Response:
    """Remove a registration (404 when there is none): its launches are refused from then on."""
    if not await run_in_threadpool(ctx.lti_platforms.remove, platform_id):
        raise NotFound(f"unknown platform '{platform_id}'", {"platform_id": platform_id})
    return Response(status_code=204)


@router.get("/contexts", response_model=LtiContexts)
async def list_contexts(admin: Admin, ctx: Ctx) -> LtiContexts:
    """Every LMS context the tool has seen at a launch, by platform, deployment and context id,
    with the course whose teacher routes show its class, and its NRPS roster's last sync and
    error."""
    rows = await run_in_threadpool(ctx.lti_classes.all_contexts)
    return LtiContexts(rows=[LtiContext.model_validate(r) for r in rows])


@router.get("/platforms/{platform_id}/grades", response_model=LtiGrades)
async def platform_grades(platform_id: PlatformId, admin: Admin, ctx: Ctx) -> LtiGrades:
    """The platform's grades back (AGS): learners graded, those it refused (recorded, not
    retried), the latest error, and the grade outbox's depth and dead letters."""
    known = await run_in_threadpool(ctx.lti_platforms.all)
    if platform_id not in {p.platform_id for p in known}:
        raise NotFound(f"unknown platform '{platform_id}'", {"platform_id": platform_id})
    health = await run_in_threadpool(ctx.lti_grades.health, platform_id)
    pipe = ctx.rq_redis.pipeline(transaction=False)
    pipe.hlen(GRADE.entries)
    pipe.hlen(GRADE.dead)
    queued, dead = await run_in_threadpool(pipe.execute)
    return LtiGrades(platform_id=platform_id, queued=queued, dead=dead, **health)
