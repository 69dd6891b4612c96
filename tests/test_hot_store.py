"""The Redis scripts on a real redis-server: what is written, refused, leased and trimmed."""

from __future__ import annotations

import asyncio
import hashlib
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.progress import Heartbeat, StudentLedger, Verification, WatchState
from shared.storage.clients import Buffer
from shared.storage.flush_store import ErasedKey, Fold, HotStore, erase_call
from shared.storage.ingest_store import IngestItem, IngestLimits, ingest_args
from shared.storage.keys import ProgressKey
from shared.storage.scripts import SCRIPTS, as_text, run_scripts
from shared.storage.views import CachedState, HotView, IngestReply
from tests.helpers import KEY_SCHEMA, async_buffer, buffered, hot_store

pytestmark = pytest.mark.cluster  # the scripts and claims, on both layouts

KEY = ProgressKey("s1", "v1", KEY_SCHEMA)
DIRTY, LEASES, PENDING = KEY.partition.dirty, KEY.partition.leases, KEY.partition.pending


def append(
    url: str,
    heartbeats: list[Heartbeat],
    max_dirty: int = 100,
    max_pending: int = 10_000,
    key: ProgressKey = KEY,
    rate_limit: int = 0,
    cached: CachedState | None = None,
    offer_preview: bool = False,
    max_per_key: int = 5000,
) -> IngestReply:
    limits = IngestLimits(
        1000.0, max_dirty, max_pending, rate_limit, 60, now=6000.0, max_per_key=max_per_key
    )
    [reply] = appends(url, [IngestItem(key, "c1", heartbeats, cached, offer_preview)], limits)
    return reply


def appends(url: str, items: list[IngestItem], limits: IngestLimits) -> list[IngestReply]:
    """Each item appended by a call of its own, in order, through one client."""

    async def run() -> list[IngestReply]:
        async with hot_store(async_buffer(url)) as store:
            return [(await store.append([item], limits))[0] for item in items]

    return asyncio.run(run())


def append_each(url: str, times: range) -> HotView:
    """A heartbeat at each of `times`, one call each (a caller without a view); the last view."""
    limits = IngestLimits(1000.0, 100, 10_000, 0, 60, now=6000.0, max_per_key=5000)
    items = [IngestItem(KEY, "c1", [hb(t)], None, False) for t in times]
    return view_of(appends(url, items, limits)[-1])


def enroll(r: Buffer, student: str = "s1", *courses: str) -> None:
    r.sadd(KEY_SCHEMA.enrollments_key(student), "*", *courses)


def hb(t: float) -> Heartbeat:
    return Heartbeat(received_at=t, watch_time=t, played=((0.0, t),))


def test_unknown_enrollment_and_not_enrolled_write_nothing(
    redis_url: str, redis_client: Buffer
) -> None:
    assert append(redis_url, [hb(1)]).status == "enrollment_unknown"
    enroll(redis_client, "s1", "other-course")
    assert append(redis_url, [hb(1)]).status == "not_enrolled"
    assert redis_client.keys(KEY.pending) == [] and redis_client.zcard(DIRTY) == 0


