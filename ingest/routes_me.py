"""`GET /api/me/courses`: the caller's courses, shaped by role.

- student: each enrolled course with the numbers of their own course view (computed by the same
  `ProgressService.course_progress`, so they agree with `GET /api/progress/course/{id}`), and
  the latest activity from the enrollment's rollup (stored state: it may lag a flush);
- teacher: each course they teach, with the class summary of the stats route (from rollups);
  a teacher launched from an LMS class: that class's course, summed over that class only;
- admin: every course in the teacher shape, paged by course id (`?limit=&cursor=`).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.concurrency import run_in_threadpool

from ingest.context import AppContext
from ingest.deps import AnyUser, Ctx, Progress, Reads
from ingest.models import MyCourses, StudentCourse, TaughtCourse
from ingest.progress_service import ProgressService
from shared.domain.catalog import ID_PATTERN, Course
from shared.errors import Forbidden, InvalidInput
from shared.ops import teacher_views
from shared.storage import rollup_store
from shared.tokens import Principal

router = APIRouter(tags=["me"])


@router.get("/api/me/courses", response_model=MyCourses)
async def my_courses(
    principal: AnyUser,
    _reads: Reads,
    ctx: Ctx,
    service: Progress,
    limit: Annotated[int, Query(ge=1, le=500, description="admins: courses per page")] = 50,
    cursor: Annotated[str | None, Query(max_length=400, description="admins")] = None,
) -> MyCourses:
    """The caller's courses: enrolled (student), taught (teacher), all, paged (admin)."""
    courses = sorted(ctx.catalog.current.courses.values(), key=lambda c: c.course_id)
    if principal.role == "student":
        found = await _student_courses(ctx, service, principal)
        return MyCourses(courses=found, next_cursor=None)
    if principal.role == "teacher" and principal.class_id is not None:  # launched from an LMS
        scoped = [c for c in courses if c.course_id == principal.class_course_id]
        summed = await _summaries(ctx, scoped, principal.class_id)
        return MyCourses(courses=summed, next_cursor=None)
    if principal.role == "teacher":
        taught = [c for c in courses if principal.user_id in c.teacher_ids]
        return MyCourses(courses=await _summaries(ctx, taught), next_cursor=None)
    after = _decode_cursor(cursor) if cursor else None
    rest = [c for c in courses if after is None or c.course_id > after]
    chunk = rest[:limit]
    more = len(rest) > limit
    next_cursor = _encode_cursor(chunk[-1].course_id) if more and chunk else None
    return MyCourses(courses=await _summaries(ctx, chunk), next_cursor=next_cursor)


async def _student_courses(
    ctx: AppContext, service: ProgressService, principal: Principal
) -> list[StudentCourse]:
    enrolled = await run_in_threadpool(
        rollup_store.student_activity, ctx.mongo, principal.user_id, ctx.live
    )
    found = []
    for course_id in sorted(enrolled):
        course = ctx.catalog.current.courses.get(course_id)
        if course is None:
            continue
        try:
            view = await service.course_progress(principal.user_id, course)
        except Forbidden:  # unenrolled since the read above
            continue
        last = enrolled[course_id]
        found.append(
            StudentCourse(
                course_id=course_id,
                title=course.title,
                progress_percentage=view.progress_percentage,
                completed_materials=len(view.completed_materials),
                total_materials=view.total_materials,
                last_active=datetime.fromtimestamp(last, UTC) if last is not None else None,
            )
        )
    return found


async def _summaries(
    ctx: AppContext, courses: list[Course], class_id: str | None = None
) -> list[TaughtCourse]:
    found = []
    for course in courses:
        summary = await run_in_threadpool(
            teacher_views.summary, ctx.mongo, course, class_id, ctx.live
        )
        found.append(TaughtCourse(course_id=course.course_id, title=course.title, **summary))
    return found


def _encode_cursor(course_id: str) -> str:
    return base64.urlsafe_b64encode(course_id.encode()).decode()


def _decode_cursor(cursor: str) -> str:
    try:
        course_id = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        course_id = ""
    if not re.fullmatch(ID_PATTERN, course_id):  # a cursor is a course id, encoded
        raise InvalidInput("malformed cursor", [{"field": "cursor", "rule": "invalid"}])
    return course_id
