"""LTI Dynamic Registration 1.0, the tool's side (1EdTech,
https://www.imsglobal.org/spec/lti-dr/v1p0): an LMS admin pastes one URL instead of six fields.

- Step 1, registration initiation: the platform opens `GET /lti/register` with
  `openid_configuration` (its OpenID configuration URL) and `registration_token` (optional).
  The URL the LMS admin pastes is an invitation the tool's admin made
  (`POST /api/admin/lti/registration-invites`): it carries `invite`, used once, so no one
  registers a platform without the tool admin's consent.
- Step 2, discovery: the tool fetches the configuration (https; http only on loopback),
  checks it (§3.5.1: the configuration is served from the issuer's host, or from a sibling host
  under the issuer's parent domain: Canvas's issuer `canvas.instructure.com` serves schools at
  `<school>.instructure.com`), and shows a page to confirm. What it fetched waits in Redis under a
  ticket: the confirming form carries nothing else.
- Step 3, client registration (§3.5.2): the tool posts its registration (redirect_uris,
  initiate_login_uri, jwks_uri, scopes, the LTI tool configuration with the deep-linking
  message) to the `registration_endpoint` with the registration token as a bearer token, and
  stores the platform from the answer's `client_id` and `deployment_id`.
- Step 4, registration completed: the last page posts `{subject: 'org.imsglobal.lti.close'}` to the
  window that opened it (the LMS's frame or opener), which closes the registration.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import json
import re
import secrets
from base64 import b64encode
from dataclasses import asdict, dataclass
from hashlib import sha256
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import TypeAdapter, ValidationError

from shared.errors import DuplicatePlatform, Unavailable
from shared.integrations.bounded_http import AnswerRefused, fetch
from shared.lti.page import Page, StepRefused
from shared.lti.registry import Issuer, PlatformBody, PlatformRegistry, PlatformUrl
from shared.storage.clients import AsyncBuffer
from shared.storage.keys import lti_registration, lti_registration_invite

TOOL_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-tool-configuration"
PLATFORM_CONFIGURATION = "https://purl.imsglobal.org/spec/lti-platform-configuration"
SCOPES = (  # what the grades and roster work asks for (AGS 2.0, NRPS 2.0)
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
    "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly",
)
TOOL_NAME = "Video progress"
HTTP_TIMEOUT_S = 10.0
MAX_BODY_BYTES = 256 * 1024
CLOSE_SCRIPT = (
    "(window.opener || window.parent).postMessage({subject: 'org.imsglobal.lti.close'}, '*');"
)
CLOSE_HASH = f"'sha256-{b64encode(sha256(CLOSE_SCRIPT.encode()).digest()).decode()}'"
_URL: TypeAdapter[str] = TypeAdapter(PlatformUrl)
_ISSUER: TypeAdapter[str] = TypeAdapter(Issuer)


class RegistrationRefused(StepRefused):
    """A registration this tool does not go on with."""


@dataclass(frozen=True)
class PlatformConfiguration:
    """What registration needs from the platform's OpenID configuration (step 2)."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    registration_endpoint: str
    product: str  # the platform configuration's product_family_code ("moodle", "canvas"...)


def _url(doc: dict[str, Any], name: str) -> str:
    try:
        return _URL.validate_python(doc.get(name))
    except ValidationError:
        raise RegistrationRefused(f"the configuration's {name} is not an https URL") from None


def _same_site(config_url: str, issuer: str) -> bool:
    """§3.5.1: the configuration comes from the issuer's host, or a host under its parent."""
    config_host, issuer_host = urlsplit(config_url).hostname, urlsplit(issuer).hostname
    if not config_host or not issuer_host:
        return False
    if config_host == issuer_host:
        return True
    try:
        ipaddress.ip_address(issuer_host)
        return False  # an address has no parent domain
    except ValueError:
        pass
    parent = issuer_host.split(".", 1)[1] if issuer_host.count(".") >= 2 else issuer_host
    return config_host.endswith("." + parent)


