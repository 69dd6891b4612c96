"""JWT verification and (for local use) minting, with pyjwt."""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import jwt

from shared.errors import Unauthenticated
from shared.settings import Settings

Role = Literal["student", "teacher", "admin"]
ROLES: frozenset[str] = frozenset({"student", "teacher", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    user_id: str
    role: Role
    expires_at: float


class TokenVerifier:
    """Verifies bearer tokens against the configured key(s) and algorithms only.

    Verified tokens are cached (a decode costs ~36 us); `exp` is rechecked on every hit.
    """

    def __init__(self, settings: Settings, cache_size: int = 65536) -> None:
        self.algorithms = list(settings.jwt_algorithms)
        secret = settings.jwt_secret.get_secret_value() if settings.jwt_secret else None
        # Each algorithm verifies with its own kind of key: never a public key as HMAC secret.
        self.keys: dict[str, str] = {}
        for alg in self.algorithms:
            key = secret if alg.upper().startswith("HS") else settings.jwt_public_key
            if key:
                self.keys[alg] = key
        if not self.keys:
            raise ValueError("set JWT_SECRET (HS256) or JWT_PUBLIC_KEY with JWT_ALGORITHMS")
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self._decode = lru_cache(maxsize=cache_size)(self._verify)

    def _verify(self, token: str) -> Principal:
        try:
            alg = jwt.get_unverified_header(token).get("alg")
            if alg not in self.keys:
                raise jwt.InvalidAlgorithmError("the token's algorithm is not accepted")
            claims = jwt.decode(
                token,
                self.keys[alg],
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                options={"require": ["exp", "sub", "role"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"invalid token: {exc}") from None
        sub, role = claims.get("sub"), claims.get("role")
        if not isinstance(sub, str) or not sub or len(sub) > 256:
            raise Unauthenticated("invalid token: sub must be a non-empty string")
        if role not in ROLES:
            raise Unauthenticated("invalid token: unknown role")
        return Principal(sub, role, float(claims["exp"]))

    def verify(self, token: str) -> Principal:
        principal = self._decode(token)
        if principal.expires_at <= time.time():
            raise Unauthenticated("invalid token: Signature has expired")
        return principal


def mint_token(settings: Settings, user_id: str, role: Role, ttl_s: int = 8 * 3600) -> str:
    """An HS256 token for local use (CLI, embedded default, tests)."""
    if settings.jwt_secret is None:
        raise ValueError("minting needs JWT_SECRET")
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "role": role, "iat": now, "exp": now + ttl_s}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, settings.jwt_secret.get_secret_value(), algorithm="HS256")
