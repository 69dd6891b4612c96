"""Keys a flush set aside (docs/operations.md, "A non-empty poison set"): why, who they are,
and putting them back.

A flush sets a key aside, alone, when its buffered data cannot be read or folded, or when its
document cannot be stored (pymongo cannot encode it, or MongoDB refuses it for good); every
other key of the flush is stored. Nothing is dropped: the key's hot state and heartbeats stay
in Redis, out of the flush cycle, listed in its partition's `poison` zset (member -> when) with
the reason and the error in `poison:why` (shared/storage/keys.py). Once the cause is fixed,
`retry` makes it due again; the flush that stores it takes it off the list (finish.lua), and
one that cannot sets it aside again with the new error. An erasure takes a key off the list
(erase.lua), and a key erased since the flush read it is not set aside (set_aside.lua, in one
step with the check of its tombstone): the cut took its data, and listing it again would bring
the erased key back to the list and the student's key index. Transient MongoDB errors never set a
key aside: the flush gives the keys back and a later one writes them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared.storage.clients import Buffer
from shared.storage.keys import KeySchema, ProgressKey
from shared.storage.scripts import ScriptCall, run_scripts

UNREADABLE = "unreadable"  # its buffered data or stored document cannot be parsed or folded
INVALID_DOCUMENT = "invalid_document"  # pymongo cannot encode its document as BSON
WRITE_ERROR = "write_error"  # MongoDB refused its document (not a transient error)
REASONS = (UNREADABLE, INVALID_DOCUMENT, WRITE_ERROR)  # the counter's `reason` label
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True, slots=True)
class SetAside:
    """Why a key was set aside: one of REASONS, and the error as it was raised."""

    reason: str
    error: str


@dataclass(frozen=True, slots=True)
class SetAsideKey:
    key: ProgressKey
    since: float  # when it was last set aside (epoch seconds)
    why: SetAside


def describe(exc: BaseException) -> str:
    """The error's text as an operator needs it, bounded."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]


def quarantine(
    client: Buffer,
    keys: Mapping[ProgressKey, SetAside],
    now: float,
    made: Mapping[ProgressKey, int] | None = None,
) -> list[ProgressKey]:
    """Take keys out of the flush cycle, keeping their data and why (idempotent: setting a key
    aside again replaces its time and error); `made` holds the version the flush made of each
    key it folded (its write's). Each key is listed in its student's key index, which an
    erasure reads: a key buffered before the index existed is never finished while it is set
    aside, so finish would not index it. A key erased since the flush read it is left alone
    (set_aside.lua): the erasure took its data and took it off the lists. One script per key,
    on the student's partition. Returns the keys set aside."""
    if not keys:
        return []
    made = made or {}
    ordered = list(keys)
    calls: list[ScriptCall] = []
    for key in ordered:
        part, why = key.partition, keys[key]
        calls.append((
            [part.dirty, part.leases, part.poison, part.poison_why,
             key.schema.key_index(key.student_id), key.schema.buffer_tombstones(key.student_id),
             key.state, key.pending],
            [key.member, now, json.dumps([why.reason, why.error]), key.material_id,
             made.get(key, "")],
        ))  # fmt: skip
    replies = run_scripts(client, "set_aside", calls)
    return [key for key, kept in zip(ordered, replies, strict=True) if int(kept)]


def listed(client: Buffer, schema: KeySchema) -> list[SetAsideKey]:
    """Every key set aside, by member (`<material>|<student>`; one pipelined read of each
    partition's two keys)."""
    pipe = client.pipeline(transaction=False)
    for part in schema.partitions():
        pipe.zrange(part.poison, 0, -1, withscores=True)
        pipe.hgetall(part.poison_why)
    replies = pipe.execute()
    found = []
    for members, reasons in zip(replies[0::2], replies[1::2], strict=True):
        why = {as_text(m): as_text(v) for m, v in reasons.items()}
        for member, since in members:
            text = as_text(member)
            found.append(
                SetAsideKey(ProgressKey.from_member(text, schema), since, _why(why.get(text)))
            )
    return sorted(found, key=lambda k: k.key.member)


def as_text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _why(raw: str | None) -> SetAside:
    try:
        reason, error = json.loads(raw or "")
        return SetAside(str(reason), str(error))
    except ValueError:  # set aside by a version that kept no reason
        return SetAside(UNREADABLE, "no error was recorded")


def retry(
    client: Buffer, schema: KeySchema, keys: Iterable[ProgressKey] | None, now: float
) -> list[ProgressKey]:
    """Make keys set aside due at once (all of them when `keys` is None); returns those that
    were set aside. They stay listed until a flush stores them. Idempotent."""
    wanted = {k.key for k in listed(client, schema)}
    if keys is not None:
        wanted &= set(keys)
    ordered = sorted(wanted, key=lambda k: k.member)
    if ordered:
        pipe = client.pipeline(transaction=False)
        for key in ordered:
            pipe.zadd(key.partition.dirty, {key.member: now})
        pipe.execute()
    return ordered
