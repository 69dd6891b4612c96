"""Catalog and enrollment changes: MongoDB first (the record), then the Redis mirror ingest
reads. Used by the admin routes (in a thread) and the CLI."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from shared.domain.catalog import Catalog, Course, CourseBody, Identifier, PrintableId
from shared.errors import InvalidInput, Unavailable
from shared.ops.rollups import settle, settle_courses
from shared.storage import rollup_store
from shared.storage.clients import Buffer
from shared.storage.keys import (
    CATALOG,
    CATALOG_VERSION,
    ENROLLMENT_LOADED,
    KeySchema,
)
from shared.storage.mongo_store import MongoStore
from shared.storage.scripts import SCRIPTS, as_text


def publish_catalog(mongo: MongoStore, r: Buffer, attempts: int = 5) -> Catalog:
    """Copy the whole catalog from MongoDB to Redis, where every process picks it up. Two
    concurrent publishes cannot leave an older snapshot under a newer version."""
    publish = r.register_script(SCRIPTS["publish"])
    for _ in range(attempts):
        version = as_text(r.get(CATALOG_VERSION) or b"0")
        catalog = Catalog(mongo.all_courses())
        published = int(publish(keys=[CATALOG, CATALOG_VERSION], args=[version, catalog.to_json()]))
        if published:
            catalog.version = published
            return catalog
    raise Unavailable("the catalog kept changing while being published; retry")


def save_course(mongo: MongoStore, r: Buffer, course: Course, recalculate: bool = True) -> bool:
    """Create or replace a course; True when new. A material id may belong to one course only.
    A replaced course's enrollments are recalculated (`recalculate_course`: it may have gained
    or lost materials) here, or, with `recalculate=False`, by the caller's job."""
    conflicts = Catalog([c for c in mongo.all_courses() if c.course_id != course.course_id])
    taken = conflicts.conflicts(course)
    if taken:
        raise InvalidInput(
            "material ids already belong to another course",
            details=[{"field": "modules", "rule": "material_id_taken", "material_ids": taken}],
        )
    created = mongo.put_course(course)
    publish_catalog(mongo, r)
    if not created and recalculate:
        recalculate_course(mongo, r, course)
    return created


def recalculate_course(mongo: MongoStore, r: Buffer, course: Course) -> int:
    """After a course changed: each enrollment's progress from its completions and the rollups'
    totals for the new list of materials (every enrollment of the course: for a large class, a
    job's work, not a request's), and the live rollup records in the buffer `r` settled on the
    documents. Readers meanwhile recompute stale totals from the entries. Idempotent. Returns
    how many rollups changed."""
    mongo.recalculate_course(course)
    changed = rollup_store.rebuild_missing(mongo, [course])
    settle_courses(r, mongo, [course])
    return changed


def mirror_enrollments(
    mongo: MongoStore, r: Buffer, schema: KeySchema, student_id: str
) -> set[str]:
    """Load a student's enrollments from MongoDB into Redis; returns their course ids. A
    mirror read before a concurrent enrollment change is not written (the next use reloads)."""
    keys = [schema.enrollments_key(student_id), schema.enrollments_version_key(student_id)]
    version = as_text(r.get(keys[1]) or b"0")
    courses = mongo.enrolled_courses(student_id)
    r.register_script(SCRIPTS["mirror"])(keys=keys, args=[version, ENROLLMENT_LOADED, *courses])
    return set(courses)


def rebuild_stored_sets(mongo: MongoStore, r: Buffer, schema: KeySchema, batch: int = 1000) -> int:
    """List every (student, material) MongoDB holds a state for in the student's `stored` set
    (idempotent; pipelined, `batch` SADDs per round trip)."""
    cursor = mongo.progress.find({}, {"_id": 0, "student_id": 1, "material_id": 1})
    pipe, count = r.pipeline(transaction=False), 0
    for doc in cursor:
        pipe.sadd(schema.stored_key(doc["student_id"]), doc["material_id"])
        count += 1
        if count % batch == 0:
            pipe.execute()
            pipe = r.pipeline(transaction=False)
    pipe.execute()
    return count


def set_enrollment(
    mongo: MongoStore, r: Buffer, schema: KeySchema, student_id: str, course_id: str, enrolled: bool
) -> bool:
    """Enroll or unenroll; True when something changed. The Redis mirror is rewritten from
    MongoDB at once (so ingest needs no MongoDB read); bumping its version first makes any
    mirror load that read MongoDB before this change lose its compare-and-set."""
    changed = (
        mongo.enroll(student_id, course_id)
        if enrolled
        else rollup_store.remove_enrollment(mongo, student_id, course_id)
    )
    r.incr(schema.enrollments_version_key(student_id))
    mirror_enrollments(mongo, r, schema, student_id)
    course = mongo.course(course_id) if changed else None
    if enrolled and course is not None:
        # Progress stored before an earlier unenrollment counts again, as in the course view.
        rollup_store.rebuild(mongo, course, [student_id])
    if course is not None:
        settle(r, mongo, course, [student_id])
    return changed


def enroll_many(
    mongo: MongoStore,
    r: Buffer,
    schema: KeySchema,
    student_ids: list[str],
    course_id: str,
    extra: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[str]:
    """Enroll many students at once (a roster): `set_enrollment`'s steps, in bulk where MongoDB
    allows (one upsert batch, one read of the new students' courses, batched rollups), a new
    enrollment holding the student's `extra` fields; returns the students newly enrolled."""
    new = mongo.enroll_many(student_ids, course_id, extra)
    for student_id in new:
        r.incr(schema.enrollments_version_key(student_id))
    for i in range(0, len(new), 1000):
        chunk = new[i : i + 1000]
        versions = {s: as_text(r.get(schema.enrollments_version_key(s)) or b"0") for s in chunk}
        courses: dict[str, list[str]] = {s: [] for s in chunk}
        for doc in mongo.enrollments.find(
            {"student_id": {"$in": chunk}}, {"_id": 0, "student_id": 1, "course_id": 1}
        ):
            courses[doc["student_id"]].append(doc["course_id"])
        mirror = r.register_script(SCRIPTS["mirror"])
        for s in chunk:  # a mirror read before a concurrent change loses its compare-and-set
            keys = [schema.enrollments_key(s), schema.enrollments_version_key(s)]
            mirror(keys=keys, args=[versions[s], ENROLLMENT_LOADED, *courses[s]])
    if new and (course := mongo.course(course_id)) is not None:
        rollup_store.rebuild(mongo, course, new)
        settle(r, mongo, course, new)
    return new


class EnrollmentEntry(BaseModel):
    student_id: PrintableId
    course_id: Identifier


class CourseEntry(CourseBody):
    course_id: Identifier


class CatalogFile(BaseModel):
    """The shape `videoprogress load-catalog` reads: courses as PUT by admins, plus enrollments."""

    model_config = ConfigDict(extra="forbid")

    courses: list[CourseEntry]
    enrollments: list[EnrollmentEntry] = Field(default_factory=list)


def load_catalog_file(
    mongo: MongoStore, r: Buffer, schema: KeySchema, path: Path | str
) -> CatalogFile:
    data = CatalogFile.model_validate(json.loads(Path(path).read_text()))
    for course in data.courses:
        save_course(mongo, r, Course.model_validate(course.model_dump()))
    for entry in data.enrollments:
        set_enrollment(mongo, r, schema, entry.student_id, entry.course_id, True)
    return data
