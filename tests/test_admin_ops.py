"""Catalog and enrollment changes keep the Redis mirrors right under concurrency."""

from __future__ import annotations

from collections.abc import Callable

from shared.domain.catalog import Catalog, Course
from shared.ops import admin_ops
from shared.storage.clients import Buffer
from shared.storage.keys import CATALOG
from shared.storage.mongo_store import MongoStore
from tests.helpers import KEY_SCHEMA


def course(course_id: str) -> Course:
    return Course(course_id=course_id, title=course_id, teacher_ids=[], modules=[])


def test_enrollment_changes_rewrite_the_mirror(mongo_url: str, redis_client: Buffer) -> None:
    mongo = MongoStore(mongo_url)
    mongo.ensure_indexes()
    key = KEY_SCHEMA.enrollments_key("ana")
    admin_ops.set_enrollment(mongo, redis_client, KEY_SCHEMA, "ana", "c1", True)
    assert redis_client.smembers(key) == {b"*", b"c1"}
    admin_ops.set_enrollment(mongo, redis_client, KEY_SCHEMA, "ana", "c1", False)
    assert redis_client.smembers(key) == {b"*"}


class RacingMongo(MongoStore):
    """A MongoStore on which `change` runs once, right after the first read of enrollments or
    courses: a concurrent admin request landing at the worst moment."""

    def __init__(self, url: str, change: Callable[[], object]) -> None:
        super().__init__(url)
        self._change: Callable[[], object] | None = change

    def _race(self) -> None:
        change, self._change = self._change, None
        if change is not None:
            change()

    def enrolled_courses(self, student_id: str) -> list[str]:
        courses = super().enrolled_courses(student_id)
        self._race()
        return courses

    def all_courses(self) -> list[Course]:
        courses = super().all_courses()
        self._race()
        return courses


def test_a_mirror_read_before_a_change_cannot_overwrite_it(
    mongo_url: str, redis_client: Buffer
) -> None:
    mongo = MongoStore(mongo_url)
    enroll = lambda: admin_ops.set_enrollment(mongo, redis_client, KEY_SCHEMA, "ana", "c1", True)  # noqa: E731
    racing = RacingMongo(mongo_url, enroll)
    # The loader reads [], then c1 lands.
    loaded = admin_ops.mirror_enrollments(racing, redis_client, KEY_SCHEMA, "ana")
    assert loaded == set()  # what the loader saw...
    mirror = KEY_SCHEMA.enrollments_key("ana")
    assert redis_client.smembers(mirror) == {b"*", b"c1"}  # ...is not written


def test_an_older_catalog_snapshot_cannot_be_published_over_a_newer_one(
    mongo_url: str, redis_client: Buffer
) -> None:
    mongo = MongoStore(mongo_url)
    admin_ops.save_course(mongo, redis_client, course("c1"))
    add_c2 = lambda: admin_ops.save_course(mongo, redis_client, course("c2"))  # noqa: E731
    racing = RacingMongo(mongo_url, add_c2)
    published = admin_ops.publish_catalog(racing, redis_client)  # read c1; c2 published meanwhile
    assert set(published.courses) == {"c1", "c2"}  # the stale snapshot lost, and was read again
    blob = redis_client.get(CATALOG)
    assert isinstance(blob, bytes)
    current = Catalog.from_json(blob.decode())
    assert set(current.courses) == {"c1", "c2"}


def test_rebuild_stored_lists_every_state_mongodb_holds(
    mongo_url: str, redis_client: Buffer
) -> None:
    mongo = MongoStore(mongo_url)
    mongo.progress.insert_many([
        {"_id": "v1|ana", "student_id": "ana", "material_id": "v1"},
        {"_id": "v2|ana", "student_id": "ana", "material_id": "v2"},
        {"_id": "v1|bo", "student_id": "bo", "material_id": "v1"},
    ])  # fmt: skip
    assert admin_ops.rebuild_stored_sets(mongo, redis_client, KEY_SCHEMA, batch=2) == 3
    assert redis_client.smembers(KEY_SCHEMA.stored_key("ana")) == {b"v1", b"v2"}
    assert redis_client.smembers(KEY_SCHEMA.stored_key("bo")) == {b"v1"}
