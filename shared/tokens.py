"""JWT verification and (for local use) minting, with pyjwt."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal, cast

import jwt
from jwt import PyJWK

from shared.clock import Clock, SystemClock
from shared.errors import Unauthenticated, Unavailable
from shared.jwks import JwksKeys
from shared.settings import Settings

log = logging.getLogger(__name__)

Role = Literal["student", "teacher", "admin"]
ROLES: frozenset[str] = frozenset({"student", "teacher", "admin"})
LEEWAY_S = 30.0  # clock skew allowed to `exp`, `nbf` and `iat` (API.md, "Authentication")
# The `iss` and `aud` of the session tokens an LTI launch mints (shared/lti/launch.py).
TOOL_SESSION_ISSUER = "urn:videoprogress:lti-session"
# A teacher's tool session scoped to one LMS class: {"id": class id, "course_id": its course,
# "deployment_id": its LMS context's deployment} (shared/lti/classes.py); honoured in the tool's
# own tokens only.
CLASS_CLAIM = "lti_class"
TOOL_KEYS_REFRESH_S = 5.0  # an unknown `kid` reads the tool's keys again at most this often


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    expires_at: float
    class_id: str | None = None  # a teacher who sees this LMS class only...
    class_course_id: str | None = None  # ...which lives in this course


class _UnknownKey(Exception):
    """The token names a `kid` the held key set lacks (never cached: the set may change)."""

    def __init__(self, kid: str) -> None:
        super().__init__(kid)
        self.kid = kid


class ToolTrust:
    """The tool's own public keys (its LTI signing keys, shared/lti/keys.py), trusted for
    tokens with `iss` and `aud` TOOL_SESSION_ISSUER: the sessions LTI launches mint."""

    def __init__(self, published: Callable[[], dict[str, Any]], clock: Clock) -> None:
        self._published = published  # kid -> public key; blocking (reads MongoDB)
        self._clock = clock
        self.keys: dict[str, Any] = {}
        self._read_at = -math.inf

    async def refresh(self) -> None:
        """Read the keys again (in a thread), at most every TOOL_KEYS_REFRESH_S."""
        now = self._clock.monotonic()
        if now - self._read_at < TOOL_KEYS_REFRESH_S:
            return
        self._read_at = now
        try:
            self.keys = await asyncio.to_thread(self._published)
        except Unavailable:  # MongoDB down: the keys held serve; an unknown kid stays a 401
            log.warning("could not read the tool's keys to verify an LTI session token")


class TokenVerifier:
    """Verifies bearer tokens against the configured key(s) and algorithms only.

    Keys: JWT_SECRET for HS algorithms; for the others JWT_PUBLIC_KEY, or the key of the
    token's `kid` in the provider's key set (JWT_JWKS_URL, shared/jwks.py). With a public key,
    `iss` and `aud` are required. `exp`, `nbf` and `iat` get LEEWAY_S of clock skew, judged by
    the injected clock. Verified tokens are cached (a decode costs ~36 us); `exp` (with the
    leeway) is rechecked on every hit.
    """

    def __init__(
        self, settings: Settings, clock: Clock | None = None, cache_size: int = 65536
    ) -> None:
        self.algorithms = list(settings.jwt_algorithms)
        self.clock = clock or SystemClock()
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        # Each algorithm verifies with its own kind of key: never a public key as HMAC secret.
        self.keys: dict[str, str] = {}
        for alg in self.algorithms:
            key = secret if alg.upper().startswith("HS") else settings.jwt_public_key
            if key:
                self.keys[alg] = key
        self.jwks: JwksKeys | None = None
        if settings.jwt_jwks_url:
            self.jwks = JwksKeys(settings.jwt_jwks_url, settings.public_key_algorithms, self.clock)
        if not self.keys and self.jwks is None:
            raise ValueError(
                "set JWT_SECRET (HS256), or JWT_PUBLIC_KEY or JWT_JWKS_URL with JWT_ALGORITHMS"
            )
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.required = ["exp", "sub", "role"]
        self.required += [c for c, v in (("iss", self.issuer), ("aud", self.audience)) if v]
        self.tool: ToolTrust | None = None
        self._decode = lru_cache(maxsize=cache_size)(self._verify)

    def trust_tool(self, tool: ToolTrust) -> None:
        """Accept, beside the provider's tokens, the LTI session tokens the tool signs."""
        self.tool = tool

    async def verify(self, token: str) -> Principal:
        """The token's principal. Raises Unauthenticated for any token that does not verify,
        Unavailable (503) while the provider's key set cannot be had at all."""
        try:
            principal = self._decode(token)
        except _UnknownKey as unknown:
            if self.tool is not None:
                await self.tool.refresh()
            if self.jwks is not None:
                await self.jwks.fetch_for(unknown.kid)
            try:
                principal = self._decode(token)
            except _UnknownKey:
                raise Unauthenticated("invalid token: unknown key id (kid)") from None
        if principal.expires_at <= self.clock.time() - LEEWAY_S:
            raise Unauthenticated("invalid token: Signature has expired")
        return principal

    async def start(self) -> None:
        """Fetch the provider's key set, if one is configured (a failure is logged)."""
        if self.jwks is not None:
            await self.jwks.prefetch()

    async def close(self) -> None:
        if self.jwks is not None:
            await self.jwks.close()

    def _verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            alg, kid = header.get("alg"), header.get("kid")
            issuer, audience, required = self.issuer, self.audience, self.required
            if self.tool is not None and isinstance(kid, str) and kid in self.tool.keys:
                key: str | PyJWK | Any = self.tool.keys[kid]
                alg, issuer = "RS256", TOOL_SESSION_ISSUER  # the tool signs RS256 only
                audience, required = TOOL_SESSION_ISSUER, ["exp", "sub", "role", "iss", "aud"]
            else:
                key = self._key(alg, kid)
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(alg)],  # the one accepted above
                issuer=issuer,
                audience=audience,
                # Times are checked below, on the injected clock.
                options={
                    "require": required,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        expires_at = check_times(claims, self.clock.time())
        sub, role = claims.get("sub"), claims.get("role")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise Unauthenticated("invalid token: sub must be a non-empty string")
        # A role that is no string (a list, an object) is as unknown as a misspelt one.
        if not isinstance(role, str) or role not in ROLES:
            raise Unauthenticated("invalid token: unknown role")
        if issuer == TOOL_SESSION_ISSUER and role == "admin":
            raise Unauthenticated("invalid token: unknown role")  # LTI never makes an admin
        known = cast(Role, role)
        if issuer == TOOL_SESSION_ISSUER and CLASS_CLAIM in claims:
            return Principal(sub, known, expires_at, *_class_scope(claims[CLASS_CLAIM]))
        return Principal(sub, known, expires_at)

    def _key(self, alg: object, kid: object) -> str | PyJWK:
        """The key that verifies a token of this header; raises _UnknownKey for a `kid` the
        held key set lacks."""
        provider_may = isinstance(alg, str) and alg in self.algorithms
        provider_may = provider_may and (alg in self.keys or self.jwks is not None)
        tool_kid = self.tool is not None and alg == "RS256" and isinstance(kid, str) and kid
        if tool_kid and not provider_may:
            raise _UnknownKey(str(kid))  # maybe a tool key this process has not read yet
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise jwt.InvalidAlgorithmError("the token's algorithm is not accepted")
        if alg in self.keys:
            return self.keys[alg]
        if self.jwks is None:
            raise jwt.InvalidAlgorithmError("the token's algorithm is not accepted")
        if not isinstance(kid, str) or not kid:
            raise jwt.InvalidKeyError("the token names no key (kid)")
        key = self.jwks.get(kid)
        if key is None:
            raise _UnknownKey(kid)
        return key


def _class_scope(claim: Any) -> tuple[str, str]:
    """(class id, course id) of a session's class claim; Unauthenticated when malformed, or
    when it names no deployment: a session launched before class ids named the deployment,
    whose class mixed every deployment's LMS context of that id."""
    if isinstance(claim, dict):
        class_id, course_id = claim.get("id"), claim.get("course_id")
        if isinstance(class_id, str) and class_id and isinstance(course_id, str) and course_id:
            deployment = claim.get("deployment_id")
            if isinstance(deployment, str) and deployment:
                return class_id, course_id
            raise Unauthenticated("this LTI session is from an older version: launch again")
    raise Unauthenticated("invalid token: malformed class claim")


def check_times(claims: dict[str, Any], now: float) -> float:
    """`exp` (required), `nbf` and `iat` against `now` with LEEWAY_S, as pyjwt judges them
    (expired when exp <= now - leeway; too early when nbf or iat > now + leeway). Returns
    `exp`; raises Unauthenticated."""
    times: dict[str, float] = {}
    for claim in ("exp", "nbf", "iat"):
        value = claims.get(claim)
        if value is None and claim != "exp":
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise Unauthenticated(f"invalid token: {claim} must be a number")
        times[claim] = float(value)
    if times["exp"] <= now - LEEWAY_S:
        raise Unauthenticated("invalid token: Signature has expired")
    if max(times.get("nbf", -math.inf), times.get("iat", -math.inf)) > now + LEEWAY_S:
        raise Unauthenticated("invalid token: the token is not yet valid (nbf or iat)")
    return times["exp"]


def mint_token(
    settings: Settings, user_id: str, role: Role, ttl_s: int = 8 * 3600, now: float | None = None
) -> str:
    """An HS256 token for local use (CLI, embedded default, tests); issued at `now` (a test's
    moved clock) or the system time."""
    if settings.jwt_secret is None:
        raise ValueError("minting needs JWT_SECRET")
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {"sub": user_id, "role": role, "iat": issued, "exp": issued + ttl_s}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
