"""The student routes of API.md: heartbeats in, progress out."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import TypeAdapter, ValidationError
from starlette.datastructures import QueryParams
from starlette.types import Receive, Scope, Send

from ingest.auth import bearer_principal, check_role
from ingest.deps import (
    READERS,
    CourseId,
    MaterialDep,
    MaterialId,
    Progress,
    Reads,
    Student,
    StudentIdQuery,
    StudentOrAdmin,
    course_or_404,
    material_or_404,
    spend,
)
from ingest.errors import answer_error, validation_details
from ingest.metrics import HEARTBEATS_ACCEPTED, HEARTBEATS_REJECTED
from ingest.models import (
    BatchResults,
    CompletionAccepted,
    CourseProgress,
    HeartbeatBatch,
    HeartbeatItem,
    ItemError,
    ItemResult,
    MaterialStatus,
    StatusBatch,
    StatusRequest,
)
from ingest.progress_service import ProgressService, Submission, material_status, to_heartbeat
from ingest.shortcuts import first_header, id_errors, send_json
from shared.domain.catalog import MaterialRef
from shared.domain.progress import Heartbeat
from shared.errors import ClientTsOutOfRange, Forbidden, InvalidInput, ServiceError
from shared.tokens import Principal

router = APIRouter(prefix="/api/progress", tags=["student progress"])


def subject_of(principal: Principal, student_id: str | None) -> str:
    """Whose progress a read is about: a student's own, or the one an admin names."""
    if principal.role == "admin":
        if not student_id:
            raise InvalidInput(
                "an admin must name the student with ?student_id=",
                [{"field": "student_id", "rule": "missing"}],
            )
        return student_id
    if student_id and student_id != principal.user_id:
        raise Forbidden("a student can only read their own progress")
    return principal.user_id


@router.post("/heartbeats", status_code=202, response_model=BatchResults)
async def post_heartbeats(
    body: HeartbeatBatch, student: Student, service: Progress
) -> BatchResults:
    """The offline outbox flush: each item is judged alone; one bad item never drops the good."""
    now = service.ctx.clock.time()
    results: list[ItemResult | None] = [None] * len(body.heartbeats)
    by_material: dict[str, tuple[MaterialRef, list[Heartbeat], list[int]]] = {}
    for index, raw in enumerate(body.heartbeats):
        try:
            item = _validate_item(raw)
            ref = await material_or_404(service.ctx.catalog, item.material_id)
            hb = to_heartbeat(item, ref, now, service.ctx.settings.max_client_age_s)
        except ServiceError as exc:
            results[index] = _rejected(index, exc)
            continue
        entry = by_material.setdefault(item.material_id, (ref, [], []))
        entry[1].append(hb)
        entry[2].append(index)
    submissions = [Submission(ref, m, hbs) for m, (ref, hbs, _) in by_material.items()]
    refusals = await service.record_many(student.user_id, submissions)
    for (_, _, indexes), refusal in zip(by_material.values(), refusals, strict=True):
        for index in indexes:
            if refusal is not None:
                results[index] = _rejected(index, refusal)
            else:
                HEARTBEATS_ACCEPTED.inc()
                results[index] = ItemResult(index=index, accepted=True)
    return BatchResults(results=[r for r in results if r is not None])


def _validate_item(raw: Any) -> HeartbeatItem:
    try:
        return HeartbeatItem.model_validate(raw)
    except ValidationError as exc:
        details = validation_details(exc.errors())
        coded = details[0]["rule"] == ClientTsOutOfRange.code
        refusal = ClientTsOutOfRange if coded else InvalidInput
        raise refusal(f"{details[0]['field']}: {details[0]['message']}", details) from None


def _rejected(index: int, exc: ServiceError) -> ItemResult:
    HEARTBEATS_REJECTED.labels(reason=exc.code).inc()
    error = ItemError(code=exc.code, message=exc.message, details=exc.details)
    return ItemResult(index=index, accepted=False, error=error)


STATUS_PATH = "/api/progress/video/{video_id}/status"


def add_status_route(app: FastAPI) -> APIRoute:
    """Add `get_status` to the app's own router, not this module's: `Shortcuts` needs the route
    itself (FastAPI keeps an included router's routes inside it). Returns the route."""
    app.router.add_api_route(
        STATUS_PATH, get_status, methods=["GET"], response_model=MaterialStatus, tags=router.tags
    )
    return next(
        r for r in app.router.routes if isinstance(r, APIRoute) and r.endpoint is get_status
    )


