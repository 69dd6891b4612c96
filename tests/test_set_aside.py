"""One key never holds up the others (API.md, "Hostile input"): what a flush does with a key
whose data cannot be read or whose document cannot be stored, in-process over real Redis and
the MongoDB stand-in (tests/test_system.py runs the same through the Procfile's processes).

Bad data is put where an older version, or a bug, would have left it: straight into Redis or
MongoDB, past every check ingest makes today.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pymongo import UpdateOne
from pymongo.collection import Collection
from pymongo.errors import AutoReconnect, BulkWriteError, OperationFailure
from typer.testing import CliRunner

import workers.flush
from ingest.app import create_app
from shared.clock import MockedClock
from shared.devtools.cli import app as cli
from shared.domain.catalog import Course
from shared.domain.progress import WatchState
from shared.errors import Unavailable
from shared.integrations.outbox import WEBHOOK, XAPI, Outbox
from shared.settings import Settings
from shared.storage import set_aside
from shared.storage.clients import Buffer
from shared.storage.keys import STATS, ProgressKey
from shared.storage.mongo_store import MongoStore, StateWrite, progress_id
from tests.helpers import (
    COURSE,
    COURSE_ID,
    KEY_SCHEMA,
    SECRET,
    bearer,
    buffered,
    dirty_score,
    heartbeat,
    inject_pending,
    make_settings,
    present,
)
from workers.context import build_context
from workers.flush import FlushReport, flush_batch
from workers.interop import announce_completions

HONEST = ["s-ok-1", "s-ok-2", "s-ok-3", "s-ok-4"]
ODD = "s-odd"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(os.urandom(24)).decode()  # made per run


@pytest.fixture
def settings(redis_url: str, mongo_url: str) -> Settings:
    return make_settings(redis_url, mongo_url)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as c:
        admin = bearer(settings, "root", "admin")
        assert c.put(f"/api/courses/{COURSE_ID}", json=COURSE, headers=admin).status_code == 201
        for student in [*HONEST, ODD]:
            r = c.put(f"/api/courses/{COURSE_ID}/enrollments/{student}", headers=admin)
            assert r.status_code == 201
        yield c


def watch(c: TestClient, settings: Settings, student: str, **body: Any) -> None:
    r = c.post("/api/progress/video/v-100/watch-time", json=body, headers=bearer(settings, student))
    assert r.status_code == 202, r.text


def honest_heartbeats(c: TestClient, settings: Settings) -> None:
    for n, student in enumerate(HONEST):
        watch(c, settings, student, **heartbeat(10.0 * (n + 1), played=[[0, 10.0 * (n + 1)]]))


def flush(settings: Settings) -> FlushReport:
    ctx = build_context(settings)
    try:
        return flush_batch(ctx, 500)
    finally:
        ctx.mongo.close()


def stored_doc(mongo_db: Any, student: str, material: str = "v-100") -> dict[str, Any] | None:
    doc: dict[str, Any] | None = mongo_db.watch_progress.find_one(
        {"_id": progress_id(student, material)}
    )
    return doc


def assert_honest_stored(mongo_db: Any) -> None:
    for n, student in enumerate(HONEST):
        doc = present(stored_doc(mongo_db, student))
        assert (doc["v"], doc["watched_seconds"]) == (1, 10.0 * (n + 1)), student


def metric(text: str, name: str) -> float:
    """A sample of /metrics by its name and labels, as printed."""
    line = next(line for line in text.splitlines() if line.startswith(name + " "))
    return float(line.split()[1])


# -- what 0.7 left behind is stored -----------------------------------------------------------


def test_a_session_id_with_a_nul_left_by_an_older_version_is_stored(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    # 0.7 accepted any session id: a pending heartbeat of it, and a hot state whose readings
    # are keyed by session id (the shape MongoDB refused for a NUL), both still in Redis.
    now = float(int(time.time()))
    inject_pending(redis_client, ODD, {"r": now, "w": 10.0, "t": now, "s": "a\x00b", "q": 1})
    old = WatchState(position=5.0, position_key=(now - 10, 0, 5.0), last_watched=now - 10)
    old_dict = {**old.to_dict(), "readings": {"b\x00c": [[now - 10, 0, 5.0]]}}
    key = ProgressKey(HONEST[0], "v-600", KEY_SCHEMA)
    redis_client.hset(key.state, mapping={"state": json.dumps(old_dict), "n": 1})
    redis_client.zadd(key.partition.dirty, {key.member: 0})
    honest_heartbeats(client, settings)

    report = flush(settings)

    assert (report.quarantined, report.written) == (0, 6), report
    assert_honest_stored(mongo_db)
    odd = present(stored_doc(mongo_db, ODD))
    assert odd["state"]["readings"] == [["a\x00b", [[now, 1, 10.0]]]]  # a value, never a key
    migrated = present(stored_doc(mongo_db, HONEST[0], "v-600"))
    assert migrated["state"]["readings"] == [["b\x00c", [[now - 10, 0, 5.0]]]]
    assert migrated["watch_time"] == 5.0 and migrated["v"] == 1
    assert set_aside.listed(redis_client, KEY_SCHEMA) == [] and buffered(redis_client) == (0, 0)


# -- a document MongoDB refuses ---------------------------------------------------------------


def watch_a_key_mongodb_refuses(client: TestClient, settings: Settings, mongo_db: Any) -> None:
    """ODD watches v-100, whose stored document has a counter that is not a number: MongoDB
    refuses the `$inc` of every write of that key (a write error of its own index in the
    unordered bulk write)."""
    mongo_db.watch_progress.insert_one(
        {"_id": progress_id(ODD, "v-100"), "student_id": ODD, "material_id": "v-100", "v": 0,
         "flushes": "many"}
    )  # fmt: skip
    watch(client, settings, ODD, **heartbeat(30, played=[[0, 30]]))


def test_a_document_mongodb_refuses_is_set_aside_alone_listed_counted_and_retried(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    watch_a_key_mongodb_refuses(client, settings, mongo_db)
    honest_heartbeats(client, settings)

    report = flush(settings)

    assert (report.written, report.quarantined) == (4, 1), report
    assert report.set_aside == {"write_error": 1}
    assert_honest_stored(mongo_db)
    assert present(stored_doc(mongo_db, ODD))["v"] == 0  # untouched
    [entry] = set_aside.listed(redis_client, KEY_SCHEMA)
    assert entry.key == ProgressKey(ODD, "v-100", KEY_SCHEMA) and entry.why.reason == "write_error"
    assert "Cannot apply $inc" in entry.why.error
    # Listed for admins (and only them), counted by reason.
    admin = bearer(settings, "root", "admin")
    page = client.get("/api/admin/poison", headers=admin).json()
    assert [(r["key"], r["student_id"], r["reason"]) for r in page["rows"]] == [
        (f"v-100|{ODD}", ODD, "write_error")
    ]
    assert "Cannot apply $inc" in page["rows"][0]["error"] and page["next_cursor"] is None
    assert client.get("/api/admin/poison", headers=bearer(settings, ODD)).status_code == 403
    metrics = client.get("/metrics").text
    assert metric(metrics, 'videoprogress_quarantined_total{reason="write_error"}') == 1
    assert metric(metrics, 'videoprogress_quarantined_total{reason="unreadable"}') == 0
    # Nothing is lost meanwhile: the student still reads what they watched.
    status = client.get("/api/progress/video/v-100/status", headers=bearer(settings, ODD))
    assert status.json()["watched_seconds"] == 30.0
    assert flush(settings).claimed == 0  # out of the cycle: no flush retries it on its own

    mongo_db.watch_progress.update_one({"_id": progress_id(ODD, "v-100")}, {"$set": {"flushes": 0}})
    result = CliRunner().invoke(
        cli, ["poison", "retry", "--key", f"v-100|{ODD}"], env=cli_env(settings)
    )
    assert result.exit_code == 0, result.output
    assert "1 keys due again" in result.output
    report = flush(settings)

    assert (report.written, report.quarantined) == (1, 0)
    doc = present(stored_doc(mongo_db, ODD))
    assert (doc["v"], doc["watched_seconds"], doc["flushes"]) == (1, 30.0, 1)
    assert set_aside.listed(redis_client, KEY_SCHEMA) == []  # stored: off the list
    assert client.get("/api/admin/poison", headers=admin).json()["rows"] == []


def cli_env(settings: Settings) -> dict[str, str]:
    return {
        "APP_ENV": "production",
        "JWT_SECRET": SECRET,
        "REDIS_URL": settings.redis_url,
        "MONGO_URL": settings.mongo_url,
    }


def test_retry_names_keys_that_are_not_set_aside(settings: Settings, redis_client: Buffer) -> None:
    result = CliRunner().invoke(
        cli, ["poison", "retry", "--key", "v-100|nobody"], env=cli_env(settings)
    )
    assert result.exit_code == 0 and "not set aside: v-100|nobody" in result.output
    assert "0 keys due again" in result.output
    assert CliRunner().invoke(cli, ["poison", "retry"], env=cli_env(settings)).exit_code != 0


def test_a_document_pymongo_cannot_encode_is_set_aside_alone(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    # A sequence number past what BSON holds (8-byte ints): pymongo refuses the whole batch
    # while encoding it; the flush halves the batch until that document is alone.
    now = time.time()
    inject_pending(redis_client, ODD, {"r": now, "w": 10.0, "s": "tab", "q": 2**70})
    honest_heartbeats(client, settings)

    report = flush(settings)

    assert (report.written, report.set_aside) == (4, {"invalid_document": 1}), report
    assert_honest_stored(mongo_db)
    assert stored_doc(mongo_db, ODD) is None
    [entry] = set_aside.listed(redis_client, KEY_SCHEMA)
    assert entry.why.reason == "invalid_document" and "8-byte ints" in entry.why.error


def test_a_heartbeat_that_cannot_be_folded_is_set_aside_alone(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    inject_pending(redis_client, ODD, {"r": time.time(), "w": "ten"})
    honest_heartbeats(client, settings)

    report = flush(settings)

    assert (report.written, report.set_aside) == (4, {"unreadable": 1}), report
    assert_honest_stored(mongo_db)
    [entry] = set_aside.listed(redis_client, KEY_SCHEMA)
    assert entry.why.error.startswith("its fold: ValueError")
    odd = ProgressKey(ODD, "v-100", KEY_SCHEMA)
    assert redis_client.llen(odd.pending) == 1  # kept for an operator


def test_a_stored_document_that_cannot_be_read_is_set_aside_alone(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    # No hot state, so the flush reads the stored one first: its version is not a number.
    mongo_db.watch_progress.insert_one(
        {"_id": progress_id(ODD, "v-100"), "student_id": ODD, "material_id": "v-100",
         "v": "seven", "state": {}}
    )  # fmt: skip
    inject_pending(redis_client, ODD, {"r": time.time(), "w": 10.0})
    honest_heartbeats(client, settings)

    report = flush(settings)

    assert (report.written, report.set_aside) == (4, {"unreadable": 1}), report
    assert_honest_stored(mongo_db)
    [entry] = set_aside.listed(redis_client, KEY_SCHEMA)
    assert entry.why.error.startswith("its stored document: ValueError")


def test_an_enrollment_mongodb_refuses_to_roll_up_holds_up_no_one(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    # The flush's second write, the enrollments' rollups: MongoDB refuses one document's. Here a
    # unique index an operator added over (student, watched seconds), which the odd student's
    # enrollment in another course already holds at 30 s. Before, that failed the whole flush,
    # at every takeover. (A text `rollup_rev` served until `$inc` left the rollup writes.)
    mongo_db.enrollments.insert_one(
        {"_id": "elsewhere", "student_id": ODD, "course_id": "other", "watched_seconds": 30.0}
    )
    mongo_db.enrollments.create_index([("student_id", 1), ("watched_seconds", 1)], unique=True)
    odd_enrollment = {"student_id": ODD, "course_id": COURSE_ID}
    before = mongo_db.enrollments.find_one(odd_enrollment)
    watch(client, settings, ODD, **heartbeat(30, played=[[0, 30]]))
    honest_heartbeats(client, settings)

    report = flush(settings)

    assert (report.written, report.cleaned, report.quarantined) == (5, 5, 0), report
    assert buffered(redis_client) == (0, 0)
    assert present(stored_doc(mongo_db, ODD))["watched_seconds"] == 30.0
    for n, student in enumerate(HONEST):
        enrollment = present(mongo_db.enrollments.find_one({"student_id": student}))
        assert enrollment["watched_seconds"] == 10.0 * (n + 1), student
    assert mongo_db.enrollments.find_one(odd_enrollment) == before  # refused, left as it was


def test_erasure_takes_a_key_off_the_list(
    client: TestClient, settings: Settings, redis_client: Buffer
) -> None:
    inject_pending(redis_client, ODD, {"r": time.time(), "w": "ten"})
    assert flush(settings).quarantined == 1
    admin = bearer(settings, "root", "admin")
    r = client.delete(f"/api/admin/progress?student_id={ODD}", headers=admin)
    assert r.status_code == 200, r.text
    assert set_aside.listed(redis_client, KEY_SCHEMA) == []
    # Buffered as 0.7 left it (never indexed, never finished): the erasure found it all the same.
    assert r.json()["queued_heartbeats"] == 1 and buffered(redis_client) == (0, 0)


def erase(client: TestClient, settings: Settings, student: str = ODD) -> None:
    admin = bearer(settings, "root", "admin")
    r = client.delete(f"/api/admin/progress?student_id={student}", headers=admin)
    assert r.status_code == 200, r.text


def held_of(r: Buffer, student: str) -> list[str]:
    """The student's members of the partitions' dirty, leases and poison, and key index."""
    found = []
    for part in KEY_SCHEMA.partitions():
        members: list[Any] = [*r.zrange(part.dirty, 0, -1), *r.hkeys(part.leases)]
        members += r.zrange(part.poison, 0, -1)
        found += [m.decode() for m in members if m.decode().endswith(f"|{student}")]
    index: set[Any] = r.smembers(KEY_SCHEMA.key_index(student))
    return found + sorted(f"indexed {m.decode()}" for m in index)


@pytest.mark.cluster  # set_aside.lua on the student's partition
def test_a_key_erased_before_the_flush_sets_it_aside_is_not_listed_again(
    client: TestClient,
    settings: Settings,
    redis_client: Buffer,
    mongo_db: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # MongoDB refuses the key's write; the erasure's cut lands between that write and setting
    # the key aside. It used to be listed again (and in the student's key index), and `poison
    # retry --all` then made it due: claimed after every lease while its tombstone lived.
    watch_a_key_mongodb_refuses(client, settings, mongo_db)
    real = set_aside.quarantine  # as workers.flush calls it

    def erased_first(*args: Any) -> list[ProgressKey]:
        erase(client, settings)
        return real(*args)

    monkeypatch.setattr(workers.flush, "quarantine", erased_first)
    report = flush(settings)
    monkeypatch.undo()

    assert (report.quarantined, report.set_aside, report.written) == (0, {}, 0), report
    assert set_aside.listed(redis_client, KEY_SCHEMA) == []
    assert held_of(redis_client, ODD) == []
    assert set_aside.retry(redis_client, KEY_SCHEMA, None, time.time()) == []  # `--all`
    assert flush(settings).claimed == 0
    # Erasure is no ban: a heartbeat after it is stored (the erasure replaced the odd document).
    watch(client, settings, ODD, **heartbeat(10, played=[[0, 10]]))
    assert (flush(settings).written, held_of(redis_client, ODD)) == (1, ["indexed v-100"])


def test_an_erased_key_an_older_version_set_aside_leaves_the_list_once_retried(
    client: TestClient, settings: Settings, redis_client: Buffer
) -> None:
    # An erased key set aside again by an older version (which checked no tombstone): retried,
    # it holds nothing but its tombstone, so its flush writes the tombstone's own version.
    # finish.lua used to return before taking it off dirty and the poison list: claimed again
    # after every lease while the tombstone lived, and listed for good.
    watch(client, settings, ODD, **heartbeat(30, played=[[0, 30]]))
    erase(client, settings)
    key = ProgressKey(ODD, "v-100", KEY_SCHEMA)
    redis_client.zadd(key.partition.poison, {key.member: time.time()})  # as before the fix
    redis_client.hset(key.partition.poison_why, key.member, json.dumps(["write_error", "x"]))
    redis_client.sadd(KEY_SCHEMA.key_index(ODD), "v-100")
    assert set_aside.retry(redis_client, KEY_SCHEMA, None, time.time()) == [key]
    clock = MockedClock(time.time())
    ctx = build_context(settings, clock)
    try:
        assert flush_batch(ctx, 500).claimed == 1
        clock.advance(settings.claim_lease_s + 1)
        assert flush_batch(ctx, 500).claimed == 0  # not claimed again after its lease
    finally:
        ctx.mongo.close()
    assert set_aside.listed(redis_client, KEY_SCHEMA) == []
    assert held_of(redis_client, ODD) == []  # as the erasure's cut left it


# -- transient errors set nothing aside -------------------------------------------------------


class SteppedDown:
    """The real collection, except that MongoDB's primary steps down under the first write of
    each bulk write: that one write fails with code 189 (PrimarySteppedDown), the others land."""

    def __init__(self, real: Collection[dict[str, Any]]) -> None:
        self.real = real

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    def bulk_write(self, ops: list[UpdateOne], ordered: bool = True) -> Any:
        if len(ops) > 1:
            self.real.bulk_write(ops[1:], ordered=ordered)
        error = {"index": 0, "code": 189, "errmsg": "primary stepped down"}
        raise BulkWriteError({"writeErrors": [error], "writeConcernErrors": []})


def test_a_transient_write_error_gives_the_key_back_for_a_later_flush(
    client: TestClient, settings: Settings, redis_client: Buffer, mongo_db: Any
) -> None:
    honest_heartbeats(client, settings)
    ctx = build_context(settings)
    ctx.mongo.progress = SteppedDown(ctx.mongo.progress)  # type: ignore[assignment]  # a fault
    started = time.time()
    report = flush_batch(ctx, 500)
    assert (report.written, report.quarantined) == (3, 0), report
    assert set_aside.listed(redis_client, KEY_SCHEMA) == []
    refused = [s for s in HONEST if stored_doc(mongo_db, s) is None]
    assert len(refused) == 1
    due = present(dirty_score(redis_client, refused[0], "v-100"))
    assert due >= started + 2 * settings.flush_tick_s  # due again, a little later
    ctx.mongo.close()
    # The next flush (MongoDB has a primary again) writes it.
    ctx = build_context(settings)
    redis_client.zadd(
        ProgressKey(refused[0], "v-100", KEY_SCHEMA).partition.dirty, {f"v-100|{refused[0]}": 0}
    )
    assert flush_batch(ctx, 500).written == 1
    ctx.mongo.close()
    assert_honest_stored(mongo_db)


class Failing:
    """A collection whose bulk write fails as given (a fault, for the classification alone)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def bulk_write(self, ops: list[UpdateOne], ordered: bool = True) -> Any:
        raise self.error


