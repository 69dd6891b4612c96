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


def write(version: int, student: str = "s1", position: float = 1.0) -> StateWrite:
    return StateWrite(student, "v1", "c1", 100.0, WatchState(position=position), version)


def test_versioned_writes_never_go_backwards(mongo_url: str) -> None:
    store = MongoStore(mongo_url)
    store.ensure_indexes()
    assert store.write_states([write(3, position=30.0)]) == WriteOutcome()
    outcome = store.write_states([write(2, position=20.0), write(1, student="s2")])
    assert outcome.stale == [0] and outcome.retry == [] and outcome.refused == []
    doc = store.progress.find_one({"student_id": "s1"})
    assert doc["v"] == 3 and doc["watch_time"] == 30.0 and doc["flushes"] == 1
    assert store.progress.find_one({"student_id": "s2"})["v"] == 1


def test_a_duplicate_key_with_an_older_stored_version_is_written_again(mongo_url: str) -> None:
    # Two upserts racing to insert the same new document: the loser sees duplicate key 11000
    # although its version is newer. It must be retried, not taken for stale.
    store = MongoStore(mongo_url)
    store.ensure_indexes()
    store.write_states([write(3)])
    outcome = WriteOutcome()
    store._classify_duplicates([write(5), write(3), write(2)], [0, 1, 2], outcome)
    assert outcome.retry == [0] and outcome.stale == [1, 2]


def test_document_keys_of_different_pairs_never_meet() -> None:
    # A student id may hold the separator; a catalog id may not, and comes first.
    assert progress_id("b|c", "a") == "a|b|c"
    assert enrollment_id("b|c", "course") == "course|b|c"
    for make in (progress_id, enrollment_id):
        with pytest.raises(ValueError):
            make("c", "a|b")  # would be the key of ("b|c", "a")
