"""A student's data export (right of access): everything the service holds about one student.

Blocking (MongoDB and Redis); the routes run it in a thread. Reads only. MongoDB's copy and
Redis's (hot state, heartbeats not yet folded) are both reported, and each material's current
figures are the fold of the two, exactly as the student's own status route computes them.
It costs look-ups of the student's own data only: MongoDB by student, the student's key index
in the buffer and entry indexes in the outboxes; never a scan of the buffer or an outbox.

Whatever is stored, the export answers: a time no calendar holds is given as stored (epoch
seconds), a material whose data cannot be read is listed with the error, and values JSON cannot
carry (NaN, a type of BSON's own) are made plain.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis

from shared.domain import rollup
from shared.domain.catalog import Catalog, MaterialRef
from shared.domain.progress import Heartbeat, WatchState, fold
from shared.integrations.outbox import OUTBOXES, XAPI, Outbox
from shared.integrations.xapi import StatementBuilder, Video, XapiConfig
from shared.lti.classes import memberships
from shared.lti.grades import GradeTargets
from shared.settings import Settings
from shared.storage import rollup_store
from shared.storage.clients import Buffer
from shared.storage.flush_store import HotEntry, HotStore
from shared.storage.keys import KeySchema, ProgressKey
from shared.storage.live_rollups import LiveRollups
from shared.storage.mongo_store import MongoStore, _unavailable_on_outage
from shared.storage.set_aside import SetAside, describe

log = logging.getLogger(__name__)


def _iso(ts: Any) -> Any:
    """Epoch seconds as ISO 8601; anything else (a year 0, a string) as it is stored."""
    try:
        return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError, OSError):
        return ts


def _with_live_totals(
    r: Buffer, catalog: Catalog, student_id: str, doc: dict[str, Any]
) -> dict[str, Any]:
    """The enrollment's totals and completions as its live rollup record says, when it has
    one not yet written to MongoDB (shared/storage/live_rollups.py)."""
    course = catalog.courses.get(doc.get("course_id", ""))
    if course is None:
        return doc
    record = LiveRollups(r).records(course.course_id, [student_id]).get(student_id)
    if record is None:
        return doc
    totals = rollup.totals(record.entries, course).as_fields()
    return {**doc, **totals, **rollup_store.completion_fields(record.entries, course)}


def _json_safe(value: Any) -> Any:
    """`value` with what JSON cannot carry made plain: non-finite numbers are null, strings
    lose unpaired surrogates, other types (BSON's own) become their text."""
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.encode("utf-8", "replace").decode("utf-8")
    if value is None or isinstance(value, int):
        return value
    return str(value)


def _heartbeat(hb: Heartbeat) -> dict[str, Any]:
    return {
        "received_at": _iso(hb.received_at),
        "watch_time": hb.watch_time,
        "client_ts": _iso(hb.client_ts),
        "session_id": hb.session_id,
        "seq": hb.seq,
        "played": [list(r) for r in hb.played] if hb.played is not None else None,
        "event": hb.event,
        "complete": hb.complete,
    }


def _state(state: WatchState, duration: float | None) -> dict[str, Any]:
    return {
        "position": state.position,
        "watched_ranges": state.covered,  # as the player reported them
        "watched_seconds": state.watched_seconds,  # credited (verified watching)
        "unverified_seconds": state.unverified_seconds,  # reported but not credited
        "progress_percentage": state.progress,
        "duration": duration,
        "completed": state.completed,
        "completed_at": _iso(state.completed_at),
        "last_watched": _iso(state.last_watched),
    }


@dataclass
class _Material:
    material_id: str
    course_id: str | None
    duration: float | None
    current: WatchState
    stored: WatchState | None
    stored_at: float | None
    pending: list[Heartbeat]


@dataclass
class _Unreadable:
    """A material whose stored data the export cannot read: listed, with the error."""

    material_id: str
    course_id: Any
    error: str


def _materials(
    settings: Settings,
    mongo: MongoStore,
    r: Buffer,
    schema: KeySchema,
    catalog: Catalog,
    student_id: str,
) -> list[_Material | _Unreadable]:
    """Every material the student has data for, in MongoDB or Redis, with its current state."""
    stored_docs = {
        doc["material_id"]: doc
        for doc in mongo.progress.find(
            {"student_id": student_id},
            {"_id": 0, "state": 1, "material_id": 1, "course_id": 1, "written_at": 1},
        )
    }
    hot = HotStore(r, schema)
    material_ids = sorted(set(stored_docs) | hot.indexed_materials(student_id))
    entries = hot.read_entries([ProgressKey(student_id, m, schema) for m in material_ids])
    found: list[_Material | _Unreadable] = []
    for material_id, entry in zip(material_ids, entries, strict=True):
        ref = catalog.material(material_id)
        doc = stored_docs.get(material_id, {})
        course_id = ref.course_id if ref else doc.get("course_id")
        if isinstance(entry, SetAside):  # buffered data held but unparseable: listed, not left out
            found.append(_Unreadable(material_id, course_id, entry.error))
            continue
        try:
            material = _material(settings, ref, material_id, course_id, doc, entry)
        except Exception as exc:  # an odd stored value: listed with the error, never a 500
            log.warning("export of %s|%s: %s", material_id, student_id, describe(exc))
            found.append(_Unreadable(material_id, course_id, describe(exc)))
            continue
        if material is not None:
            found.append(material)
    return found


def _material(
    settings: Settings,
    ref: MaterialRef | None,
    material_id: str,
    course_id: Any,
    doc: dict[str, Any],
    entry: HotEntry | None,
) -> _Material | None:
    """One material's states (None when erased: a tombstone holds only a version)."""
    duration = ref.material.duration if ref else None
    stored = WatchState.from_dict(doc["state"]) if "state" in doc else None
    pending = entry.pending if entry else []
    base = entry.state if entry is not None and entry.state is not None else stored
    if base is None and not pending:
        return None
    current = fold(
        base,
        pending,
        duration=duration,
        threshold=settings.completion_threshold,
        verification=settings.verification,
    )
    return _Material(
        material_id, course_id, duration, current, stored, doc.get("written_at"), pending
    )


def _exported(m: _Material | _Unreadable, student_id: str) -> dict[str, Any]:
    """One material as the export shows it (its figures, or why they cannot be read)."""
    if isinstance(m, _Material):
        try:
            return {
                "material_id": m.material_id,
                "course_id": m.course_id,
                "current": _state(m.current, m.duration),
                "stored": _state(m.stored, m.duration) if m.stored else None,
                "stored_at": _iso(m.stored_at),
                "pending_heartbeats": [_heartbeat(hb) for hb in m.pending],
            }
        except Exception as exc:  # figures of odd stored values: listed with the error
            log.warning("export of %s|%s: %s", m.material_id, student_id, describe(exc))
            m = _Unreadable(m.material_id, m.course_id, describe(exc))
    return {"material_id": m.material_id, "course_id": m.course_id, "unreadable": m.error}


@_unavailable_on_outage
def student_export(
    settings: Settings,
    mongo: MongoStore,
    r: Buffer,
    schema: KeySchema,
    outboxes: redis.Redis,
    catalog: Catalog,
    student_id: str,
) -> dict[str, Any]:
    """The export as JSON-ready data: enrollments, each material's state (current, stored,
    pending heartbeats; from MongoDB and the buffer `r`, its keys named by `schema`), the
    outbox entries that name the student (on RQ's Redis, `outboxes`: statements, webhooks and
    LTI scores) and the student's LTI grade targets (the line items they are graded on and the
    score last sent to each).
    Raises `Unavailable` (a 503) while MongoDB is down: an export must be complete."""
    fields = {"_id": 0, **rollup_store.INTERNAL_FIELDS}
    docs = list(mongo.enrollments.find({"student_id": student_id}, fields))
    enrollments = [
        {
            **doc,
            "updated_at": _iso(doc.get("updated_at")),
            "last_active": _iso(doc.get("last_active")),
        }
        for doc in (_with_live_totals(r, catalog, student_id, d) for d in docs)
    ]
    materials = [
        _exported(m, student_id)
        for m in _materials(settings, mongo, r, schema, catalog, student_id)
    ]
    entries: dict[str, Any] = {}
    for box in OUTBOXES:
        outbox = Outbox(outboxes, box)
        queued, dead = outbox.entries_of(student_id)
        entries[box.name] = {
            "queued": queued,
            "set_aside": dead,
            "sent_ids": outbox.sent_ids(student_id),
        }
    return {
        "student_id": student_id,
        "generated_at": _iso(datetime.now(UTC).timestamp()),
        "enrollments": _json_safe(enrollments),
        "materials": _json_safe(materials),
        "outbox": _json_safe(entries),
        "lti_memberships": _json_safe(memberships(mongo, student_id)),
        "lti_grades": _json_safe(GradeTargets(mongo.db).of_student(student_id)),
    }


@_unavailable_on_outage
def student_export_xapi(
    settings: Settings,
    mongo: MongoStore,
    r: Buffer,
    schema: KeySchema,
    outboxes: redis.Redis,
    catalog: Catalog,
    student_id: str,
) -> dict[str, Any]:
    """The xAPI form: the `completed` statement of each completed video (the very statement,
    same id, that the LRS gets) and every statement still waiting in the outbox."""
    builder = StatementBuilder(
        XapiConfig(
            settings.xapi_actor_homepage, settings.xapi_activity_base, settings.completion_threshold
        )
    )
    statements = []
    for m in _materials(settings, mongo, r, schema, catalog, student_id):
        ref = catalog.material(m.material_id)
        if not isinstance(m, _Material) or ref is None or m.duration is None:
            continue
        if not m.current.completed:
            continue
        video = Video(student_id, m.material_id, ref.material.title, m.duration)
        try:
            statements.append(builder.completed(video, m.current))
        except Exception as exc:  # a completion time no calendar holds: left out, not a 500
            log.warning("export of %s|%s: %s", m.material_id, student_id, describe(exc))
    ids = {s["id"] for s in statements}
    queued, _ = Outbox(outboxes, XAPI).entries_of(student_id)
    statements += [e["payload"] for e in queued if e["id"] not in ids]
    return {"student_id": student_id, "statements": _json_safe(statements)}
