"""What the workers tell other systems: xAPI statements from folded heartbeats and
completions, and completion webhooks. Producers only: they queue entries in the Redis outboxes
(shared/integrations/outbox.py); `workers/deliver.py` sends them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from typing import Any

import redis

from shared.domain.catalog import Course, Material
from shared.domain.progress import Heartbeat, WatchState
from shared.integrations import sessions, webhooks
from shared.integrations.outbox import WEBHOOK, XAPI, Limits, Outbox, OutboxEntry
from shared.integrations.xapi import StatementBuilder, Video, XapiConfig
from shared.settings import Settings
from shared.storage.flush_store import HotEntry
from shared.storage.keys import STATS, ProgressKey
from shared.storage.mongo_store import StateWrite
from workers.context import WorkerContext

log = logging.getLogger(__name__)


def builder(settings: Settings) -> StatementBuilder:
    return StatementBuilder(
        XapiConfig(
            settings.xapi_actor_homepage, settings.xapi_activity_base, settings.completion_threshold
        )
    )


def statement_entry(
    student_id: str, material_id: str, statement: dict[str, Any], now: float, version: int
) -> OutboxEntry:
    """A statement about the state of version `version` of the material (its basis)."""
    basis = ((material_id, version),)
    return OutboxEntry(statement["id"], student_id, statement, now, material_id, basis=basis)


def fold_statements(
    b: StatementBuilder, video: Video, heartbeats: list[Heartbeat], state: WatchState
) -> tuple[list[dict[str, Any]], dict[str, float], set[str]]:
    """A key's folded heartbeats -> (statements, open sessions with their last receive time,
    sessions that ended). `initialized` once per session: its id names only the session, and
    its time is the session's first heartbeat (seq 0) when this batch holds it."""
    statements: list[dict[str, Any]] = []
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    ended: set[str] = set()
    starts: dict[str, float] = {}
    for hb in sorted(heartbeats, key=lambda h: (h.received_at, h.seq or 0)):
        if hb.session_id is None:
            continue
        first.setdefault(hb.session_id, hb.received_at)
        if hb.seq == 0:  # the session's first heartbeat: the same timestamp in any flush
            starts[hb.session_id] = hb.received_at
        last[hb.session_id] = max(last.get(hb.session_id, 0.0), hb.received_at)
        if hb.event == "exit":
            ended.add(hb.session_id)
    for session_id, ts in first.items():
        statements.append(b.initialized(video, session_id, starts.get(session_id, ts)))
    for hb in heartbeats:
        if (stmt := b.from_heartbeat(video, hb, state)) is not None:
            statements.append(stmt)
    return statements, {s: t for s, t in last.items() if s not in ended}, ended


def announce_flush(
    ctx: WorkerContext,
    writes: Mapping[ProgressKey, StateWrite],
    entries: Mapping[ProgressKey, HotEntry | None],
    now: float,
) -> None:
    """The flush's hook: queue the statements that the heartbeats folded into `writes` report,
    in one round trip. Never raises: a failure is logged and counted (`interop_errors`), and the
    flush goes on.

    Called after the fold and before its commit: the commit trims the pending heartbeats, so
    after it a failed MongoDB write (the flush postponed) or a lost insert race would leave no
    later flush to see them. Before it, a fold that does not commit (another worker folded
    first, or this one died) is folded again, and the same heartbeats give the same ids.

    Each statement's basis is the hot state's version as the flush read it plus the heartbeats
    folded: below the tombstone of an erasure whose cut came after that read, above it for
    heartbeats taken after the cut (not the write's version, which for a key without a hot state
    comes from MongoDB, read later, maybe from the erasure's own tombstone)."""
    s = ctx.settings
    if not s.xapi_lrs_url:
        return
    try:
        _announce_flush(ctx, writes, entries, now)
    except Exception:
        log.exception("could not queue xAPI statements for %d keys", len(writes))
        with contextlib.suppress(redis.RedisError):
            ctx.redis.hincrby(STATS, "interop_errors", 1)


