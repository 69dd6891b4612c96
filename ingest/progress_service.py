"""Ingest and read-your-writes reads: the logic behind the student routes."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from ingest.context import AppContext
from ingest.drilldown import material_progress
from ingest.models import (
    CourseProgress,
    HeartbeatBody,
    MaterialStatus,
    ModuleProgress,
    VideoTotals,
)
from shared.domain.catalog import Course, MaterialRef, durations_agree
from shared.domain.course import course_progress, percentage
from shared.domain.progress import Heartbeat, WatchState, budget_needed, fold_into, grant_seen
from shared.errors import (
    BufferFull,
    ClientTsOutOfRange,
    Forbidden,
    InvalidInput,
    RateLimited,
    ServiceError,
    Unavailable,
)
from shared.ops import admin_ops
from shared.storage.ingest_store import IngestItem, IngestLimits
from shared.storage.keys import ProgressKey
from shared.storage.views import CachedState, HotView, IngestReply, StateCache

log = logging.getLogger(__name__)

# A heartbeat's reply waits at most this long for MongoDB (only for a state that expired from
# Redis); past it the reply is computed without the stored state, which the workers still merge.
MONGO_READ_DEADLINE_S = 0.25
# A reply folds the heartbeats its key holds since a known state: a handful, but a student can
# leave up to MAX_PENDING_PER_KEY of them (batches of many, say, with the workers down), each
# with up to 50 played ranges. Those are folded in slices of about this many ranges and
# heartbeats (about a millisecond of CPU), the event loop free between them, so one student's
# backlog never holds up the requests of others that the process is serving.
FOLD_SLICE_RANGES = 400


@dataclass(frozen=True, slots=True)
class Submission:
    """Heartbeats of one student for one material, already validated against the catalog."""

    ref: MaterialRef
    material_id: str
    heartbeats: list[Heartbeat]
    cached: CachedState | None = None  # this process's state of the key, as the request began
    known: WatchState | None = field(init=False)  # `cached.state`, thawed once for the request

    def __post_init__(self) -> None:
        object.__setattr__(self, "known", None if self.cached is None else self.cached.state)


def _iso(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def material_status(material_id: str, ref: MaterialRef, state: WatchState) -> MaterialStatus:
    return MaterialStatus(
        material_id=material_id,
        course_id=ref.course_id,
        watch_time=state.position,
        total_duration=ref.material.duration,
        progress_percentage=state.progress,
        watched_seconds=state.watched_seconds,
        unverified_seconds=state.unverified_seconds,
        completed=state.completed,
        completed_at=_iso(state.completed_at),
        last_watched=_iso(state.last_watched),
        playback_rate=state.playback_rate,
    )


CLIENT_CLOCK_AHEAD_S = 60.0  # a player clock further ahead than this is clamped to ours


def client_time(body: HeartbeatBody, received_at: float, max_age_s: float) -> float | None:
    """The reading's time by the player's clock, clamped to CLIENT_CLOCK_AHEAD_S ahead of ours;
    ClientTsOutOfRange when it is more than `max_age_s` old."""
    if body.client_ts is None:
        return None
    client_ts = body.client_ts.timestamp()
    if client_ts < received_at - max_age_s:
        raise ClientTsOutOfRange(
            f"client_ts is more than {max_age_s:.0f} s ({max_age_s / 86400:.3g} days) before "
            "the server's time",
            [{"field": "client_ts", "rule": ClientTsOutOfRange.code, "max_age_s": max_age_s}],
        )
    return min(client_ts, received_at + CLIENT_CLOCK_AHEAD_S)


def to_heartbeat(
    body: HeartbeatBody, ref: MaterialRef, received_at: float, max_client_age_s: float
) -> Heartbeat:
    """Validate against the catalog (which wins over the player) and the server's clock, and
    stamp the receive time."""
    client_ts = client_time(body, received_at, max_client_age_s)
    duration = ref.material.duration
    if ref.material.type != "video" or duration is None:
        raise InvalidInput(
            "heartbeats are for videos; use /complete for other materials",
            [{"field": "material_id", "rule": "not_a_video"}],
        )
    if not durations_agree(body.total_duration, duration):
        raise InvalidInput(
            f"total_duration {body.total_duration} disagrees with the catalog's {duration}",
            [{"field": "total_duration", "rule": "catalog_mismatch", "catalog": duration}],
        )
    return Heartbeat(
        received_at=received_at,
        watch_time=min(body.watch_time, duration),
        client_ts=client_ts,
        session_id=body.session_id,
        seq=body.seq,
        played=tuple(body.played) if body.played is not None else None,
        playback_rate=body.playback_rate,
        event=body.event,
    )


class ProgressService:
    def __init__(self, ctx: AppContext, cache: StateCache | None = None) -> None:
        self.ctx = ctx
        self.settings = ctx.settings
        self.cache = cache or StateCache(ctx.settings.state_cache_keys)

    # -- writes ---------------------------------------------------------------------------

    async def record(
        self, student_id: str, ref: MaterialRef, material_id: str, heartbeat: Heartbeat
    ) -> WatchState:
        """Buffer one heartbeat durably (one Redis round trip) and return the key's state as
        of it; raises the ServiceError that refused it.

        The state folds a bounded number of heartbeats on a known base (shared.storage.views).
        A key without hot state may have a stored state in MongoDB: the reply waits for it at
        most MONGO_READ_DEADLINE_S; past that it is computed without it and not cached (the
        heartbeat is safe either way, and the workers merge the stored state)."""
        key = ProgressKey(student_id, material_id, self.ctx.key_schema)
        sub = Submission(ref, material_id, [heartbeat], self.cache.get(key))
        [reply] = await self._submit(student_id, [sub])
        if isinstance(reply, ServiceError):
            raise reply
        if reply.view is None:  # the script always answers with the view: a bug if it happens
            raise RuntimeError("the ingest script did not return the state")
        return await self._state_after(key, sub, reply.view)

    async def record_many(
        self, student_id: str, submissions: list[Submission]
    ) -> list[ServiceError | None]:
        """Buffer each submission durably (one Redis round trip for all of them): None for each
        one accepted, else the ServiceError that refused it. Each accepted key's state is then
        computed and cached, as `record` does, so that the key's next request asks the viewing
        budget for what it claims beyond it (a client that sends only batches would otherwise
        ask, every time, without a state: for what its batch claims less the key's whole
        grant, nothing after the first)."""
        keys = [ProgressKey(student_id, s.material_id, self.ctx.key_schema) for s in submissions]
        subs = [
            replace(s, cached=self.cache.get(k)) for s, k in zip(submissions, keys, strict=True)
        ]
        replies = await self._submit(student_id, subs)
        for key, sub, reply in zip(keys, subs, replies, strict=True):
            if isinstance(reply, ServiceError) or reply.view is None:
                continue
            try:  # the heartbeats are buffered: a state that cannot be made is only not cached
                await self._state_after(key, sub, reply.view)
            except Exception:
                log.exception("no state cached for %s after its batch", key.member)
        return [r if isinstance(r, ServiceError) else None for r in replies]

    async def _state_after(self, key: ProgressKey, sub: Submission, view: HotView) -> WatchState:
        """The key's state as of the submission just buffered, from the view its script
        returned (MongoDB's stored state as its base when Redis holds none), cached."""
        stored, answered = None, True
        if view.needs_stored_state(sub.cached):
            stored, answered = await self._stored_state_quickly(key)
        return await self._fold_view(
            key, sub.ref, view, view.base_state(sub.known, stored), answered
        )

    async def _submit(
        self, student_id: str, submissions: list[Submission]
    ) -> list[IngestReply | ServiceError]:
        """Buffer each submission, or say why not. A student whose enrollments Redis does not
        mirror yet costs one MongoDB read."""
        replies = await self._append(student_id, submissions)
        if any(r.status == "enrollment_unknown" for r in replies):
            await run_in_threadpool(
                admin_ops.mirror_enrollments,
                self.ctx.mongo,
                self.ctx.redis_sync,
                self.ctx.key_schema,
                student_id,
            )
            retry = [i for i, r in enumerate(replies) if r.status == "enrollment_unknown"]
            again = await self._append(student_id, [submissions[i] for i in retry])
            for i, reply in zip(retry, again, strict=True):
                replies[i] = reply
        return [self._outcome(r) for r in replies]

    async def _append(self, student_id: str, submissions: list[Submission]) -> list[IngestReply]:
        """One ingest script call per submission, each answering with its key's view."""
        s, now = self.settings, self.ctx.clock.time()
        items = []
        for sub in submissions:
            key = ProgressKey(student_id, sub.material_id, self.ctx.key_schema)
            need, seen = 0.0, None
            if not s.verification.trusted:
                need = budget_needed(sub.known, sub.heartbeats, sub.ref.material.duration)
                seen = grant_seen(sub.cached.epoch if sub.cached else None, sub.known)
            offer = self.cache.offers_preview(sub.cached)
            items.append(
                IngestItem(key, sub.ref.course_id, sub.heartbeats, sub.cached, offer, need, seen)
            )
        limits = IngestLimits(
            due_at=now + s.due_delay_s,
            max_dirty=s.max_dirty_per_partition,
            max_pending=s.max_pending_per_partition,
            rate_limit=s.rate_limit_per_minute,
            rate_window_s=60,
            now=now,
            max_per_key=s.max_pending_per_key,
            verification=s.verification,
            ledger_ttl_s=s.hot_state_ttl_s,
        )
        return await self.ctx.hot.append(items, limits)

    def _outcome(self, reply: IngestReply) -> IngestReply | ServiceError:
        if reply.status == "ok":
            return reply
        if reply.status == "not_enrolled":
            return Forbidden("not enrolled in this material's course")
        if reply.status == "buffer_full":
            return BufferFull("the heartbeat buffer is full; retry later", retry_after_s=10)
        if reply.status == "key_full":
            return BufferFull(
                f"this video already has {self.settings.max_pending_per_key} heartbeats waiting "
                "for a worker; retry later",
                retry_after_s=30,
            )
        if reply.status == "rate_limited":
            return RateLimited(
                "too many heartbeats from this student; retry later", reply.retry_after_s
            )
        return Unavailable(f"could not buffer the heartbeat ({reply.status}); retry later")

    async def _fold_view(
        self, key: ProgressKey, ref: MaterialRef, view: HotView, state: WatchState, keep: bool
    ) -> WatchState:
        """Fold the view's tail onto `state`, a slice at a time with the event loop free in
        between (FOLD_SLICE_RANGES), and cache the result when `keep`."""
        tail, start, spent = view.tail, 0, 0
        for i, hb in enumerate(tail):
            spent += 1 + len(hb.played or ())
            if spent >= FOLD_SLICE_RANGES:
                self._fold(state, tail[start : i + 1], ref)
                start, spent = i + 1, 0
                await asyncio.sleep(0)  # the other requests in flight go on
        self._fold(state, tail[start:], ref)
        if keep:
            self.cache.put(key, view, state)
        return state

    def _fold(self, state: WatchState, heartbeats: list[Heartbeat], ref: MaterialRef) -> None:
        fold_into(
            state,
            heartbeats,
            duration=ref.material.duration,
            threshold=self.settings.completion_threshold,
            verification=self.settings.verification,
        )

    async def _stored_state_quickly(self, key: ProgressKey) -> tuple[WatchState | None, bool]:
        """The state MongoDB holds for a key, and whether MongoDB answered in time."""
        if not self.ctx.breaker.allows():
            return None, False
        pair = (key.student_id, key.material_id)
        try:
            stored = await asyncio.wait_for(
                run_in_threadpool(self.ctx.mongo.find_states, [pair]),
                timeout=MONGO_READ_DEADLINE_S,
            )
        except (Unavailable, TimeoutError):
            self.ctx.breaker.failed()
            return None, False
        found = stored.get(pair)
        return (found.state if found else None), True

    # -- reads ----------------------------------------------------------------------------

    async def states(
        self, student_id: str, refs: dict[str, MaterialRef], course_ids: tuple[str, ...] = ()
    ) -> dict[str, WatchState]:
        """Current state of each material for one student: every accepted heartbeat counts.

        Raises Forbidden when the student is not enrolled in one of the materials' courses
        (or of `course_ids`).
        """
        keys = [ProgressKey(student_id, m, self.ctx.key_schema) for m in refs]
        cached = [self.cache.get(key) for key in keys]
        enrolled, views = await self.ctx.hot.read(student_id, keys, cached)
        if enrolled is None:
            enrolled = await run_in_threadpool(
                admin_ops.mirror_enrollments,
                self.ctx.mongo,
                self.ctx.redis_sync,
                self.ctx.key_schema,
                student_id,
            )
        required = {ref.course_id for ref in refs.values()} | set(course_ids)
        if not required <= enrolled:
            raise Forbidden("not enrolled in this material's course")
        cold = [
            (k.student_id, k.material_id)
            for k, v, c in zip(keys, views, cached, strict=True)
            if v.needs_stored_state(c)
        ]
        stored = await run_in_threadpool(self.ctx.mongo.find_states, cold) if cold else {}
        states = {}
        for key, view, entry in zip(keys, views, cached, strict=True):
            found = stored.get((key.student_id, key.material_id))
            known = entry.state if entry is not None else None
            base = view.base_state(known, found.state if found else None)
            ref = refs[key.material_id]
            states[key.material_id] = await self._fold_view(key, ref, view, base, True)
        return states

    async def course_progress(self, student_id: str, course: Course) -> CourseProgress:
        refs = {m.material_id: MaterialRef(course.course_id, m) for m in course.materials}
        states = await self.states(student_id, refs, (course.course_id,))
        completed = [m for m, st in states.items() if st.completed]
        videos = [m for m in course.materials if m.type == "video"]
        modules = []
        for module in course.modules:
            ids = [m.material_id for m in module.materials]
            module_videos = [m for m in module.materials if m.type == "video"]
            modules.append(
                ModuleProgress(
                    module_id=module.module_id,
                    progress_percentage=percentage(sum(states[i].completed for i in ids), len(ids)),
                    watched_seconds=sum(
                        states[m.material_id].watched_seconds for m in module_videos
                    ),
                    total_seconds=sum(m.duration or 0.0 for m in module_videos),
                    materials=[
                        material_progress(m, states[m.material_id]) for m in module.materials
                    ],
                )
            )
        return CourseProgress(
            course_id=course.course_id,
            progress_percentage=course_progress(set(completed), course),
            completed_materials=completed,
            total_materials=len(course.materials),
            videos=VideoTotals(
                total=len(videos),
                started=sum(states[v.material_id].last_watched is not None for v in videos),
                completed=sum(states[v.material_id].completed for v in videos),
                watched_seconds=round(
                    sum(states[v.material_id].watched_seconds for v in videos), 3
                ),
                total_seconds=sum(v.duration or 0.0 for v in videos),
            ),
            modules=modules,
        )

    async def check_enrolled(self, student_id: str, course_id: str) -> None:
        """Return when the student is enrolled in the course (as the progress routes check it,
        from Redis's mirror); raise Forbidden when not."""
        await self.states(student_id, {}, (course_id,))
