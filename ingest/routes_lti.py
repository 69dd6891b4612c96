"""The tool's LTI endpoints at the fixed paths a school enters into its LMS (API.md, "LTI 1.3
Advantage"): `GET /lti/jwks`, `GET|POST /lti/login`, `POST /lti/launch`; and the pages'
`POST /lti/session` (a launch's session renewed) and `GET /lti/pages.js`.

Login and launch answer HTML pages (they are browser navigations from the LMS, not API calls):
they are left out of the OpenAPI schema. A refused launch answers `401` with a page saying
why, and stores nothing. The pages that act in the browser (platform storage, opening the
frontend) are shared/lti/pages.py's.
"""

from __future__ import annotations

import html
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from urllib.parse import parse_qsl, quote

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from ingest.context import AppContext
from ingest.deps import AnyUser, Ctx
from ingest.models import Jwks, SessionToken
from ingest.web_edge import content_security_policy
from shared.domain.catalog import Catalog
from shared.lti import classes, dynamic_registration, pages, roster, session, storage
from shared.lti.deep_linking import DeepLinking, DeepLinkRefused
from shared.lti.dynamic_registration import DynamicRegistration, RegistrationRefused
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
from shared.lti.page import Page as StepPage
from shared.lti.registry import AmbiguousIssuer, Platform

router = APIRouter(prefix="/lti", tags=["lti"])