def _announce_flush(
    ctx: WorkerContext,
    writes: Mapping[ProgressKey, StateWrite],
    entries: Mapping[ProgressKey, HotEntry | None],
    now: float,
) -> None:
    b, catalog = builder(ctx.settings), ctx.catalog()
    statements: list[OutboxEntry] = []
    pipe = ctx.redis.pipeline(transaction=False)
    for key, w in writes.items():
        entry, ref = entries.get(key), catalog.material(key.material_id)
        if entry is None or not entry.pending or ref is None or w.duration is None:
            continue
        video = Video(key.student_id, key.material_id, ref.material.title, w.duration)
        try:  # one key's odd heartbeat (a date no calendar holds) never drops the others'
            found, open_sessions, ended = fold_statements(b, video, entry.pending, w.state)
        except Exception:
            log.exception("no xAPI statements for %s", key.member)
            pipe.hincrby(STATS, "interop_errors", 1)
            continue
        read = (entry.version or 0) + len(entry.pending)
        statements += [
            statement_entry(key.student_id, key.material_id, st, now, read) for st in found
        ]
        sessions.record_in(pipe, key.material_id, key.student_id, read, open_sessions, ended)
    Outbox(ctx.redis, XAPI).push_in(pipe, statements, Limits.of(ctx.settings), now)
    pipe.execute()


def announce_completions(
    ctx: WorkerContext, student_id: str, course: Course, material_ids: list[str], progress: float
) -> None:
    """Queue the `completed` statements and `material.completed` webhooks of these materials,
    and `course.completed` when the course reached 100 %. Ids name only (student, video) or
    (student, course): repeats (RQ retries, maintenance repairs) queue nothing new. Each entry
    names the versions of the states it is made of (`course.completed`: every material of the
    course), so that the push drops it if an erasure replaced one of them since.
    Raises on a Redis or MongoDB error (the completion job is retried by RQ)."""
    s = ctx.settings
    receivers = s.webhook_receivers
    if not s.xapi_lrs_url and not receivers:
        return
    now = ctx.clock.time()
    read = [m.material_id for m in course.materials] if progress >= 100.0 else material_ids
    stored = ctx.mongo.find_states([(student_id, m) for m in {*read, *material_ids}])
    durations = {m.material_id: m for m in course.materials}
    b = builder(s)
    statements: list[OutboxEntry] = []
    deliveries: list[OutboxEntry] = []
    latest = 0.0
    for material_id in material_ids:
        found = stored.get((student_id, material_id))
        state = found.state if found else None
        material = durations.get(material_id)
        if found is None or state is None or not state.completed or material is None:
            continue  # erased since, or not complete: nothing to announce
        try:  # one material's odd stored state never drops the others' statements and events
            stmts, events = _completion(
                b, student_id, course, material, (state, found.version), receivers, now
            )
        except Exception:
            log.exception("no completion statement or event for %s|%s", material_id, student_id)
            continue
        statements += stmts
        deliveries += events
        latest = max(latest, state.completed_at or now)
    if progress >= 100.0:
        event = webhooks.course_completed(student_id, course.course_id, latest or now)
        basis = {m: found.version for (_, m), found in stored.items()}
        deliveries += webhooks.deliveries(event, receivers, now, basis)
    pipe = ctx.redis.pipeline(transaction=False)
    if s.xapi_lrs_url:
        Outbox(ctx.redis, XAPI).push_in(pipe, statements, Limits.of(s), now)
    Outbox(ctx.redis, WEBHOOK).push_in(pipe, deliveries, Limits.of(s), now)
    pipe.execute()


def _completion(
    b: StatementBuilder,
    student_id: str,
    course: Course,
    material: Material,
    stored: tuple[WatchState, int],
    receivers: list[str],
    now: float,
) -> tuple[list[OutboxEntry], list[OutboxEntry]]:
    """One completed material's `completed` statement (videos) and webhook deliveries, made
    from its stored state `(state, version)` (their basis)."""
    (state, version), mid = stored, material.material_id
    statements = []
    if material.duration is not None:
        video = Video(student_id, mid, material.title, material.duration)
        stmt = b.completed(video, state)
        statements.append(statement_entry(student_id, mid, stmt, now, version))
    credited = state.progress if material.duration is not None else 100.0
    event = webhooks.material_completed(
        student_id, course.course_id, mid, state.completed_at or now, credited
    )
    return statements, webhooks.deliveries(event, receivers, now, {mid: version})
