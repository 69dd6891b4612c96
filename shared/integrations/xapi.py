"""xAPI Video Profile statements (https://w3id.org/xapi/video), built from what the flush folded.

Pure: no I/O. Every statement's id is a UUID v5 of what it states (student, video, verb and the
heartbeat or session it comes from), so building it again (a retried fold, a repeated
completion job) gives the same statement and the LRS never holds a duplicate. Figures are the
state's: what was credited, never what a player claimed.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from shared.domain.progress import Heartbeat, WatchState

# A fixed namespace: ids stay the same across processes, hosts and releases.
NAMESPACE = uuid.UUID("5d0c7c2e-3f4b-5a51-9b43-6e1f0d1a7c11")

VIDEO_PROFILE = "https://w3id.org/xapi/video"
VIDEO_TYPE = "https://w3id.org/xapi/video/activity-type/video"
PROFILE_TYPE = "http://adlnet.gov/expapi/activities/profile"
EXT = "https://w3id.org/xapi/video/extensions/"
VERBS = {
    "initialized": "http://adlnet.gov/expapi/verbs/initialized",
    "played": "https://w3id.org/xapi/video/verbs/played",
    "paused": "https://w3id.org/xapi/video/verbs/paused",
    "seeked": "https://w3id.org/xapi/video/verbs/seeked",
    "completed": "http://adlnet.gov/expapi/verbs/completed",
    "terminated": "http://adlnet.gov/expapi/verbs/terminated",
}
# The heartbeat's `event` -> the statement it yields: `exit` (the page closes) ends the session;
# `ended` (the video reached its end) yields none: completion goes by the threshold.
EVENT_VERBS = {"play": "played", "pause": "paused", "seek": "seeked", "exit": "terminated"}


@dataclass(frozen=True, slots=True)
class XapiConfig:
    actor_homepage: str
    activity_base: str
    completion_threshold: float  # percent


@dataclass(frozen=True, slots=True)
class Video:
    """What a statement says about the video: who watched which one, and its length."""

    student_id: str
    material_id: str
    title: str
    duration: float


def statement_id(*parts: str) -> str:
    return str(uuid.uuid5(NAMESPACE, "|".join(parts)))


def session_uuid(video: Video, session_id: str) -> str:
    """The profile's session id must be a UUID: derived from the player's, deterministically."""
    return statement_id("session", video.student_id, video.material_id, session_id)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(x: float) -> float:
    return round(float(x), 3)


def credited_segments(state: WatchState) -> list[tuple[float, float]]:
    """The played ranges as far as they were credited: verified watching credits a number of
    seconds, not ranges, so the ranges the player reported are taken in video order until
    their length is the credited seconds (all of them when nothing was held back)."""
    budget = state.watched_seconds
    segments: list[tuple[float, float]] = []
    for a, b in state.covered:
        if budget <= 0:
            break
        end = min(b, a + budget)
        segments.append((a, end))
        budget -= end - a
    return segments


def played_segments(state: WatchState) -> str:
    """The profile's `played-segments` ("start[.]end" pairs joined by "[,]"), credited."""
    return "[,]".join(f"{_num(a)}[.]{_num(b)}" for a, b in credited_segments(state))


def _ratio(state: WatchState) -> float:
    return _num(min(100.0, state.progress) / 100.0)


