"""The key schema: every script's keys in one cluster slot, partitions spread over the slots."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import key_slot

from shared.settings import Settings
from shared.storage import keys
from shared.storage.clients import async_buffer_client, buffer_client
from shared.storage.keys import KeySchema, ProgressKey, partition_tags
from tests.helpers import make_settings

pytestmark = pytest.mark.cluster  # where keys land

SCHEMA = KeySchema(48)  # BUFFER_PARTITIONS' default
NOWHERE = "redis://127.0.0.1:1/0"  # clients are built, never used


def settings(partitions: int) -> Settings:
    """Settings of a plain-Redis buffer with `partitions` partitions."""
    return make_settings(
        NOWHERE,
        "mongodb://127.0.0.1:1/x",
        buffer_partitions=partitions,
        buffer_redis_url=NOWHERE,
        buffer_redis_cluster=False,
    )


def names_of(schema: KeySchema, student: str) -> list[str]:
    """Every key of the student and of their partition, as `schema` names them."""
    key = ProgressKey(student, "v-1", schema)
    part = key.partition
    return [key.pending, key.state, key.stored, schema.enrollments_key(student),
            schema.enrollments_version_key(student), schema.rate_limit_key(student, 7),
            schema.read_limit_key(student, 7), schema.key_index(student),
            schema.buffer_tombstones(student), schema.budget_key(student),
            schema.pending_prefix(student), schema.state_prefix(student),
            part.dirty, part.leases, part.pending, part.poison, part.poison_why]  # fmt: skip


def expected_names(tag: str) -> list[str]:
    """`names_of` for "ana" as the release before this one spelled them (a rolling upgrade
    runs both), given the partition's tag."""
    student, part = f"vp:{{{tag}}}:s:ana", f"vp:{{{tag}}}"
    return [f"{student}:hb:v-1", f"{student}:ws:v-1", f"{student}:stored", f"{student}:enr",
            f"{student}:enr:v", f"{student}:rl:7", f"{student}:rr:7", f"{student}:keys",
            f"{student}:erased", f"{student}:budget", f"{student}:hb:", f"{student}:ws:",
            f"{part}:dirty", f"{part}:leases", f"{part}:pending", f"{part}:poison",
            f"{part}:poison:why"]  # fmt: skip


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_a_students_keys_and_their_partitions_keys_share_one_slot() -> None:
    for student in ("ana", "bo", "x" * 200, "weird{id}", "ünï"):
        names = names_of(SCHEMA, student)
        assert {slot(n) for n in names} == {slot(SCHEMA.partition_for(student).dirty)}, student
    assert slot(keys.CATALOG) == slot(keys.CATALOG_VERSION)


@pytest.mark.parametrize(("partitions", "primaries"), [(48, 3), (48, 4), (96, 3), (96, 6)])
def test_each_primary_of_equal_slot_ranges_holds_as_many_partitions(
    partitions: int, primaries: int
) -> None:
    # redis-cli --cluster create gives primary i the slots [i * 16384 / n, (i + 1) * 16384 / n)
    tags = partition_tags(partitions)
    owners = Counter(slot("{" + tag + "}") * primaries // 16384 for tag in tags)
    assert sorted(owners.values()) == [partitions // primaries] * primaries
    assert len({slot("{" + tag + "}") for tag in tags}) == partitions


def test_students_spread_evenly_and_stably_over_the_partitions() -> None:
    counts = Counter(SCHEMA.partition_of(f"student-{i}") for i in range(48_000))
    assert len(counts) == 48 and max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 900
    assert SCHEMA.partition_for("ana") == SCHEMA.partition_for("ana")  # crc32, not hash()
    assert SCHEMA.partition_for("ana").index == 18  # the same in every process and release


def test_the_key_names_are_the_release_befores_byte_for_byte() -> None:
    assert names_of(SCHEMA, "ana") == expected_names("p18.6")
    assert ProgressKey("ana", "v-1", SCHEMA).member == "v-1|ana"
    assert ProgressKey.from_member(b"v-1|ana", SCHEMA) == ProgressKey("ana", "v-1", SCHEMA)
    assert KeySchema.from_settings(settings(48)) == SCHEMA


def test_schemas_of_different_partition_counts_coexist_in_one_process() -> None:
    four = KeySchema.from_settings(settings(4))
    assert len(four.partitions()) == 4 and len(SCHEMA.partitions()) == 48
    assert four.partition_of("ana") == 18 % 4  # crc32 mod 4, as 4 divides 48
    assert names_of(four, "ana") == expected_names("p2.1")
    assert names_of(SCHEMA, "ana") == expected_names("p18.6")  # unmoved by the other
    assert ProgressKey("ana", "v-1", four) != ProgressKey("ana", "v-1", SCHEMA)
    with pytest.raises(ValueError):
        KeySchema(0)


def test_building_a_client_changes_nothing() -> None:
    before = dict(vars(keys))
    names = names_of(SCHEMA, "ana")
    other = settings(4)
    buffer_client(other).close()  # no connection is made until a command is sent
    async_buffer_client(other)
    assert vars(keys) == before  # no module state set, none added
    assert names_of(SCHEMA, "ana") == names and names_of(KeySchema(48), "ana") == names