def labelled(labels: list[str]) -> BulkWriteError:
    details = {"writeErrors": [], "writeConcernErrors": [], "errorLabels": labels}
    return BulkWriteError(details)


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(AutoReconnect("connection reset"), id="connection lost"),
        pytest.param(labelled(["RetryableWriteError"]), id="retryable label"),
        pytest.param(
            BulkWriteError({"writeErrors": [], "writeConcernErrors": [{"code": 64}]}),
            id="write concern",
        ),
        pytest.param(OperationFailure("not authorized", code=13), id="whole write refused"),
    ],
)
def test_errors_of_the_whole_write_set_no_key_aside(error: Exception) -> None:
    store = MongoStore("mongodb://127.0.0.1:1/unused", timeout_ms=100)
    store.progress = Failing(error)  # type: ignore[assignment]  # a fault
    write = StateWrite("s1", "v1", "c1", 100.0, WatchState(), 1)
    with pytest.raises(Unavailable):
        store.write_states([write, write])
    store.close()


@pytest.mark.parametrize(
    ("code", "kind"),
    [(10107, "transient"), (11602, "transient"), (50, "transient"), (14, "refused")],
    ids=["not primary", "repl state change", "time limit", "type mismatch"],
)
def test_write_errors_are_sorted_by_what_they_mean(code: int, kind: str) -> None:
    store = MongoStore("mongodb://127.0.0.1:1/unused", timeout_ms=100)
    error = {"index": 1, "code": code, "errmsg": "as MongoDB says"}
    store.progress = Failing(BulkWriteError({"writeErrors": [error], "writeConcernErrors": []}))  # type: ignore[assignment]  # a fault
    write = StateWrite("s1", "v1", "c1", 100.0, WatchState(), 1)
    outcome = store.write_states([write, write])
    store.close()
    if kind == "transient":
        assert (outcome.transient, outcome.refused) == ([1], {})
    else:
        assert outcome.transient == [] and list(outcome.refused) == [1]
        assert outcome.refused[1] == set_aside.SetAside(
            "write_error", f"MongoDB error {code}: as MongoDB says"
        )


