"""The course catalog: courses, modules, materials, and the index ingest validates against."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# Ids appear in Redis keys and URLs: letters, digits and `_ . : -` only (never `|`).
ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,128}$"
Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


def printable(value: str) -> str:
    """Refuse what `str.isprintable` refuses: control and format characters, surrogates,
    unassigned code points, separators other than the space."""
    if not value.isprintable():
        raise PydanticCustomError("not_printable", "must hold printable characters only")
    return value


# An id a client names that is not a catalog id (a student's, a teacher's), or one not yet
# looked up in the catalog (a path's): API.md, "Hostile input".
PrintableId = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(printable)
]
DURATION_TOLERANCE_S = 2.0
DURATION_TOLERANCE_RATIO = 0.02
# Validation context for documents this service stored itself: a course stored before a rule
# existed still loads (one old material url must not stop the whole catalog); input is checked.
STORED = {"stored": True}
# Browsers drop tabs and newlines inside a URL and read `\` as `/`: "/\t/x" or "/\x" would
# leave this service for the host x.
_UNSAFE_IN_URL = re.compile(r"[\x00-\x1f\x7f\\]")


class Material(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    material_id: Identifier
    title: str = Field(min_length=1, max_length=300)
    type: Literal["video", "pdf", "link"]
    duration: float | None = Field(None, gt=0, le=24 * 3600)
    url: str | None = Field(None, max_length=2000)

    @field_validator("url")
    @classmethod
    def _url_is_http_or_on_this_service(cls, url: str | None, info: ValidationInfo) -> str | None:
        if url is None or (info.context or {}).get("stored"):
            return url
        return checked_url(url)

    @model_validator(mode="after")
    def _video_needs_duration(self) -> Material:
        if self.type == "video" and self.duration is None:
            raise ValueError("a video material needs a duration in seconds")
        if self.type != "video":
            self.duration = None
        return self


class Module(BaseModel):
    model_config = ConfigDict(extra="forbid")

    module_id: Identifier
    title: str = Field(min_length=1, max_length=300)
    materials: list[Material] = Field(default_factory=list, max_length=1000)


class CourseBody(BaseModel):
    """A course as PUT by an admin (the id comes from the URL)."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    teacher_ids: list[PrintableId] = Field(default_factory=list, max_length=1000)
    modules: list[Module] = Field(default_factory=list, max_length=1000)

    @model_validator(mode="after")
    def _unique_ids(self) -> CourseBody:
        material_ids = [m.material_id for mod in self.modules for m in mod.materials]
        if len(material_ids) != len(set(material_ids)):
            raise ValueError("material ids must be unique within a course")
        module_ids = [mod.module_id for mod in self.modules]
        if len(module_ids) != len(set(module_ids)):
            raise ValueError("module ids must be unique within a course")
        return self


class Course(CourseBody):
    course_id: Identifier
    # Read as stored: the ids were checked when they came in (a course stored before that check
    # must still load, or no catalog would).
    teacher_ids: list[str] = Field(default_factory=list, max_length=1000)

    @classmethod
    def from_stored(cls, doc: object) -> Course:
        """A course as this service stored it (rules added since are not applied again)."""
        return cls.model_validate(doc, context=STORED)

    @property
    def materials(self) -> list[Material]:
        return [m for mod in self.modules for m in mod.materials]


def checked_url(url: str) -> str:
    """`url` when it is an absolute http(s) URL or a path on this service (a single leading
    `/`); raises ValueError otherwise (`javascript:`, `//host`, a relative path...)."""
    if _UNSAFE_IN_URL.search(url) is None:
        if url.startswith("/") and not url.startswith("//"):
            return url
        if _is_absolute_http(url):
            return url
    raise ValueError(
        "a material url is an absolute http(s) URL or a path on this service starting with a "
        "single '/', without control characters or backslashes"
    )


def _is_absolute_http(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return False
    scheme = parts.scheme.lower()
    return (
        scheme in ("http", "https")
        and url[len(scheme) :].startswith("://")
        and bool(parts.hostname)
    )


@dataclass(frozen=True, slots=True)
class MaterialRef:
    course_id: str
    material: Material


def durations_agree(reported: float, catalog: float) -> bool:
    """The player's duration matches the catalog's within 2 s or 2 % (API.md)."""
    allowed = max(DURATION_TOLERANCE_S, DURATION_TOLERANCE_RATIO * catalog)
    return math.isfinite(reported) and abs(reported - catalog) <= allowed


class Catalog:
    """An immutable index of courses and materials; rebuilt whole when the catalog changes."""

    def __init__(self, courses: list[Course], version: int = 0) -> None:
        self.version = version
        self.courses = {c.course_id: c for c in courses}
        self.materials: dict[str, MaterialRef] = {}
        for course in courses:
            for material in course.materials:
                self.materials[material.material_id] = MaterialRef(course.course_id, material)

    def material(self, material_id: str) -> MaterialRef | None:
        return self.materials.get(material_id)

    def to_json(self) -> str:
        return json.dumps([c.model_dump(mode="json") for c in self.courses.values()])

    @classmethod
    def from_json(cls, blob: str, version: int = 0) -> Catalog:
        return cls([Course.from_stored(doc) for doc in json.loads(blob)], version)

    def conflicts(self, course: Course) -> list[str]:
        """Material ids of `course` that already belong to another course."""
        return [
            m.material_id
            for m in course.materials
            if (ref := self.materials.get(m.material_id)) and ref.course_id != course.course_id
        ]
