"""Teacher and admin routes: class progress, per-student detail, stats, retention, erasure.

They read MongoDB (the stored state), so they lag ingest by at most one flush interval.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from ingest.auth import Admin, require_role
from ingest.context import AppContext
from ingest.models import ClassPage, CourseProgress, CourseStats, Retention
from ingest.progress_service import ProgressService
from shared.domain import analytics
from shared.domain.catalog import ID_PATTERN, Course
from shared.errors import Forbidden, InvalidInput, NotFound
from shared.ops import teacher_views
from shared.ops.erasure import erase_progress
from shared.tokens import Principal

router = APIRouter(tags=["teacher and admin"])

TeacherOrAdmin = Annotated[Principal, Depends(require_role("teacher", "admin"))]
SortParam = Annotated[
    str,
    Query(
        description="student_id, progress, last_active, watched_seconds or unverified_seconds;"
        " prefix - to reverse"
    ),
]
InactiveDays = Annotated[
    int | None,
    Query(ge=0, le=36500, description="only students inactive for more than N days or never"),
]
StudentQuery = Annotated[
    str | None, Query(min_length=1, max_length=256, description="student id contains (any case)")
]


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def inactive_since(days: int | None) -> float | None:
    return time.time() - days * 86400 if days is not None else None


def taught_course(ctx: AppContext, principal: Principal, course_id: str) -> Course:
    """The course, if this teacher teaches it (admins see all)."""
    course = ctx.catalog.current.courses.get(course_id)
    if course is None:
        raise NotFound(f"unknown course '{course_id}'", {"course_id": course_id})
    if principal.role != "admin" and principal.user_id not in course.teacher_ids:
        raise Forbidden("you do not teach this course")
    return course


@router.get(
    "/api/teacher/courses/{course_id}/progress",
    response_model=ClassPage,
    responses={200: {"content": {"text/csv": {}}}},
)
async def class_progress(
    course_id: str,
    principal: TeacherOrAdmin,
    request: Request,
    sort: SortParam = "student_id",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    format: Literal["json", "csv"] | None = None,  # noqa: A002 - the contract's name
    inactive_days: InactiveDays = None,
    q: StudentQuery = None,
) -> ClassPage | StreamingResponse:
    """One row per enrolled student (those without progress at 0), sorted and paginated, or
    the whole table as CSV with `?format=csv` or `Accept: text/csv`; `?inactive_days=` and
    `?q=` narrow both."""
    ctx = _ctx(request)
    course = taught_course(ctx, principal, course_id)
    try:
        analytics.parse_sort(sort)
    except ValueError as exc:
        raise InvalidInput(str(exc), [{"field": "sort", "rule": "one_of"}]) from None
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if not wants_csv and inactive_days is None and q is None:  # one page read, not the class
        try:
            chunk, next_cursor = await run_in_threadpool(
                teacher_views.class_page, ctx.mongo, course, sort, limit, cursor
            )
        except ValueError as exc:
            raise InvalidInput(str(exc), [{"field": "cursor", "rule": "invalid"}]) from None
        return ClassPage(rows=[teacher_views.row_dict(r) for r in chunk], next_cursor=next_cursor)
    rows = await run_in_threadpool(teacher_views.class_table, ctx.mongo, course)
    rows = analytics.keep_rows(rows, inactive_since(inactive_days), q)
    if wants_csv:
        ordered, _ = analytics.page(rows, sort, max(len(rows), 1), None)
        return StreamingResponse(
            teacher_views.csv_lines(ordered),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{course_id}-progress.csv"'},
        )
    try:
        chunk, next_cursor = analytics.page(rows, sort, limit, cursor)
    except ValueError as exc:
        raise InvalidInput(str(exc), [{"field": "cursor", "rule": "invalid"}]) from None
    return ClassPage(rows=[teacher_views.row_dict(r) for r in chunk], next_cursor=next_cursor)


@router.get(
    "/api/teacher/courses/{course_id}/students/{student_id}/progress",
    response_model=CourseProgress,
)
async def student_progress(
    course_id: str, student_id: str, principal: TeacherOrAdmin, request: Request
) -> CourseProgress:
    """A student's course view: the same shape and numbers the student sees."""
    course = taught_course(_ctx(request), principal, course_id)
    service: ProgressService = request.app.state.progress
    return await service.course_progress(student_id, course)


@router.get("/api/teacher/courses/{course_id}/stats", response_model=CourseStats)
async def course_stats(course_id: str, principal: TeacherOrAdmin, request: Request) -> dict:
    """Enrolled, average progress, completion rate, and per material started/completed."""
    ctx = _ctx(request)
    course = taught_course(ctx, principal, course_id)
    return await run_in_threadpool(teacher_views.stats, ctx.mongo, course)


@router.get("/api/teacher/materials/{material_id}/retention", response_model=Retention)
async def material_retention(
    material_id: str,
    principal: TeacherOrAdmin,
    request: Request,
    buckets: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict:
    """The audience retention curve: per slice, the share of viewers who watched it."""
    ctx = _ctx(request)
    ref = await ctx.catalog.material(material_id)
    if ref is None:
        raise NotFound(f"unknown material '{material_id}'", {"material_id": material_id})
    course = taught_course(ctx, principal, ref.course_id)
    if ref.material.duration is None:
        raise InvalidInput(
            "retention is for videos", [{"field": "material_id", "rule": "not_a_video"}]
        )
    return await run_in_threadpool(
        teacher_views.retention_curve, ctx.mongo, course, material_id,
        ref.material.duration, buckets,
    )  # fmt: skip


@router.delete("/api/admin/progress")
async def erase(
    admin: Admin,
    request: Request,
    student_id: Annotated[str, Query(min_length=1, max_length=256)],
    material_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> dict:
    """Erase a student's progress (one material, or all) from MongoDB, Redis hot state and
    queued heartbeats; a flush already in flight cannot bring it back. Returns counts."""
    ctx = _ctx(request)
    report = await run_in_threadpool(
        erase_progress, ctx.mongo, ctx.redis_sync, ctx.catalog.current, student_id,
        material_id, ctx.settings.hot_state_ttl_s,
    )  # fmt: skip
    return report.as_dict()
