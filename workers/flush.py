"""The flush job: buffered heartbeats -> hot state -> one MongoDB write per key.

A flush claims a batch of due keys, a share from each buffer partition (each claim is one
script on one partition's keys: one cluster slot), under a lease (another worker takes them over
if this one dies),
folds their pending heartbeats into the hot state in Redis (atomically with trimming them),
writes the states with one unordered bulk write, enqueues one completion job for the keys that
crossed the threshold, and only then marks the keys clean. Every step can be repeated or run
concurrently without effect: folds are compare-and-set, MongoDB writes are versioned.

One key never holds up the others: a key whose data cannot be read or folded, or whose document
cannot be stored, is set aside alone, with the error (shared/storage/set_aside.py); every other
key of the flush is stored. A MongoDB outage or a transient write error sets nothing aside: the
keys are given back and a later flush writes them.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from rq import Retry

from shared.domain.catalog import Catalog
from shared.domain.progress import WatchState, fold_into
from shared.domain.rollup import Entries
from shared.errors import Unavailable
from shared.ops.rollups import entry_of, record_flushed
from shared.settings import Settings
from shared.storage.flush_store import Fold, HotEntry
from shared.storage.keys import STATS, ProgressKey
from shared.storage.mongo_store import StateWrite, StoredState
from shared.storage.rollup_store import entries_of_writes
from shared.storage.scripts import NODE_DOWN
from shared.storage.set_aside import UNREADABLE, SetAside, describe, quarantine
from shared.storage.stats import record_flush
from workers.completion import record_completions
from workers.context import WorkerContext, get_context
from workers.grades import announce_grades
from workers.interop import announce_flush

log = logging.getLogger(__name__)

COMPLETION_RETRY = Retry(max=5, interval=[1, 5, 30, 120, 600])
COMPLETION_FAILURE_TTL_S = 7 * 86400


@dataclass
class FlushReport:
    claimed: int = 0
    mongo_seconds: float = 0.0
    takeovers: int = 0
    heartbeats: int = 0
    written: int = 0
    stale: int = 0
    cleaned: int = 0
    completions: int = 0
    released: int = 0
    quarantined: int = 0
    set_aside: dict[str, int] = field(default_factory=dict)  # reason -> keys
    overclaimed: int = 0
    more_due: bool = False  # some partition had more keys due than this flush claimed of it
    errors: list[str] = field(default_factory=list)


def flush_pending(limit: int | None = None) -> dict[str, Any]:
    """RQ job: flush one batch of due keys; enqueues a follow-up while more are due. Then
    writes the enrollment rollups that are due (`persist_due`: in this job rather than one of
    its own every tick, which cost more Redis commands than the records' own work)."""
    ctx = get_context()
    batch_size = limit or ctx.settings.flush_batch_size
    report = flush_batch(ctx, batch_size)
    if report.more_due:
        ctx.queue.enqueue(flush_pending, limit, job_timeout=300, result_ttl=0)
    try:
        persisted = persist_due(ctx)
    except (Unavailable, redis.RedisError) as exc:  # the next tick's job tries again
        log.warning("rollups not persisted now: %s", exc)
        persisted = 0
    return {**report.__dict__, "rollups_persisted": persisted}


def flush_batch(ctx: WorkerContext, limit: int) -> FlushReport:
    s = ctx.settings
    now = ctx.clock.time()
    report = FlushReport()
    report.takeovers, keys, report.more_due = ctx.hot.claim(now, now + s.claim_lease_s, limit)
    report.claimed = len(keys)
    if not keys:
        return report
    if report.takeovers:
        log.warning("took over %d keys from a worker that did not finish", report.takeovers)
    try:
        _flush_keys(ctx, keys, now, report)
    except Unavailable as exc:
        report.errors.append(str(exc))
        report.released = len(keys)
        ctx.hot.release(keys, retry_at=ctx.clock.time() + 2 * s.flush_tick_s)
        log.warning("flush of %d keys postponed: %s", len(keys), exc)
    except NODE_DOWN as exc:  # a buffer primary went down mid-flush: its keys cannot be released
        report.errors.append(str(exc))
        log.warning("flush of %d keys interrupted by the buffer's Redis (%s); their leases "
                    "expire and a later flush takes them over", len(keys), exc)  # fmt: skip
    record_flush(
        ctx.redis,
        keys=report.claimed,
        heartbeats=report.heartbeats,
        written=report.written,
        stale=report.stale,
        takeovers=report.takeovers,
        completions=report.completions,
        failed=bool(report.errors),
        mongo_seconds=report.mongo_seconds,
        set_aside=report.set_aside,
        overclaimed=report.overclaimed,
    )
    return report


@dataclass
class _Batch:
    """One flush's keys as they move through the steps."""

    keys: list[ProgressKey]
    entries: list[HotEntry | None] = field(default_factory=list)
    folds: list[Fold] = field(default_factory=list)
    writes: dict[ProgressKey, StateWrite] = field(default_factory=dict)
    unknown: list[ProgressKey] = field(default_factory=list)
    poisoned: dict[ProgressKey, SetAside] = field(default_factory=dict)
    refused: dict[ProgressKey, int] = field(default_factory=dict)  # the version MongoDB refused
    overclaimed: dict[ProgressKey, tuple[int, float]] = field(default_factory=dict)


def _flush_keys(
    ctx: WorkerContext, keys: list[ProgressKey], now: float, report: FlushReport
) -> None:
    batch = _fold_batch(ctx, keys, report)
    if batch.unknown:  # a material removed from the catalog: keep its heartbeats, look later
        log.error(
            "no catalog entry for %d buffered keys, e.g. %s", len(batch.unknown), batch.unknown[0]
        )
        ctx.hot.release(batch.unknown, retry_at=now + 3600)
    announce_flush(ctx, batch.writes, dict(zip(batch.keys, batch.entries, strict=True)), now)
    committed = ctx.hot.commit(batch.folds)
    for fold_, ok in zip(batch.folds, committed, strict=True):
        if not ok:  # another worker folded first: it holds the key and writes it
            del batch.writes[fold_.key]
            batch.overclaimed.pop(fold_.key, None)
    _report_overclaims(batch.overclaimed, now, report)
    _write(ctx, batch, now, report)
    _announce_grades(ctx, batch, now)
    _set_aside(ctx, batch, now, report)
    _finish(ctx, batch, now, report)


def _announce_grades(ctx: WorkerContext, batch: _Batch, now: float) -> None:
    """Queue the LTI scores of the written keys (workers/grades.py), after the MongoDB write
    (the score is read from it) and before the keys are marked clean (a crash in between
    leaves them dirty: a later flush queues again). A MongoDB outage postpones the flush;
    any other failure is logged and counted (`grade_errors`), and the flush goes on."""
    try:
        announce_grades(ctx, batch.writes.values(), now)
    except Unavailable:
        raise
    except Exception:
        log.exception("could not queue LTI scores for %d keys", len(batch.writes))
        with contextlib.suppress(redis.RedisError):
            ctx.redis.hincrby(STATS, "grade_errors", 1)


def _set_aside(ctx: WorkerContext, batch: _Batch, now: float, report: FlushReport) -> None:
    """Take the keys that cannot be stored out of the cycle, each with its error; not those an
    erasure took meanwhile (nothing of them is left to keep)."""
    if not batch.poisoned:
        return
    kept = set(quarantine(ctx.hot.client, batch.poisoned, now, batch.refused))
    for key, why in batch.poisoned.items():
        if key not in kept:
            log.info("not set aside %s (%s): erased meanwhile", key.member, why.reason)
            continue
        log.error("set aside %s (%s): %s", key.member, why.reason, why.error)
        report.set_aside[why.reason] = report.set_aside.get(why.reason, 0) + 1
    report.quarantined = len(kept)


_last_overclaim_log = 0.0
OVERCLAIM_LOG_EVERY_S = 60.0


def _report_overclaims(
    overclaimed: dict[ProgressKey, tuple[int, float]], now: float, report: FlushReport
) -> None:
    """Count heartbeats whose claims went over the watching budget, and say so in the log at
    most once a minute per worker (naming a student and material, never a token)."""
    global _last_overclaim_log
    report.overclaimed = sum(count for count, _ in overclaimed.values())
    if not overclaimed or now - _last_overclaim_log < OVERCLAIM_LOG_EVERY_S:
        return
    _last_overclaim_log = now
    key, (_, unverified) = max(overclaimed.items(), key=lambda item: item[1][1])
    log.warning(
        "%d heartbeats of %d keys claimed more watching than their time allows, e.g. student "
        "%s on material %s (%.1f s unverified)",
        report.overclaimed,
        len(overclaimed),
        key.student_id,
        key.material_id,
        unverified,
    )


def _fold_batch(ctx: WorkerContext, keys: list[ProgressKey], report: FlushReport) -> _Batch:
    """Read the keys and fold their pending heartbeats in memory (nothing is written yet)."""
    read = ctx.hot.read_entries(keys)
    batch = _Batch(keys, [e if isinstance(e, HotEntry) else None for e in read])
    cold = [
        (k.student_id, k.material_id)
        for k, e in zip(keys, batch.entries, strict=True)
        if e is not None and e.version is None
    ]
    stored = ctx.mongo.find_states(cold) if cold else {}
    catalog = ctx.catalog()
    floors = _version_floors(ctx, [k for k in cold if k not in stored], catalog)
    for key, entry in zip(keys, read, strict=True):
        ref = catalog.material(key.material_id)
        base = stored.get((key.student_id, key.material_id))
        if isinstance(entry, SetAside):
            batch.poisoned[key] = entry
            continue
        if base is not None and base.unreadable is not None:
            batch.poisoned[key] = base.unreadable
            continue
        if ref is None:
            batch.unknown.append(key)
            continue
        duration = ref.material.duration
        try:
            floor = floors.get((key.student_id, key.material_id), 0)
            f, overclaimed = _fold_entry(key, entry, base, duration, ctx.settings, floor)
        except Exception as exc:  # one key's odd data must not stop the others
            batch.poisoned[key] = SetAside(UNREADABLE, "its fold: " + describe(exc))
            continue
        if overclaimed:
            batch.overclaimed[key] = (overclaimed, f.state.unverified_seconds)
        if f.folded or entry.version is None:
            batch.folds.append(f)
        batch.writes[key] = StateWrite(
            key.student_id, key.material_id, ref.course_id, duration, f.state, f.version
        )
        report.heartbeats += f.folded
    return batch


def _write(ctx: WorkerContext, batch: _Batch, now: float, report: FlushReport) -> None:
    """One bulk write; keys that did not land are retried (lost race) or set aside (refused)."""
    ordered = list(batch.writes)
    started = time.perf_counter()
    outcome = ctx.mongo.write_states([batch.writes[k] for k in ordered])
    report.mongo_seconds = time.perf_counter() - started
    report.stale = len(outcome.stale)
    retry = [ordered[i] for i in outcome.retry]
    transient = [ordered[i] for i in outcome.transient]
    refused = {ordered[i]: why for i, why in outcome.refused.items()}
    batch.refused.update((key, batch.writes[key].version) for key in refused)
    for key in [*retry, *transient, *refused]:
        del batch.writes[key]
    if retry:  # lost an insert race to an older write: write again on the next tick
        ctx.hot.release(retry, retry_at=now)
    if transient:  # MongoDB could not take them now: a later flush writes them
        ctx.hot.release(transient, retry_at=now + 2 * ctx.settings.flush_tick_s)
    batch.poisoned.update(refused)
    report.written = len(batch.writes)
    # Stale writes are rolled up too: a flush taken over after its MongoDB write needs them.
    roll_up(ctx, list(batch.writes.values()), now)


def roll_up(ctx: WorkerContext, writes: list[StateWrite], now: float) -> None:
    """The written states into their enrollments' rollups: into the live records in Redis
    (written to MongoDB by `persist_due` every ROLLUP_PERSIST_S), or with ROLLUP_PERSIST_S=0
    straight into MongoDB, the records left by an earlier setting settled. Raises Unavailable
    (the flush then gives its keys back)."""
    catalog = ctx.catalog()
    direct = ctx.settings.rollup_persist_s <= 0
    if direct:
        record_flushed(ctx.mongo, catalog, writes)
    grouped = entries_of_writes((w.student_id, w.course_id, w.material_id, entry_of(w))
                                for w in writes)  # fmt: skip
    by_course: dict[str, dict[str, Entries]] = {}
    for (student_id, course_id), entries in grouped.items():
        by_course.setdefault(course_id, {})[student_id] = entries
    live = ctx.live
    for course_id, incoming in sorted(by_course.items()):
        course = catalog.courses.get(course_id)
        if course is None:
            continue
        if direct:
            live.settle(ctx.mongo, course, incoming, now=now)
        else:
            live.merge(ctx.mongo, course, incoming, now)


PERSIST_COURSES = 100  # courses a flush job (or a follow-up) persists


def persist_rollups(limit: int = PERSIST_COURSES) -> int:
    """RQ job: `persist_due`, enqueued by it when more courses were due than it took."""
    return persist_due(get_context(), limit)


def persist_due(ctx: WorkerContext, limit: int = PERSIST_COURSES) -> int:
    """Write the live records of the courses that are due to MongoDB (each flush job, so each
    flush tick). Returns how many enrollment documents changed. A course that fails is logged
    and tried again at the next tick when MongoDB or Redis was away, after ROLLUP_PERSIST_S for
    any other fault (its records stay in Redis, nothing is lost; the other courses go on).
    With `limit` courses due, a `persist_rollups` job takes the next ones."""
    now = ctx.clock.time()
    catalog = ctx.catalog()
    live = ctx.live
    written = 0
    due = live.due(now, limit)
    away = False
    for course_id in due:
        course = catalog.courses.get(course_id)
        try:
            if course is None:
                live.forget(course_id, now)
            else:
                written += live.persist(ctx.mongo, course, now)
        except (Unavailable, redis.RedisError) as exc:
            log.warning("rollups of course %s not persisted now: %s", course_id, exc)
            away = True
        except Exception:
            log.exception("rollups of course %s not persisted; tried again later", course_id)
            live.postpone(course_id, now)
    if len(due) == limit and not away:
        ctx.queue.enqueue(persist_rollups, limit, job_timeout=600, result_ttl=0)
    return written


def _finish(ctx: WorkerContext, batch: _Batch, now: float, report: FlushReport) -> None:
    """Enqueue completions for keys that crossed the threshold, then mark written keys clean."""
    recorded = {
        key
        for key, entry in zip(batch.keys, batch.entries, strict=True)
        if entry is not None and entry.completion_recorded
    }
    newly_complete = [
        w for key, w in batch.writes.items() if w.state.completed and key not in recorded
    ]
    if newly_complete:
        _enqueue_completions(ctx, newly_complete)
        report.completions = len(newly_complete)
    report.cleaned = ctx.hot.finish(
        [(key, w.version, w.state.completed) for key, w in batch.writes.items()],
        next_due=now + ctx.settings.due_delay_s,
        ttl_s=ctx.settings.hot_state_ttl_s,
    )


def _version_floors(
    ctx: WorkerContext, fresh: list[tuple[str, str]], catalog: Catalog
) -> dict[tuple[str, str], int]:
    """For keys with neither a hot state nor a stored document, the version their enrollment's
    rollup holds: a new state starts beyond it. An erasure leaves its tombstone's version T in
    the rollups; once its tombstones have expired (Redis's, then MongoDB's, deleted by the
    maintenance job) a state starting again from 1 would lose to T there for good."""
    wanted = [(s, ref.course_id, m) for s, m in fresh if (ref := catalog.material(m)) is not None]
    return ctx.mongo.rolled_up_versions(wanted) if wanted else {}


def _fold_entry(
    key: ProgressKey,
    entry: HotEntry,
    stored: StoredState | None,
    duration: float | None,
    settings: Settings,
    floor: int = 0,
) -> tuple[Fold, int]:
    """Fold the pending heartbeats onto the hot state (or the stored one when it expired; or
    nothing, from the version `floor`). Also returns how many of them claimed more than
    verified watching credits."""
    if entry.version is not None:
        base, base_version = entry.state, entry.version
    elif stored is not None:
        base, base_version = stored.state, stored.version
    else:
        base, base_version = None, floor
    state = WatchState.from_dict(base.to_dict()) if base else WatchState()
    overclaimed = fold_into(
        state,
        entry.pending,
        duration=duration,
        threshold=settings.completion_threshold,
        verification=settings.verification,
    )
    folded = len(entry.pending)
    return Fold(key, entry.version, state, folded, base_version + folded), overclaimed


def _enqueue_completions(ctx: WorkerContext, writes: list[StateWrite]) -> None:
    by_enrollment: dict[tuple[str, str], list[str]] = {}
    for w in writes:
        by_enrollment.setdefault((w.student_id, w.course_id), []).append(w.material_id)
    items = [[sid, cid, mids] for (sid, cid), mids in sorted(by_enrollment.items())]
    # The job's arguments name students: a failed one is kept a week for an operator to look
    # at (RQ's default is a year); a finished one RQ's 500 s.
    ctx.queue.enqueue(record_completions, items, retry=COMPLETION_RETRY, job_timeout=300,
                      failure_ttl=COMPLETION_FAILURE_TTL_S)  # fmt: skip
