"""Open xAPI player sessions (`vp:xapi:sessions`, on RQ's Redis), so that a silent one is
ended with `terminated`; each student's are indexed (`vp:xapi:sessions:<sid>`) for erasure.

The flush's hook records them with `xapi_sessions.lua`, which refuses the sessions of heartbeats
an erasure has replaced since they were read (the student's tombstones, as the outbox push).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import redis

from shared.storage.keys import XAPI_SESSIONS, outbox_tombstones, xapi_sessions_of

_SCRIPT = (Path(__file__).parent.parent / "storage" / "lua" / "xapi_sessions.lua").read_text()


def session_member(material_id: str, student_id: str, session_id: str) -> str:
    return json.dumps([material_id, student_id, session_id])


def student_of(member: str | bytes) -> str:
    return str(json.loads(member)[1])


def record_in(
    pipe: redis.client.Pipeline,
    material_id: str,
    student_id: str,
    version: int,
    open_sessions: dict[str, float],
    ended: set[str],
) -> None:
    """As a step of the caller's pipeline: record a key's open sessions (their last receive
    times only ever move forward) and drop its ended ones, unless an erasure replaced the state
    of that `version` (then only the ended ones are dropped)."""
    if not open_sessions and not ended:
        return
    args: list[Any] = [material_id, version, len(open_sessions)]
    for session_id, last in sorted(open_sessions.items()):
        args += [session_member(material_id, student_id, session_id), last]
    args += [session_member(material_id, student_id, s) for s in sorted(ended)]
    keys = [XAPI_SESSIONS, xapi_sessions_of(student_id), outbox_tombstones(student_id)]
    pipe.register_script(_SCRIPT)(keys=keys, args=args, client=pipe)


def drop_in(pipe: redis.client.Pipeline, members: list[bytes]) -> None:
    """As a step of the caller's pipeline: forget sessions (ended by the timeout sweep)."""
    if not members:
        return
    pipe.zrem(XAPI_SESSIONS, *members)
    for member in members:
        pipe.srem(xapi_sessions_of(student_of(member)), member)


def forget(client: redis.Redis, student_id: str, material_id: str | None) -> int:
    """Drop the student's open sessions (of one material, or all), found by the student's
    session index (no scan), so that no `terminated` follows an erasure. Returns how many."""
    index = xapi_sessions_of(student_id)
    listed: set[bytes] = client.smembers(index)  # type: ignore[assignment]
    members = [m for m in listed if material_id in (None, json.loads(m)[0])]
    if not members:
        return 0
    pipe = client.pipeline(transaction=True)
    pipe.zrem(XAPI_SESSIONS, *members)
    pipe.srem(index, *members)
    dropped, _ = pipe.execute()
    return int(dropped)