def test_accepted_heartbeats_are_buffered_and_marked_dirty_once(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    first = append(redis_url, [hb(1)])
    second = append(redis_url, [hb(2), hb(3)])
    assert first.status == second.status == "ok"
    assert second.view is not None and second.view.mode == "state"
    assert second.view.base is None and second.view.start == 0
    assert [h.received_at for h in second.view.tail] == [1, 2, 3]
    assert redis_client.llen(KEY.pending) == 3 and int(redis_client.get(PENDING) or 0) == 3
    assert redis_client.zscore(DIRTY, KEY.member) == 1000.0


def test_buffer_bounds_refuse_whole_items(redis_url: str, redis_client: Buffer) -> None:
    enroll(redis_client, "s1", "c1")
    assert append(redis_url, [hb(1), hb(2)], max_pending=3).status == "ok"
    assert append(redis_url, [hb(3), hb(4)], max_pending=3).status == "buffer_full"
    assert redis_client.llen(KEY.pending) == 2
    other = ProgressKey("s1", "v2", KEY_SCHEMA)
    assert append(redis_url, [hb(1)], max_dirty=1, key=other).status == "buffer_full"
    assert append(redis_url, [hb(3)], max_dirty=1).status == "ok"  # already dirty: no new key


def test_the_rate_limit_counts_appends_per_student_and_window(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    assert [append(redis_url, [hb(i)], rate_limit=3).status for i in range(4)] == [
        "ok",
        "ok",
        "ok",
        "rate_limited",
    ]
    refused = append(redis_url, [hb(9)], rate_limit=3)
    assert 1 <= refused.retry_after_s <= 60
    assert redis_client.llen(KEY.pending) == 3  # the refused ones wrote nothing
    other = ProgressKey("s2", "v1", KEY_SCHEMA)
    enroll(redis_client, "s2", "c1")
    assert append(redis_url, [hb(1)], rate_limit=3, key=other).status == "ok"  # per student


def test_claims_are_leased_and_expired_leases_are_taken_over(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    append(redis_url, [hb(1)])
    store = HotStore(redis_client, KEY_SCHEMA)
    assert store.claim(now=999.0, lease_until=2000.0, limit=10) == (0, [], False)  # not due yet
    assert store.claim(now=1000.0, lease_until=2000.0, limit=10)[:2] == (0, [KEY])
    assert store.claim(now=1500.0, lease_until=2500.0, limit=10) == (0, [], False)  # leased
    assert store.claim(now=2000.0, lease_until=3000.0, limit=10)[:2] == (1, [KEY])  # takeover
    assert redis_client.hexists(LEASES, KEY.member)


def test_commit_is_compare_and_set_and_trims_only_what_it_folded(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    append(redis_url, [hb(1), hb(2)])
    store = HotStore(redis_client, KEY_SCHEMA)
    [entry] = store.read([KEY])
    append(redis_url, [hb(3)])  # arrives after the read
    folded = Fold(KEY, None, WatchState(position=2.0), folded=2, version=2)
    assert store.commit([folded]) == [True]
    assert store.commit([folded]) == [False]  # a second folder with the same read loses
    [after] = store.read([KEY])
    assert after is not None and after.state is not None
    assert after.version == 2 and after.state.position == 2.0
    assert [h.received_at for h in after.pending] == [3]
    assert int(redis_client.get(PENDING) or 0) == 1


def test_finish_cleans_only_unchanged_keys(redis_url: str, redis_client: Buffer) -> None:
    enroll(redis_client, "s1", "c1")
    append(redis_url, [hb(1)])
    store = HotStore(redis_client, KEY_SCHEMA)
    store.claim(now=1000.0, lease_until=2000.0, limit=10)
    store.commit([Fold(KEY, None, WatchState(position=1.0), folded=1, version=1)])
    append(redis_url, [hb(2)])  # arrives while MongoDB is being written
    assert store.finish([(KEY, 1, False)], next_due=1234.0, ttl_s=60) == 0
    assert redis_client.zscore(DIRTY, KEY.member) == 1234.0  # due again
    assert not redis_client.hexists(LEASES, KEY.member)
    store.commit([Fold(KEY, 1, WatchState(position=2.0), folded=1, version=2)])
    assert store.finish([(KEY, 2, True)], next_due=1234.0, ttl_s=60) == 1
    assert redis_client.zscore(DIRTY, KEY.member) is None
    assert 0 < redis_client.ttl(KEY.state) <= 60
    assert redis_client.hget(KEY.state, "cq") == b"1"


def test_erasure_beats_a_fold_read_before_it(redis_url: str, redis_client: Buffer) -> None:
    from shared.ops.erasure import VERSION_GAP

    enroll(redis_client, "s1", "c1")
    store = HotStore(redis_client, KEY_SCHEMA)
    append(redis_url, [hb(1)])
    store.commit([Fold(KEY, None, WatchState(position=1.0), folded=1, version=1)])
    append(redis_url, [hb(2), hb(3)])
    [seen] = store.read([KEY])  # a worker reads version 1 and two pending heartbeats...
    [cut] = store.erase("s1", None, {}, VERSION_GAP, 60)
    assert cut == ErasedKey("v1", 1 + VERSION_GAP, 2, True)
    # ...and commits after the erasure: it must lose, or the erased heartbeats come back.
    assert seen is not None
    late = Fold(KEY, seen.version, WatchState(position=3.0), folded=2, version=3)
    assert store.commit([late]) == [False]
    [after] = store.read([KEY])
    assert after is not None
    assert after.state is None and after.pending == [] and after.version == 1 + VERSION_GAP
    assert int(redis_client.get(PENDING) or 0) == 0 and redis_client.zcard(DIRTY) == 0


def test_the_key_index_lists_every_material_ingest_buffered(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    for material in ("v1", "v2", "v1"):
        key = ProgressKey("s1", material, KEY_SCHEMA)
        assert append(redis_url, [hb(1)], key=key).status == "ok"
    store = HotStore(redis_client, KEY_SCHEMA)
    assert store.indexed_materials("s1") == {"v1", "v2"}
    assert store.indexed_materials("s2") == set()
    assert append(redis_url, [hb(1)], key=ProgressKey("s3", "v9", KEY_SCHEMA)).status != "ok"
    assert store.indexed_materials("s3") == set()  # refused: nothing indexed


def test_erasing_a_student_takes_every_indexed_key_and_mongodbs_in_one_step(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    enroll(redis_client, "s2", "c1")
    append(redis_url, [hb(1), hb(2)], key=ProgressKey("s1", "v1", KEY_SCHEMA))
    append(redis_url, [hb(1)], key=ProgressKey("s1", "v2", KEY_SCHEMA))
    append(redis_url, [hb(1)], key=ProgressKey("s2", "v1", KEY_SCHEMA))  # another student
    store = HotStore(redis_client, KEY_SCHEMA)
    store.commit(
        [Fold(ProgressKey("s1", "v2", KEY_SCHEMA), None, WatchState(), folded=1, version=7)]
    )
    cut = store.erase("s1", None, {"v3": 40}, 100, 60)  # v3: only MongoDB holds it, at 40
    assert cut == [
        ErasedKey("v1", 100, 2, False),
        ErasedKey("v2", 107, 0, True),
        ErasedKey("v3", 140, 0, False),
    ]
    assert store.indexed_materials("s1") == set()
    tombstones = redis_client.hgetall(KEY_SCHEMA.buffer_tombstones("s1"))
    assert tombstones == {b"v1": b"100", b"v2": b"107", b"v3": b"140"}
    assert 0 < redis_client.ttl(KEY_SCHEMA.buffer_tombstones("s1")) <= 60
    left = store.read([ProgressKey("s1", "v1", KEY_SCHEMA), ProgressKey("s2", "v1", KEY_SCHEMA)])
    assert [(e.pending, e.version) for e in left if e] == [([], 100), ([hb(1)], None)]
    assert buffered(redis_client) == (1, 1)  # the other student's key and heartbeat


def test_an_erasure_of_all_is_refused_when_the_index_grew_since_it_was_read(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    append(redis_url, [hb(1)], key=ProgressKey("s1", "v1", KEY_SCHEMA))
    stale = erase_call(KEY_SCHEMA, "s1", [], {}, 100, 60, whole=True)  # read before v1 indexed
    erase = redis_client.register_script(SCRIPTS["erase"])
    assert erase(keys=stale[0], args=stale[1]) == [b"retry"]
    assert redis_client.llen(KEY.pending) == 1  # nothing erased
    store = HotStore(redis_client, KEY_SCHEMA)
    assert store.erase("s1", None, {}, 100, 60)[0].queued == 1  # reads again


def test_a_flush_of_erased_heartbeats_finishes_without_marking_anything(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    append(redis_url, [hb(1)])
    store = HotStore(redis_client, KEY_SCHEMA)
    store.claim(now=1000.0, lease_until=2000.0, limit=10)
    store.commit([Fold(KEY, None, WatchState(position=1.0), folded=1, version=1)])
    store.erase("s1", "v1", {}, 100, 60)  # while the flush writes MongoDB
    assert store.finish([(KEY, 1, True)], next_due=1234.0, ttl_s=600) == 0
    assert redis_client.zscore(DIRTY, KEY.member) is None  # not due again
    assert redis_client.hgetall(KEY.state) == {b"n": b"101"}  # no completion flag
    assert not redis_client.sismember(KEY.stored, "v1")
    assert store.indexed_materials("s1") == set()
    # A heartbeat after the erasure is no erased one: taken, folded from the tombstone, finished.
    assert append(redis_url, [hb(5)]).status == "ok"
    store.claim(now=1000.0, lease_until=2000.0, limit=10)
    store.commit([Fold(KEY, 101, WatchState(position=5.0), folded=1, version=102)])
    assert store.finish([(KEY, 102, False)], next_due=1234.0, ttl_s=600) == 1
    assert redis_client.sismember(KEY.stored, "v1") and store.indexed_materials("s1") == {"v1"}


def test_reads_are_counted_per_user_and_window_and_refused_past_the_limit(
    redis_url: str,
) -> None:
    async def run() -> list[bool]:
        async with hot_store(async_buffer(redis_url)) as store:
            spent = [await store.spend_reads("u1", 1, 3, 60, 6000.0) for _ in range(4)]
            spent.append(await store.spend_reads("u1", 30, 3, 60, 6000.0))  # an export
            spent.append(await store.spend_reads("u2", 3, 3, 60, 6000.0))  # another user
            spent.append(await store.spend_reads("u1", 3, 3, 60, 6060.0))  # the next minute
            return spent

    assert asyncio.run(run()) == [True, True, True, False, False, True, True]


def test_scripts_lost_by_a_redis_restart_are_loaded_again(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    limits = IngestLimits(1000.0, 100, 100, 0, 60, now=6000.0)
    items = [
        IngestItem(KEY, "c1", [hb(1)]),
        IngestItem(ProgressKey("s1", "v2", KEY_SCHEMA), "c1", [hb(2)]),
    ]

    async def run() -> list[str]:
        async with hot_store(async_buffer(redis_url)) as store:
            redis_client.script_flush()
            batch = await store.append(items, limits)
            redis_client.script_flush()
            single = await store.append(items[:1], limits)
            return [r.status for r in batch + single]

    assert asyncio.run(run()) == ["ok", "ok", "ok"]
    assert redis_client.llen(KEY.pending) == 2


# -- constant cost: what a reply carries does not grow with the backlog ---------------------


def view_of(reply: IngestReply) -> HotView:
    assert reply.status == "ok" and reply.view is not None, reply.status
    return reply.view


def view_at(r: Buffer, view: HotView, folded: int) -> CachedState:
    """The cached state of a process that folded the first `folded` pending heartbeats."""
    raw = r.lindex(KEY.pending, folded - 1)
    assert isinstance(raw, bytes)
    return CachedState.of(
        view.epoch, view.version, folded, hashlib.sha1(raw).hexdigest(), WatchState()
    )


def test_a_caller_with_a_current_view_gets_only_what_came_after_it(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    last = append_each(redis_url, range(1, 501))  # a worker-tier outage: 500 wait for a flush
    assert last.mode == "state" and len(last.tail) == 500  # no view: everything
    mine = last.cached(WatchState())
    assert mine.folded == 500
    reply = view_of(append(redis_url, [hb(501)], cached=mine))
    assert reply.mode == "cache" and reply.start == 500
    assert [h.received_at for h in reply.tail] == [501]
    older = CachedState.of(last.epoch, last.version, 0, "", WatchState())
    other = view_of(append(redis_url, [hb(502)], cached=older))
    assert other.mode == "cache" and len(other.tail) == 502  # an older view: from there


def test_a_preview_serves_callers_without_a_view_until_the_hot_state_moves(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    last = append_each(redis_url, range(1, 301))
    preview = WatchState(position=300.0)
    stored = view_of(append(redis_url, [hb(301)], cached=last.cached(preview), offer_preview=True))
    assert stored.preview_folded == 300
    cold = view_of(append(redis_url, [hb(302)]))  # another process: no view of its own
    assert cold.mode == "preview" and cold.base == preview and cold.start == 300
    assert [h.received_at for h in cold.tail] == [301, 302]
    stale = view_at(redis_client, last, 100)  # behind the preview: not stored
    late = view_of(append(redis_url, [hb(303)], cached=stale, offer_preview=True))
    assert late.preview_folded == 300
    # A worker folds: the preview was built on the old hot state and no longer applies.
    store = HotStore(redis_client, KEY_SCHEMA)
    [entry] = store.read([KEY])
    assert entry is not None
    assert store.commit([Fold(KEY, None, WatchState(position=303.0), 303, 303)]) == [True]
    after = view_of(append(redis_url, [hb(304)]))
    assert after.mode == "state" and after.version == "303" and after.preview_folded == -1
    assert after.base == WatchState(position=303.0) and [h.received_at for h in after.tail] == [304]
    old_view = last.cached(WatchState())
    assert view_of(append(redis_url, [hb(305)], cached=old_view)).mode == "state"


def test_an_erased_or_expired_key_gets_a_new_epoch(redis_url: str, redis_client: Buffer) -> None:
    enroll(redis_client, "s1", "c1")
    first = view_of(append(redis_url, [hb(1)]))
    redis_client.delete(KEY.state, KEY.pending)  # as erasure or expiry leaves it
    again = view_of(append(redis_url, [hb(2)], cached=first.cached(WatchState())))
    assert again.epoch != first.epoch and again.mode == "state"
    assert [h.received_at for h in again.tail] == [2]


def test_a_key_holds_at_most_max_per_key_heartbeats(redis_url: str, redis_client: Buffer) -> None:
    enroll(redis_client, "s1", "c1")
    assert append(redis_url, [hb(t) for t in range(1, 9)], max_per_key=10).status == "ok"
    assert append(redis_url, [hb(9), hb(10), hb(11)], max_per_key=10).status == "key_full"
    assert append(redis_url, [hb(9), hb(10)], max_per_key=10).status == "ok"
    assert redis_client.llen(KEY.pending) == 10
    other = ProgressKey("s1", "v2", KEY_SCHEMA)
    assert append(redis_url, [hb(1)], max_per_key=10, key=other).status == "ok"  # per key


def test_a_view_of_heartbeats_redis_lost_no_longer_matches(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    last = append_each(redis_url, range(1, 8))
    seen = last.cached(WatchState())  # a process folded all 7
    redis_client.rpop(KEY.pending, 2)  # a crash between fsyncs: the last two are gone...
    view_of(append(redis_url, [hb(8)]))  # ...and the list grows back to 7, other heartbeats
    reply = view_of(append(redis_url, [hb(9)], cached=seen))
    assert reply.mode == "state"  # not 'cache': the view's last heartbeat is not there
    assert [h.received_at for h in reply.tail] == [1, 2, 3, 4, 5, 8, 9]


def test_an_old_view_behind_the_preview_gets_the_preview(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    early = view_of(append(redis_url, [hb(1)])).cached(WatchState())
    last = append_each(redis_url, range(2, 402))
    offer = last.cached(WatchState(position=401.0))
    view_of(append(redis_url, [hb(402)], cached=offer, offer_preview=True))
    reply = view_of(append(redis_url, [hb(403)], cached=early))
    assert reply.mode == "preview" and reply.start == 401 and len(reply.tail) == 2


def read(url: str, cached: CachedState | None, student: str = "s1") -> HotView:
    """read.lua's view of KEY for a caller holding `cached` (through AsyncHotStore.read)."""

    async def run() -> HotView:
        async with hot_store(async_buffer(url)) as store:
            _, [view] = await store.read(student, [KEY], [cached])
            return view

    return asyncio.run(run())


def test_a_read_answers_the_view_an_append_answers_without_the_new_heartbeat(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    last = append_each(redis_url, range(1, 41))
    offer = last.cached(WatchState(position=40.0))
    view_of(append(redis_url, [hb(41)], cached=offer, offer_preview=True))  # preview at 40
    callers = {
        "none": None,
        "current": view_at(redis_client, last, 41),
        "behind the preview": view_at(redis_client, last, 10),
        "of another epoch": CachedState.of("other", last.version, 3, "", WatchState()),
    }
    modes = {}
    for t, (who, cached) in enumerate(callers.items(), start=42):
        seen = read(redis_url, cached)
        appended = view_of(append(redis_url, [hb(t)], cached=cached))
        newest = redis_client.lindex(KEY.pending, -1)
        assert isinstance(newest, bytes)
        expected_mark = hashlib.sha1(newest).hexdigest()
        assert (seen.mode, seen.start, seen.base, seen.preview_folded, seen.epoch) == (
            appended.mode, appended.start, appended.base, appended.preview_folded,
            appended.epoch,
        ), who  # fmt: skip
        assert seen.tail + [hb(t)] == appended.tail and appended.mark == expected_mark, who
        modes[who] = seen.mode
    assert modes == {
        "none": "preview",
        "current": "cache",
        "behind the preview": "preview",
        "of another epoch": "preview",
    }


def test_a_view_without_an_epoch_never_holds(redis_url: str, redis_client: Buffer) -> None:
    enroll(redis_client, "s1", "c1")
    no_hash = HotView("state", "", "", -1, False, None, 0, "", [])  # no epoch, version, base
    assert read(redis_url, None) == no_hash
    for t in range(1, 4):
        view_of(append(redis_url, [hb(t)]))
    redis_client.hdel(KEY.state, "e")  # the hash gone, its pending heartbeats still there
    no_epoch = view_at(redis_client, no_hash, 3)  # its 3 heartbeats, with the right mark
    seen = read(redis_url, no_epoch)
    assert seen.mode == "state" and seen.epoch == "" and len(seen.tail) == 3
    appended = view_of(append(redis_url, [hb(4)], cached=no_epoch))
    assert appended.mode == "state" and appended.epoch != "" and len(appended.tail) == 4


def test_refusals_for_bounds_leave_the_rate_allowance_alone(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    assert append(redis_url, [hb(1), hb(2)], max_per_key=2, rate_limit=5).status == "ok"
    for _ in range(10):  # the key is full: refused, and nothing counted
        assert append(redis_url, [hb(3)], max_per_key=2, rate_limit=5).status == "key_full"
    other = ProgressKey("s1", "v2", KEY_SCHEMA)
    statuses = [append(redis_url, [hb(t)], key=other, rate_limit=5).status for t in range(4)]
    assert statuses == ["ok", "ok", "ok", "rate_limited"]  # 2 + 3 of 5 used


def test_the_workers_scripts_are_loaded_again_on_every_server(
    redis_url: str, redis_client: Buffer
) -> None:
    students = [f"s{i}" for i in range(12)]  # on a cluster: keys on every primary
    keys = [ProgressKey(s, "v1", KEY_SCHEMA) for s in students]
    for key in keys:
        enroll(redis_client, key.student_id, "c1")
        assert append(redis_url, [hb(1)], key=key).status == "ok"
    store = HotStore(redis_client, KEY_SCHEMA)
    redis_client.script_flush()
    takeovers, claimed, more = store.claim(now=1000.0, lease_until=2000.0, limit=100)
    assert (takeovers, sorted(claimed, key=str), more) == (0, sorted(keys, key=str), False)
    redis_client.script_flush()
    folds = [Fold(k, None, WatchState(position=1.0), folded=1, version=1) for k in keys]
    assert store.commit(folds) == [True] * len(keys)
    assert store.finish([(k, 1, False) for k in keys], next_due=1234.0, ttl_s=60) == len(keys)


def test_a_claim_fills_its_batch_from_the_partitions_that_hold_the_due_keys(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")  # one student: all due keys in one partition
    keys = [ProgressKey("s1", f"v{i}", KEY_SCHEMA) for i in range(30)]
    for key in keys:
        assert append(redis_url, [hb(1)], key=key).status == "ok"
    store = HotStore(redis_client, KEY_SCHEMA)
    _, first, more = store.claim(now=1000.0, lease_until=2000.0, limit=20)
    assert len(first) == 20 and more  # not the 1 key that is the partition's equal share
    _, rest, more = store.claim(now=1000.0, lease_until=2000.0, limit=20)
    assert sorted(first + rest, key=str) == sorted(keys, key=str) and not more


# -- the student's budget: the script spends it as `StudentLedger` says ------------------------

BUDGET = Verification(max_rate=2.0, slack_s=5.0, gap_s=60.0)


FIXTURE_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]


@settings(max_examples=25, deadline=None, suppress_health_check=FIXTURE_OK)
@given(
    st.lists(
        st.tuples(st.floats(0, 90), st.integers(0, 3), st.floats(0, 200)),  # dt, material, need
        min_size=1,
        max_size=30,
    )
)
def test_the_ingest_script_spends_the_budget_as_the_ledger_does(
    redis_client: Buffer, steps: list[tuple[float, int, float]]
) -> None:
    student = f"s-{uuid.uuid4().hex}"  # a fresh ledger for every example
    enroll(redis_client, student, "c1")
    ledger, granted, now = StudentLedger(), [0.0] * 4, 6000.0
    for dt, m, need in steps:
        now = round(now + dt, 3)
        key = ProgressKey(student, f"v{m}", KEY_SCHEMA)
        limits = IngestLimits(now + 10, 100, 10_000, 0, 60, now=now, verification=BUDGET)
        item = IngestItem(key, "c1", [Heartbeat(received_at=now, played=())], need=need)
        [raw] = run_scripts(redis_client, "ingest", [ingest_args(item, limits, True)])
        reply = IngestReply.parse(raw)
        assert reply.view is not None
        granted[m] = round(granted[m] + ledger.grant(now, need, BUDGET), 3)
        stamped = reply.view.tail[-1].grant
        assert stamped is not None and stamped[1] == granted[m]
    assert sum(granted) <= 2.0 * (now - 6000.0) + 5.0 + 1e-6  # never more than rate x time


def test_each_heartbeat_carries_its_keys_grant_through_the_flush(
    redis_url: str, redis_client: Buffer
) -> None:
    enroll(redis_client, "s1", "c1")
    for t, need in ((6000.0, 0.0), (6010.0, 8.0), (6020.0, 50.0)):
        limits = IngestLimits(t + 10, 100, 10_000, 0, 60, now=t, verification=BUDGET)
        item = IngestItem(KEY, "c1", [Heartbeat(received_at=t, played=())], need=need)
        run_scripts(redis_client, "ingest", [ingest_args(item, limits, False)])
    # slack 5 at the start; +20 at 6010 (8 taken: 17 left); +20 at 6020 (37 of the 50 asked)
    [entry] = HotStore(redis_client, KEY_SCHEMA).read([KEY])
    assert entry is not None
    assert [h.grant[1] if h.grant else None for h in entry.pending] == [0.0, 8.0, 45.0]
    epoch = redis_client.hget(KEY.state, "e")
    assert {h.grant[0] if h.grant else None for h in entry.pending} == {as_text(epoch)}


def test_the_script_takes_off_the_grants_the_asking_state_had_not_seen(
    redis_client: Buffer,
) -> None:
    """`IngestItem.seen`: the need counts the grants of the state it was computed from (its
    epoch's stamp); the key's grants beyond it are taken off, so that a state behind, or none,
    never draws the same seconds twice."""
    enroll(redis_client, "s1", "c1")

    def ask(t: float, need: float, seen: tuple[str, float] | None) -> float:
        limits = IngestLimits(t + 10, 100, 10_000, 0, 60, now=t, verification=BUDGET)
        item = IngestItem(KEY, "c1", [Heartbeat(received_at=t)], need=need, seen=seen)
        [raw] = run_scripts(redis_client, "ingest", [ingest_args(item, limits, True)])
        view = IngestReply.parse(raw).view
        assert view is not None and view.tail[-1].grant is not None
        return view.tail[-1].grant[1]  # the key's cumulative grant

    assert ask(6000.0, 5.0, None) == 5.0  # the slack, 5, all of it
    epoch = as_text(redis_client.hget(KEY.state, "e"))
    # +20 budget at 6010. A state that saw the 5 asks 8 more: 8 granted (13 in all).
    assert ask(6010.0, 8.0, (epoch, 5.0)) == 13.0
    # +20 at 6020 (32 there). A state that saw only the first 5 asks 15: the 8 it did not see
    # are taken off, 7 granted (20 in all).
    assert ask(6020.0, 15.0, (epoch, 5.0)) == 20.0
    # No state (or another epoch's): every grant of the epoch is taken off. Asking 25 for
    # seconds the heartbeats claim by themselves: 5 granted (25 in all).
    assert ask(6030.0, 25.0, ("", 0.0)) == 25.0
    assert ask(6040.0, 25.0, ("an-older-epoch", 25.0)) == 25.0  # all granted already


def test_erasing_the_whole_student_deletes_their_budget_and_a_materials_erasure_keeps_it(
    redis_client: Buffer,
) -> None:
    enroll(redis_client, "s1", "c1")
    enroll(redis_client, "s2", "c1")

    def spend(student: str, material: str, t: float, need: float) -> float:
        limits = IngestLimits(t + 10, 100, 10_000, 0, 60, now=t, verification=BUDGET)
        key = ProgressKey(student, material, KEY_SCHEMA)
        item = IngestItem(key, "c1", [Heartbeat(received_at=t)], need=need)
        [raw] = run_scripts(redis_client, "ingest", [ingest_args(item, limits, True)])
        view = IngestReply.parse(raw).view
        assert view is not None and view.tail[-1].grant is not None
        return view.tail[-1].grant[1]

    # The slack, 5, at 6000, all taken by v1; 2 x 10 s = 20 more at 6010: v2 takes 10 of them.
    assert spend("s1", "v1", 6000.0, 5.0) == 5.0
    assert spend("s1", "v2", 6010.0, 10.0) == 10.0
    spend("s2", "v1", 6000.0, 1.0)  # another student's ledger
    store = HotStore(redis_client, KEY_SCHEMA)
    store.erase("s1", "v1", {}, 100, 60)
    assert redis_client.hget(KEY_SCHEMA.budget_key("s1"), "k") == b"10.000"  # one material: kept
    store.erase("s1", None, {}, 100, 60)
    assert redis_client.exists(KEY_SCHEMA.budget_key("s1")) == 0  # the whole student: gone
    assert redis_client.exists(KEY_SCHEMA.budget_key("s2")) == 1
    # Erasure is no ban: the next heartbeat opens a new ledger with the slack alone (the old
    # one would have granted its 10 left plus 2 x 10 s).
    assert spend("s1", "v1", 6020.0, 50.0) == 5.0
