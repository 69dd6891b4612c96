"""Catalog and enrollment changes: MongoDB first (the record), then the Redis mirror ingest
reads. Used by the admin routes (in a thread) and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from pydantic import BaseModel, ConfigDict, Field

from shared.catalog import Catalog, Course, Identifier
from shared.errors import InvalidInput
from shared.hot_store import CATALOG, CATALOG_VERSION, ENROLLMENT_LOADED, enrollments_key
from shared.mongo_store import MongoStore


def publish_catalog(mongo: MongoStore, r: redis.Redis) -> Catalog:
    """Copy the whole catalog from MongoDB to Redis, where every process picks it up."""
    courses = mongo.all_courses()
    catalog = Catalog(courses)
    pipe = r.pipeline(transaction=True)
    pipe.set(CATALOG, catalog.to_json())
    pipe.incr(CATALOG_VERSION)
    catalog.version = int(pipe.execute()[1])
    return catalog


def save_course(mongo: MongoStore, r: redis.Redis, course: Course) -> bool:
    """Create or replace a course; True when new. A material id may belong to one course only."""
    conflicts = Catalog([c for c in mongo.all_courses() if c.course_id != course.course_id])
    taken = conflicts.conflicts(course)
    if taken:
        raise InvalidInput(
            "material ids already belong to another course",
            details=[{"field": "modules", "rule": "material_id_taken", "material_ids": taken}],
        )
    created = mongo.put_course(course)
    publish_catalog(mongo, r)
    return created


def mirror_enrollments(mongo: MongoStore, r: redis.Redis, student_id: str) -> set[str]:
    """Load a student's enrollments from MongoDB into Redis; returns their course ids."""
    courses = mongo.enrolled_courses(student_id)
    key = enrollments_key(student_id)
    pipe = r.pipeline(transaction=True)
    pipe.delete(key)
    pipe.sadd(key, ENROLLMENT_LOADED, *courses)
    pipe.execute()
    return set(courses)


def set_enrollment(
    mongo: MongoStore, r: redis.Redis, student_id: str, course_id: str, enrolled: bool
) -> bool:
    """Enroll or unenroll; True when something changed."""
    changed = (
        mongo.enroll(student_id, course_id) if enrolled else mongo.unenroll(student_id, course_id)
    )
    mirror_enrollments(mongo, r, student_id)
    return changed


class EnrollmentEntry(BaseModel):
    student_id: str = Field(min_length=1, max_length=256)
    course_id: Identifier


class CatalogFile(BaseModel):
    """The shape `videoprogress load-catalog` reads: courses as PUT by admins, plus enrollments."""

    model_config = ConfigDict(extra="forbid")

    courses: list[Course]
    enrollments: list[EnrollmentEntry] = Field(default_factory=list)


def load_catalog_file(mongo: MongoStore, r: redis.Redis, path: Path | str) -> CatalogFile:
    data = CatalogFile.model_validate(json.loads(Path(path).read_text()))
    for course in data.courses:
        save_course(mongo, r, course)
    for entry in data.enrollments:
        set_enrollment(mongo, r, entry.student_id, entry.course_id, True)
    return data