async def get_status(
    video_id: MaterialId,
    principal: StudentOrAdmin,
    _reads: Reads,
    service: Progress,
    student_id: StudentIdQuery = None,
) -> MaterialStatus:
    """Where to resume and how much was watched; reflects every accepted heartbeat."""
    return await _status(service, principal, video_id, student_id)


async def _status(
    service: ProgressService, principal: Principal, video_id: str, student_id: str | None
) -> MaterialStatus:
    subject = subject_of(principal, student_id)  # a refused ?student_id= answers before a 404
    ref = await material_or_404(service.ctx.catalog, video_id)
    states = await service.states(subject, {video_id: ref})
    return material_status(video_id, ref, states[video_id])


_STATUS_JSON = TypeAdapter(MaterialStatus)  # as FastAPI serializes the response model


async def answer_status(scope: Scope, receive: Receive, send: Send) -> None:
    """`get_status` for a GET (`Shortcuts`, ingest/shortcuts.py; HEAD goes through FastAPI):
    its dependencies in FastAPI's order (the token, the role, the read quota), then the path's
    id and the query's `student_id` validated together, then its body; the answer FastAPI's
    byte for byte, every refusal in the error shape (tests/test_shortcuts.py holds the two
    equal)."""
    try:
        state = scope["app"].state
        ctx, service = state.ctx, state.progress
        authorization = first_header(scope, b"authorization")
        principal = check_role(await bearer_principal(ctx.verifier, authorization), READERS)
        await spend(ctx, principal.user_id, 1)
        video_id: str = scope["path_params"]["video_id"]
        student_id = QueryParams(scope["query_string"]).get("student_id")  # the last, as Starlette
        errors = id_errors(("path", "video_id"), video_id)
        if student_id is not None:
            errors += id_errors(("query", "student_id"), student_id)
        if errors:
            raise RequestValidationError(errors)
        status = await _status(service, principal, video_id, student_id)
    except Exception as exc:  # every refusal in the error shape, as the app's handlers answer
        await answer_error(exc, "GET", scope["path"])(scope, receive, send)
    else:
        await send_json(send, 200, _STATUS_JSON.dump_json(status, by_alias=True))


@router.post("/videos/status", response_model=StatusBatch)
async def post_statuses(
    body: StatusRequest,
    principal: StudentOrAdmin,
    _reads: Reads,
    service: Progress,
    student_id: StudentIdQuery = None,
) -> StatusBatch:
    """Many statuses in one request (the course page's one request instead of N)."""
    subject = subject_of(principal, student_id)
    refs: dict[str, MaterialRef] = {}
    unknown: list[str] = []
    for material_id in dict.fromkeys(body.material_ids):
        ref = await service.ctx.catalog.material(material_id)
        if ref is None:
            unknown.append(material_id)
        else:
            refs[material_id] = ref
    states = await service.states(subject, refs) if refs else {}
    return StatusBatch(
        statuses={m: material_status(m, refs[m], st) for m, st in states.items()},
        unknown=unknown,
    )


@router.post("/material/{material_id}/complete", status_code=202, response_model=CompletionAccepted)
async def post_complete(
    material_id: MaterialId, student: Student, ref: MaterialDep, service: Progress
) -> CompletionAccepted:
    """Mark a non-video material (pdf, link) complete; sticky and idempotent."""
    if ref.material.type == "video":
        raise InvalidInput(
            "videos complete by watching", [{"field": "material_id", "rule": "is_a_video"}]
        )
    submission = Submission(
        ref, material_id, [Heartbeat(received_at=service.ctx.clock.time(), complete=True)]
    )
    [refusal] = await service.record_many(student.user_id, [submission])
    if refusal is not None:
        raise refusal
    return CompletionAccepted(material_id=material_id, completed=True)


@router.get("/course/{course_id}", response_model=CourseProgress)
async def get_course_progress(
    course_id: CourseId,
    principal: StudentOrAdmin,
    _reads: Reads,
    service: Progress,
    student_id: StudentIdQuery = None,
) -> CourseProgress:
    """Course progress: completed materials / all materials x 100, with per-module detail."""
    subject = subject_of(principal, student_id)  # a refused ?student_id= answers before a 404
    course = course_or_404(service.ctx.catalog, course_id)
    return await service.course_progress(subject, course)
