"""The tool's access tokens for the platform's services (Security Framework 1.0 §4.1, OAuth 2
client_credentials with a JWT client assertion, RFC 7523; AGS 2.0 §3.1, NRPS 2.0 §3.6).

The minimal client the roster needs until the AGS branch's cached client is on main: the
interface both share is `access_token(platform, scopes) -> str`. Each call asks the platform's
`auth_token_url` for a token, the assertion signed by the tool's key (`iss` = `sub` = the
client id, `aud` = the token URL, `iat`, `exp`, a fresh `jti`); nothing is cached.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

import httpx
from starlette.concurrency import run_in_threadpool

from shared.lti.keys import ToolKeys
from shared.lti.registry import Platform

NRPS_SCOPE = "https://purl.imsglobal.org/spec/lti-nrps/scope/contextmembership.readonly"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_LIFETIME_S = 300.0


class TokenRefused(Exception):
    """The platform gave no access token; the message says what it answered."""


class ServiceTokens:
    """Access tokens from the platforms' token endpoints (`http`: the caller's client)."""

    def __init__(self, keys: ToolKeys, http: httpx.AsyncClient) -> None:
        self.keys, self.http = keys, http

    async def access_token(self, platform: Platform, scopes: Iterable[str]) -> str:
        """A bearer token for `scopes` (space-separated in the request, RFC 6749 §3.3).
        Raises TokenRefused on any answer without one, httpx.HTTPError when unreachable."""
        claims = {
            "iss": platform.client_id,
            "sub": platform.client_id,
            "aud": platform.auth_token_url,
            "jti": secrets.token_urlsafe(24),
        }
        assertion = await run_in_threadpool(self.keys.sign, claims, ASSERTION_LIFETIME_S)
        answer = await self.http.post(
            platform.auth_token_url,
            data={
                "grant_type": "client_credentials",
                "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion,
                "scope": " ".join(sorted(set(scopes))),
            },
        )
        try:
            token = answer.json().get("access_token") if answer.status_code == 200 else None
        except ValueError:
            token = None
        if not isinstance(token, str) or not token:
            raise TokenRefused(f"the token endpoint answered {answer.status_code}")
        return token
