"""Teacher and admin routes: class progress, per-student detail, stats, retention, erasure.

They read MongoDB (the stored state), so they lag ingest by at most one flush interval.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import AfterValidator, StringConstraints
from starlette.concurrency import run_in_threadpool

from ingest.deps import (
    Admin,
    CourseId,
    Ctx,
    MaterialId,
    Progress,
    Reads,
    StudentId,
    TaughtCourseDep,
    TeacherOrAdmin,
    check_teaches,
    course_or_404,
    material_or_404,
)
from ingest.models import ClassPage, CourseStats, Retention, StudentCourseProgress
from shared.domain import analytics
from shared.domain.catalog import ID_PATTERN, PrintableId, printable
from shared.errors import InvalidInput, NotFound
from shared.ops import teacher_views
from shared.ops.erasure import erase_progress

router = APIRouter(tags=["teacher and admin"])

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
# Printable, as ids are (API.md, "Hostile input"): a search never holds a control character.
StudentQuery = Annotated[
    Annotated[str, StringConstraints(min_length=1, max_length=256), AfterValidator(printable)]
    | None,
    Query(description="student id or name contains (any case)"),
]


def inactive_since(now: float, days: int | None) -> float | None:
    return now - days * 86400 if days is not None else None


@router.get(
    "/api/teacher/courses/{course_id}/progress",
    response_model=ClassPage,
    responses={200: {"content": {"text/csv": {}}}},
)
async def class_progress(
    course_id: CourseId,
    principal: TeacherOrAdmin,
    _reads: Reads,
    ctx: Ctx,
    request: Request,
    sort: SortParam = "student_id",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
    format: Literal["json", "csv"] | None = None,  # the contract's name, shadowing a builtin
    inactive_days: InactiveDays = None,
    q: StudentQuery = None,
) -> ClassPage | StreamingResponse:
    """One row per enrolled student (those without progress at 0), sorted and paginated, or
    the whole table as CSV with `?format=csv` or `Accept: text/csv`; `?inactive_days=` and
    `?q=` narrow both. A teacher launched from an LMS class sees that class's students, each
    with the roster's `name`."""
    # looked up here, not as a dependency: a refused ?limit= or ?format= answers before a 404
    course = check_teaches(principal, course_or_404(ctx.catalog, course_id))
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
                teacher_views.class_page,
                ctx.mongo,
                course,
                sort,
                limit,
                cursor,
                principal.class_id,
                ctx.live,
            )
        except analytics.BadCursor as exc:
            raise InvalidInput(str(exc), [{"field": "cursor", "rule": "invalid"}]) from None
        return ClassPage(rows=chunk, next_cursor=next_cursor)
    rows = await run_in_threadpool(
        teacher_views.filtered_table,
        ctx.mongo,
        course,
        inactive_since(ctx.clock.time(), inactive_days),
        q,
        principal.class_id,
        ctx.live,
    )
    if wants_csv:
        ordered, _ = analytics.page(rows, sort, max(len(rows), 1), None)
        return StreamingResponse(
            teacher_views.csv_lines(ordered),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{course_id}-progress.csv"'},
        )
    try:
        chunk, next_cursor = analytics.page(rows, sort, limit, cursor)
    except analytics.BadCursor as exc:
        raise InvalidInput(str(exc), [{"field": "cursor", "rule": "invalid"}]) from None
    return ClassPage(rows=chunk, next_cursor=next_cursor)


@router.get(
    "/api/teacher/courses/{course_id}/students/{student_id:any_id}/progress",
    response_model=StudentCourseProgress,
)
async def student_progress(
    course_id: CourseId,  # declared here too, so the schema lists it first, as the path does
    student_id: StudentId,
    principal: TeacherOrAdmin,
    _reads: Reads,
    course: TaughtCourseDep,
    service: Progress,
    ctx: Ctx,
) -> StudentCourseProgress:
    """A student's course view: the same shape and numbers the student sees, with their id and
    the roster's `name` (one enrollment read). A teacher launched from an LMS class sees only
    that class's active students (404 for others)."""
    enrolled, name = await run_in_threadpool(
        ctx.mongo.enrolled_name, student_id, course.course_id, principal.class_id
    )
    if principal.class_id is not None and not enrolled:
        raise NotFound(f"no student '{student_id}' in your class", {"student_id": student_id})
    view = await service.course_progress(student_id, course)
    return StudentCourseProgress(**view.model_dump(), student_id=student_id, name=name)


@router.get("/api/teacher/courses/{course_id}/stats", response_model=CourseStats)
async def course_stats(
    principal: TeacherOrAdmin, _reads: Reads, course: TaughtCourseDep, ctx: Ctx
) -> dict[str, Any]:
    """Enrolled, average progress, completion rate, and per material started/completed."""
    return await run_in_threadpool(
        teacher_views.stats, ctx.mongo, course, principal.class_id, ctx.live
    )


@router.get("/api/teacher/materials/{material_id}/retention", response_model=Retention)
async def material_retention(
    material_id: MaterialId,
    principal: TeacherOrAdmin,
    _reads: Reads,
    ctx: Ctx,
    buckets: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """The audience retention curve: per slice, the share of viewers who watched it."""
    # looked up here, not as a dependency: a refused ?buckets= answers before a 404
    ref = await material_or_404(ctx.catalog, material_id)
    course = check_teaches(principal, course_or_404(ctx.catalog, ref.course_id))
    if ref.material.duration is None:
        raise InvalidInput(
            "retention is for videos", [{"field": "material_id", "rule": "not_a_video"}]
        )
    return await run_in_threadpool(
        teacher_views.retention_curve,
        ctx.mongo,
        course,
        material_id,
        ref.material.duration,
        buckets,
        principal.class_id,
    )


@router.delete("/api/admin/progress")
async def erase(
    admin: Admin,
    ctx: Ctx,
    student_id: Annotated[PrintableId, Query(description="the student")],
    material_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> dict[str, Any]:
    """Erase a student's progress (one material, or all) from MongoDB, Redis hot state and
    queued heartbeats, enrollments and the outboxes; nothing in flight (a flush, a completion
    job) can bring it back after this answers. Returns counts."""
    report = await run_in_threadpool(
        erase_progress,
        ctx.mongo,
        ctx.redis_sync,
        ctx.key_schema,
        ctx.catalog.current,
        student_id,
        material_id,
        ctx.settings.erasure_tombstone_ttl_s,
        ctx.rq_redis,
        ctx.clock.time(),
    )
    return report.as_dict()
