"""Conformance tests: the MongoDB behaviours the storage code relies on.

The tests run against the `nx-27017` wire-protocol stand-in by default and against a real
MongoDB 6+ when `MONGO_URL` is set (see tests/conftest.py). Each test pins one operator or
behaviour and asserts only what real MongoDB does, so a difference between the stand-in and
MongoDB shows up here as a failing test rather than as a silent bug in the storage code.

Known to differ on the stand-in, and therefore deliberately NOT used by the project's code
(see the design notes' ARCHITECTURE.md, "MongoDB in this workplace"):

- `$bit`: the stand-in sets the value instead of OR-ing it, and on upsert it stores a literal
  dotted key.
- `$ne` against an array field: the stand-in matches even when the array holds the value.
- Update pipelines (`update_one(filter, [ {...} ])`): refused by the stand-in.
- `datetime` values: a `datetime` stored on the stand-in comes back as a string, so the
  project stores times as epoch-second floats (`test_epoch_seconds_float_round_trips` pins
  that choice; the broken behaviour itself is not asserted).
- NaN: the stand-in refuses to store one ("Invalid JSON document"); MongoDB stores it, and an
  equality filter on NaN matches it. The code meets one only in a value another tool wrote
  (an odd `rollup_rev`: `tests/test_rollups.py`, whose NaN case is real only on MongoDB).
- Index names: `listIndexes` / `index_information()` on the stand-in report an index under
  a name of its own (e.g. "idx_watch_progress_student_id_material_id") instead of the name
  sent by `create_index` ("student_id_1_material_id_1", which real MongoDB keeps). The code
  must not look indexes up (or drop them) by name; the tests find them by key.
- Dropping an index that is not there: MongoDB raises `IndexNotFound` (code 27), the stand-in
  answers ok. shared/lti/storage.py takes either as the index gone (another process dropped
  it first).
"""

from __future__ import annotations

from typing import Any

import pytest
from bson.errors import InvalidDocument
from pymongo import ASCENDING, DESCENDING, ReplaceOne, UpdateOne
from pymongo.collection import Collection
from pymongo.database import Database
from pymongo.errors import BulkWriteError, DuplicateKeyError
from pymongo.results import UpdateResult

from tests.helpers import present

KEY = [("student_id", ASCENDING), ("material_id", ASCENDING)]


@pytest.fixture
def progress(mongo_db: Database[dict[str, Any]]) -> Collection[dict[str, Any]]:
    coll = mongo_db["watch_progress"]
    coll.create_index(KEY, unique=True)
    return coll


