"""LTI 1.3 login and launch, the tool's side (API.md, "LTI 1.3 Advantage"): a thin async layer
on pyjwt, httpx and Redis, checking in pylti1p3's order (`message_launch.py`: state, id_token
format, registration, signature, times, nonce, deployment, message).

- Login (Core 1.3 §5.1.1, third-party initiated login; Security Framework 1.0 §5.1.1): the tool
  answers an authentication request to the platform's `auth_login_url` with a fresh `state`
  and `nonce`. The nonce goes to Redis holding its state (TTL LTI_LOGIN_TTL_S), so the launch
  can prove the tool issued it and use it once; the state goes to the browser in a cookie.
- Launch (Core 1.3 §5.1.2-§5.1.3; Security Framework 1.0 §5.1.3, id_token validation): every
  check below must hold, else LaunchRefused and nothing is stored.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import jwt
from jwt import PyJWK

from shared.clock import Clock
from shared.errors import Unauthenticated, Unavailable
from shared.jwks import JwksKeys
from shared.lti.registry import Platform
from shared.storage.clients import AsyncBuffer
from shared.storage.keys import lti_nonce
from shared.tokens import check_times

log = logging.getLogger(__name__)

CLAIM = "https://purl.imsglobal.org/spec/lti/claim/"
MESSAGE_TYPE, VERSION, DEPLOYMENT = (
    CLAIM + "message_type",
    CLAIM + "version",
    CLAIM + "deployment_id",
)
ROLES, CUSTOM, CONTEXT = CLAIM + "roles", CLAIM + "custom", CLAIM + "context"
RESOURCE_LINK, DEEP_LINKING = "LtiResourceLinkRequest", "LtiDeepLinkingRequest"
ALGORITHMS = ["RS256"]  # Security Framework 1.0 §5.1.3 step 6 (RS256 only: §6.1)
STATE_COOKIE = "lti1p3-state-"  # + the state: two logins in two tabs keep their own cookie
REFETCH_MIN_S = 5.0  # an unknown `kid` fetches again at most this often per key set


class LaunchRefused(Exception):
    """The login or launch fails a check; the message says which (shown on the 401 page)."""


@dataclass(frozen=True)
class Login:
    """Where to send the browser, and the state to keep in its cookie."""

    redirect_url: str
    state: str
    nonce: str


async def start_login(
    r: AsyncBuffer, platform: Platform, params: Mapping[str, str], redirect_uri: str, ttl_s: int
) -> Login:
    """The authentication request of Security Framework 1.0 §5.1.1.1 for a third-party login
    (Core 1.3 §5.1.1): `scope=openid`, `response_type=id_token`, `response_mode=form_post`,
    `prompt=none`, the platform's `client_id`, our `redirect_uri`, the `login_hint` and any
    `lti_message_hint`, a fresh `state` and `nonce`. The nonce is kept in Redis (NX, `ttl_s`)
    holding the state it goes with."""
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    if not await r.set(lti_nonce(nonce), state, ex=ttl_s, nx=True):
        raise Unavailable("could not keep the login's nonce; try again")
    query = {
        "scope": "openid",
        "response_type": "id_token",
        "response_mode": "form_post",
        "prompt": "none",
        "client_id": platform.client_id,
        "redirect_uri": redirect_uri,
        "login_hint": params["login_hint"],
        "state": state,
        "nonce": nonce,
    }
    if params.get("lti_message_hint"):
        query["lti_message_hint"] = params["lti_message_hint"]
    base = platform.auth_login_url
    return Login(f"{base}{'&' if urlsplit(base).query else '?'}{urlencode(query)}", state, nonce)


class PlatformKeySets:
    """The platforms' public keys by key set URL (Security Framework 1.0 §6.3), each a
    `shared.jwks.JwksKeys`: fetched again after its MAX_AGE_S (a launch waits for that fetch, so a
    key the platform withdrew stops verifying) and once for a `kid` the held set lacks (at
    most every REFETCH_MIN_S per set), so a platform that rotates keys (D2L, hourly) is
    followed at once, which pylti1p3 never does (pylti1.3#90). Lives on one event loop."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._sets: dict[str, JwksKeys] = {}

    async def key(self, url: str, kid: str) -> PyJWK | None:
        """The key named `kid` in the set at `url`, or None when the platform does not publish
        it. Raises Unavailable when no set could ever be fetched from `url`."""
        keys = self._sets.get(url)
        if keys is None:
            name = f"the LTI platform's keys at {url}"
            keys = self._sets[url] = JwksKeys(url, ["RS256"], self.clock, name, REFETCH_MIN_S)
        keys.get(kid)  # starts the fetch of a set older than MAX_AGE_S
        await keys.settled()
        if (found := keys.get(kid)) is None:
            await keys.fetch_for(kid)
            found = keys.get(kid)
        return found

    async def close(self) -> None:
        for keys in self._sets.values():
            await keys.close()


@dataclass(frozen=True)
class Launch:
    """A launch that passed every check."""

    platform: Platform
    claims: dict[str, Any]
    deployment_id: str
    new_deployment: bool  # to be recorded (the registration accepts any deployment)

    @property
    def message_type(self) -> str:
        return str(self.claims[MESSAGE_TYPE])


def _unverified(id_token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        header = jwt.get_unverified_header(id_token)
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise LaunchRefused("the id_token is not a JWT") from None
    return header, claims


def _client_id(claims: Mapping[str, Any]) -> str:
    """The tool's client id from `aud`/`azp` (Security Framework 1.0 §5.1.3 steps 3-4: with
    several audiences `azp` must be present and be one of them; when present it is ours)."""
    aud, azp = claims.get("aud"), claims.get("azp")
    audiences = [aud] if isinstance(aud, str) else aud
    if (
        not isinstance(audiences, list)
        or not audiences
        or not all(isinstance(a, str) for a in audiences)
    ):
        raise LaunchRefused("the id_token has no audience (aud)")
    if azp is not None and (not isinstance(azp, str) or azp not in audiences):
        raise LaunchRefused("the id_token's azp is not one of its audiences")
    if len(audiences) > 1 and azp is None:
        raise LaunchRefused("an id_token with several audiences must name azp")
    return azp if isinstance(azp, str) else audiences[0]


def check_state(form_state: str, cookies: Mapping[str, str]) -> None:
    """The launch's `state` is the one this browser's login kept (Security Framework 1.0
    §5.1.1.2 / OIDC Core §3.1.2.7: a launch the login did not start is refused)."""
    if not form_state or cookies.get(STATE_COOKIE + form_state) != form_state:
        raise LaunchRefused("the state does not match the login's (was the login in this browser?)")


class LaunchValidator:
    """The checks of a resource-link or deep-linking launch, in pylti1p3's order."""

    def __init__(self, key_sets: PlatformKeySets, r: AsyncBuffer, clock: Clock) -> None:
        self.key_sets, self.redis, self.clock = key_sets, r, clock

    async def validate(
        self,
        id_token: str,
        state: str,
        cookies: Mapping[str, str],
        find: Callable[[str, str], Awaitable[Platform | None]],
    ) -> Launch:
        """Every check of API.md's launch, the state by its cookie; `find(iss, client_id)` is
        the registry's lookup (awaitable). LaunchRefused names the first that fails; the nonce
        is used only once every other check held, so a refused launch changes nothing."""
        check_state(state, cookies)
        return await self.verify(id_token, state, find, use_nonce=True)

    async def verify(
        self,
        id_token: str,
        state: str,
        find: Callable[[str, str], Awaitable[Platform | None]],
        *,
        use_nonce: bool,
    ) -> Launch:
        """Every check but the state's own (its cookie, or the platform's storage, which the
        launch page reads: shared/lti/storage.py), in the same order. The nonce must be one
        this tool issued for `state`; `use_nonce` takes it (once only), else it is only read,
        so that the same launch can be checked again once the page has read the storage."""
        header, unverified = _unverified(id_token)
        iss = unverified.get("iss")
        if not isinstance(iss, str):
            raise LaunchRefused("the id_token has no issuer (iss)")
        client_id = _client_id(unverified)
        platform = await find(iss, client_id)
        if platform is None:  # Security Framework §5.1.3 steps 2-3
            raise LaunchRefused("no platform is registered with this issuer and client_id")
        claims = await self._verified(id_token, header, platform, client_id)
        deployment, new = self._deployment(claims, platform)
        self._message(claims)
        nonce = lti_nonce(str(claims.get("nonce", "")))
        issued = await (self.redis.getdel(nonce) if use_nonce else self.redis.get(nonce))
        if issued != state.encode():
            raise LaunchRefused("the nonce was not issued by this tool, or was used already")
        return Launch(platform, claims, deployment, new)

    async def _verified(
        self, id_token: str, header: Mapping[str, Any], platform: Platform, client_id: str
    ) -> dict[str, Any]:
        """Signature by the platform's key of the header's `kid`, RS256 (Security Framework
        §5.1.3 steps 1, 6); `iss`, `aud` (steps 2-3); `exp` and `iat` on the injected clock
        with tokens.LEEWAY_S (steps 7-8); a `nonce` (step 9)."""
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise LaunchRefused("the id_token names no key (kid)")
        key = await self.key_sets.key(platform.jwks_url, kid)
        if key is None:
            raise LaunchRefused("the id_token is signed with a key the platform does not publish")
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key,
                algorithms=ALGORITHMS,
                audience=client_id,
                issuer=platform.issuer,
                options={
                    "require": ["iss", "aud", "exp", "iat", "nonce"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
            check_times(claims, self.clock.time())
        except jwt.PyJWTError as exc:
            raise LaunchRefused(f"the id_token does not verify: {exc}") from None
        except Unauthenticated as exc:
            raise LaunchRefused(f"the id_token is out of date: {exc.message}") from None
        return claims

    def _deployment(self, claims: Mapping[str, Any], platform: Platform) -> tuple[str, bool]:
        """Core 1.3 §5.3.3: the deployment must be one the registration names; a registration
        naming none accepts any (recorded on its first launch)."""
        deployment = claims.get(DEPLOYMENT)
        if not isinstance(deployment, str) or not 0 < len(deployment) <= 255:
            raise LaunchRefused("the id_token has no deployment_id")
        if not platform.deployment_ids:
            return deployment, True
        if deployment not in platform.deployment_ids:
            raise LaunchRefused(f"deployment '{deployment}' is not registered for this platform")
        return deployment, False

    @staticmethod
    def _message(claims: Mapping[str, Any]) -> None:
        """Core 1.3 §5.3.1-§5.3.2 (message type, version) and §5.3.5 (a resource link id)."""
        if claims.get(VERSION) != "1.3.0":
            raise LaunchRefused("the launch is not LTI version 1.3.0")
        kind = claims.get(MESSAGE_TYPE)
        if kind not in (RESOURCE_LINK, DEEP_LINKING):
            raise LaunchRefused(f"message type {kind!r} is not one this tool accepts")
        link = claims.get(CLAIM + "resource_link")
        if kind == RESOURCE_LINK and not (isinstance(link, dict) and link.get("id")):
            raise LaunchRefused("a resource-link launch must name its resource link")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise LaunchRefused("the launch names no user (sub): anonymous launches are refused")
