"""The tool's LTI endpoints at the fixed paths a school enters into its LMS (API.md, "LTI 1.3
Advantage"): here `GET /lti/jwks`."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from ingest.deps import Ctx
from ingest.models import Jwks

router = APIRouter(prefix="/lti", tags=["lti"])


@router.get("/jwks", response_model=Jwks)
async def jwks(ctx: Ctx) -> Jwks:
    """The tool's public keys (Security Framework 1.0 §6.3), read at each request: a key
    added by `videoprogress lti rotate-key` is here at once, before it signs anything. The
    first request makes the tool's first key when none is configured."""
    return Jwks.model_validate(await run_in_threadpool(ctx.lti_keys.jwks))