def parse_configuration(doc: object, config_url: str) -> PlatformConfiguration:
    """The platform's OpenID configuration (step 2), checked: an issuer (https, no query) that
    matches where it was served from (§3.5.1), https endpoints, and LTI 1.3 support."""
    if not isinstance(doc, dict):
        raise RegistrationRefused("the platform's OpenID configuration is not a JSON object")
    try:
        issuer = _ISSUER.validate_python(doc.get("issuer"))
    except ValidationError:
        raise RegistrationRefused("the configuration's issuer is not an https URL") from None
    if not _same_site(config_url, issuer):
        raise RegistrationRefused("the configuration is not served from its issuer's site")
    lti = doc.get(PLATFORM_CONFIGURATION)
    product = lti.get("product_family_code") if isinstance(lti, dict) else None
    return PlatformConfiguration(
        issuer=issuer,
        authorization_endpoint=_url(doc, "authorization_endpoint"),
        token_endpoint=_url(doc, "token_endpoint"),
        jwks_uri=_url(doc, "jwks_uri"),
        registration_endpoint=_url(doc, "registration_endpoint"),
        product=str(product or "LMS")[:60],
    )


def client_registration(base: str) -> dict[str, Any]:
    """The tool's client registration request (§3.5.2, OpenID Connect Dynamic Client
    Registration with the LTI tool configuration): login, launch and key URLs under
    `base`; the AGS and NRPS scopes; a resource-link launch and a deep-linking message."""
    launch = f"{base}/lti/launch"
    return {
        "application_type": "web",
        "response_types": ["id_token"],
        "grant_types": ["implicit", "client_credentials"],
        "initiate_login_uri": f"{base}/lti/login",
        "redirect_uris": [launch],
        "client_name": TOOL_NAME,
        "jwks_uri": f"{base}/lti/jwks",
        "token_endpoint_auth_method": "private_key_jwt",
        "scope": " ".join(SCOPES),
        TOOL_CONFIGURATION: {
            "domain": urlsplit(base).netloc,
            "target_link_uri": launch,
            "claims": ["iss", "sub", "name", "given_name", "family_name"],
            "messages": [
                {"type": "LtiResourceLinkRequest", "target_link_uri": launch},
                {"type": "LtiDeepLinkingRequest", "target_link_uri": launch, "label": "Add videos"},
            ],
            "description": "Verified video watching, with grades passed back",
        },
    }


def platform_id_for(config: PlatformConfiguration, client_id: str) -> str:
    """A platform id from the issuer's host and the client id (letters, digits, `_ . : -`)."""
    host = urlsplit(config.issuer).netloc
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", f"{host}-{client_id}")[:128]


def platform_body(config: PlatformConfiguration, answer: object) -> tuple[str, PlatformBody]:
    """The registration to store from the platform's answer (the client registration
    response: `client_id`, and the
    deployment in the LTI tool configuration; without one, any deployment is accepted and
    recorded at launch)."""
    if not isinstance(answer, dict) or not isinstance(answer.get("client_id"), str):
        raise RegistrationRefused("the platform's answer names no client_id", 502)
    client_id: str = answer["client_id"]
    tool = answer.get(TOOL_CONFIGURATION)
    deployment = tool.get("deployment_id") if isinstance(tool, dict) else None
    try:
        body = PlatformBody(
            name=f"{config.product} ({urlsplit(config.issuer).netloc})",
            issuer=config.issuer,
            client_id=client_id,
            auth_login_url=config.authorization_endpoint,
            auth_token_url=config.token_endpoint,
            jwks_url=config.jwks_uri,
            deployment_ids=[deployment] if isinstance(deployment, str) else [],
        )
    except ValidationError as exc:
        raise RegistrationRefused(f"the platform's answer does not register: {exc}", 502) from None
    return platform_id_for(config, client_id), body


async def _fetch_json(http: httpx.AsyncClient, method: str, url: str, what: str,
                      **request: Any) -> object:  # fmt: skip
    """The JSON a platform answers (shared/integrations/bounded_http.py: HTTP_TIMEOUT_S in all,
    at most MAX_BODY_BYTES, uncompressed)."""
    try:
        answer = await fetch(http, method, url, timeout_s=HTTP_TIMEOUT_S,
                             max_bytes=MAX_BODY_BYTES, **request)  # fmt: skip
    except AnswerRefused as exc:
        raise RegistrationRefused(f"{what}: {exc}", 502) from None
    except httpx.HTTPError as exc:
        raise RegistrationRefused(f"{what} could not be read: {exc}", 502) from None
    if answer.status_code >= 400:
        raise RegistrationRefused(f"{what} answered HTTP {answer.status_code}", 502)
    try:
        return json.loads(answer.content)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
        raise RegistrationRefused(f"{what} is not JSON", 502) from None


async def invite(r: AsyncBuffer, ttl_s: int) -> str:
    """A new invitation to register (step 1's URL carries it), valid `ttl_s` and used once."""
    token = secrets.token_urlsafe(24)
    if not await r.set(lti_registration_invite(token), "1", ex=ttl_s, nx=True):
        raise Unavailable("could not keep the invitation; try again")
    return token


