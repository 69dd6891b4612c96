"""Who is asking: the bearer token's principal, and role requirements as dependencies
(their aliases, `Student`, `Admin`, ..., are in `ingest.deps`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import Forbidden, Unauthenticated
from shared.tokens import Principal, TokenVerifier

_bearer = HTTPBearer(auto_error=False, description="JWT with sub, role and exp")


async def bearer_principal(verifier: TokenVerifier, authorization: str | None) -> Principal:
    """The principal of an `Authorization: Bearer <jwt>` header; Unauthenticated, or
    Unavailable while the identity provider's key set cannot be had."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("missing bearer token")
    return await verifier.verify(token)


def check_role(principal: Principal, roles: tuple[str, ...]) -> Principal:
    if principal.role not in roles:
        raise Forbidden(f"this action is not allowed for role '{principal.role}'")
    return principal


# Dependencies are `async def` on purpose: FastAPI runs plain `def` ones in a thread pool,
# which cost the heartbeat route more than the token check itself.
async def current_principal(
    request: Request,
    _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],  # documents the scheme
) -> Principal:
    verifier = request.app.state.ctx.verifier
    return await bearer_principal(verifier, request.headers.get("authorization"))


def require_role(*roles: str) -> Callable[[Principal], Awaitable[Principal]]:
    """A dependency that passes a principal of one of `roles` on; Forbidden for the rest."""

    async def dependency(
        principal: Annotated[Principal, Depends(current_principal)],
    ) -> Principal:
        return check_role(principal, roles)

    return dependency
