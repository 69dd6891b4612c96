"""Keys the flush set aside (shared/storage/set_aside.py), listed for admins."""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from ingest.deps import Admin, Ctx
from ingest.models import SetAsidePage, SetAsideRow
from shared.errors import InvalidInput
from shared.storage import set_aside

router = APIRouter(tags=["operations"])


@router.get("/api/admin/poison", response_model=SetAsidePage)
async def set_aside_keys(
    admin: Admin,
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: Annotated[str | None, Query(max_length=400)] = None,
) -> SetAsidePage:
    """Every (student, material) a flush set aside because its document cannot be stored or its
    data cannot be read, with the reason and the error, by key. Nothing of theirs is lost: once
    the cause is fixed, `videoprogress poison retry` stores them."""
    after = _decode_cursor(cursor) if cursor else None
    listed = await run_in_threadpool(set_aside.listed, ctx.redis_sync, ctx.key_schema)
    rest = [k for k in listed if after is None or k.key.member > after]
    chunk = rest[:limit]
    more = len(rest) > limit
    rows = [
        SetAsideRow(
            key=k.key.member,
            student_id=k.key.student_id,
            material_id=k.key.material_id,
            set_aside_at=datetime.fromtimestamp(k.since, UTC),
            reason=k.why.reason if k.why.reason in set_aside.REASONS else set_aside.UNREADABLE,
            error=k.why.error,
        )
        for k in chunk
    ]
    next_cursor = _encode_cursor(chunk[-1].key.member) if more and chunk else None
    return SetAsidePage(rows=rows, next_cursor=next_cursor)


def _encode_cursor(member: str) -> str:
    return base64.urlsafe_b64encode(member.encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        return base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidInput("malformed cursor", [{"field": "cursor", "rule": "invalid"}]) from None
