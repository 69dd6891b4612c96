"""A student's data export (right of access): their own, or any student's for an admin."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from ingest.context import AppContext
from ingest.deps import Admin, Ctx, ExportReads, Student, StudentId
from shared.ops.export import student_export, student_export_xapi

router = APIRouter(tags=["data export"])

ExportFormat = Annotated[
    Literal["json", "xapi"],
    Query(description="`xapi`: the student's data as xAPI statements (completed + queued)"),
]


async def _export(ctx: AppContext, student_id: str, fmt: str) -> dict[str, Any]:
    build = student_export_xapi if fmt == "xapi" else student_export
    return await run_in_threadpool(
        build,
        ctx.settings,
        ctx.mongo,
        ctx.redis_sync,
        ctx.key_schema,
        ctx.rq_redis,
        ctx.catalog.current,
        student_id,
    )


@router.get("/api/progress/export")
async def export_own(
    student: Student, _reads: ExportReads, ctx: Ctx, format: ExportFormat = "json"
) -> dict[str, Any]:
    """Everything the service holds about the calling student, as JSON: enrollments, each
    material's state (watched ranges, position, completion, times; MongoDB's copy and the
    current one), heartbeats not yet folded, and outbox entries that name them. Counts as
    30 reads of the read limit (429 with `Retry-After` past it)."""
    return await _export(ctx, student.user_id, format)


@router.get("/api/admin/students/{student_id:any_id}/export")
async def export_student(
    student_id: StudentId,
    admin: Admin,
    _reads: ExportReads,
    ctx: Ctx,
    format: ExportFormat = "json",
) -> dict[str, Any]:
    """The same export for any student (admins only; `403` for everyone else), counted against
    the admin's read limit."""
    return await _export(ctx, student_id, format)
