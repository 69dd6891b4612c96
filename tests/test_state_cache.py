"""The web process's state cache (shared/storage/views.py): what it holds costs the garbage
collector one object per key, and what it hands out is each caller's own copy, equal to what
was put in."""

from __future__ import annotations

import gc

from bson.int64 import Int64

from shared.domain.progress import Heartbeat, Verification, WatchState, fold_into
from shared.storage.keys import ProgressKey
from shared.storage.views import HotView, StateCache
from tests.helpers import KEY_SCHEMA

KEYS = 2000


def watched(n: int) -> WatchState:
    """A state as a player leaves it: played ranges, position-only readings of a second tab,
    receipts and the budget's grants (each a list in the state)."""
    state = WatchState()
    played = [
        Heartbeat(1765000000.0 + 10 * i, 10.0 * i + n % 7, session_id="tab-1", seq=i,
                  played=((10.0 * i, 10.0 * i + 10),))
        for i in range(6)
    ]  # fmt: skip
    readings = [
        Heartbeat(1765000005.0 + 10 * i, 3.0 * i, session_id="tab-2", seq=i) for i in range(3)
    ]
    beats = played + readings
    fold_into(state, beats, duration=600.0, threshold=90.0, verification=Verification())
    return state


def view(n: int) -> HotView:
    return HotView("state", f"e{n}", "1", -1, False, None, 0, "", [])


def test_a_cached_state_is_one_object_for_the_garbage_collector() -> None:
    keys = [ProgressKey(f"s{n}", "v-100", KEY_SCHEMA) for n in range(KEYS)]
    views = [view(n) for n in range(KEYS)]
    cache = StateCache(capacity=KEYS)
    gc.collect()
    before = len(gc.get_objects())
    for n, key in enumerate(keys):
        cache.put(key, views[n], watched(n))  # the request's own state goes with the request
    gc.collect()
    grown = len(gc.get_objects()) - before
    # A WatchState alone is six tracked containers or more (itself, its lists, their pairs).
    assert len(cache) == KEYS
    assert grown <= KEYS + 50, grown


def test_each_caller_gets_its_own_copy_equal_to_what_was_put() -> None:
    key = ProgressKey("s1", "v-100", KEY_SCHEMA)
    cache = StateCache(capacity=10)
    state = watched(1)
    cache.put(key, view(1), state)
    entry = cache.get(key)
    assert entry is not None
    mine = entry.state
    assert mine == state and mine is not state
    mine.position = 599.0  # a caller folds its copy in place
    mine.covered.append([590.0, 599.0])
    again = entry.state
    assert again == state and again.position != 599.0


def test_a_state_holding_mongodbs_int64_is_cached_as_its_numbers() -> None:
    """pymongo reads a 64-bit integer back as bson's Int64, an int subclass: a position-only
    reading's `seq` past 2**31 (a player numbering its heartbeats with Date.now())."""
    seq = 1_800_000_000_000
    stored = watched(2).to_dict()
    stored["readings"] = [["p1", [[1765000100.0, Int64(seq), 12.0]]]]
    stored["position_key"] = [1765000100.0, Int64(seq), 12.0]
    state = WatchState.from_dict(stored)
    key = ProgressKey("s2", "v-100", KEY_SCHEMA)
    cache = StateCache(capacity=10)
    cache.put(key, view(2), state)
    entry = cache.get(key)
    assert entry is not None
    mine = entry.state
    assert mine == state and mine is not state
    assert mine.readings == {"p1": [[1765000100.0, seq, 12.0]]}
    assert type(mine.readings["p1"][0][1]) is int
