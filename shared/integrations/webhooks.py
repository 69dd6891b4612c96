"""Completion webhooks, signed as the Standard Webhooks spec defines (standardwebhooks.com).

An event's id (`webhook-id`) is derived from what happened (event type, student, material or
course), so a completion seen twice yields the same id, and every retry of an event carries it:
receivers dedupe by `webhook-id`. One outbox entry per (event, receiver), so a receiver that is
down delays only its own deliveries.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook

from shared.integrations.outbox import OutboxEntry

NAMESPACE = uuid.UUID("0b6f3f0e-8c1d-5d7e-a1f2-3c4b5a697887")


def event_id(event_type: str, student_id: str, subject_id: str) -> str:
    """`msg_` + a UUID v5 of the event: the same completion always gets the same id."""
    return "msg_" + uuid.uuid5(NAMESPACE, f"{event_type}|{student_id}|{subject_id}").hex


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def material_completed(
    student_id: str, course_id: str, material_id: str, completed_at: float, progress: float
) -> dict[str, Any]:
    """The `material.completed` event (progress_percentage: the material's, credited)."""
    return {
        "id": event_id("material.completed", student_id, material_id),
        "type": "material.completed",
        "timestamp": _iso(completed_at),
        "data": {
            "student_id": student_id,
            "course_id": course_id,
            "material_id": material_id,
            "completed_at": _iso(completed_at),
            "progress_percentage": round(progress, 2),
        },
    }


def course_completed(student_id: str, course_id: str, completed_at: float) -> dict[str, Any]:
    """The `course.completed` event: the course's progress reached 100 %."""
    return {
        "id": event_id("course.completed", student_id, course_id),
        "type": "course.completed",
        "timestamp": _iso(completed_at),
        "data": {
            "student_id": student_id,
            "course_id": course_id,
            "completed_at": _iso(completed_at),
            "progress_percentage": 100.0,
        },
    }


def deliveries(
    event: dict[str, Any], receivers: list[str], now: float, basis: dict[str, int]
) -> list[OutboxEntry]:
    """One outbox entry per receiver; the entry id adds the receiver to the event id. `basis`:
    the (material id -> version) of the states the event states (see OutboxEntry)."""
    data = event["data"]
    return [
        OutboxEntry(
            f"{event['id']}@{hashlib.sha256(url.encode()).hexdigest()[:12]}",
            data["student_id"],
            {"url": url, "event": event},
            now,
            data.get("material_id"),
            basis=tuple(sorted(basis.items())),
        )
        for url in receivers
    ]


def signed_request(secret: str, event: dict[str, Any], now: float) -> tuple[bytes, dict[str, str]]:
    """The body and the three Standard Webhooks headers for one attempt (signed at `now`)."""
    body = json.dumps(event, separators=(",", ":"), sort_keys=True)
    at = datetime.fromtimestamp(int(now), UTC)
    signature = Webhook(secret).sign(event["id"], at, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": event["id"],
        "webhook-timestamp": str(int(now)),
        "webhook-signature": signature,
    }
    return body.encode(), headers
