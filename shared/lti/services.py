"""Service tokens for LTI Advantage calls (AGS scores and line items, NRPS rosters).

Security Framework 1.0 §4.1 (using JSON Web Tokens with OAuth 2.0 client credentials grant):
the tool POSTs to the platform's `auth_token_url` a form of `grant_type=client_credentials`,
`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`, the scopes it
asks (space-separated) and `client_assertion`, a JWT the tool signs with its LTI key (RS256,
`kid` in the header; shared/lti/keys.py) whose `iss` and `sub` are the tool's `client_id`, `aud`
the token URL, with `iat`, `exp` and a fresh `jti` (§4.1.1, and RFC 7523 §3).

The token is cached per (platform, scope set) in RQ's Redis, shared by every worker, until it
expires by the injected clock (a margin before the platform's `expires_in`: AGS 2.0 and
Security Framework §4.1 leave reuse to the tool, pylti1p3 caches tokens past their expiry). A
call answered `401` forgets it (`forget`), so the next call fetches a new one. Only the scopes
asked for are requested: callers ask for what the launch offered (the AGS claim's `scope`,
the NRPS claim), never more.

The interface other parts use: `ServiceTokens.access_token(platform, scopes) -> str` (sync,
for RQ jobs) and `AsyncServiceTokens.access_token(platform, scopes) -> str` (async, the same
cache). Both raise `shared.errors.PlatformCallFailed` when no token could be had.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import secrets
from collections.abc import Callable, Iterable

import httpx
import redis

from shared.clock import Clock
from shared.errors import PlatformCallFailed
from shared.integrations.bounded_http import fetch
from shared.lti.keys import ToolKeys
from shared.lti.registry import Platform
from shared.storage.keys import lti_service_token

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
GRANT = "client_credentials"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300.0  # the client assertion's exp - iat
DEFAULT_EXPIRES_S = 3600.0  # when the platform names no expires_in (Security Framework §4.1)
ANSWER_MAX_BYTES = 1 << 20  # of a platform's answer to a worker (a token, a score, line items)
MAX_EXPIRES_S = 86_400.0  # a longer expires_in is kept a day (it is a cache, not a promise)
MARGIN_S = 60.0  # a token is dropped this long before it expires (at most a tenth of its life)
UNREADABLE = "token answer unreadable"
OAUTH_ERROR = re.compile(r"[a-z][a-z0-9_]{0,39}")  # an error code (RFC 6749 §5.2), not a secret


def token_key(platform: Platform, scopes: Iterable[str]) -> tuple[str, str]:
    """(Redis key, scope string) of a platform and scope set: the scopes sorted and joined by
    spaces; the key also names the token URL and client id, so a re-registration asks again."""
    scope = " ".join(sorted(set(scopes)))
    ident = "\n".join((platform.platform_id, platform.auth_token_url, platform.client_id, scope))
    return lti_service_token(hashlib.sha256(ident.encode()).hexdigest()[:40]), scope


def client_assertion(keys: ToolKeys, platform: Platform) -> str:
    """The JWT client assertion of Security Framework 1.0 §4.1.1 for this platform."""
    claims = {
        "iss": platform.client_id,
        "sub": platform.client_id,
        "aud": platform.auth_token_url,
        "jti": secrets.token_urlsafe(24),
    }
    return keys.sign(claims, min(ASSERTION_LIFETIME_S, keys.lifetime_s))


def token_form(keys: ToolKeys, platform: Platform, scope: str) -> dict[str, str]:
    return {
        "grant_type": GRANT,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": client_assertion(keys, platform),
        "scope": scope,
    }


def read_token_answer(reply: httpx.Response, scope: str, now: float) -> tuple[str, float]:
    """(access token, when it stops being used) from the token endpoint's answer to a request
    for `scope` (RFC 6749 §5.1); PlatformCallFailed for anything else, and with status 403
    when the platform granted fewer scopes than asked (§5.1: `scope` says so when it differs),
    so that no call is made that it would refuse for want of a scope.

    The errors say what was wrong (the status, the field missing or out of range, a refusal's
    OAuth `error` code), never the answer's body: it may hold an access token, and the errors
    reach the admin's grade health, a class's `roster_error` and the workers' logs."""
    if reply.status_code != 200:
        raise PlatformCallFailed("token request refused", reply.status_code, _refusal(reply))
    try:
        body = reply.json()
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the decoder goes
        raise PlatformCallFailed(UNREADABLE, 200, "not JSON") from None
    if not isinstance(body, dict):
        raise PlatformCallFailed(UNREADABLE, 200, "not a JSON object")
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise PlatformCallFailed(UNREADABLE, 200, "no access token")
    try:
        expires = min(float(body.get("expires_in") or DEFAULT_EXPIRES_S), MAX_EXPIRES_S)
    except (ValueError, TypeError, OverflowError):
        raise PlatformCallFailed(UNREADABLE, 200, "expires_in is no number") from None
    if not 0 < expires < math.inf:
        raise PlatformCallFailed(UNREADABLE, 200, "expires_in is not positive")
    said = body.get("scope")  # absent: what was asked (RFC 6749 §5.1)
    granted = set((scope if said is None else str(said)).split())
    if missing := set(scope.split()) - granted:
        raise PlatformCallFailed("token lacks scopes", 403, " ".join(sorted(missing)))
    return token, now + expires - min(MARGIN_S, expires / 10)


