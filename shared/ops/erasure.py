"""Erasing a student's progress everywhere it lives: hot state and queued heartbeats in Redis,
documents in MongoDB, completions in enrollments. Erasure wins over any flush in flight."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from redis.cluster import RedisCluster

from shared.domain.catalog import Catalog
from shared.integrations.outbox import WEBHOOK, XAPI, Outbox, forget_sessions
from shared.ops.rollups import rebuild_student
from shared.storage.clients import Buffer
from shared.storage.hot_store import ScriptCall, run_scripts
from shared.storage.keys import ProgressKey, pending_prefix, state_prefix
from shared.storage.mongo_store import MongoStore

# Tombstones jump the version this far: further than any heartbeats still being folded.
VERSION_GAP = 2**32


@dataclass
class ErasureReport:
    student_id: str
    material_id: str | None
    documents: int = 0
    hot_states: int = 0
    queued_heartbeats: int = 0
    enrollments: int = 0
    outbox_entries: int = 0  # queued or set-aside xAPI statements and webhooks dropped
    # Delivered before the erasure (whole-student erasure only): erase these in the LRS, and
    # tell the webhook receivers, as the school's process requires.
    sent_xapi_statement_ids: list[str] = field(default_factory=list)
    sent_webhook_ids: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def hot_materials(r: Buffer, student_id: str) -> set[str]:
    """Materials with a hot state or queued heartbeats for this student in Redis (on a cluster,
    scanned on the one node holding the student's slot)."""
    found = set()
    for prefix in (state_prefix(student_id), pending_prefix(student_id)):
        where: dict[str, Any] = {}
        if isinstance(r, RedisCluster):
            node = r.get_node_from_key(prefix)  # type: ignore[no-untyped-call]  # redis-py
            where["target_nodes"] = node
        for key in r.scan_iter(match=_glob_escape(prefix) + "*", count=1000, **where):
            found.add(key.decode()[len(prefix) :])
    return found


def erase_progress(
    mongo: MongoStore,
    r: Buffer,
    catalog: Catalog,
    student_id: str,
    material_id: str | None = None,
    tombstone_ttl_s: int = 7 * 24 * 3600,
    outboxes: redis.Redis | None = None,
) -> ErasureReport:
    """Erase one material's progress, or all of a student's, from the buffer `r`, MongoDB and
    the outboxes (on RQ's Redis, `outboxes`; `r` itself when that is the same plain Redis).
    Idempotent; safe to repeat after a failure part-way (Redis is erased first, so reads never
    show erased data again)."""
    report = ErasureReport(student_id, material_id)
    stored = mongo.stored_versions(student_id, material_id)
    materials = set(stored)
    if material_id is None:
        materials |= hot_materials(r, student_id)
    else:
        materials.add(material_id)
    report.documents = sum(holds for _, holds in stored.values())

    ordered = sorted(materials)
    calls: list[ScriptCall] = []
    for m in ordered:
        key = ProgressKey(student_id, m)
        part = key.partition
        calls.append((
            [key.state, key.pending, part.dirty, part.leases, part.pending, part.poison,
             part.poison_why],  # fmt: skip
            [key.member, stored.get(m, (0, False))[0], VERSION_GAP, tombstone_ttl_s],
        ))  # fmt: skip
    versions = {}
    replies = run_scripts(r, "erase", calls)
    for m, (version, queued, had_state) in zip(ordered, replies, strict=True):
        versions[m] = int(version)
        report.queued_heartbeats += int(queued)
        report.hot_states += int(had_state)
    mongo.erase_states(student_id, versions)

    if material_id is None:
        courses = [
            c for cid in mongo.enrolled_courses(student_id) if (c := catalog.courses.get(cid))
        ]
        forget: set[str] | None = None
    else:
        ref = catalog.material(material_id)
        courses = [catalog.courses[ref.course_id]] if ref else []
        forget = {material_id}
    report.enrollments = sum(mongo.forget_completions(student_id, forget, c) for c in courses)
    rebuild_student(mongo, courses, student_id)  # the tombstones' versions win in the rollups
    if outboxes is None:
        if not isinstance(r, redis.Redis):
            raise TypeError("erasing on a cluster buffer needs RQ's Redis for the outboxes")
        outboxes = r
    erase_from_outboxes(outboxes, report)
    return report


def erase_from_outboxes(r: redis.Redis, report: ErasureReport) -> None:
    """Drop the student's (or the material's) entries from the xAPI and webhook outboxes and
    their open xAPI sessions; list the ids already delivered. Idempotent."""
    forget_sessions(r, report.student_id, report.material_id)
    removed, report.sent_xapi_statement_ids = Outbox(r, XAPI).erase_student(
        report.student_id, report.material_id
    )
    more, sent_webhooks = Outbox(r, WEBHOOK).erase_student(report.student_id, report.material_id)
    report.outbox_entries = removed + more
    report.sent_webhook_ids = sorted({i.partition("@")[0] for i in sent_webhooks})
