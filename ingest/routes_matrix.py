"""The progress matrix of a course: per enrolled student, each material's progress and
completion, from the enrollment rollups (a page of them with `?limit=`, else one find of the
class). Teachers of the course and admins."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from fastapi.responses import StreamingResponse
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool

from ingest.deps import CourseId, Ctx, Reads, TeacherOrAdmin, check_teaches, course_or_404
from ingest.models import ProgressMatrix
from ingest.routes_teacher import SortParam
from shared.domain import analytics
from shared.domain.catalog import Course
from shared.errors import InvalidInput
from shared.ops import teacher_views
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore

router = APIRouter(tags=["teacher and admin"])

MAX_ROWS = 5000


def _matrix_rows(
    mongo: MongoStore,
    course: Course,
    sort: str,
    limit: int | None,
    cursor: str | None,
    class_id: str | None,
    live: LiveRollups,
) -> tuple[list[dict[str, Any]], list[teacher_views.MatrixRow], str | None]:
    """A page read by MongoDB when `limit` is given (one page of documents); else all rows,
    sorted here; one LMS class's with `class_id`. Raises BadCursor for a bad cursor."""
    if limit is not None:
        rows, next_cursor = teacher_views.matrix_page(
            mongo, course, sort, limit, cursor, class_id, live
        )
        return teacher_views.matrix_header(course), rows, next_cursor
    materials, every = teacher_views.matrix(mongo, course, class_id, live)
    by_student = {r.row.student_id: r for r in every}
    chunk, next_cursor = analytics.page([r.row for r in every], sort, max(len(every), 1), cursor)
    return materials, [by_student[r.student_id] for r in chunk], next_cursor


@router.get(
    "/api/teacher/courses/{course_id}/matrix",
    response_model=ProgressMatrix,
    responses={200: {"content": {"text/csv": {}}}},
)
async def progress_matrix(
    course_id: CourseId,
    principal: TeacherOrAdmin,
    _reads: Reads,
    ctx: Ctx,
    sort: SortParam = "student_id",
    limit: Annotated[int | None, Query(ge=1, le=MAX_ROWS)] = None,
    cursor: str | None = None,
    format: Literal["json", "csv"] | None = None,  # as the class table's, shadowing a builtin
) -> Response:
    """Materials in course order and one row per enrolled student with each material's
    progress percentage and completion, sorted like the class table; all rows unless
    `?limit=`; `?format=csv` streams `student_id,name,<material_id>...` with the percentages. A
    teacher launched from an LMS class sees that class's students, with the roster's `name`."""
    # looked up here, not as a dependency: a refused ?limit= answers before a 404
    course = check_teaches(principal, course_or_404(ctx.catalog, course_id))
    try:
        analytics.parse_sort(sort)
    except ValueError as exc:
        raise InvalidInput(str(exc), [{"field": "sort", "rule": "one_of"}]) from None
    try:
        materials, ordered, next_cursor = await run_in_threadpool(
            _matrix_rows, ctx.mongo, course, sort, limit, cursor, principal.class_id, ctx.live
        )
    except analytics.BadCursor as exc:
        raise InvalidInput(str(exc), [{"field": "cursor", "rule": "invalid"}]) from None
    if format == "csv":
        return StreamingResponse(
            teacher_views.matrix_csv_lines([m["material_id"] for m in materials], ordered),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{course_id}-matrix.csv"'},
        )
    body: dict[str, Any] = {
        "course_id": course_id,
        "materials": materials,
        "rows": [
            {
                "student_id": r.row.student_id,
                "name": r.row.name,
                "progress": r.progress,
                "completed": r.completed,
            }
            for r in ordered
        ],
        "next_cursor": next_cursor,
    }
    # Serialized directly: validating 200,000 cells against the model costs more than the read.
    return Response(to_json(body), media_type="application/json")
