"""The pure parts of the interoperability: statement and event ids, figures, signatures, the
heartbeat's `event` field, settings that refuse a misconfiguration."""

from __future__ import annotations

import base64
import json
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook, WebhookVerificationError

from ingest.models import HeartbeatBody
from shared.domain.progress import Heartbeat, WatchState
from shared.integrations import webhooks
from shared.integrations.outbox import backoff_s
from shared.integrations.xapi import EXT, StatementBuilder, Video, XapiConfig, session_uuid
from shared.settings import Settings

B = StatementBuilder(XapiConfig("https://idp.test", "https://videos.test/", 80))
VIDEO = Video("s-1", "v-100", "Speed", 100.0)
STATE = WatchState(position=30, covered=[[0.0, 30.0]], progress=30.0, credited=30.0)
SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # made per run, never stored


def hb(**kw: object) -> Heartbeat:
    values: dict[str, object] = {
        "received_at": 1_800_000_000.0,
        "watch_time": 30.0,
        "session_id": "tab",
        "seq": 3,
    }
    values.update(kw)
    return Heartbeat(**values)  # type: ignore[arg-type]


def test_statement_ids_depend_on_what_is_stated_only() -> None:
    a = B.from_heartbeat(VIDEO, hb(event="pause"), STATE)
    again = B.from_heartbeat(VIDEO, hb(event="pause"), STATE)
    later = B.from_heartbeat(VIDEO, hb(event="pause", seq=4, received_at=1_800_000_010.0), STATE)
    other = B.from_heartbeat(Video("s-2", "v-100", "Speed", 100.0), hb(event="pause"), STATE)
    assert a is not None and again is not None and later is not None and other is not None
    assert a["id"] == again["id"]
    # The player sent it again (its answer was lost): received later, the same statement.
    resent = hb(event="pause", client_ts=1_799_999_999.0, received_at=1_800_000_030.0)
    first = hb(event="pause", client_ts=1_799_999_999.0)
    assert B.from_heartbeat(VIDEO, resent, STATE) == B.from_heartbeat(VIDEO, first, STATE)
    assert len({a["id"], later["id"], other["id"]}) == 3
    assert uuid.UUID(a["id"]).version == 5


def test_one_session_id_one_initialized_one_terminated() -> None:
    session = session_uuid(VIDEO, "tab")
    assert uuid.UUID(session).version == 5 and session != session_uuid(VIDEO, "tab-2")
    first = B.initialized(VIDEO, "tab", 1.0)
    second = B.initialized(VIDEO, "tab", 2.0)
    assert first["id"] == second["id"]
    by_exit = B.from_heartbeat(VIDEO, hb(event="exit"), STATE)
    by_silence = B.terminated(VIDEO, "tab", STATE, 5.0)
    assert by_exit is not None and by_exit["id"] == by_silence["id"]
    assert by_exit["context"]["extensions"][EXT + "session-id"] == session


def test_no_event_no_statement_and_ended_yields_none() -> None:
    assert B.from_heartbeat(VIDEO, hb(), STATE) is None
    assert B.from_heartbeat(VIDEO, hb(event="ended"), STATE) is None
    assert B.from_heartbeat(VIDEO, hb(event="pause", session_id=None), STATE) is None


def test_played_is_where_the_play_began_and_figures_are_the_states() -> None:
    played = B.from_heartbeat(VIDEO, hb(event="play", watch_time=12.5, played=()), STATE)
    assert played is not None
    assert played["result"] == {"extensions": {EXT + "time": 12.5}}
    # A player claiming 0..100 with a state credited 30 s: the statement says 30 %.
    paused = B.from_heartbeat(VIDEO, hb(event="pause", played=((0.0, 100.0),)), STATE)
    assert paused is not None
    assert paused["result"]["extensions"][EXT + "progress"] == 0.3
    assert paused["result"]["extensions"][EXT + "played-segments"] == "0.0[.]30.0"
    assert paused["timestamp"] == "2027-01-15T08:00:00.000Z"


