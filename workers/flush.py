"""The flush job: buffered heartbeats -> hot state -> one MongoDB write per key.

A flush claims a batch of due keys (a lease: another worker takes them over if this one dies),
folds their pending heartbeats into the hot state in Redis (atomically with trimming them),
writes the states with one unordered bulk write, enqueues one completion job for the keys that
crossed the threshold, and only then marks the keys clean. Every step can be repeated or run
concurrently without effect: folds are compare-and-set, MongoDB writes are versioned.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from rq import Retry

from shared.errors import Unavailable
from shared.hot_store import Fold, HotEntry, ProgressKey
from shared.mongo_store import StateWrite, StoredState
from shared.progress import fold
from shared.stats import record_flush
from workers.completion import record_completions
from workers.context import WorkerContext, get_context

log = logging.getLogger(__name__)

COMPLETION_RETRY = Retry(max=5, interval=[1, 5, 30, 120, 600])


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
    errors: list[str] = field(default_factory=list)


def flush_pending(limit: int | None = None) -> dict:
    """RQ job: flush one batch of due keys; enqueues a follow-up while more are due."""
    ctx = get_context()
    report = flush_batch(ctx, limit or ctx.settings.flush_batch_size)
    if report.claimed >= (limit or ctx.settings.flush_batch_size):
        ctx.queue.enqueue(flush_pending, limit, job_timeout=300, result_ttl=0)
    return report.__dict__


def flush_batch(ctx: WorkerContext, limit: int) -> FlushReport:
    s = ctx.settings
    now = time.time()
    report = FlushReport()
    report.takeovers, keys = ctx.hot.claim(now, now + s.claim_lease_s, limit)
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
        ctx.hot.release(keys, retry_at=time.time() + 2 * s.flush_tick_s)
        log.warning("flush of %d keys postponed: %s", len(keys), exc)
    record_flush(
        ctx.redis, keys=report.claimed, heartbeats=report.heartbeats, written=report.written,
        stale=report.stale, takeovers=report.takeovers, completions=report.completions,
        failed=bool(report.errors), mongo_seconds=report.mongo_seconds,
        quarantined=report.quarantined,
    )  # fmt: skip
    return report


def _flush_keys(
    ctx: WorkerContext, keys: list[ProgressKey], now: float, report: FlushReport
) -> None:
    s = ctx.settings
    entries = ctx.hot.read(keys)
    cold = [(k.student_id, k.material_id) for k, e in zip(keys, entries, strict=True)
            if e is not None and e.version is None]  # fmt: skip
    stored = ctx.mongo.find_states(cold) if cold else {}
    catalog = ctx.catalog()

    folds: list[Fold] = []
    writes: dict[ProgressKey, StateWrite] = {}
    unknown: list[ProgressKey] = []
    poisoned: list[ProgressKey] = []
    for key, entry in zip(keys, entries, strict=True):
        if entry is None:
            poisoned.append(key)
            continue
        ref = catalog.material(key.material_id)
        if ref is None:
            unknown.append(key)
            continue
        duration = ref.material.duration
        base = stored.get((key.student_id, key.material_id))
        f = _fold_entry(key, entry, base, duration, s.completion_threshold)
        if f.folded or entry.version is None:
            folds.append(f)
        writes[key] = StateWrite(
            key.student_id, key.material_id, ref.course_id, duration, f.state, f.version
        )
        report.heartbeats += f.folded

    if unknown:  # a material removed from the catalog: keep its heartbeats, look again later
        log.error("no catalog entry for %d buffered keys, e.g. %s", len(unknown), unknown[0])
        ctx.hot.release(unknown, retry_at=now + 3600)
    lost_race = [f.key for f, ok in zip(folds, ctx.hot.commit(folds), strict=True) if not ok]
    if lost_race:  # another worker folded first; it (or a later flush) writes those keys
        ctx.hot.release(lost_race, retry_at=now)
        for key in lost_race:
            del writes[key]

    started = time.perf_counter()
    ordered = list(writes)
    report.stale, refused = ctx.mongo.write_states([writes[k] for k in ordered])
    report.mongo_seconds = time.perf_counter() - started
    for index in refused:  # MongoDB will not take this document: set it aside, go on
        poisoned.append(ordered[index])
        del writes[ordered[index]]
    if poisoned:
        log.error("quarantined %d keys a flush cannot process, e.g. %s", len(poisoned), poisoned[0])
        ctx.hot.quarantine(poisoned, now)
        report.quarantined = len(poisoned)
    report.written = len(writes)
    recorded = {key for key, entry in zip(keys, entries, strict=True)
                if entry is not None and entry.completion_recorded}  # fmt: skip
    newly_complete = [w for key, w in writes.items() if w.state.completed and key not in recorded]
    if newly_complete:
        _enqueue_completions(ctx, newly_complete)
        report.completions = len(newly_complete)
    report.cleaned = ctx.hot.finish(
        [(key, w.version, w.state.completed) for key, w in writes.items()],
        next_due=now + s.due_delay_s,
        ttl_s=s.hot_state_ttl_s,
    )


def _fold_entry(
    key: ProgressKey,
    entry: HotEntry,
    stored: StoredState | None,
    duration: float | None,
    threshold: float,
) -> Fold:
    """Fold the pending heartbeats onto the hot state (or the stored one when it expired)."""
    if entry.version is not None:
        base, base_version = entry.state, entry.version
    elif stored is not None:
        base, base_version = stored.state, stored.version
    else:
        base, base_version = None, 0
    state = fold(base, entry.pending, duration=duration, threshold=threshold)
    folded = len(entry.pending)
    return Fold(key, entry.version, state, folded, base_version + folded)


def _enqueue_completions(ctx: WorkerContext, writes: list[StateWrite]) -> None:
    by_enrollment: dict[tuple[str, str], list[str]] = {}
    for w in writes:
        by_enrollment.setdefault((w.student_id, w.course_id), []).append(w.material_id)
    items = [[sid, cid, mids] for (sid, cid), mids in sorted(by_enrollment.items())]
    ctx.queue.enqueue(record_completions, items, retry=COMPLETION_RETRY, job_timeout=300)
