"""Liveness, readiness and metrics."""

from __future__ import annotations

import asyncio
import contextlib

import redis
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, Field
from redis.asyncio.cluster import RedisCluster as AsyncRedisCluster
from starlette.concurrency import run_in_threadpool

from ingest.metrics import render
from shared.integrations.outbox import OUTBOXES
from shared.storage.durability import UNKNOWN, buffer_durability

router = APIRouter(tags=["service"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


class BufferDurability(BaseModel):
    aof: bool | None = Field(
        description="The buffer's Redis has AOF (appendonly yes); null when unknown (CONFIG "
        "refused, as on managed Redis, or Redis unavailable)"
    )
    appendfsync: str | None = Field(
        description="With AOF: always, everysec or no (on a cluster, the weakest primary's)"
    )


class Readiness(BaseModel):
    redis: str
    mongodb: str
    outbox: dict[str, int] | None = Field(
        None, description="Entries waiting in each outbox (xapi, webhook); null without Redis"
    )
    buffer_durability: BufferDurability


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Redis is unavailable"}},
)
async def readyz(request: Request) -> JSONResponse:
    """200 while the buffer's Redis answers (ingest needs nothing else); MongoDB's state, the
    outboxes' depths and the buffer's durability (AOF) are reported only. On a Redis Cluster,
    200 while any primary answers: a primary that is down refuses only the students whose
    slots it holds, so the process still serves the others."""
    ctx = request.app.state.ctx
    client = ctx.redis_async
    try:
        if isinstance(client, AsyncRedisCluster):
            pings = [client.ping(target_nodes=node) for node in client.get_primaries()]
            answers = await asyncio.wait_for(
                asyncio.gather(*pings, return_exceptions=True), timeout=2
            )
            redis_ok = any(a is True for a in answers)
        else:
            await asyncio.wait_for(client.ping(), timeout=2)
            redis_ok = True
    except Exception:  # any failure means not ready
        redis_ok = False
    try:  # on RQ's Redis: reported, not a reason to be unready
        depths = await asyncio.wait_for(run_in_threadpool(_outbox_depths, ctx.rq_redis), timeout=2)
    except Exception:
        depths = None
    try:
        await asyncio.wait_for(run_in_threadpool(ctx.mongo.ping), timeout=2)
        mongo = "ok"
    except Exception:  # any failure: reported, not a reason to be unready
        mongo = "unavailable"
    durability = UNKNOWN
    if redis_ok:  # reported, not a reason to be unready
        with contextlib.suppress(Exception):
            work = run_in_threadpool(buffer_durability, ctx.redis_sync)
            durability, _ = await asyncio.wait_for(work, timeout=2)
    body = {
        "redis": "ok" if redis_ok else "unavailable",
        "mongodb": mongo,
        "outbox": depths,
        "buffer_durability": durability.as_dict(),
    }
    return JSONResponse(body, status_code=200 if redis_ok else 503)


def _outbox_depths(client: redis.Redis) -> dict[str, int]:
    pipe = client.pipeline(transaction=False)
    for box in OUTBOXES:
        pipe.hlen(box.entries)
    sizes = pipe.execute()
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
