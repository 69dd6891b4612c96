"""Catalog and enrollment changes keep the Redis mirrors right under concurrency."""

from __future__ import annotations

import redis

from shared import admin_ops
from shared.catalog import Course
from shared.hot_store import CATALOG_VERSION, enrollments_key
from shared.mongo_store import MongoStore


def course(course_id: str) -> Course:
    return Course(course_id=course_id, title=course_id, teacher_ids=[], modules=[])


def test_enrollment_changes_rewrite_the_mirror(mongo_url: str, redis_client: redis.Redis) -> None:
    mongo = MongoStore(mongo_url)
    mongo.ensure_indexes()
    key = enrollments_key("ana")
    admin_ops.set_enrollment(mongo, redis_client, "ana", "c1", True)
    assert redis_client.smembers(key) == {b"*", b"c1"}
    admin_ops.set_enrollment(mongo, redis_client, "ana", "c1", False)
    assert redis_client.smembers(key) == {b"*"}


def test_a_mirror_read_before_a_change_cannot_overwrite_it(
    mongo_url: str, redis_client: redis.Redis
) -> None:
    mongo = MongoStore(mongo_url)
    key = enrollments_key("ana")
    stale_version = (redis_client.get(key + ":v") or b"0").decode()  # a loader reads...
    admin_ops.set_enrollment(mongo, redis_client, "ana", "c1", True)  # ...a change lands...
    written = redis_client.eval(admin_ops._MIRROR, 2, key, key + ":v", stale_version, "*")
    assert written == 0  # ...and the loader's stale (empty) set is not written
    assert redis_client.smembers(key) == {b"*", b"c1"}


def test_an_older_catalog_snapshot_cannot_be_published_over_a_newer_one(
    mongo_url: str, redis_client: redis.Redis
) -> None:
    mongo = MongoStore(mongo_url)
    admin_ops.save_course(mongo, redis_client, course("c1"))
    version = redis_client.get(CATALOG_VERSION).decode()
    admin_ops.save_course(mongo, redis_client, course("c2"))  # published meanwhile
    assert (
        redis_client.eval(admin_ops._PUBLISH, 2, "vp:catalog", CATALOG_VERSION, version, "[]") == 0
    )
    assert {c.course_id for c in admin_ops.publish_catalog(mongo, redis_client).courses.values()} \
        == {"c1", "c2"}  # fmt: skip
