"""What a route needs, declared in its signature: `course: CourseDep`, `student: Student`.

FastAPI runs a route's dependencies in signature order, and all of them before it validates
the route's own query and body. So a lookup dependency (`CourseDep`, `MaterialDep`) goes after
the role, and a route whose query can be refused (422) before the lookup (404) calls
`course_or_404` / `material_or_404` in its body instead, so every answer stays the same.
Every dependency is `async def`: FastAPI runs plain `def` ones in a thread pool.
`Reads` and `ExportReads` count the caller's reads against READ_RATE_LIMIT_PER_MINUTE; they go
after the role, so that a caller without the role gets its 403 first.

Ids a client names in a path or a query (`CourseId`, `MaterialId`, `StudentId`,
`StudentIdQuery`) are 1-128 printable characters (API.md, "Hostile input"), else `422`. A
dependency that takes one declares it with the same alias, so a refused id never reaches its
lookup (FastAPI skips a dependency whose own parameters failed). A student id is any of
them, `/` included (an identity provider's subject, `idp/ana`): a route that names one in its
path declares it `{student_id:any_id}`, so that its `%2F` (decoded by the server) still
reaches the route instead of a 404.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Path, Query, Request
from starlette.convertors import StringConvertor, register_url_convertor

from ingest.auth import current_principal, require_role
from ingest.context import AppContext, CatalogCache
from ingest.metrics import READS_RATE_LIMITED
from ingest.progress_service import ProgressService
from shared.domain.catalog import Course, MaterialRef, PrintableId
from shared.errors import Forbidden, NotFound, RateLimited
from shared.tokens import Principal

AnyUser = Annotated[Principal, Depends(current_principal)]
Student = Annotated[Principal, Depends(require_role("student"))]
READERS = ("student", "admin")  # who reads a student's progress: the student, or an admin
StudentOrAdmin = Annotated[Principal, Depends(require_role(*READERS))]
TeacherOrAdmin = Annotated[Principal, Depends(require_role("teacher", "admin"))]
Admin = Annotated[Principal, Depends(require_role("admin"))]


async def get_ctx(request: Request) -> AppContext:
    return request.app.state.ctx  # type: ignore[no-any-return]  # starlette's State is untyped


async def get_progress_service(request: Request) -> ProgressService:
    return request.app.state.progress  # type: ignore[no-any-return]  # starlette's State


class _AnyId(StringConvertor):
    """A path segment of any characters, `/` and control characters included (`StudentId`
    then refuses a control character with a 422, as on every route)."""

    regex = "(?s:.+)"


register_url_convertor("any_id", _AnyId())  # `{student_id:any_id}` in a route's path

_PRINTABLE = "1-128 printable characters"
CourseId = Annotated[PrintableId, Path(description=f"the course id ({_PRINTABLE})")]
MaterialId = Annotated[PrintableId, Path(description=f"the material id ({_PRINTABLE})")]
StudentId = Annotated[PrintableId, Path(description=f"the student id ({_PRINTABLE})")]
StudentIdQuery = Annotated[
    PrintableId | None, Query(description=f"admins: the student ({_PRINTABLE})")
]

Ctx = Annotated[AppContext, Depends(get_ctx)]
Progress = Annotated[ProgressService, Depends(get_progress_service)]

READ_WINDOW_S = 60
EXPORT_READ_COST = 30  # an export reads everything held about a student: it counts as this many


def read_quota(cost: int) -> Callable[[Principal, AppContext], Awaitable[None]]:
    """A dependency counting `cost` reads of the caller (any role) in the current minute, in
    Redis (so the limit holds across API processes); past the limit it raises RateLimited
    (429, `Retry-After`: when the minute ends) and counts nothing."""

    async def spend_reads(principal: AnyUser, ctx: Ctx) -> None:
        await spend(ctx, principal.user_id, cost)

    return spend_reads


async def spend(ctx: AppContext, user_id: str, cost: int) -> None:
    """Count `cost` reads of `user_id` in the current minute (`read_quota`'s check, for the
    routes that FastAPI does not serve: ingest/shortcuts.py)."""
    limit = ctx.settings.read_rate_limit_per_minute
    if limit == 0:
        return
    now = ctx.clock.time()
    if await ctx.hot.spend_reads(user_id, cost, limit, READ_WINDOW_S, now):
        return
    READS_RATE_LIMITED.inc()
    retry_after = max(1, math.ceil(READ_WINDOW_S - now % READ_WINDOW_S))
    raise RateLimited("too many reads from this user; retry later", retry_after)


Reads = Annotated[None, Depends(read_quota(1))]
ExportReads = Annotated[None, Depends(read_quota(EXPORT_READ_COST))]


def course_or_404(catalog: CatalogCache, course_id: str) -> Course:
    """The course from the current catalog; NotFound when there is none."""
    course = catalog.current.courses.get(course_id)
    if course is None:
        raise NotFound(f"unknown course '{course_id}'", {"course_id": course_id})
    return course


async def material_or_404(catalog: CatalogCache, material_id: str) -> MaterialRef:
    """The material and its course; NotFound when the catalog (re-read once) has none."""
    ref = await catalog.material(material_id)
    if ref is None:
        raise NotFound(f"unknown material '{material_id}'", {"material_id": material_id})
    return ref


def check_teaches(principal: Principal, course: Course) -> Course:
    """The course, if this teacher teaches it (admins see all), or if it holds the LMS class
    their session is scoped to (they then see that class only: `principal.class_id`);
    Forbidden otherwise."""
    if principal.role == "admin":
        return course
    if principal.class_id is not None:
        if principal.class_course_id != course.course_id:
            raise Forbidden("your LMS class is not in this course")
        return course
    if principal.user_id not in course.teacher_ids:
        raise Forbidden("you do not teach this course")
    return course


async def path_course(course_id: CourseId, ctx: Ctx) -> Course:
    return course_or_404(ctx.catalog, course_id)


async def path_material(material_id: MaterialId, ctx: Ctx) -> MaterialRef:
    return await material_or_404(ctx.catalog, material_id)


CourseDep = Annotated[Course, Depends(path_course)]
MaterialDep = Annotated[MaterialRef, Depends(path_material)]


async def taught_course(principal: TeacherOrAdmin, course: CourseDep) -> Course:
    return check_teaches(principal, course)


TaughtCourseDep = Annotated[Course, Depends(taught_course)]