def _refusal(reply: httpx.Response) -> str:
    """What a refused token request's answer says, without quoting it: its OAuth `error`
    code (RFC 6749 §5.2: `invalid_client`, `invalid_scope`...) when it has one of that form.
    Not `error_description`, free text that may echo the request's client assertion."""
    try:
        body = reply.json()
    except (ValueError, RecursionError):
        return "(no OAuth error)"
    code = body.get("error") if isinstance(body, dict) else None
    if isinstance(code, str) and OAUTH_ERROR.fullmatch(code):
        return f"error {code}"
    return "(no OAuth error)"


def cached(raw: bytes | str | None, now: float) -> str | None:
    if raw is None:
        return None
    doc = json.loads(raw)
    return str(doc["access_token"]) if float(doc["expires_at"]) > now else None


def _ttl(expires_at: float, now: float) -> int:
    return max(1, int(expires_at - now) + 1)


class ServiceTokens:
    """Service tokens for the workers (sync). `http`: the client to call platforms with."""

    def __init__(
        self, r: redis.Redis, keys: ToolKeys, clock: Clock, http: httpx.Client | None = None
    ) -> None:
        self.redis, self.keys, self.clock = r, keys, clock
        self.http = http or httpx.Client(timeout=10.0)

    def access_token(
        self,
        platform: Platform,
        scopes: Iterable[str],
        post: Callable[[str, dict[str, str]], httpx.Response] | None = None,
    ) -> str:
        """A bearer token for exactly `scopes` on `platform`: the cached one while it lasts,
        else a new one (cached for every worker), asked with `post` (url, form) when given (a
        caller's bounded call), else this object's client. Raises PlatformCallFailed."""
        key, scope = token_key(platform, scopes)
        if (token := cached(self.redis.get(key), self.clock.time())) is not None:
            return token
        form = token_form(self.keys, platform, scope)
        try:
            if post is not None:
                reply = post(platform.auth_token_url, form)
            else:
                reply = self.http.post(platform.auth_token_url, data=form)
        except httpx.HTTPError as exc:
            why = f"{type(exc).__name__}: {exc}"[:300]
            raise PlatformCallFailed("token request", None, why) from None
        now = self.clock.time()
        token, expires_at = read_token_answer(reply, scope, now)
        doc = json.dumps({"access_token": token, "expires_at": expires_at})
        self.redis.set(key, doc, ex=_ttl(expires_at, now))
        return token

    def forget(self, platform: Platform, scopes: Iterable[str]) -> None:
        """Drop the cached token (the platform answered 401 with it)."""
        self.redis.delete(token_key(platform, scopes)[0])


class AsyncServiceTokens:
    """The same tokens for async code (an instructor's launch, a roster sync): the sync client
    run in a thread, so both share one cache and one way of asking. With `http`, a token
    request is made on this event loop by that client, bounded (`bounded_http.fetch`:
    `timeout_s` in all), the thread waiting for it."""

    def __init__(
        self, tokens: ServiceTokens, http: httpx.AsyncClient | None = None, timeout_s: float = 10.0
    ) -> None:
        self.tokens, self.http, self.timeout_s = tokens, http, timeout_s

    async def access_token(self, platform: Platform, scopes: Iterable[str]) -> str:
        if self.http is None:
            return await asyncio.to_thread(self.tokens.access_token, platform, list(scopes))
        http, loop = self.http, asyncio.get_running_loop()

        def post(url: str, form: dict[str, str]) -> httpx.Response:  # in the thread
            call = fetch(http, "POST", url, timeout_s=self.timeout_s, max_bytes=ANSWER_MAX_BYTES,
                         data=form)  # fmt: skip
            return asyncio.run_coroutine_threadsafe(call, loop).result()

        return await asyncio.to_thread(self.tokens.access_token, platform, list(scopes), post)

    async def forget(self, platform: Platform, scopes: Iterable[str]) -> None:
        await asyncio.to_thread(self.tokens.forget, platform, list(scopes))