def test_completed_names_only_the_student_and_video() -> None:
    done = WatchState(
        position=90,
        covered=[[0.0, 45.5], [50.0, 90.0]],
        progress=85.5,
        credited=85.5,
        completed=True,
        completed_at=1_800_000_000.0,
    )
    a, b = B.completed(VIDEO, done), B.completed(VIDEO, done)
    assert a == b
    assert a["result"]["completion"] is True and a["result"]["duration"] == "PT85.5S"
    assert a["result"]["extensions"][EXT + "progress"] == 0.855
    assert a["context"]["extensions"][EXT + "completion-threshold"] == 0.8


def test_statements_carry_what_was_credited_not_what_was_claimed() -> None:
    """A player claimed 0..60 and 70..100 (90 s); verified watching credited 45 s."""
    held_back = WatchState(
        position=100, covered=[[0.0, 60.0], [70.0, 100.0]], progress=45.0, credited=45.0
    )
    paused = B.from_heartbeat(VIDEO, hb(event="pause"), held_back)
    assert paused is not None
    assert paused["result"]["extensions"][EXT + "progress"] == 0.45
    assert paused["result"]["extensions"][EXT + "played-segments"] == "0.0[.]45.0"
    ended = B.terminated(
        VIDEO,
        "tab",
        WatchState(covered=[[0.0, 60.0], [70.0, 100.0]], progress=65.0, credited=65.0),
        1.0,
    )
    assert ended["result"]["extensions"][EXT + "played-segments"] == "0.0[.]60.0[,]70.0[.]75.0"


def test_webhook_event_ids_and_a_signature_the_library_verifies() -> None:
    event = webhooks.material_completed("s-1", "c-1", "v-100", 1_800_000_000.0, 85.0)
    assert event["id"] == webhooks.material_completed("s-1", "c-1", "v-100", 1.0, 90.0)["id"]
    assert event["id"] != webhooks.course_completed("s-1", "c-1", 1.0)["id"]
    assert event["id"].startswith("msg_")
    now = datetime.now(UTC).timestamp()
    body, headers = webhooks.signed_request(SECRET, event, now)
    assert Webhook(SECRET).verify(body, headers) == json.loads(body)
    assert headers["webhook-id"] == event["id"]
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(body.replace(b"85.0", b"99.0"), headers)
    two = webhooks.deliveries(event, ["https://a.test/h", "https://b.test/h"], now, {"v-100": 4})
    assert len({d.id for d in two}) == 2 and {d.payload["event"]["id"] for d in two} == {
        event["id"]
    }


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_s(n, 2.0, 20.0) for n in range(1, 6)] == [2.0, 4.0, 8.0, 16.0, 20.0]


def test_the_heartbeat_event_is_optional_checked_and_kept() -> None:
    assert HeartbeatBody(watch_time=1, total_duration=10).event is None
    assert HeartbeatBody(watch_time=1, total_duration=10, event="seek").event == "seek"
    with pytest.raises(ValidationError):
        HeartbeatBody(watch_time=1, total_duration=10, event="rewind")
    old = '{"r": 1.5, "w": 3.0, "s": "tab", "q": 1}'  # buffered before the field existed
    assert Heartbeat.from_json(old).event is None
    assert '"e"' not in hb().to_json()
    assert Heartbeat.from_json(hb(event="pause").to_json()) == hb(event="pause")


def dev_settings(**values: Any) -> Settings:
    return Settings(_env_file=None, environment="development", **values)


def test_settings_refuse_an_unusable_interop_configuration() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET"):
        dev_settings(webhook_urls="https://lms.test/h")
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET"):
        dev_settings(webhook_urls="https://lms.test/h", webhook_secret="plain")
    with pytest.raises(ValidationError, match="XAPI_LRS_URL"):
        dev_settings(xapi_lrs_url="https://lrs.test/xAPI")
    ok = dev_settings(webhook_urls=" https://a.test/h , ,https://b.test/h", webhook_secret=SECRET)
    assert ok.webhook_receivers == ["https://a.test/h", "https://b.test/h"]
