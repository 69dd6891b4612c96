"""Catalog and enrollment routes (admin writes; course reads for its members)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from ingest.auth import Admin, AnyUser
from ingest.context import AppContext
from shared.domain.catalog import ID_PATTERN, Course, CourseBody
from shared.errors import Forbidden, NotFound
from shared.ops import admin_ops

router = APIRouter(prefix="/api/courses", tags=["catalog"])


class Enrollment(BaseModel):
    course_id: str
    student_id: str
    enrolled: bool


def _ctx(request: Request) -> AppContext:
    return request.app.state.ctx


def _course(ctx: AppContext, course_id: str) -> Course:
    course = ctx.catalog.current.courses.get(course_id)
    if course is None:
        raise NotFound(f"unknown course '{course_id}'", {"course_id": course_id})
    return course


@router.put(
    "/{course_id}",
    response_model=Course,
    responses={201: {"model": Course, "description": "Created"}},
)
async def put_course(
    course_id: Annotated[str, Path(pattern=ID_PATTERN, description="letters, digits, _ . : -")],
    body: CourseBody,
    admin: Admin,
    request: Request,
    response: Response,
) -> Course:
    """Create (201) or replace (200) a course. A material id belongs to one course only."""
    ctx = _ctx(request)
    course = Course(course_id=course_id, **body.model_dump())
    created = await run_in_threadpool(admin_ops.save_course, ctx.mongo, ctx.redis_sync, course)
    await ctx.catalog.refresh()
    response.status_code = 201 if created else 200
    return course


@router.get("/{course_id}", response_model=Course)
async def get_course(course_id: str, principal: AnyUser, request: Request) -> Course:
    """The course, for its enrolled students, its teachers and admins."""
    ctx = _ctx(request)
    course = _course(ctx, course_id)
    if principal.role == "teacher" and principal.user_id not in course.teacher_ids:
        raise Forbidden("you do not teach this course")
    if principal.role == "student":  # the enrollment check of the progress routes (Redis)
        await request.app.state.progress.states(principal.user_id, {}, (course_id,))
    return course


@router.put(
    "/{course_id}/enrollments/{student_id}",
    status_code=201,
    response_model=Enrollment,
    responses={200: {"model": Enrollment, "description": "Already enrolled"}},
)
async def enroll(
    course_id: str, student_id: str, admin: Admin, request: Request, response: Response
) -> dict:
    """Enroll a student (201 when new, 200 when already enrolled)."""
    ctx = _ctx(request)
    _course(ctx, course_id)
    created = await run_in_threadpool(
        admin_ops.set_enrollment, ctx.mongo, ctx.redis_sync, student_id, course_id, True
    )
    response.status_code = 201 if created else 200
    return {"course_id": course_id, "student_id": student_id, "enrolled": True}


@router.delete("/{course_id}/enrollments/{student_id}", status_code=204)
async def unenroll(course_id: str, student_id: str, admin: Admin, request: Request) -> Response:
    """Unenroll a student (404 when they were not enrolled)."""
    ctx = _ctx(request)
    _course(ctx, course_id)
    removed = await run_in_threadpool(
        admin_ops.set_enrollment, ctx.mongo, ctx.redis_sync, student_id, course_id, False
    )
    if not removed:
        raise NotFound("the student is not enrolled in this course", {"student_id": student_id})
    return Response(status_code=204)
