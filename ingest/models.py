"""Request and response bodies of the HTTP contract (API.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shared.domain.analytics import ClassRow
from shared.domain.catalog import Identifier
from shared.errors import ClientTsOutOfRange
from shared.lti.registry import RegisteredPlatform

Seconds = Annotated[float, Field(ge=0, le=24 * 3600)]


def _client_date(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """Any refusal of `client_ts` is `client_ts_out_of_range` (its age is checked by the route,
    which knows the server's time)."""
    try:
        return handler(value)  # type: ignore[no-any-return]  # pydantic's handler is untyped
    except ValidationError as exc:
        raise PydanticCustomError(
            ClientTsOutOfRange.code,  # the error code API.md gives it
            "client_ts must be an ISO 8601 date and time with a time zone ({reason})",
            {"reason": exc.errors()[0]["msg"]},
        ) from None


ClientTs = Annotated[AwareDatetime, WrapValidator(_client_date)]


class _Strict(BaseModel):
    # json.loads accepts NaN and Infinity: refuse them; refuse unknown fields (typos).
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class HeartbeatBody(_Strict):
    watch_time: Seconds = Field(description="The player's current position, in seconds")
    total_duration: float = Field(gt=0, le=24 * 3600, description="The video's duration")
    client_ts: ClientTs | None = Field(
        None,
        description="When the player took the reading; at most MAX_CLIENT_AGE_S (30 days) old, "
        "clamped to 60 s ahead of the server's clock",
    )
    session_id: Identifier | None = Field(
        None, description="One per page load: 1-128 of A-Z a-z 0-9 - _ . :"
    )
    seq: int | None = Field(None, ge=0, le=2**53)
    played: list[tuple[Seconds, Seconds]] | None = Field(
        None, max_length=50, description="[start, end] ranges played since the last heartbeat"
    )
    playback_rate: float | None = Field(None, gt=0, le=16)
    event: Literal["play", "pause", "seek", "ended", "exit"] | None = Field(
        None,
        description="The player event that sent this heartbeat (reported to the LRS as xAPI "
        "played, paused, seeked; exit ends the session); absent for the periodic heartbeat",
    )

    @model_validator(mode="after")
    def _consistent(self) -> HeartbeatBody:
        if self.watch_time > self.total_duration:
            raise ValueError("watch_time must not exceed total_duration")
        for start, end in self.played or []:
            if start > end:
                raise ValueError("each played range must be [start, end] with start <= end")
        return self


class HeartbeatItem(HeartbeatBody):
    material_id: Identifier


class HeartbeatBatch(BaseModel):
    # Items are validated one by one by the route, so that one bad item never drops the others.
    heartbeats: list[Any] = Field(max_length=500)


class HeartbeatAccepted(BaseModel):
    accepted: bool = True
    watch_time: float
    progress_percentage: float
    watched_seconds: float
    completed: bool


class ItemError(BaseModel):
    code: str
    message: str
    details: Any = None


class ItemResult(BaseModel):
    index: int
    accepted: bool
    error: ItemError | None = None


class BatchResults(BaseModel):
    results: list[ItemResult]


class MaterialStatus(BaseModel):
    material_id: str
    course_id: str
    watch_time: float
    total_duration: float | None
    progress_percentage: float
    watched_seconds: float = Field(description="seconds credited as watched (verified watching)")
    unverified_seconds: float = Field(
        description="seconds the player claims beyond what it could have played while sending"
    )
    completed: bool
    completed_at: datetime | None
    last_watched: datetime | None
    playback_rate: float | None = Field(
        description="the rate the player last reported; shown, never used for the bound"
    )


class StatusRequest(_Strict):
    material_ids: list[Identifier] = Field(max_length=500)


class StatusBatch(BaseModel):
    statuses: dict[str, MaterialStatus]
    unknown: list[str]


class CompletionAccepted(BaseModel):
    accepted: bool = True
    material_id: str
    completed: bool


class MaterialProgress(BaseModel):
    material_id: str
    title: str
    type: Literal["video", "pdf", "link"]
    watch_time: float
    progress_percentage: float
    completed: bool
    watched_ranges: list[tuple[float, float]] = Field(
        default_factory=list, description="[start, end] seconds watched (videos; else empty)"
    )
    unverified_seconds: float = Field(0.0, description="claimed minus credited watched seconds")


class ModuleProgress(BaseModel):
    module_id: str
    progress_percentage: float
    watched_seconds: float
    total_seconds: float
    materials: list[MaterialProgress]


class VideoTotals(BaseModel):
    total: int
    started: int
    completed: int
    watched_seconds: float
    total_seconds: float


class CourseProgress(BaseModel):
    course_id: str
    progress_percentage: float
    completed_materials: list[str]
    total_materials: int
    videos: VideoTotals
    modules: list[ModuleProgress]


class StudentCourseProgress(CourseProgress):
    student_id: str
    name: str | None = Field(None, description="the LMS roster's name, for display")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorResponse(BaseModel):
    error: ErrorBody


class ClassPage(BaseModel):
    rows: list[ClassRow]
    next_cursor: str | None


class MaterialStatsRow(BaseModel):
    material_id: str
    started: int
    completed: int
    average_watched_percentage: float


class CourseStats(BaseModel):
    course_id: str
    enrolled: int
    average_progress: float
    completion_rate: float
    materials: list[MaterialStatsRow]


class RetentionBucket(BaseModel):
    start: float
    end: float
    share: float


class Retention(BaseModel):
    material_id: str
    duration: float
    viewers: int
    buckets: list[RetentionBucket]


class MatrixMaterial(BaseModel):
    material_id: str
    title: str
    type: Literal["video", "pdf", "link"]


class MatrixRow(BaseModel):
    student_id: str
    name: str | None = Field(None, description="the LMS roster's name, for display")
    progress: list[float] = Field(description="per material, in `materials` order")
    completed: list[bool] = Field(description="per material, in `materials` order")


class ProgressMatrix(BaseModel):
    course_id: str
    materials: list[MatrixMaterial]
    rows: list[MatrixRow]
    next_cursor: str | None


class StudentCourse(BaseModel):
    course_id: str
    title: str
    progress_percentage: float
    completed_materials: int
    total_materials: int
    last_active: datetime | None


class TaughtCourse(BaseModel):
    course_id: str
    title: str
    enrolled: int
    average_progress: float
    completion_rate: float


class SetAsideRow(BaseModel):
    key: str = Field(description="`<material_id>|<student_id>`, as `poison retry --key` takes it")
    student_id: str
    material_id: str
    set_aside_at: datetime = Field(description="when a flush last set it aside")
    reason: Literal["unreadable", "invalid_document", "write_error"]
    error: str = Field(description="the error as it was raised")


class SetAsidePage(BaseModel):
    rows: list[SetAsideRow]
    next_cursor: str | None


class MyCourses(BaseModel):
    courses: list[StudentCourse] | list[TaughtCourse]
    next_cursor: str | None


class LtiPlatforms(BaseModel):
    rows: list[RegisteredPlatform]


class LtiRegistrationInvite(BaseModel):
    url: str = Field(description="paste into the LMS's dynamic registration (used once)")
    expires_at: datetime


class LtiContext(BaseModel):
    platform_id: str
    deployment_id: str | None = Field(
        description="the launch's deployment (a context id is unique within it); None: a "
        "context kept before class ids named the deployment, which is no class any more"
    )
    context_id: str = Field(description="as the LMS sent it")
    title: str | None
    course_id: str | None = Field(
        description="the course whose teacher routes show the context's class (None until a "
        "launch links a material)"
    )
    roster_synced_at: float | None = Field(
        None, description="epoch seconds of the last complete NRPS roster sync (None: never)"
    )
    roster_error: str | None = Field(None, description="why the last roster sync failed, if it did")


class LtiContexts(BaseModel):
    rows: list[LtiContext]


class Jwk(BaseModel):
    kty: Literal["RSA"]
    alg: Literal["RS256"]
    use: Literal["sig"]
    kid: str = Field(description="the RFC 7638 thumbprint of the key")
    n: str
    e: str


class SessionToken(BaseModel):
    token: str = Field(description="the renewed session token (bearer), signed by the tool")
    expires_at: float = Field(description="when it expires (epoch seconds): renew before")


class Jwks(BaseModel):
    keys: list[Jwk] = Field(description="the signing key, and during a rotation the other one")


class LtiGradeRefusal(BaseModel):
    user_id: str
    material_id: str
    status: int | None = Field(description="the platform's HTTP answer to the score")
    detail: str
    at: float


class LtiGradeError(BaseModel):
    at: float
    error: str


class LtiGrades(BaseModel):
    platform_id: str
    targets: int = Field(description="learners on line items of this platform (grade targets)")
    refused: list[LtiGradeRefusal] = Field(
        description="learners whose scores the platform refused: not sent again until they "
        "launch again"
    )
    last_error: LtiGradeError | None = Field(description="the latest failed call, retried")
    queued: int = Field(description="scores waiting in the grade outbox (every platform)")
    dead: int = Field(description="scores set aside (every platform)")