def versioned(
    student_id: str, material_id: str, new_v: int, fields: dict[str, Any], course_id: str = "c1"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Filter and update of the storage code's conditional versioned upsert: by a deterministic
    `_id` and the shard key, with the pair's own fields set alongside."""
    return (
        {"_id": f"{material_id}|{student_id}", "student_id": student_id, "v": {"$lt": new_v}},
        {
            "$set": {"student_id": student_id, "material_id": material_id, **fields, "v": new_v},
            "$setOnInsert": {"course_id": course_id},
        },
    )


def versioned_upsert(
    coll: Collection[dict[str, Any]],
    student_id: str,
    material_id: str,
    new_v: int,
    fields: dict[str, Any],
    course_id: str = "c1",
) -> UpdateResult:
    flt, update = versioned(student_id, material_id, new_v, fields, course_id)
    return coll.update_one(flt, update, upsert=True)


def strip_id(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    if doc is None:
        return None
    return {k: v for k, v in doc.items() if k != "_id"}


# 1. unique compound index


def test_unique_compound_index_is_idempotent(mongo_db: Database[dict[str, Any]]) -> None:
    coll = mongo_db["watch_progress"]
    first = coll.create_index(KEY, unique=True)
    second = coll.create_index(KEY, unique=True)
    assert first == second == "student_id_1_material_id_1"
    # Found by key, not by name: the stand-in lists this index under a name of its own
    # ("idx_watch_progress_student_id_material_id"), real MongoDB as "student_id_1_material_id_1".
    matching = [i for i in coll.index_information().values() if i["key"] == KEY]
    assert len(matching) == 1
    assert matching[0].get("unique") is True


def test_unique_compound_index_rejects_duplicate_pair(progress: Collection[dict[str, Any]]) -> None:
    progress.insert_one({"student_id": "s1", "material_id": "m1", "v": 1})
    progress.insert_one({"student_id": "s1", "material_id": "m2", "v": 1})  # other pair: fine
    with pytest.raises(DuplicateKeyError) as excinfo:
        progress.insert_one({"student_id": "s1", "material_id": "m1", "v": 2})
    assert excinfo.value.code == 11000
    assert progress.count_documents({}) == 2


# 2. conditional versioned upsert


def test_versioned_upsert_inserts_when_absent(progress: Collection[dict[str, Any]]) -> None:
    result = versioned_upsert(progress, "s1", "m1", 3, {"position": 12.5})
    assert result.upserted_id == "m1|s1"  # the filter's _id becomes the document's
    assert progress.find_one({"_id": "m1|s1"}, {"v": 1}) == {"_id": "m1|s1", "v": 3}
    assert strip_id(progress.find_one({"student_id": "s1", "material_id": "m1"})) == {
        "student_id": "s1",
        "material_id": "m1",
        "position": 12.5,
        "v": 3,
        "course_id": "c1",
    }


def test_versioned_upsert_updates_when_stored_version_is_lower(
    progress: Collection[dict[str, Any]],
) -> None:
    versioned_upsert(progress, "s1", "m1", 3, {"position": 12.5})
    result = versioned_upsert(progress, "s1", "m1", 5, {"position": 40.0})
    assert result.upserted_id is None
    assert result.matched_count == 1
    assert result.modified_count == 1
    assert strip_id(progress.find_one({"student_id": "s1", "material_id": "m1"})) == {
        "student_id": "s1",
        "material_id": "m1",
        "position": 40.0,
        "v": 5,
        "course_id": "c1",
    }
    assert progress.count_documents({}) == 1


@pytest.mark.parametrize("stale_v", [5, 4])  # equal to, and lower than, the stored version
def test_versioned_upsert_stale_raises_duplicate_key_and_leaves_doc(
    progress: Collection[dict[str, Any]], stale_v: int
) -> None:
    versioned_upsert(progress, "s1", "m1", 5, {"position": 40.0})
    before = present(progress.find_one({"student_id": "s1", "material_id": "m1"}))
    with pytest.raises(DuplicateKeyError) as excinfo:
        versioned_upsert(progress, "s1", "m1", stale_v, {"position": 1.0}, "other")
    assert excinfo.value.code == 11000
    assert progress.find_one({"student_id": "s1", "material_id": "m1"}) == before
    assert progress.count_documents({}) == 1


# 3. bulk_write(ordered=False) with one stale operation


def test_bulk_unordered_stale_upsert_reports_only_its_index(
    progress: Collection[dict[str, Any]],
) -> None:
    versioned_upsert(progress, "s1", "m1", 2, {"position": 10.0})
    versioned_upsert(progress, "s1", "m2", 7, {"position": 70.0})
    ops = [
        UpdateOne(*versioned("s1", "m1", 3, {"position": 30.0}), upsert=True),  # update (2 -> 3)
        UpdateOne(*versioned("s1", "m2", 6, {"position": 1.0}), upsert=True),  # stale (stored 7)
        UpdateOne(*versioned("s2", "m1", 1, {"position": 5.0}), upsert=True),  # insert
        UpdateOne(*versioned("s3", "m9", 4, {"position": 9.5}), upsert=True),  # insert
    ]
    with pytest.raises(BulkWriteError) as excinfo:
        progress.bulk_write(ops, ordered=False)
    errors = excinfo.value.details["writeErrors"]
    assert [(e["index"], e["code"]) for e in errors] == [(1, 11000)]

    def get(student_id: str, material_id: str) -> dict[str, Any] | None:
        return strip_id(progress.find_one({"student_id": student_id, "material_id": material_id}))

    assert get("s1", "m1") == {
        "student_id": "s1",
        "material_id": "m1",
        "position": 30.0,
        "v": 3,
        "course_id": "c1",
    }
    assert get("s1", "m2") == {
        "student_id": "s1",
        "material_id": "m2",
        "position": 70.0,
        "v": 7,
        "course_id": "c1",
    }
    assert get("s2", "m1") == {
        "student_id": "s2",
        "material_id": "m1",
        "position": 5.0,
        "v": 1,
        "course_id": "c1",
    }
    assert get("s3", "m9") == {
        "student_id": "s3",
        "material_id": "m9",
        "position": 9.5,
        "v": 4,
        "course_id": "c1",
    }
    assert progress.count_documents({}) == 4


# 4. nested values and floats round-trip


def test_set_list_of_float_pairs_round_trips(progress: Collection[dict[str, Any]]) -> None:
    intervals = [[0.0, 10.5], [20.0, 30.0], [31.25, 1e-3]]
    progress.update_one(
        {"student_id": "s1", "material_id": "m1"}, {"$set": {"intervals": intervals}}, upsert=True
    )
    doc = present(progress.find_one({"student_id": "s1", "material_id": "m1"}))
    assert doc["intervals"] == intervals
    assert all(type(x) is float for pair in doc["intervals"] for x in pair)


def test_set_nested_dict_of_lists_of_lists_round_trips(
    progress: Collection[dict[str, Any]],
) -> None:
    nested = {
        "video-1": [[0.0, 10.5], [20.0, 30.0]],
        "video 2": [],
        "v3": [[1.5, 2.5]],
    }
    progress.update_one(
        {"student_id": "s1", "material_id": "m1"}, {"$set": {"by_part": nested}}, upsert=True
    )
    doc = present(progress.find_one({"student_id": "s1", "material_id": "m1"}))
    assert doc["by_part"] == nested
    assert list(doc["by_part"]) == list(nested)  # key order kept


def test_epoch_seconds_float_round_trips(progress: Collection[dict[str, Any]]) -> None:
    # The project stores times as epoch-second floats, not datetime (see the module docstring).
    values = [1700000000.123, 1764288000.000001, 0.1, 1e-9]
    progress.update_one(
        {"student_id": "s1", "material_id": "m1"},
        {"$set": {"updated_at": values[0], "times": values}},
        upsert=True,
    )
    doc = present(progress.find_one({"student_id": "s1", "material_id": "m1"}))
    assert type(doc["updated_at"]) is float
    assert doc["updated_at"] == 1700000000.123
    assert doc["times"] == values


# 5. $setOnInsert


def test_set_on_insert_applies_only_on_insert(progress: Collection[dict[str, Any]]) -> None:
    flt = {"student_id": "s1", "material_id": "m1"}
    progress.update_one(
        flt, {"$set": {"n": 1}, "$setOnInsert": {"course_id": "c1", "created": 1.5}}, upsert=True
    )
    progress.update_one(
        flt, {"$set": {"n": 2}, "$setOnInsert": {"course_id": "c2", "created": 9.5}}, upsert=True
    )
    assert strip_id(progress.find_one(flt)) == {
        "student_id": "s1",
        "material_id": "m1",
        "n": 2,
        "course_id": "c1",
        "created": 1.5,
    }


# 6. $max, $inc, $addToSet, $pull


def test_max_raises_only_when_higher(progress: Collection[dict[str, Any]]) -> None:
    flt = {"student_id": "s1", "material_id": "m1"}
    progress.insert_one({**flt, "furthest": 50.0})
    progress.update_one(flt, {"$max": {"furthest": 40.0}})
    assert present(progress.find_one(flt))["furthest"] == 50.0
    progress.update_one(flt, {"$max": {"furthest": 75.5}})
    assert present(progress.find_one(flt))["furthest"] == 75.5
    progress.update_one(flt, {"$max": {"new_field": 3.0}})  # absent field: set
    assert present(progress.find_one(flt))["new_field"] == 3.0


def test_max_on_upsert_insert_sets_value(progress: Collection[dict[str, Any]]) -> None:
    flt = {"student_id": "s1", "material_id": "m1"}
    progress.update_one(flt, {"$max": {"furthest": 12.0}}, upsert=True)
    assert present(progress.find_one(flt))["furthest"] == 12.0


def test_inc(progress: Collection[dict[str, Any]]) -> None:
    flt = {"student_id": "s1", "material_id": "m1"}
    progress.update_one(flt, {"$inc": {"count": 1, "seconds": 2.5}}, upsert=True)
    progress.update_one(flt, {"$inc": {"count": 4, "seconds": 0.25}}, upsert=True)
    doc = present(progress.find_one(flt))
    assert doc["count"] == 5
    assert type(doc["count"]) is int
    assert doc["seconds"] == 2.75


def test_add_to_set_no_duplicate_on_repeat(progress: Collection[dict[str, Any]]) -> None:
    flt = {"student_id": "s1", "material_id": "m1"}
    progress.update_one(flt, {"$addToSet": {"tags": "a"}}, upsert=True)
    progress.update_one(flt, {"$addToSet": {"tags": "b"}})
    progress.update_one(flt, {"$addToSet": {"tags": "a"}})
    progress.update_one(flt, {"$addToSet": {"tags": {"$each": ["b", "c"]}}})
    assert present(progress.find_one(flt))["tags"] == ["a", "b", "c"]


def test_pull_string_from_array(progress: Collection[dict[str, Any]]) -> None:
    flt = {"student_id": "s1", "material_id": "m1"}
    progress.insert_one({**flt, "tags": ["a", "b", "c", "b"]})
    progress.update_one(flt, {"$pull": {"tags": "b"}})
    assert present(progress.find_one(flt))["tags"] == ["a", "c"]
    progress.update_one(flt, {"$pull": {"tags": "zzz"}})  # absent value: no change
    assert present(progress.find_one(flt))["tags"] == ["a", "c"]


# 7. find, count_documents, delete_many


@pytest.fixture
def seeded(progress: Collection[dict[str, Any]]) -> Collection[dict[str, Any]]:
    progress.insert_many(
        [
            {"student_id": "s1", "material_id": "m1", "course_id": "c1", "v": 1, "pos": 1.0},
            {"student_id": "s1", "material_id": "m2", "course_id": "c1", "v": 5, "pos": 2.0},
            {"student_id": "s2", "material_id": "m1", "course_id": "c1", "v": 3, "pos": 3.0},
            {"student_id": "s2", "material_id": "m3", "course_id": "c2", "v": 8, "pos": 4.0},
            {"student_id": "s3", "material_id": "m1", "course_id": "c2", "v": 2, "pos": 5.0},
        ]
    )
    return progress


def test_find_in_on_two_fields_with_projection(seeded: Collection[dict[str, Any]]) -> None:
    docs = list(
        seeded.find(
            {"student_id": {"$in": ["s1", "s2"]}, "material_id": {"$in": ["m1", "m3"]}},
            {"_id": 0, "student_id": 1, "material_id": 1, "v": 1},
        )
    )
    assert sorted(docs, key=lambda d: (d["student_id"], d["material_id"])) == [
        {"student_id": "s1", "material_id": "m1", "v": 1},
        {"student_id": "s2", "material_id": "m1", "v": 3},
        {"student_id": "s2", "material_id": "m3", "v": 8},
    ]


def test_find_by_id_in_with_another_condition(progress: Collection[dict[str, Any]]) -> None:
    versioned_upsert(progress, "s1", "m1", 1, {"completed": True})
    versioned_upsert(progress, "s1", "m2", 1, {"completed": False})
    versioned_upsert(progress, "s2", "m1", 1, {"completed": True})
    docs = progress.find(
        {"_id": {"$in": ["m1|s1", "m2|s1", "m9|s1"]}, "completed": True},
        {"_id": 0, "material_id": 1},
    )
    assert list(docs) == [{"material_id": "m1"}]
    found = progress.find({"_id": {"$in": ["m1|s1", "m1|s2"]}}, {"student_id": 1})
    assert sorted(d["_id"] for d in found) == ["m1|s1", "m1|s2"]


def test_upsert_by_id_with_set_on_insert_only(mongo_db: Database[dict[str, Any]]) -> None:
    # How an enrollment is created: the filter is the _id, the other fields are set on insert.
    col = mongo_db["enrollments"]
    update = {"$setOnInsert": {"student_id": "s1", "course_id": "c1", "done": []}}
    key = {"_id": "c1|s1", "student_id": "s1"}  # _id and the shard key
    first = col.update_one(key, update, upsert=True)
    second = col.update_one(key, update, upsert=True)
    assert first.upserted_id == "c1|s1" and second.upserted_id is None
    assert list(col.find({})) == [
        {"_id": "c1|s1", "student_id": "s1", "course_id": "c1", "done": []}
    ]
    assert col.delete_one(key).deleted_count == 1


def test_find_gte(seeded: Collection[dict[str, Any]]) -> None:
    docs = seeded.find({"v": {"$gte": 3}}, {"_id": 0, "v": 1}).sort("v", ASCENDING)
    assert [d["v"] for d in docs] == [3, 5, 8]


def test_count_documents(seeded: Collection[dict[str, Any]]) -> None:
    assert seeded.count_documents({}) == 5
    assert seeded.count_documents({"course_id": "c1"}) == 3
    assert seeded.count_documents({"v": {"$gte": 3}, "course_id": "c2"}) == 1
    assert seeded.count_documents({"student_id": "nobody"}) == 0


def test_delete_many_returns_deleted_count(seeded: Collection[dict[str, Any]]) -> None:
    result = seeded.delete_many({"student_id": "s2"})
    assert result.deleted_count == 2
    assert seeded.count_documents({}) == 3
    assert seeded.delete_many({"student_id": "s2"}).deleted_count == 0


# 8. aggregate


def test_aggregate_match_group_sort_project(seeded: Collection[dict[str, Any]]) -> None:
    seeded.insert_one(
        {"student_id": "s4", "material_id": "m1", "course_id": "c3", "v": 100, "pos": 9.0}
    )
    pipeline: list[dict[str, Any]] = [
        {"$match": {"course_id": {"$in": ["c1", "c2"]}}},
        {
            "$group": {
                "_id": "$course_id",
                "docs": {"$sum": 1},
                "total": {"$sum": "$pos"},
                "mean_v": {"$avg": "$v"},
                "max_pos": {"$max": "$pos"},
            }
        },
        {"$sort": {"total": DESCENDING}},
        {
            "$project": {
                "_id": 0,
                "course": "$_id",
                "docs": 1,
                "total": 1,
                "mean_v": 1,
                "max_pos": 1,
            }
        },
    ]
    rows = list(seeded.aggregate(pipeline))
    assert rows == [
        {"docs": 2, "total": 9.0, "mean_v": 5.0, "max_pos": 5.0, "course": "c2"},
        {"docs": 3, "total": 6.0, "mean_v": 3.0, "max_pos": 3.0, "course": "c1"},
    ]


# 9. ping


def test_ping(mongo_db: Database[dict[str, Any]]) -> None:
    result = mongo_db.command("ping")
    assert result["ok"] == 1


def test_replace_one_upsert_with_the_id_in_the_document(mongo_db: Database[dict[str, Any]]) -> None:
    # The project always repeats the filter's fields in a replacement document: on upsert the
    # stand-in does not copy them from the filter (MongoDB does).
    col = mongo_db["replace_probe"]
    first = col.replace_one({"_id": "c1"}, {"_id": "c1", "title": "A"}, upsert=True)
    second = col.replace_one({"_id": "c1"}, {"_id": "c1", "title": "B"}, upsert=True)
    assert first.matched_count == 0 and second.matched_count == 1
    assert list(col.find({}, {"title": 1})) == [{"_id": "c1", "title": "B"}]


# Enrollment rollups (shared/storage/rollup_store.py): a compare-and-set on a revision counter
# in an unordered bulk write, `$exists: false` for a document that has none yet, and the
# matched count telling the writer how many of its updates found their revision.


def test_bulk_compare_and_set_on_a_revision_reports_the_matched_count(
    mongo_db: Database[dict[str, Any]],
) -> None:
    # As rollup_store.write_rollups writes: the next revision `$set` (aggregate_store.next_rev)
    # where the one read still holds.
    coll = mongo_db["enrollments"]
    coll.insert_many([
        {"_id": "c|a", "student_id": "a"},                  # no revision yet
        {"_id": "c|b", "student_id": "b", "rollup_rev": 3},
        {"_id": "c|c", "student_id": "c", "rollup_rev": 5},
    ])  # fmt: skip
    ops = [
        UpdateOne({"_id": "c|a", "student_id": "a", "rollup_rev": {"$exists": False}},
                  {"$set": {"rollup": "A", "rollup_rev": 7001}}),
        UpdateOne({"_id": "c|b", "student_id": "b", "rollup_rev": 3},
                  {"$set": {"rollup": "B", "rollup_rev": 4}}),
        UpdateOne({"_id": "c|c", "student_id": "c", "rollup_rev": 4},  # lost a race: no match
                  {"$set": {"rollup": "C", "rollup_rev": 5}}),
    ]  # fmt: skip
    result = coll.bulk_write(ops, ordered=False)
    assert (result.matched_count, result.modified_count) == (2, 2)
    docs = {d["_id"]: (d.get("rollup"), d.get("rollup_rev")) for d in coll.find({})}
    assert docs == {"c|a": ("A", 7001), "c|b": ("B", 4), "c|c": (None, 5)}
    # The same writes again: the revisions moved on, nothing matches, nothing changes.
    assert coll.bulk_write(ops, ordered=False).matched_count == 0
    assert {d["_id"]: d.get("rollup_rev") for d in coll.find({})} == {
        "c|a": 7001, "c|b": 4, "c|c": 5}  # fmt: skip


def test_find_by_field_returns_whole_documents_with_long_strings(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["enrollments"]
    blob = '{"v-1":[3,12.5,0.0,12.5,0,1.5]}' * 200
    coll.insert_one({"_id": "c|a", "student_id": "a", "course_id": "c", "rollup": blob,
                     "watched_seconds": 0.1 + 0.2})  # fmt: skip
    [doc] = coll.find({"course_id": "c"}, {"_id": 0})
    assert doc["rollup"] == blob and doc["watched_seconds"] == 0.1 + 0.2  # exact round trip


def test_ne_on_a_string_field_matches_other_values_and_missing_fields(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["enrollments"]
    coll.insert_many([{"_id": "a", "course_id": "c", "rollup_course": "fp"},
                      {"_id": "b", "course_id": "c", "rollup_course": "old"},
                      {"_id": "c", "course_id": "c"}])  # fmt: skip
    found = {d["_id"] for d in coll.find({"course_id": "c", "rollup_course": {"$ne": "fp"}})}
    assert found == {"b", "c"}


def test_sort_puts_null_before_numbers_and_range_filters_skip_null(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["enrollments"]
    coll.insert_many([{"_id": k, "course_id": "c", "student_id": k, "last_active": v}
                      for k, v in (("a", 5.0), ("b", None), ("c", 1.5), ("d", None),
                                   ("e", 5.0))])  # fmt: skip
    asc = [(("last_active", ASCENDING)), ("student_id", ASCENDING)]
    assert [d["_id"] for d in coll.find({"course_id": "c"}).sort(asc)] == ["b", "d", "c", "a", "e"]
    desc = [("last_active", DESCENDING), ("student_id", DESCENDING)]
    assert [d["_id"] for d in coll.find({"course_id": "c"}).sort(desc).limit(3)] == ["e", "a", "c"]
    assert {d["_id"] for d in coll.find({"last_active": {"$lt": 5.0}})} == {"c"}
    assert {d["_id"] for d in coll.find({"last_active": {"$gte": 0}})} == {"a", "c", "e"}
    assert {d["_id"] for d in coll.find({"last_active": None})} == {"b", "d"}
    tie = {"course_id": "c", "last_active": 5.0, "student_id": {"$gt": "a"}}
    assert [d["_id"] for d in coll.find(tie).sort("student_id", ASCENDING)] == ["e"]


def test_binary_round_trips_as_bytes(mongo_db: Database[dict[str, Any]]) -> None:
    from array import array

    coll = mongo_db["enrollments"]
    data = array("d", [1.0, 0.1 + 0.2, float("nan"), 1796224885.41576]).tobytes()
    coll.insert_one({"_id": "c|a", "course_id": "c", "rollup": data, "rollup_ids": "v-1,v.2"})
    [doc] = coll.find({"course_id": "c"}, {"_id": 0})
    assert isinstance(doc["rollup"], bytes) and doc["rollup"] == data


# 10. what a flush sets aside, and rewriting the states 0.7 stored


def test_a_field_name_with_a_nul_fails_its_whole_batch_before_it_is_sent(
    progress: Collection[dict[str, Any]],
) -> None:
    # pymongo refuses it while encoding: nothing of the batch lands (so halving it is safe).
    ops = [
        UpdateOne({"_id": "a"}, {"$set": {"n": 1}}, upsert=True),
        UpdateOne({"_id": "b"}, {"$set": {"readings": {"a\x00b": [1.0]}}}, upsert=True),
    ]
    with pytest.raises(InvalidDocument):
        progress.bulk_write(ops, ordered=False)
    assert progress.count_documents({}) == 0


def test_a_nul_in_a_string_value_round_trips(progress: Collection[dict[str, Any]]) -> None:
    progress.insert_one({"_id": "a", "readings": [["a\x00b", [[1.0, 0, 5.0]]]]})
    assert present(progress.find_one({"_id": "a"}))["readings"] == [["a\x00b", [[1.0, 0, 5.0]]]]


def test_inc_of_a_non_numeric_field_fails_that_write_alone(
    progress: Collection[dict[str, Any]],
) -> None:
    progress.insert_one({"_id": "a", "student_id": "s1", "material_id": "m1", "v": 0, "n": "x"})
    ops = [
        UpdateOne({"_id": "a", "v": {"$lt": 1}}, {"$set": {"v": 1}, "$inc": {"n": 1}}, upsert=True),
        UpdateOne({"_id": "b"}, {"$set": {"v": 1}, "$inc": {"n": 1}}, upsert=True),
    ]
    with pytest.raises(BulkWriteError) as excinfo:
        progress.bulk_write(ops, ordered=False)
    [error] = excinfo.value.details["writeErrors"]
    assert error["index"] == 0 and error["code"] != 11000  # MongoDB: 14, TypeMismatch
    assert "$inc" in error["errmsg"]
    assert strip_id(progress.find_one({"_id": "a"})) == {
        "student_id": "s1", "material_id": "m1", "v": 0, "n": "x"
    }  # fmt: skip
    assert strip_id(progress.find_one({"_id": "b"})) == {"v": 1, "n": 1}


def test_type_object_finds_a_subdocument_not_an_array(progress: Collection[dict[str, Any]]) -> None:
    progress.insert_many(
        [
            {"_id": "old", "state": {"readings": {"tab": [[1.0, 0, 5.0]]}}},
            {"_id": "empty", "state": {"readings": {}}},
            {"_id": "new", "state": {"readings": [["tab", [[1.0, 0, 5.0]]]]}},
            {"_id": "none", "state": {}},
            {"_id": "tombstone", "v": 3},
        ]
    )
    found = progress.find({"state.readings": {"$type": "object"}}, {"_id": 1})
    assert sorted(d["_id"] for d in found) == ["empty", "old"]


def test_set_of_a_dotted_path_replaces_that_field_only(
    progress: Collection[dict[str, Any]],
) -> None:
    progress.insert_one({"_id": "a", "v": 2, "state": {"position": 5.0, "readings": {"t": []}}})
    result = progress.update_one(
        {"_id": "a", "v": 2}, {"$set": {"state.readings": [["t", [[1.0, 0, 5.0]]]]}}
    )
    assert result.modified_count == 1
    assert present(progress.find_one({"_id": "a"}))["state"] == {
        "position": 5.0,
        "readings": [["t", [[1.0, 0, 5.0]]]],
    }
    assert progress.update_one({"_id": "a", "v": 1}, {"$set": {"v": 9}}).matched_count == 0


# 11. erasure (shared/storage/mongo_store.py): tombstones replace documents only below their
# version, a completion's updates name the enrollment's erasure count, expired tombstones go.


def test_conditional_replace_upsert_keeps_a_newer_document(
    progress: Collection[dict[str, Any]],
) -> None:
    key = {"_id": "m1|s1", "student_id": "s1"}
    newer = {"_id": "m2|s1", "student_id": "s1", "material_id": "m2", "v": 9}
    progress.insert_many([{**key, "material_id": "m1", "v": 3, "state": {"p": 1}}, newer])
    ops = [ReplaceOne({**key, "v": {"$lt": 5}}, {**key, "material_id": "m1", "v": 5}, upsert=True),
           ReplaceOne({"_id": "m2|s1", "student_id": "s1", "v": {"$lt": 5}},
                      {"_id": "m2|s1", "student_id": "s1", "material_id": "m2", "v": 5},
                      upsert=True)]  # fmt: skip
    with pytest.raises(BulkWriteError) as caught:
        progress.bulk_write(ops, ordered=False)
    assert [(e["index"], e["code"]) for e in caught.value.details["writeErrors"]] == [(1, 11000)]
    docs = {d["_id"]: d for d in progress.find({})}
    assert docs["m1|s1"] == {**key, "material_id": "m1", "v": 5}  # the state went
    assert docs["m2|s1"]["v"] == 9


def test_one_update_pulls_listed_values_increments_and_sets(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["enrollments"]
    coll.insert_one({"_id": "c|a", "student_id": "a", "done": ["m1", "m2", "m3"]})
    change = {"$pull": {"done": {"$in": ["m1", "m3", "m9"]}}, "$inc": {"erasures": 1},
              "$set": {"at": 2.0}}  # fmt: skip
    assert coll.update_one({"_id": "c|a", "student_id": "a"}, change).matched_count == 1
    assert strip_id(coll.find_one({"_id": "c|a"})) == {
        "student_id": "a", "done": ["m2"], "erasures": 1, "at": 2.0
    }  # fmt: skip


def test_an_update_naming_a_count_matches_only_while_it_holds(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["enrollments"]
    coll.insert_one({"_id": "c|a", "student_id": "a", "done": []})
    key = {"_id": "c|a", "student_id": "a"}
    add = {"$addToSet": {"done": {"$each": ["m1"]}}}
    assert coll.update_one({**key, "erasures": {"$exists": False}}, add).matched_count == 1
    coll.update_one(key, {"$inc": {"erasures": 1}, "$set": {"done": []}})  # an erasure
    assert coll.update_one({**key, "erasures": {"$exists": False}}, add).matched_count == 0
    assert coll.update_one({**key, "erasures": 1}, {"$max": {"p": 50.0}}).matched_count == 1
    assert strip_id(coll.find_one(key)) == {"student_id": "a", "done": [], "erasures": 1, "p": 50.0}


def test_delete_many_by_a_time_before_and_a_missing_field(
    progress: Collection[dict[str, Any]],
) -> None:
    progress.insert_many([
        {"student_id": "s1", "material_id": "m1", "v": 5, "erased_at": 100.0},  # expired
        {"student_id": "s1", "material_id": "m2", "v": 5, "erased_at": 300.0},  # not yet
        {"student_id": "s2", "material_id": "m1", "v": 7, "erased_at": 100.0, "state": {}},
        {"student_id": "s3", "material_id": "m1", "v": 2},
    ])  # fmt: skip
    query = {"erased_at": {"$lt": 200.0}, "state": {"$exists": False}}
    assert progress.delete_many(query).deleted_count == 1
    left = sorted((d["student_id"], d["material_id"]) for d in progress.find({}))
    assert left == [("s1", "m2"), ("s2", "m1"), ("s3", "m1")]


# LTI (shared/lti/): platform registrations are upserts under a unique (issuer, client_id)
# index; the tool's keys are inserted only if absent, by an integer `_id` (their generation).


def test_an_upsert_breaking_a_unique_compound_index_fails_and_changes_nothing(
    mongo_db: Database[dict[str, Any]],
) -> None:
    col = mongo_db["lti_platforms"]
    col.create_index([("issuer", ASCENDING), ("client_id", ASCENDING)], unique=True)

    def put(pid: str, issuer: str, client: str) -> UpdateResult:
        update = {"$set": {"issuer": issuer, "client_id": client}, "$setOnInsert": {"at": 1.0}}
        return col.update_one({"_id": pid}, update, upsert=True)

    assert put("a", "https://i", "1").upserted_id == "a"
    assert put("b", "https://i", "2").upserted_id == "b"  # same issuer, other client: fine
    with pytest.raises(DuplicateKeyError) as inserting:  # a new id with a's pair
        put("c", "https://i", "1")
    with pytest.raises(DuplicateKeyError) as updating:  # b moved onto a's pair
        put("b", "https://i", "1")
    assert inserting.value.code == updating.value.code == 11000
    assert sorted((d["_id"], d["client_id"]) for d in col.find({})) == [("a", "1"), ("b", "2")]
    assert put("a", "https://j", "1").matched_count == 1  # a's own pair may change
    assert col.find_one({"issuer": "https://j", "client_id": "1"}, {"_id": 1}) == {"_id": "a"}


def test_insert_of_an_existing_integer_id_fails_and_keeps_the_first(
    mongo_db: Database[dict[str, Any]],
) -> None:
    col = mongo_db["lti_keys"]
    col.insert_one({"_id": 1, "kid": "first", "signs_from": 10.0})
    with pytest.raises(DuplicateKeyError) as excinfo:
        col.insert_one({"_id": 1, "kid": "second", "signs_from": 11.0})
    assert excinfo.value.code == 11000
    col.insert_one({"_id": 2, "kid": "next", "signs_from": 20.0})
    assert sorted((d["_id"], d["kid"]) for d in col.find({})) == [(1, "first"), (2, "next")]
    assert col.delete_one({"_id": 1}).deleted_count == 1
    assert [d["_id"] for d in col.find({})] == [2]


# 12. LTI classes (shared/lti/classes.py): class ids in an enrollment's `classes` array


def test_an_array_set_only_where_missing_then_added_to_and_pulled_from(
    mongo_db: Database[dict[str, Any]],
) -> None:
    """The classes' two steps: `$set: []` where the field is missing (an enrollment made
    before classes existed; one that has the array keeps it), then `$addToSet` in bulk; a
    class leaving is a `$pull`."""
    col = mongo_db["enrollments"]
    col.insert_many([{"_id": "a"}, {"_id": "b", "classes": ["k0"]}, {"_id": "c"}])
    missing = {"_id": {"$in": ["a", "b"]}, "classes": {"$exists": False}}
    assert col.update_many(missing, {"$set": {"classes": []}}).modified_count == 1
    col.bulk_write(
        [
            UpdateOne({"_id": i}, {"$addToSet": {"classes": "k1"}, "$set": {"name": i.upper()}})
            for i in ("a", "b", "a")
        ],  # fmt: skip
        ordered=False,
    )
    assert [(d["_id"], d.get("classes"), d.get("name")) for d in col.find({}).sort("_id")] == [
        ("a", ["k1"], "A"),
        ("b", ["k0", "k1"], "B"),
        ("c", None, None),
    ]
    col.update_one({"_id": "b"}, {"$pull": {"classes": "k0"}})
    col.update_one({"_id": "a"}, {"$pull": {"classes": "k1"}})
    assert [d.get("classes") for d in col.find({}).sort("_id")] == [[], ["k1"], None]


def test_equality_on_an_array_field_matches_an_element_sorted_and_cut(
    mongo_db: Database[dict[str, Any]],
) -> None:
    """A class page: `{course_id, classes: k}` (an element match) sorted on a total and the
    student id, after a position, limited; served by a multikey index."""
    col = mongo_db["enrollments"]
    col.create_index([("classes", ASCENDING), ("done", ASCENDING), ("student_id", ASCENDING)])
    col.insert_many(
        [
            {"student_id": "s1", "course_id": "c", "classes": ["k1", "k2"], "done": 3},
            {"student_id": "s2", "course_id": "c", "classes": ["k2"], "done": 1},
            {"student_id": "s3", "course_id": "c", "classes": ["k1"], "done": 1},
            {"student_id": "s4", "course_id": "c", "classes": [], "done": 0},
            {"student_id": "s5", "course_id": "c", "done": 2},
            {"student_id": "s6", "course_id": "d", "classes": ["k1"], "done": 0},
        ]
    )
    k1 = {"course_id": "c", "classes": "k1"}
    order = [("done", DESCENDING), ("student_id", DESCENDING)]
    assert [d["student_id"] for d in col.find(k1).sort(order).limit(5)] == ["s1", "s3"]
    after = {**k1, "done": 1, "student_id": {"$lt": "s3"}}
    assert list(col.find(after)) == []
    k2_first = col.find({"course_id": "c", "classes": "k2"}).sort("student_id").limit(1)
    assert [d["student_id"] for d in k2_first] == ["s1"]
    assert col.count_documents({"course_id": "c"}) == 5


def test_unset_removes_the_field_from_every_match(mongo_db: Database[dict[str, Any]]) -> None:
    col = mongo_db["enrollments"]
    col.insert_many(
        [{"_id": 1, "s": "x", "name": "N"}, {"_id": 2, "s": "x"}, {"_id": 3, "s": "y", "name": "M"}]
    )
    col.update_many({"s": "x"}, {"$unset": {"name": ""}})
    assert [d.get("name") for d in col.find({}).sort("_id")] == [None, None, "M"]


# 13. course aggregates (shared/storage/aggregate_store.py): a compare-and-set on `seq` that
# replaces lists of [key, count] pairs, `$exists` true and false beside another condition (the
# unfolded probe and the recount), and a delete that names the revision it read.


def test_a_compare_and_set_on_a_sequence_replaces_pairs_while_it_holds(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["course_aggregates"]
    coll.update_one({"_id": "c"}, {"$setOnInsert": {"seq": 0, "sums": [], "pending": []}},
                    upsert=True)  # fmt: skip
    pending = [{"e": "c|a", "rev": None, "del": False, "d": [["h:0", 1]]}]
    change = {"$set": {"seq": 1, "sums": [["h:0", 2], ["p:m.1", 12500]], "pending": pending}}
    assert coll.update_one({"_id": "c", "seq": 0}, change).matched_count == 1
    assert coll.update_one({"_id": "c", "seq": 0}, change).matched_count == 0  # lost: seq moved
    doc = coll.find_one({"_id": "c"}, {"sums": 1})
    assert doc == {"_id": "c", "sums": [["h:0", 2], ["p:m.1", 12500]]}


def test_exists_true_and_false_beside_another_field(mongo_db: Database[dict[str, Any]]) -> None:
    coll = mongo_db["enrollments"]
    coll.insert_many([
        {"_id": "c|a", "course_id": "c", "agg_seq": 0},
        {"_id": "c|b", "course_id": "c"},
        {"_id": "d|a", "course_id": "d"},
        {"_id": "d|b", "course_id": "d", "agg_seq": 3},
    ])  # fmt: skip
    assert [d["_id"] for d in coll.find({"course_id": "c", "agg_seq": {"$exists": True}})] == [
        "c|a"
    ]
    assert coll.find_one({"course_id": "c", "agg_seq": {"$exists": False}}, {"_id": 1}) == {
        "_id": "c|b"
    }
    coll.delete_one({"_id": "c|b"})
    assert coll.find_one({"course_id": "c", "agg_seq": {"$exists": False}}) is None


def test_a_delete_naming_a_revision_deletes_only_while_it_holds(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["enrollments"]
    coll.insert_one({"_id": "c|a", "student_id": "a", "rollup_rev": 4})
    assert coll.update_one({"_id": "c|a", "rollup_rev": 4},
                           {"$inc": {"rollup_rev": 1}}).matched_count == 1  # a fence  # fmt: skip
    assert coll.delete_one({"_id": "c|a", "rollup_rev": 4}).deleted_count == 0
    assert coll.delete_one({"_id": "c|a", "rollup_rev": 5}).deleted_count == 1


# shared/lti/storage.py drops an index of an earlier build, found by its key (the stand-in
# names indexes its own way). A second drop of it differs (see the module's docstring).
def test_an_index_found_by_its_key_is_dropped_by_the_name_listed(
    mongo_db: Database[dict[str, Any]],
) -> None:
    coll = mongo_db["conformance_drop_index"]
    coll.create_index(KEY, unique=True)
    names = [n for n, i in coll.index_information().items() if i["key"] == KEY]
    assert len(names) == 1
    coll.drop_index(names[0])
    assert [i for i in coll.index_information().values() if i["key"] == KEY] == []
    coll.insert_many([{"student_id": "s", "material_id": "m"} for _ in range(2)])  # not unique
