"""The session tokens an LTI launch mints for the pages (API.md: "a short-lived session token
signed by the tool (never a cookie), renewed while it is open").

A session token is an RS256 JWT of the tool's keys with `iss` = `aud` = TOOL_SESSION_ISSUER,
`sub`, `role` and a fresh `jti`, valid SESSION_S. The page renews it before it expires
(`POST /lti/session`): the renewal re-signs every claim of the token it was given (a claim
another part adds, like a class scope, comes along) except the times and `jti`. Only a token the
tool signed is renewed: the identity provider's tokens are the provider's to renew. Renewal has
an end: `auth_time` (the launch's time, kept through every renewal) older than
LTI_SESSION_MAX_AGE_S is refused, and the learner launches again from the LMS, which checks
who they are.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from typing import Any

import jwt

from shared.errors import Forbidden, Unauthenticated
from shared.tokens import TOOL_SESSION_ISSUER, check_times

SESSION_S = 900.0
TIMES = ("iat", "exp", "nbf")


def session_claims(user_id: str, role: str, now: float) -> dict[str, Any]:
    """The claims of a new session token launched at `now` (the signer adds the times)."""
    return {
        "iss": TOOL_SESSION_ISSUER,
        "aud": TOOL_SESSION_ISSUER,
        "sub": user_id,
        "role": role,
        "auth_time": int(now),
        "jti": secrets.token_urlsafe(16),
    }


def tool_session_claims(token: str, public_keys: Mapping[str, Any], now: float) -> dict[str, Any]:
    """The claims of a session token the tool signed and that has not expired. Forbidden for a
    token of another issuer (the identity provider's), Unauthenticated for one that does not
    verify."""
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise Unauthenticated("invalid token") from None
    key = public_keys.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise Forbidden("only a session an LTI launch started can be renewed here")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=["RS256"],
            issuer=TOOL_SESSION_ISSUER,
            audience=TOOL_SESSION_ISSUER,
            options={"require": ["exp", "sub", "role"], "verify_exp": False, "verify_iat": False},
        )
    except jwt.PyJWTError as exc:
        raise Unauthenticated(f"invalid token: {exc}") from None
    check_times(claims, now)
    return claims


def renewed(
    claims: Mapping[str, Any],
    sign: Callable[[dict[str, Any], float], str],
    lifetime_s: float,
    now: float,
    max_age_s: float,
) -> str:
    """Every claim but the times and `jti`, signed again for `lifetime_s` with a new `jti`.
    Unauthenticated once the session's launch (`auth_time`; a token minted before 0.9.0 has
    none and starts counting at its `iat`) is more than `max_age_s` old."""
    launched = claims.get("auth_time", claims.get("iat"))
    if not isinstance(launched, int | float) or now - launched > max_age_s:
        raise Unauthenticated("this LTI session is too old to renew: launch again from the LMS")
    kept = {k: v for k, v in claims.items() if k not in (*TIMES, "jti")}
    return sign({**kept, "auth_time": int(launched), "jti": secrets.token_urlsafe(16)}, lifetime_s)
