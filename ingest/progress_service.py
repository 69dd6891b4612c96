"""Ingest and read-your-writes reads: the logic behind the student routes."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool

from ingest.context import AppContext
from ingest.models import (
    CourseProgress,
    MaterialProgress,
    MaterialStatus,
    ModuleProgress,
    VideoTotals,
)
from shared.domain.catalog import Course, MaterialRef
from shared.domain.course import course_progress, percentage
from shared.domain.progress import Heartbeat, WatchState, fold
from shared.errors import BufferFull, Forbidden, RateLimited, ServiceError, Unavailable
from shared.ops import admin_ops
from shared.storage.hot_store import HotEntry, IngestItem, IngestLimits, IngestReply
from shared.storage.keys import ProgressKey

# A heartbeat's reply waits at most this long for MongoDB (only for a state that expired from
# Redis); past it the reply is computed without the stored state, which the workers still merge.
MONGO_READ_DEADLINE_S = 0.25


@dataclass(frozen=True, slots=True)
class Submission:
    """Heartbeats of one student for one material, already validated against the catalog."""

    ref: MaterialRef
    material_id: str
    heartbeats: list[Heartbeat]


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
        completed=state.completed,
        completed_at=_iso(state.completed_at),
        last_watched=_iso(state.last_watched),
    )


class ProgressService:
    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.settings = ctx.settings

    # -- writes ---------------------------------------------------------------------------

    async def submit(
        self, student_id: str, submissions: list[Submission], want_state: bool
    ) -> list[IngestReply | ServiceError]:
        """Buffer each submission durably (one Redis round trip for all of them), or say why
        not. A student whose enrollments Redis does not mirror yet costs one MongoDB read."""
        replies = await self._append(student_id, submissions, want_state)
        if any(r.status == "enrollment_unknown" for r in replies):
            await run_in_threadpool(
                admin_ops.mirror_enrollments, self.ctx.mongo, self.ctx.redis_sync, student_id
            )
            retry = [i for i, r in enumerate(replies) if r.status == "enrollment_unknown"]
            again = await self._append(student_id, [submissions[i] for i in retry], want_state)
            for i, reply in zip(retry, again, strict=True):
                replies[i] = reply
        return [self._outcome(r) for r in replies]

    async def _append(
        self, student_id: str, submissions: list[Submission], want_state: bool
    ) -> list[IngestReply]:
        items = [
            IngestItem(ProgressKey(student_id, s.material_id), s.ref.course_id, s.heartbeats)
            for s in submissions
        ]
        s, now = self.settings, time.time()
        limits = IngestLimits(
            due_at=now + s.due_delay_s,
            max_dirty=s.max_dirty_keys,
            max_pending=s.max_pending_heartbeats,
            rate_limit=s.rate_limit_per_minute,
            rate_window_s=60,
            now=now,
        )
        return await self.ctx.hot.append(items, limits, want_state)

    @staticmethod
    def _outcome(reply: IngestReply) -> IngestReply | ServiceError:
        if reply.status == "ok":
            return reply
        if reply.status == "not_enrolled":
            return Forbidden("not enrolled in this material's course")
        if reply.status == "buffer_full":
            return BufferFull("the heartbeat buffer is full; retry later", retry_after_s=10)
        if reply.status == "rate_limited":
            return RateLimited(
                "too many heartbeats from this student; retry later", reply.retry_after_s
            )
        return Unavailable(f"could not buffer the heartbeat ({reply.status}); retry later")

    async def state_after(self, student_id: str, sub: Submission, entry: HotEntry) -> WatchState:
        """The state as of an accepted heartbeat: hot state + pending, folded. When Redis holds
        no hot state, the stored one is read from MongoDB if it answers quickly (best effort:
        the heartbeat is safe either way and the workers merge it correctly)."""
        base = entry.state
        if base is None and entry.stored and self.ctx.breaker.allows():
            try:
                stored = await asyncio.wait_for(
                    run_in_threadpool(self.ctx.mongo.find_states, [(student_id, sub.material_id)]),
                    timeout=MONGO_READ_DEADLINE_S,
                )
            except (Unavailable, TimeoutError):
                self.ctx.breaker.failed()
            else:
                found = stored.get((student_id, sub.material_id))
                base = found.state if found else None
        return self._fold(base, entry.pending, sub.ref)

    def _fold(
        self, base: WatchState | None, pending: list[Heartbeat], ref: MaterialRef
    ) -> WatchState:
        return fold(
            base, pending, duration=ref.material.duration,
            threshold=self.settings.completion_threshold,
        )  # fmt: skip

    # -- reads ----------------------------------------------------------------------------

    async def states(
        self, student_id: str, refs: dict[str, MaterialRef], course_ids: tuple[str, ...] = ()
    ) -> dict[str, WatchState]:
        """Current state of each material for one student: every accepted heartbeat counts.

        Raises Forbidden when the student is not enrolled in one of the materials' courses
        (or of `course_ids`).
        """
        material_ids = list(refs)
        keys = [ProgressKey(student_id, m) for m in material_ids]
        enrolled, entries = await self.ctx.hot.read(student_id, keys)
        if enrolled is None:
            enrolled = await run_in_threadpool(
                admin_ops.mirror_enrollments, self.ctx.mongo, self.ctx.redis_sync, student_id
            )
        required = {ref.course_id for ref in refs.values()} | set(course_ids)
        if not required <= enrolled:
            raise Forbidden("not enrolled in this material's course")
        cold = [(student_id, m) for m, e in zip(material_ids, entries, strict=True)
                if e.version is None and e.stored]  # fmt: skip
        stored = await run_in_threadpool(self.ctx.mongo.find_states, cold) if cold else {}
        states = {}
        for material_id, entry in zip(material_ids, entries, strict=True):
            base = entry.state
            if entry.version is None and (found := stored.get((student_id, material_id))):
                base = found.state
            states[material_id] = self._fold(base, entry.pending, refs[material_id])
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
                        MaterialProgress(
                            material_id=i,
                            watch_time=states[i].position,
                            progress_percentage=states[i].progress,
                            completed=states[i].completed,
                        )
                        for i in ids
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