class DynamicRegistration:
    """Invitations, the discovered configuration awaiting confirmation (Redis, TTL), and the
    HTTP exchanges with the platform."""

    def __init__(self, r: AsyncBuffer, http: httpx.AsyncClient, ttl_s: int) -> None:
        self.redis, self.http, self.ttl_s = r, http, ttl_s

    async def discover(
        self, invite: str, config_url: str, registration_token: str | None, action_url: str
    ) -> Page:
        """Steps 1-2: the invitation holds, the configuration is fetched and checked; the page to
        confirm the registration."""
        if not invite or not await self.redis.exists(lti_registration_invite(invite)):
            raise RegistrationRefused("this registration link is unknown, used or expired", 403)
        try:
            url = _URL.validate_python(config_url)
        except ValidationError:
            raise RegistrationRefused("openid_configuration is not an https URL") from None
        config = parse_configuration(
            await _fetch_json(self.http, "GET", url, "the configuration"), url
        )
        ticket = secrets.token_urlsafe(32)
        kept = {"config": asdict(config), "token": registration_token, "invite": invite}
        await self.redis.set(lti_registration(ticket), json.dumps(kept), ex=self.ttl_s)
        return confirm_page(ticket, config, action_url)

    async def register(self, ticket: str, base: str) -> tuple[str, PlatformBody]:
        """Step 3 (§3.5.2): the confirmed registration posted to the platform (its invitation
        used up first, so a second post registers nothing); the platform id and registration to
        store."""
        stored = await self.redis.getdel(lti_registration(ticket)) if ticket else None
        if stored is None:
            raise RegistrationRefused("this registration has expired or was sent already", 410)
        kept = json.loads(stored)
        if not await self.redis.delete(lti_registration_invite(kept["invite"])):
            raise RegistrationRefused("this registration link was used already", 410)
        config = PlatformConfiguration(**kept["config"])
        headers = {"Authorization": f"Bearer {kept['token']}"} if kept["token"] else {}
        answer = await _fetch_json(
            self.http, "POST", config.registration_endpoint, "the platform's registration endpoint",
            json=client_registration(base), headers=headers,
        )  # fmt: skip
        return platform_body(config, answer)


def free_id(platform_id: str, taken: set[str]) -> str:
    """`platform_id`, or with a numbered suffix when taken: a registration never replaces
    another one."""
    candidate, n = platform_id, 1
    while candidate in taken:
        n += 1
        candidate = f"{platform_id[:120]}-{n}"
    return candidate


async def complete(
    dr: DynamicRegistration, ticket: str, base: str, registry: PlatformRegistry, now: float
) -> Page:
    """Steps 3-4: the confirmed registration posted to the platform and stored under a free
    platform id; the page that closes the registration. A platform already registered with
    that issuer and client id: 409."""
    platform_id, body = await dr.register(ticket, base)
    taken = {p.platform_id for p in await asyncio.to_thread(registry.all)}
    stored_id = free_id(platform_id, taken)
    try:
        await asyncio.to_thread(registry.save, stored_id, body, now)
    except DuplicatePlatform as exc:
        raise RegistrationRefused(exc.message, 409) from None
    return done_page(stored_id)


def confirm_page(ticket: str, config: PlatformConfiguration, action_url: str) -> Page:
    """What the LMS admin confirms: the platform as discovered, and one button."""
    esc = html.escape
    rows = [
        ("Platform", config.product),
        ("Issuer", config.issuer),
        ("Login", config.authorization_endpoint),
        ("Keys", config.jwks_uri),
    ]
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    body = (
        f"<p>Register {TOOL_NAME} with this LMS?</p><dl>{items}</dl>"
        f'<form method="post" action="{esc(action_url)}">'
        f'<input type="hidden" name="ticket" value="{esc(ticket)}">'
        '<p><button type="submit">Register the tool</button></p></form>'
    )
    return Page(f"Register {TOOL_NAME}", body)


def done_page(platform_id: str) -> Page:
    """Step 4: the registration is complete; the page tells the LMS to close it."""
    body = (
        f"<p>{TOOL_NAME} is registered with this LMS as <code>{html.escape(platform_id)}</code>. "
        "You can close this window.</p>"
        f"<script>{CLOSE_SCRIPT}</script>"
    )
    return Page("Registered", body, script_hash=CLOSE_HASH)