# -- statements and events: one key never drops the others' ----------------------------------


def test_one_odd_heartbeat_drops_no_other_keys_statements(
    client: TestClient, settings: Settings, redis_client: Buffer, rq_client: Any, mongo_db: Any
) -> None:
    xapi = make_settings(
        settings.redis_url, settings.mongo_url, xapi_lrs_url="http://127.0.0.1:9/xAPI/"
    )
    # Left by 0.7, which accepted any client_ts: a reading in year 0, which no statement's
    # timestamp can hold.
    inject_pending(
        redis_client, ODD, {"r": time.time(), "w": 5.0, "t": -62135600400.0, "s": "tab", "q": 1,
                            "e": "pause"}
    )  # fmt: skip
    for student in HONEST:
        watch(client, settings, student, **heartbeat(5, session_id="tab", seq=1, event="pause"))

    report = flush(xapi)

    assert report.written == 5 and report.quarantined == 0
    outbox = Outbox(rq_client, XAPI)
    for student in HONEST:  # initialized + paused each
        verbs = sorted(
            e["payload"]["verb"]["display"]["en-US"] for e in outbox.entries_of(student)[0]
        )
        assert verbs == ["initialized", "paused"], student
    assert outbox.entries_of(ODD)[0] == []
    assert int(rq_client.hget(STATS, "interop_errors") or 0) == 1
    assert present(stored_doc(mongo_db, ODD))["watch_time"] == 5.0  # the progress is stored


