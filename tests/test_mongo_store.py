"""The MongoDB store over a real connection (the stand-in, or MONGO_URL)."""

from __future__ import annotations

import pytest

from shared.domain.progress import WatchState
from shared.storage.mongo_store import (
    MongoStore,
    StateWrite,
    WriteOutcome,
    enrollment_id,
    progress_id,
)
from tests.helpers import present


def write(version: int, student: str = "s1", position: float = 1.0) -> StateWrite:
    return StateWrite(student, "v1", "c1", 100.0, WatchState(position=position), version)


def test_versioned_writes_never_go_backwards(mongo_url: str) -> None:
    store = MongoStore(mongo_url)
    store.ensure_indexes()
    assert store.write_states([write(3, position=30.0)]) == WriteOutcome()
    outcome = store.write_states([write(2, position=20.0), write(1, student="s2")])
    assert outcome.stale == [0] and outcome.retry == [] and outcome.refused == {}
    doc = present(store.progress.find_one({"student_id": "s1"}))
    assert doc["v"] == 3 and doc["watch_time"] == 30.0 and doc["flushes"] == 1
    assert present(store.progress.find_one({"student_id": "s2"}))["v"] == 1


def test_an_older_write_of_a_new_document_in_the_same_batch_is_stale(mongo_url: str) -> None:
    # The first upsert inserts the document; the second finds it newer than itself, tries to
    # insert and meets duplicate key 11000. That is stale: nothing to write again.
    store = MongoStore(mongo_url)
    store.ensure_indexes()
    outcome = store.write_states([write(5, position=50.0), write(2, position=20.0)])
    assert outcome.stale == [1] and outcome.retry == [] and outcome.refused == {}
    doc = present(store.progress.find_one({"student_id": "s1"}))
    assert doc["v"] == 5 and doc["watch_time"] == 50.0 and doc["flushes"] == 1


def test_a_duplicate_key_without_a_newer_stored_state_is_written_again(mongo_url: str) -> None:
    # Two upserts racing to insert the same new document: the loser sees duplicate key 11000
    # although no stored state is as new as its own. It must be written again, not taken for
    # stale. Here the conflicting document is one whose _id is not the deterministic one (the
    # unique student_id, material_id index refuses the insert just the same).
    store = MongoStore(mongo_url)
    store.ensure_indexes()
    store.progress.insert_one({"_id": "racer", "student_id": "s1", "material_id": "v1", "v": 1})
    outcome = store.write_states([write(5), write(2, student="s2")])
    assert outcome.retry == [0] and outcome.stale == [] and outcome.refused == {}
    assert present(store.progress.find_one({"student_id": "s2"}))["v"] == 2


def test_document_keys_of_different_pairs_never_meet() -> None:
    # A student id may hold the separator; a catalog id may not, and comes first.
    assert progress_id("b|c", "a") == "a|b|c"
    assert enrollment_id("b|c", "course") == "course|b|c"
    for make in (progress_id, enrollment_id):
        with pytest.raises(ValueError):
            make("c", "a|b")  # would be the key of ("b|c", "a")
