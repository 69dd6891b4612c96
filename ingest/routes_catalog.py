"""Catalog and enrollment routes (admin writes; course reads for its members)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response
from pydantic import BaseModel
from rq import Queue, Retry
from starlette.concurrency import run_in_threadpool

from ingest.deps import (
    Admin,
    AnyUser,
    CourseDep,
    CourseId,
    Ctx,
    Progress,
    StudentId,
    check_teaches,
)
from shared.domain.catalog import ID_PATTERN, Course, CourseBody
from shared.errors import NotFound
from shared.ops import admin_ops

router = APIRouter(prefix="/api/courses", tags=["catalog"])
RECALCULATE_JOB = "workers.maintenance.recalculate_course"  # by name: ingest never imports workers


class Enrollment(BaseModel):
    course_id: str
    student_id: str
    enrolled: bool


@router.put(
    "/{course_id}",
    response_model=Course,
    responses={201: {"model": Course, "description": "Created"}},
)
async def put_course(
    course_id: Annotated[str, Path(pattern=ID_PATTERN, description="letters, digits, _ . : -")],
    body: CourseBody,
    admin: Admin,
    ctx: Ctx,
    response: Response,
) -> Course:
    """Create (201) or replace (200) a course. A material id belongs to one course only. A
    replaced course's enrollments are recalculated in the background right after (the views
    compute what is not yet recalculated when they read it)."""
    course = Course(course_id=course_id, **body.model_dump())
    created = await run_in_threadpool(
        admin_ops.save_course, ctx.mongo, ctx.redis_sync, course, False
    )
    if not created:
        queue = Queue(ctx.settings.queue_name, connection=ctx.rq_redis)
        retry = Retry(max=3, interval=[10, 60, 300])
        await run_in_threadpool(queue.enqueue, RECALCULATE_JOB, course_id, job_timeout=3600,
                                result_ttl=0, retry=retry)  # fmt: skip
    await ctx.catalog.refresh()
    response.status_code = 201 if created else 200
    return course


@router.get("/{course_id}", response_model=Course)
async def get_course(
    course_id: CourseId, principal: AnyUser, course: CourseDep, progress: Progress
) -> Course:
    """The course, for its enrolled students, its teachers (an LMS class's instructor: the
    course of their class) and admins."""
    if principal.role == "teacher":
        check_teaches(principal, course)
    if principal.role == "student":
        await progress.check_enrolled(principal.user_id, course_id)
    return course


@router.put(
    "/{course_id}/enrollments/{student_id:any_id}",
    status_code=201,
    response_model=Enrollment,
    responses={200: {"model": Enrollment, "description": "Already enrolled"}},
)
async def enroll(
    course_id: CourseId,
    student_id: StudentId,
    admin: Admin,
    _: CourseDep,
    ctx: Ctx,
    response: Response,
) -> Enrollment:
    """Enroll a student (201 when new, 200 when already enrolled)."""
    created = await run_in_threadpool(
        admin_ops.set_enrollment,
        ctx.mongo,
        ctx.redis_sync,
        ctx.key_schema,
        student_id,
        course_id,
        True,
    )
    response.status_code = 201 if created else 200
    return Enrollment(course_id=course_id, student_id=student_id, enrolled=True)


@router.delete("/{course_id}/enrollments/{student_id:any_id}", status_code=204)
async def unenroll(
    course_id: CourseId, student_id: StudentId, admin: Admin, _: CourseDep, ctx: Ctx
) -> Response:
    """Unenroll a student (404 when they were not enrolled)."""
    removed = await run_in_threadpool(
        admin_ops.set_enrollment,
        ctx.mongo,
        ctx.redis_sync,
        ctx.key_schema,
        student_id,
        course_id,
        False,
    )
    if not removed:
        raise NotFound("the student is not enrolled in this course", {"student_id": student_id})
    return Response(status_code=204)