def test_one_odd_stored_completion_drops_no_other_materials_events(
    settings: Settings, rq_client: Any, mongo_db: Any
) -> None:
    s = make_settings(
        settings.redis_url,
        settings.mongo_url,
        xapi_lrs_url="http://127.0.0.1:9/xAPI/",
        webhook_urls="http://127.0.0.1:9/hooks",
        webhook_secret=WEBHOOK_SECRET,
    )
    for material, completed_at in (("v-100", 1e20), ("v-600", 1_800_000_000.0)):
        state = WatchState(position=90.0, progress=90.0, completed=True, completed_at=completed_at)
        mongo_db.watch_progress.insert_one(
            {"_id": progress_id(ODD, material), "student_id": ODD, "material_id": material,
             "v": 1, "completed": True, "state": state.to_dict()}
        )  # fmt: skip
    ctx = build_context(s)
    course = Course(course_id=COURSE_ID, **COURSE)
    announce_completions(ctx, ODD, course, ["v-100", "v-600"], 50.0)
    ctx.mongo.close()
    statements = Outbox(rq_client, XAPI).entries_of(ODD)[0]
    events = Outbox(rq_client, WEBHOOK).entries_of(ODD)[0]
    assert [e["material_id"] for e in statements] == ["v-600"]
    assert [e["material_id"] for e in events] == ["v-600"]