NO_STORE = {"Cache-Control": "no-store"}
PAGES_JS = Path(pages.__file__).with_name("lti_pages.js")


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
    Secure; HttpOnly`, for the platform's cross-site form post back). With
    `lti_storage_target` (lti-cs-oidc v0p1), a page that keeps the state and nonce in the
    platform's storage instead, then goes there. Either way the tool remembers, per state,
    which way the login went (shared/lti/storage.py)."""
    params = await _params(request)
    missing = [p for p in ("iss", "login_hint", "target_link_uri") if not params.get(p)]
    if missing:
        return refused(f"the login lacks {', '.join(missing)}", 400)
    try:
        record = storage.login_record(params)
    except ValueError as exc:
        return refused(str(exc), 400)
    try:
        platform: Platform | None = await run_in_threadpool(
            ctx.lti_platforms.find_for_login, params["iss"], params.get("client_id")
        )
    except AmbiguousIssuer as exc:
        return refused(str(exc))
    if platform is None:
        return refused("no platform is registered with this issuer (and client_id)")
    ctx.lti_frame_origins.add(platform.frame_origins)
    ttl, base = ctx.settings.lti_login_ttl_s, _base(ctx, request)
    started = await start_login(ctx.redis_async, platform, params, f"{base}/lti/launch", ttl)
    await storage.remember(ctx.redis_async, started.state, record, ttl)
    if record.storage_target is not None:
        text = pages.storage_login_page(
            record.storage_target,
            storage.origin_of(platform.auth_login_url),
            started.state,
            started.nonce,
            started.redirect_url,
            record.relogin_url(base),
        )
        return HTMLResponse(text, headers=NO_STORE)
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
    unless every check holds (shared/lti/launch.py, the state's by the login's way:
    shared/lti/storage.py); a resource link then opens the player."""
    form = await _form(request)
    id_token, state = form.get("id_token"), form.get("state")
    if not id_token or not state:
        return refused("the launch lacks its id_token or state")

    async def find(iss: str, client_id: str) -> Platform | None:
        return await run_in_threadpool(ctx.lti_platforms.find, iss, client_id)

    try:
        checked = await storage.check_launch(
            ctx.lti_launches,
            ctx.redis_async,
            form,
            (dict(request.headers), request.cookies),
            find,
            _base(ctx, request),
        )
    except LaunchRefused as exc:
        return refused(str(exc))
    if isinstance(checked, storage.Interim):
        return HTMLResponse(checked.html, checked.status, headers=NO_STORE)
    if checked.message_type == DEEP_LINKING:
        action = f"{_base(ctx, request)}/lti/deep-link"
        answer = await _deep_linking(ctx, lambda dl, catalog: dl.picker(checked, catalog, action))
        context = classes.context_of(
            checked.platform.platform_id, checked.deployment_id, checked.claims
        )
        if context and answer.status_code == 200:  # a refused picker (a learner) stores nothing
            await run_in_threadpool(ctx.lti_classes.record_context, context, None, ctx.clock.time())
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


@router.post("/deep-link", include_in_schema=False)
async def deep_link(request: Request, ctx: Ctx) -> Response:
    """The picker's form post (Deep Linking 2.0): the page that posts the signed response to
    the platform's `deep_link_return_url` (shared/lti/deep_linking.py)."""
    form = parse_qsl((await request.body()).decode("utf-8", "replace"))  # repeated ids kept
    launch_url = f"{_base(ctx, request)}/lti/launch"
    return await _deep_linking(ctx, lambda dl, catalog: dl.respond(form, catalog, launch_url))


async def _deep_linking(
    ctx: AppContext, step: Callable[[DeepLinking, Catalog], Awaitable[StepPage]]
) -> HTMLResponse:
    """A deep-linking step's page, on the current catalog; a refusal's page says why."""
    await ctx.catalog.refresh()
    dl = DeepLinking(ctx.redis_async, ctx.lti_keys, ctx.settings.lti_deep_link_ttl_s)
    try:
        return _page_of(ctx, await step(dl, ctx.catalog.current))
    except DeepLinkRefused as exc:
        return page("The videos could not be added", f"<p>{html.escape(str(exc))}</p>", exc.status)


def _page_of(ctx: AppContext, answer: StepPage) -> HTMLResponse:
    """A step's page; one that runs an inline script gets the pages' policy allowing it."""
    response = page(answer.title, answer.body, answer.status)
    if answer.script_hash:  # framed where the LMS frames the tool, as every other page
        extra = {"script-src": [answer.script_hash]}
        registered = ctx.lti_frame_origins.current()
        policy = content_security_policy(ctx.settings, extra, registered=registered)
        response.headers["Content-Security-Policy"] = policy
    return response


@router.get("/register", include_in_schema=False)
async def register(
    request: Request,
    ctx: Ctx,
    invite: str = "",
    openid_configuration: str = "",
    registration_token: str | None = None,
) -> Response:
    """LTI Dynamic Registration 1.0, steps 1-2: the page to confirm the registration
    (shared/lti/dynamic_registration.py)."""
    action = f"{_base(ctx, request)}/lti/register"
    return await _registering(
        ctx, lambda dr: dr.discover(invite, openid_configuration, registration_token, action)
    )


@router.post("/register", include_in_schema=False)
async def register_confirmed(request: Request, ctx: Ctx) -> Response:
    """LTI Dynamic Registration 1.0, steps 3-4: registered, and the page closing the LMS's."""
    ticket, base, now = (
        (await _form(request)).get("ticket", ""),
        _base(ctx, request),
        ctx.clock.time(),
    )
    return await _registering(
        ctx, lambda dr: dynamic_registration.complete(dr, ticket, base, ctx.lti_platforms, now)
    )


async def _registering(
    ctx: AppContext, step: Callable[[DynamicRegistration], Awaitable[StepPage]]
) -> HTMLResponse:
    async with httpx.AsyncClient() as http:
        dr = DynamicRegistration(ctx.redis_async, http, ctx.settings.lti_login_ttl_s)
        try:
            return _page_of(ctx, await step(dr))
        except RegistrationRefused as exc:
            body = f"<p>{html.escape(str(exc))}</p>"
            return page("The registration did not go through", body, exc.status)


async def _resource_link(ctx: AppContext, checked: Launch) -> HTMLResponse:
    """A learner is enrolled in the material's course (a member of the context's class) and
    gets the player; an instructor their class, its roster synced in the background. Either
    way the page hands the frontend a session token the tool signed."""
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
    sub = str(checked.claims["sub"])
    user_id = user_id_of(checked.platform.platform_id, sub)
    context = classes.context_of(
        checked.platform.platform_id, checked.deployment_id, checked.claims
    )
    student = classes.member_of(user_id, sub, checked.claims) if role == "student" else None
    await run_in_threadpool(
        ctx.lti_classes.launched, context, ref.course_id, student, ctx.clock.time()
    )
    if role == "student":
        await run_in_threadpool(
            record_launch,
            ctx.lti_grades,
            checked,
            user_id,
            material_id,
            ref.material.title,
            ctx.clock.time(),
        )
    claims = session.session_claims(user_id, role, ctx.clock.time())
    if role == "teacher":
        claims |= classes.session_claims(context, ref.course_id)
        await roster.request_sync(ctx.rq_redis, ctx.settings, context)
    lifetime = min(session.SESSION_S, ctx.settings.lti_signed_lifetime_s)
    token = await run_in_threadpool(ctx.lti_keys.sign, claims, lifetime)
    course, material = quote(ref.course_id, safe=""), quote(material_id, safe="")
    route = f"course/{course}/play/{material}" if role == "student" else f"teacher/{course}"
    text = pages.open_page(f"/#/launch/{token}/{role}/{route}", ref.material.title)
    return HTMLResponse(text, headers=NO_STORE)


@router.get("/pages.js", include_in_schema=False)
async def pages_script() -> FileResponse:
    """The script of the login and launch pages (shared/lti/pages.py)."""
    return FileResponse(PAGES_JS, media_type="text/javascript")


@router.post("/session", response_model=SessionToken)
async def renew_session(request: Request, principal: AnyUser, ctx: Ctx) -> SessionToken:
    """A launch's session token (bearer), signed again with a new `jti` and lifetime: every
    other claim is kept. Only the tool's own session tokens are renewed (`403` for the
    identity provider's); an expired one is `401`, as everywhere, and so is one whose launch
    is older than LTI_SESSION_MAX_AGE_S (the learner launches again)."""
    bearer = request.headers["authorization"].partition(" ")[2]  # as AnyUser read and checked it
    keys = await run_in_threadpool(ctx.lti_keys.public_keys)
    claims = session.tool_session_claims(bearer, keys, ctx.clock.time())
    lifetime = min(session.SESSION_S, ctx.settings.lti_signed_lifetime_s)
    now, max_age = ctx.clock.time(), ctx.settings.lti_session_max_age_s
    token = await run_in_threadpool(
        session.renewed, claims, ctx.lti_keys.sign, lifetime, now, max_age
    )
    return SessionToken(token=token, expires_at=now + lifetime)
