"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ingest.metrics import render
from shared.integrations.outbox import OUTBOXES

router = APIRouter(tags=["service"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    redis: str
    mongodb: str
    outbox: dict[str, int] | None = Field(
        None, description="Entries waiting in each outbox (xapi, webhook); null without Redis"
    )


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Redis is unavailable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 while Redis answers (ingest needs nothing else); MongoDB's state is reported only."""
    ctx = request.app.state.ctx
    try:
        await asyncio.wait_for(ctx.redis_async.ping(), timeout=2)
        redis_ok = True
        depths = await asyncio.wait_for(_outbox_depths(ctx.redis_async), timeout=2)
    except Exception:  # any failure means not ready
        redis_ok, depths = False, None
    try:
        await asyncio.wait_for(run_in_threadpool(ctx.mongo.ping), timeout=2)
        mongo = "ok"
    except Exception:  # any failure: reported, not a reason to be unready
        mongo = "unavailable"
    body = {"redis": "ok" if redis_ok else "unavailable", "mongodb": mongo, "outbox": depths}
    return JSONResponse(body, status_code=200 if redis_ok else 503)


async def _outbox_depths(client: Any) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for box in OUTBOXES:
        pipe.hlen(box.entries)
    sizes = await pipe.execute()
    return {box.name: int(n) for box, n in zip(OUTBOXES, sizes, strict=True)}


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request) -> Response:
    """Prometheus text: this process's counters, then the system's backlog and flush stats."""
    body = await run_in_threadpool(render, request.app.state.ctx.system_metrics)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
