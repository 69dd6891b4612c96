"""The key schema: every script's keys in one cluster slot, partitions spread over the slots."""

from __future__ import annotations

from collections import Counter

import pytest
from redis.crc import key_slot

from shared.storage import keys
from shared.storage.keys import ProgressKey, partition_for, partition_tags

pytestmark = pytest.mark.cluster  # where keys land


def slot(key: str) -> int:
    return key_slot(key.encode())


def test_a_students_keys_and_their_partitions_keys_share_one_slot() -> None:
    for student in ("ana", "bo", "x" * 200, "weird{id}", "ünï"):
        key = ProgressKey(student, "v-1")
        part = key.partition
        names = [key.pending, key.state, key.stored, keys.enrollments_key(student),
                 keys.enrollments_version_key(student), keys.rate_limit_key(student, 7),
                 keys.read_limit_key(student, 7), keys.key_index(student),
                 keys.buffer_tombstones(student), keys.budget_key(student),
                 part.dirty, part.leases, part.pending, part.poison]  # fmt: skip
        assert {slot(n) for n in names} == {slot(part.dirty)}, student
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
    counts = Counter(partition_for(f"student-{i}").index for i in range(48_000))
    assert len(counts) == 48 and max(counts.values()) < 1.1 * 1000 and min(counts.values()) > 900
    assert partition_for("ana") == partition_for("ana")  # crc32, not the salted hash()
    assert partition_for("ana").index == 18  # the same in every process and release


def test_the_partition_count_is_a_setting_every_key_follows() -> None:
    try:
        keys.use_partitions(4)
        assert len(keys.partitions()) == 4 and partition_for("ana").index < 4
        with pytest.raises(ValueError):
            keys.use_partitions(0)
    finally:
        keys.use_partitions(keys.DEFAULT_PARTITIONS)