class StatementBuilder:
    def __init__(self, config: XapiConfig) -> None:
        self.config = config

    def _base(self, verb: str, video: Video, session: str, ts: float, sid: str) -> dict[str, Any]:
        return {
            "id": sid,
            "actor": {
                "objectType": "Agent",
                "account": {"homePage": self.config.actor_homepage, "name": video.student_id},
            },
            "verb": {"id": VERBS[verb], "display": {"en-US": verb}},
            "object": {
                "objectType": "Activity",
                "id": self.config.activity_base + video.material_id,
                "definition": {"type": VIDEO_TYPE, "name": {"en-US": video.title}},
            },
            "context": {
                "contextActivities": {
                    "category": [
                        {
                            "id": VIDEO_PROFILE,
                            "objectType": "Activity",
                            "definition": {"type": PROFILE_TYPE},
                        },
                    ]
                },
                "extensions": {EXT + "session-id": session},
            },
            "timestamp": _iso(ts),
        }

    def _browsing(self, stmt: dict[str, Any], video: Video) -> dict[str, Any]:
        """The context extensions `paused`, `completed` and `terminated` carry."""
        stmt["context"]["extensions"][EXT + "length"] = _num(video.duration)
        stmt["context"]["extensions"][EXT + "completion-threshold"] = _num(
            self.config.completion_threshold / 100.0
        )
        return stmt

    def initialized(self, video: Video, session_id: str, ts: float) -> dict[str, Any]:
        session = session_uuid(video, session_id)
        sid = statement_id("initialized", session)
        stmt = self._base("initialized", video, session, ts, sid)
        return self._browsing(stmt, video)

    def from_heartbeat(
        self, video: Video, hb: Heartbeat, state: WatchState
    ) -> dict[str, Any] | None:
        """The statement a heartbeat's `event` reports (played, paused, seeked, terminated),
        with the state's credited figures; None for a heartbeat without one."""
        verb = EVENT_VERBS.get(hb.event or "")
        if verb is None or hb.session_id is None:
            return None
        session = session_uuid(video, hb.session_id)
        if verb == "terminated":  # once per session, whether by its final heartbeat or silence
            sid = statement_id("terminated", session)
        else:
            # The reading as the player made it: a heartbeat the player sent again (a lost 202,
            # the tracker's outbox) is received again later, and must state the same thing.
            reading = (
                str(hb.seq),
                repr(hb.reading_time if hb.seq is not None else hb.received_at),
                repr(hb.watch_time),
            )
            sid = statement_id(verb, session, *reading)
        stmt = self._base(verb, video, session, hb.reading_time, sid)
        position = _num(min(hb.watch_time, video.duration))
        if verb == "seeked":
            # The position the player left: the end of the last range it played before seeking.
            before = max((b for _, b in hb.played or ()), default=position)
            stmt["result"] = {
                "extensions": {EXT + "time-from": _num(before), EXT + "time-to": position}
            }
            return stmt
        extensions: dict[str, Any] = {EXT + "time": position}
        if verb != "played":
            extensions[EXT + "progress"] = _ratio(state)
            extensions[EXT + "played-segments"] = played_segments(state)
            self._browsing(stmt, video)
        stmt["result"] = {"extensions": extensions}
        return stmt

    def terminated(
        self, video: Video, session_id: str, state: WatchState, ts: float
    ) -> dict[str, Any]:
        """A session that fell silent: ended at its last heartbeat, with the state then."""
        session = session_uuid(video, session_id)
        stmt = self._base("terminated", video, session, ts, statement_id("terminated", session))
        stmt["result"] = {
            "extensions": {
                EXT + "time": _num(min(state.position, video.duration)),
                EXT + "progress": _ratio(state),
                EXT + "played-segments": played_segments(state),
            }
        }
        return self._browsing(stmt, video)

    def completed(self, video: Video, state: WatchState) -> dict[str, Any]:
        """Exactly one per (student, video): its id names only them."""
        sid = statement_id("completed", video.student_id, video.material_id)
        ts = state.completed_at if state.completed_at is not None else state.last_watched or 0.0
        # The profile requires a session id; coverage may span sessions, so it names the video.
        session = statement_id("session", video.student_id, video.material_id, "completion")
        stmt = self._base("completed", video, session, ts, sid)
        stmt["result"] = {
            "completion": True,
            "duration": f"PT{_num(state.watched_seconds)}S",
            "extensions": {
                EXT + "time": _num(min(state.position, video.duration)),
                EXT + "progress": _ratio(state),
                EXT + "played-segments": played_segments(state),
            },
        }
        return self._browsing(stmt, video)
