"""The tool's LTI endpoints at the fixed paths a school enters into its LMS (API.md, "LTI 1.3
Advantage"): `GET /lti/jwks`, `GET|POST /lti/login`, `POST /lti/launch`.

Login and launch answer HTML pages (they are browser navigations from the LMS, not API calls):
they are left out of the OpenAPI schema. A refused launch answers `401` with a page saying
why, and stores nothing.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from urllib.parse import parse_qsl, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ingest.context import AppContext
from ingest.deps import Ctx
from ingest.models import Jwks
from shared.lti.grades import record_launch
from shared.lti.identity import role_of, user_id_of
from shared.lti.launch import (
    CUSTOM,
    DEEP_LINKING,
    ROLES,
    STATE_COOKIE,
    Launch,
    LaunchRefused,
    start_login,
)
from shared.lti.registry import Platform
from shared.ops import admin_ops
from shared.tokens import TOOL_SESSION_ISSUER

router = APIRouter(prefix="/lti", tags=["lti"])

SESSION_S = 900.0  # the launch's session token; the page renews it (a later slice)
NO_STORE = {"Cache-Control": "no-store"}


@router.get("/jwks", response_model=Jwks)
async def jwks(ctx: Ctx) -> Jwks:
    """The tool's public keys (Security Framework 1.0 §6.3), read at each request: a key
    added by `videoprogress lti rotate-key` is here at once, before it signs anything. The
    first request makes the tool's first key when none is configured."""
    return Jwks.model_validate(await run_in_threadpool(ctx.lti_keys.jwks))


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    text = (
        '<!doctype html><html lang="en"><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><h1>{html.escape(title)}</h1>{body}</html>"
    )
    return HTMLResponse(text, status_code=status, headers=NO_STORE)


def refused(reason: str, status: int = 401) -> HTMLResponse:
    """The error page of a refused login or launch: what failed, nothing else."""
    return page("The LMS launch was refused", f"<p>{html.escape(reason)}</p>", status)


async def _form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body (what platforms post; parsed here, which
    spares a multipart parser dependency); empty for any other type."""
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != (
        "application/x-www-form-urlencoded"
    ):
        return {}
    return dict(parse_qsl((await request.body()).decode("utf-8", "replace")))


async def _params(request: Request) -> dict[str, str]:
    """A login's parameters: the query (GET) or the form (POST), Core 1.3 §5.1.1."""
    values = dict(request.query_params)
    if request.method == "POST":
        values.update(await _form(request))
    return values


def _base(ctx: AppContext, request: Request) -> str:
    return (ctx.settings.public_base_url or str(request.base_url)).rstrip("/")


@router.api_route("/login", methods=["GET", "POST"], include_in_schema=False)
async def login(request: Request, ctx: Ctx) -> Response:
    """Third-party initiated login (Core 1.3 §5.1.1): `302` to the platform's
    `auth_login_url` with the authentication request, the state in a cookie (`SameSite=None;
    Secure; HttpOnly`, for the platform's cross-site form post back)."""
    params = await _params(request)
    missing = [p for p in ("iss", "login_hint", "target_link_uri") if not params.get(p)]
    if missing:
        return refused(f"the login lacks {', '.join(missing)}", 400)
    platform: Platform | None = await run_in_threadpool(
        ctx.lti_platforms.find_for_login, params["iss"], params.get("client_id")
    )
    if platform is None:
        return refused("no platform is registered with this issuer (and client_id)")
    ttl = ctx.settings.lti_login_ttl_s
    redirect_uri = f"{_base(ctx, request)}/lti/launch"
    started = await start_login(ctx.redis_async, platform, params, redirect_uri, ttl)
    response = RedirectResponse(started.redirect_url, status_code=302, headers=NO_STORE)
    response.set_cookie(
        STATE_COOKIE + started.state,
        started.state,
        max_age=ttl,
        path="/lti",
        secure=True,
        httponly=True,
        samesite="none",
    )
    return response


@router.post("/launch", include_in_schema=False)
async def launch(request: Request, ctx: Ctx) -> Response:
    """The platform's form post of `id_token` and `state` (Core 1.3 §5.1.2): `401` with a page
    unless every check holds (shared/lti/launch.py); a resource link then opens the player."""
    form = await _form(request)
    id_token, state = form.get("id_token"), form.get("state")
    if not id_token or not state:
        return refused("the launch lacks its id_token or state")

    async def find(iss: str, client_id: str) -> Platform | None:
        return await run_in_threadpool(ctx.lti_platforms.find, iss, client_id)

    try:
        checked = await ctx.lti_launches.validate(id_token, state, request.cookies, find)
    except LaunchRefused as exc:
        return refused(str(exc))
    if checked.message_type == DEEP_LINKING:
        answer = page("Deep linking", "<p>Picking videos from the LMS comes soon.</p>")
    else:
        answer = await _resource_link(ctx, checked)
    if answer.status_code == 200:
        deployment = checked.deployment_id if checked.new_deployment else None
        await run_in_threadpool(
            ctx.lti_platforms.record_launch,
            checked.platform.platform_id,
            deployment,
            ctx.clock.time(),
        )
    answer.delete_cookie(STATE_COOKIE + state, path="/lti", secure=True, samesite="none")
    return answer


async def _resource_link(ctx: AppContext, checked: Launch) -> HTMLResponse:
    """A learner is enrolled in the material's course and gets the player; an instructor the
    course's class. Either way the page hands the frontend a session token the tool signed."""
    custom = checked.claims.get(CUSTOM)
    material_id = custom.get("material_id") if isinstance(custom, Mapping) else None
    if not isinstance(material_id, str) or not material_id:
        return refused("this link names no video (custom parameter material_id)", 404)
    ref = await ctx.catalog.material(material_id)
    if ref is None:
        return refused(f"the video '{material_id}' is not in the catalog", 404)
    roles = checked.claims.get(ROLES)
    role = role_of(roles if isinstance(roles, list) else [])
    if role is None:
        return refused("your role in this course is neither learner nor instructor", 403)
    user_id = user_id_of(checked.platform.platform_id, str(checked.claims["sub"]))
    if role == "student":
        await run_in_threadpool(
            admin_ops.set_enrollment,
            ctx.mongo,
            ctx.redis_sync,
            ctx.key_schema,
            user_id,
            ref.course_id,
            True,
        )
        await run_in_threadpool(
            record_launch,
            ctx.lti_grades,
            checked,
            user_id,
            material_id,
            ref.material.title,
            ctx.clock.time(),
        )
    claims = {"iss": TOOL_SESSION_ISSUER, "aud": TOOL_SESSION_ISSUER, "sub": user_id, "role": role}
    lifetime = min(SESSION_S, ctx.settings.lti_signed_lifetime_s)
    token = await run_in_threadpool(ctx.lti_keys.sign, claims, lifetime)
    course = quote(ref.course_id, safe="")
    route = f"course/{course}" if role == "student" else f"teacher/{course}"
    href = html.escape(f"/#/launch/{token}/{role}/{route}")
    body = f'<p><a id="open" href="{href}">Open {html.escape(ref.material.title)}</a></p>'
    return page("Opening the video", body)