# -- the stored states of 0.7 are rewritten ---------------------------------------------------


def test_old_shape_states_are_rewritten_once_and_nothing_else(
    settings: Settings, mongo_db: Any
) -> None:
    readings = {"tab-1": [[1.0, 0, 0.0], [11.0, 1, 10.0]], "tab.2": [[5.0, -1, 3.0]]}
    old = {**WatchState(position=10.0).to_dict(), "readings": readings}
    new = WatchState(position=4.0, readings={"tab-3": [[2.0, 0, 4.0]]}).to_dict()
    docs = [
        {"_id": progress_id("s1", "v-100"), "student_id": "s1", "material_id": "v-100", "v": 3,
         "state": old},
        {"_id": progress_id("s2", "v-100"), "student_id": "s2", "material_id": "v-100", "v": 2,
         "state": new},
        {"_id": progress_id("s3", "v-100"), "student_id": "s3", "material_id": "v-100", "v": 1},
    ]  # fmt: skip
    mongo_db.watch_progress.insert_many(docs)

    result = CliRunner().invoke(cli, ["migrate-states"], env=cli_env(settings))

    assert result.exit_code == 0, result.output
    assert "1 stored states rewritten" in result.output
    s1 = present(stored_doc(mongo_db, "s1"))
    assert s1["state"]["readings"] == [
        ["tab-1", [[1.0, 0, 0.0], [11.0, 1, 10.0]]],
        ["tab.2", [[5.0, -1, 3.0]]],
    ]
    assert s1["v"] == 3 and s1["state"]["position"] == 10.0  # nothing else changed
    assert present(stored_doc(mongo_db, "s2"))["state"] == new
    assert "state" not in present(stored_doc(mongo_db, "s3"))  # a tombstone stays one
    store = MongoStore(settings.mongo_url)
    assert store.migrate_readings() == 0  # idempotent
    store.close()
