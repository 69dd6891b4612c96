"""Unit tests of shared/domain/progress.py against API.md "Progress semantics". Pure: no I/O.

Expected values are worked out by hand in each test, or with a small independent reference
(integer grid cells for interval unions, hand-summed positions for continuous play); the code
under test is never used to compute an expected value, except where the contract itself is
"the same as in-order delivery".
"""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.domain.progress import (
    INFER_RATE,
    INFER_SLACK_S,
    MAX_READINGS_PER_SESSION,
    Heartbeat,
    WatchState,
    add_interval,
    add_intervals,
    apply_heartbeat,
    fold,
)
from tests.helpers import present

THRESHOLD = 80.0
T0 = 1_700_000_000.0  # an epoch second; all readings in these tests are offsets from it

FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_constants_match_the_contract() -> None:
    # API.md: "advanced by no more than the elapsed time x 2 (plus a 2 s slack)".
    assert INFER_RATE == 2.0
    assert INFER_SLACK_S == 2.0


def pos(
    t: float,
    w: float,
    *,
    session: str | None = "s1",
    seq: int | None = None,
    received: float | None = None,
) -> Heartbeat:
    """A position-only reading taken at player time T0 + t with position w."""
    return Heartbeat(
        received_at=T0 + (received if received is not None else t),
        watch_time=w,
        client_ts=T0 + t,
        session_id=session,
        seq=seq,
    )


def played(
    t: float,
    w: float,
    ranges: tuple[tuple[float, float], ...],
    *,
    seq: int | None = None,
    received: float | None = None,
    session: str | None = "s1",
) -> Heartbeat:
    return Heartbeat(
        received_at=T0 + (received if received is not None else t),
        watch_time=w,
        client_ts=T0 + t,
        session_id=session,
        seq=seq,
        played=ranges,
    )


def run(
    hbs: list[Heartbeat], duration: float | None = 600.0, state: WatchState | None = None
) -> WatchState:
    return fold(state, hbs, duration=duration, threshold=THRESHOLD)


# --------------------------------------------------------------------------------------------
# add_interval
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("covered", "start", "end", "expected"),
    [
        pytest.param([], 0, 10, [[0, 10]], id="into-empty"),
        pytest.param([[0, 10]], 5, 15, [[0, 15]], id="overlap-right"),
        pytest.param([[10, 20]], 5, 15, [[5, 20]], id="overlap-left"),
        pytest.param([[0, 10]], 10, 20, [[0, 20]], id="touching-right-merges"),
        pytest.param([[10, 20]], 0, 10, [[0, 20]], id="touching-left-merges"),
        pytest.param([[0, 100]], 10, 20, [[0, 100]], id="nested-inside-existing"),
        pytest.param([[10, 20], [30, 40]], 0, 50, [[0, 50]], id="new-contains-all"),
        pytest.param([[10, 20]], 10, 20, [[10, 20]], id="identical"),
        pytest.param([[10, 20]], 0, 5, [[0, 5], [10, 20]], id="disjoint-before"),
        pytest.param([[10, 20]], 30, 40, [[10, 20], [30, 40]], id="disjoint-after"),
        pytest.param(
            [[0, 5], [30, 40]], 10, 20, [[0, 5], [10, 20], [30, 40]], id="disjoint-between"
        ),
        pytest.param([[0, 5], [10, 15], [20, 25]], 4, 21, [[0, 25]], id="bridges-three"),
        pytest.param(
            [[0, 5], [10, 15], [20, 25]], 5, 10, [[0, 15], [20, 25]], id="fills-gap-exactly"
        ),
        pytest.param(
            [[0, 5], [10, 15], [20, 25], [40, 50]],
            12,
            30,
            [[0, 5], [10, 30], [40, 50]],
            id="merges-two-keeps-others",
        ),
        pytest.param([[0.5, 1.25]], 1.25, 2.75, [[0.5, 2.75]], id="fractional-touching"),
        pytest.param([[0, 10]], 5, 5, [[0, 10]], id="empty-range-ignored"),
        pytest.param([], 5, 5, [], id="empty-range-into-empty"),
        pytest.param([[0, 10]], 30, 20, [[0, 10]], id="negative-range-ignored"),
        pytest.param([], 3, -3, [], id="negative-range-into-empty"),
    ],
)
def test_add_interval_table(
    covered: list[list[float]], start: float, end: float, expected: list[list[float]]
) -> None:
    before = [list(iv) for iv in covered]
    assert add_interval(covered, start, end) == expected
    assert covered == before  # the argument is not modified


def runs_of(cells: set[int]) -> list[list[int]]:
    """Maximal runs of consecutive integer cells, as [start, end) intervals (the reference)."""
    out: list[list[int]] = []
    for c in sorted(cells):
        if out and out[-1][1] == c:
            out[-1][1] = c + 1
        else:
            out.append([c, c + 1])
    return out


@FAST
@given(st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60)), max_size=25))
def test_add_interval_matches_grid_cell_reference(pairs: list[tuple[int, int]]) -> None:
    covered: list[list[float]] = []
    cells: set[int] = set()
    for a, b in pairs:
        covered = add_interval(covered, a, b)
        cells.update(range(a, b))  # empty when b <= a, like the contract for empty ranges
    assert covered == runs_of(cells)
    # canonical form: sorted, non-empty, disjoint and not touching
    for (a1, b1), (a2, b2) in zip(covered, covered[1:], strict=False):
        assert a1 < b1 < a2 < b2


@FAST
@given(
    st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60)), max_size=25),
    st.lists(st.tuples(st.integers(-5, 60), st.integers(-5, 60)), max_size=50),
)
def test_a_heartbeats_ranges_are_added_in_one_pass_as_the_grid_reference_says(
    earlier: list[tuple[int, int]], batch: list[tuple[int, int]]
) -> None:
    """`add_intervals` (a heartbeat's whole `played` list at once, unsorted, with empty and
    reversed ranges) gives the union the cells say; its argument is left as it was."""
    covered: list[list[float]] = []
    cells: set[int] = set()
    for a, b in earlier:
        covered = add_interval(covered, a, b)
        cells.update(range(a, b))
    before = [list(iv) for iv in covered]
    for a, b in batch:
        cells.update(range(a, b))
    assert add_intervals(covered, batch) == runs_of(cells)
    assert covered == before


@FAST
@given(
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 40)), max_size=15),
    st.randoms(use_true_random=False),
)
def test_add_interval_order_does_not_matter(
    pairs: list[tuple[int, int]], rnd: random.Random
) -> None:
    shuffled = list(pairs)
    rnd.shuffle(shuffled)
    a: list[list[float]] = []
    b: list[list[float]] = []
    for s, e in pairs:
        a = add_interval(a, s, e)
    for s, e in shuffled + pairs[:3]:  # and with some duplicates
        b = add_interval(b, s, e)
    assert a == b


# --------------------------------------------------------------------------------------------
# Resume position
# --------------------------------------------------------------------------------------------


REWIND = [
    played(0, 0, ()),
    played(10, 300, ((0, 10),)),  # seeked forward, played a bit
    played(20, 310, ((300, 310),)),
    played(30, 50, ((310, 320),)),  # then rewound to 50
]


@pytest.mark.parametrize(
    ("hbs", "expected"),
    [
        pytest.param(REWIND, 50, id="rewind-in-order"),
        pytest.param([REWIND[3], REWIND[0], REWIND[2], REWIND[1]], 50, id="rewind-shuffled"),
        pytest.param([REWIND[3], REWIND[2], REWIND[1], REWIND[0]], 50, id="rewind-reversed"),
        pytest.param([pos(0, 100), pos(10, 120), pos(20, 40)], 40, id="position-only-rewind"),
        pytest.param(
            [pos(20, 40), pos(0, 100), pos(10, 120)], 40, id="position-only-rewind-late-arrivals"
        ),
        # client_ts decides, not the server receive time: A was read earlier but arrived later
        pytest.param(
            [pos(150, 20, received=150), pos(100, 10, received=200)],
            20,
            id="client-ts-beats-receive-time",
        ),
        pytest.param(
            [pos(100, 10, received=200), pos(150, 20, received=150)],
            20,
            id="client-ts-beats-receive-time-other-arrival",
        ),
        # same client_ts: seq decides
        pytest.param([pos(50, 5, seq=2), pos(50, 40, seq=1)], 5, id="seq-breaks-tie"),
        pytest.param([pos(50, 40, seq=1), pos(50, 5, seq=2)], 5, id="seq-breaks-tie-reversed"),
        # no client_ts: the server receive time is the reading time
        pytest.param(
            [
                Heartbeat(received_at=T0 + 20, watch_time=7),
                Heartbeat(received_at=T0 + 10, watch_time=70),
            ],
            7,
            id="receive-time-when-no-client-ts",
        ),
        pytest.param(
            [
                Heartbeat(received_at=T0 + 10, watch_time=70),
                Heartbeat(received_at=T0 + 20, watch_time=7),
            ],
            7,
            id="receive-time-when-no-client-ts-in-order",
        ),
        pytest.param([pos(0, 700)], 600, id="clamped-to-duration"),
        pytest.param([pos(0, -5)], 0, id="clamped-at-zero"),
    ],
)
def test_resume_position(hbs: list[Heartbeat], expected: float) -> None:
    assert run(hbs).position == expected


def test_resume_position_older_reading_arriving_late_is_ignored_one_by_one() -> None:
    state = apply_heartbeat(WatchState(), pos(30, 55), duration=600, threshold=THRESHOLD)
    assert state.position == 55
    state = apply_heartbeat(state, pos(10, 400), duration=600, threshold=THRESHOLD)
    assert state.position == 55
    state = apply_heartbeat(state, pos(31, 12), duration=600, threshold=THRESHOLD)
    assert state.position == 12


# --------------------------------------------------------------------------------------------
# watched_seconds: played ranges and inference
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hbs", "duration", "expected"),
    [
        pytest.param([played(10, 10, ((0, 10),))], 600, 10, id="one-range"),
        pytest.param([played(10, 10, ((0, 10), (5, 20)))], 600, 20, id="overlap-in-one-hb"),
        pytest.param(
            [played(10, 10, ((0, 10),)), played(20, 20, ((5, 20),))],
            600,
            20,
            id="overlap-across-hbs",
        ),
        pytest.param(
            [played(10, 10, ((0, 10),)), played(20, 20, ((100, 110),))],
            600,
            20,
            id="disjoint-ranges-add",
        ),
        pytest.param([played(10, 10, ((-5, 10),))], 100, 10, id="clamped-below-zero"),
        pytest.param([played(10, 100, ((90, 150),))], 100, 10, id="clamped-above-duration"),
        pytest.param([played(10, 100, ((120, 150),))], 100, 0, id="entirely-past-the-end"),
        pytest.param([played(10, 10, ((20, 10),))], 100, 0, id="reversed-range-ignored"),
        pytest.param([played(10, 10, ((0, 200),))], 100, 100, id="whole-video"),
        # seeking forward: only played ranges count, the skipped part does not
        pytest.param(
            [played(10, 10, ((0, 10),)), played(12, 400, ()), played(22, 410, ((400, 410),))],
            600,
            20,
            id="seek-does-not-count",
        ),
        # replaying the same part does not count twice
        pytest.param(
            [played(10, 10, ((0, 10),)), played(20, 10, ((0, 10),))],
            600,
            10,
            id="rewatch-counts-once",
        ),
    ],
)
def test_watched_from_played_ranges(hbs: list[Heartbeat], duration: float, expected: float) -> None:
    assert run(hbs, duration).watched_seconds == expected


@pytest.mark.parametrize(
    ("hbs", "expected"),
    [
        pytest.param([pos(0, 0), pos(10, 10)], 10, id="normal-play"),
        pytest.param([pos(0, 100), pos(10, 105)], 5, id="slow-play"),
        pytest.param([pos(0, 100), pos(10, 120)], 20, id="double-speed"),
        pytest.param([pos(0, 100), pos(10, 122)], 22, id="bound-inclusive-2x-plus-2"),
        pytest.param([pos(0, 100), pos(10, 122.001)], 0, id="just-over-bound-is-seek"),
        pytest.param([pos(0, 100), pos(0.5, 103)], 3, id="slack-covers-short-elapsed"),
        pytest.param([pos(0, 100), pos(0.5, 104)], 0, id="over-slack-is-seek"),
        pytest.param([pos(0, 100), pos(10, 100)], 0, id="pause-counts-nothing"),
        pytest.param([pos(0, 100), pos(10, 90)], 0, id="backward-is-seek"),
        pytest.param([pos(0, 0), pos(10, 500)], 0, id="forward-seek"),
        pytest.param([pos(0, 0), pos(10, 10, session="s2")], 0, id="different-sessions"),
        pytest.param(
            [
                pos(0, 0, session="s1"),
                pos(5, 100, session="s2"),
                pos(10, 10, session="s1"),
                pos(15, 105, session="s2"),
            ],
            15,
            id="interleaved-sessions-paired-within-each",
        ),
        pytest.param(
            [pos(0, 0), pos(10, 200), pos(20, 210)], 10, id="only-time-neighbours-are-paired"
        ),
        pytest.param(
            [pos(0, 0), pos(10, 10), pos(20, 300), pos(30, 310), pos(40, 20), pos(50, 30)],
            30,
            id="play-seek-play-rewind-play",
        ),
        # the readings' player clock gives the elapsed time, not the server receive time
        pytest.param(
            [pos(0, 0, received=100), pos(10, 10, received=100)], 10, id="elapsed-from-client-ts"
        ),
        pytest.param(
            [pos(0, 0, received=0), pos(2, 30, received=30)],
            0,
            id="receive-gap-does-not-widen-bound",
        ),
        # clamped positions: reading beyond the end counts only up to the end
        pytest.param([pos(0, 595), pos(10, 605)], 5, id="play-past-end-clamped"),
    ],
)
def test_watched_inferred_from_position_only_readings(
    hbs: list[Heartbeat], expected: float
) -> None:
    assert run(hbs, 600).watched_seconds == expected


def test_played_heartbeat_is_not_a_reading_for_inference() -> None:
    # A heartbeat with `played` is taken at its word: nothing is inferred for it, so a
    # position-only reading next to it in time is not paired with it.
    hbs = [pos(0, 0), played(10, 10, ())]
    assert run(hbs).watched_seconds == 0
    assert run(list(reversed(hbs))).watched_seconds == 0


def test_receive_time_is_the_reading_time_without_client_ts() -> None:
    hbs = [
        Heartbeat(received_at=T0, watch_time=0, session_id="s"),
        Heartbeat(received_at=T0 + 10, watch_time=10, session_id="s"),
    ]
    assert run(hbs).watched_seconds == 10
    assert run(list(reversed(hbs))).watched_seconds == 10


def test_late_middle_reading_fills_in_and_never_removes() -> None:
    # 0 -> 50 in 20 s is a seek (50 > 42), but with the middle reading it is 0->10 then a seek.
    s = run([pos(0, 0), pos(20, 50)])
    assert s.watched_seconds == 0
    s = run([pos(10, 10)], state=s)
    assert s.watched_seconds == 10
    # the reverse: 0 -> 40 in 20 s is play (40 <= 42); a late middle reading that would make
    # the second half a seek does not remove what was already counted.
    s = run([pos(0, 0), pos(20, 40)])
    assert s.watched_seconds == 40
    s = run([pos(10, 2)], state=s)
    assert s.watched_seconds == 40


def test_late_first_reading_of_a_long_continuous_session_still_counts() -> None:
    # Continuous play, one reading every 10 s, longer than the reading window. The very first
    # reading (position 0) is delayed and arrives last. API.md: "Coverage only grows ... (so for
    # continuous play, order does not matter)": 0..690 must be covered either way.
    n = MAX_READINGS_PER_SESSION + 6
    hbs = [pos(10 * i, 10 * i, seq=i) for i in range(n)]
    expected = 10 * (n - 1)
    assert run(hbs, 10 * n).watched_seconds == expected  # in order
    assert run(hbs[1:] + hbs[:1], 10 * n).watched_seconds == expected


# --------------------------------------------------------------------------------------------
# Progress and completion
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hbs", "duration", "progress", "completed"),
    [
        pytest.param([played(50, 50, ((0, 50),))], 200, 25.0, False, id="quarter"),
        pytest.param([played(80, 80, ((0, 80),))], 100, 80.0, True, id="exactly-threshold"),
        pytest.param([played(80, 80, ((0, 79.9),))], 100, 79.9, False, id="just-below"),
        pytest.param([played(480, 480, ((0, 480),))], 600, 80.0, True, id="480-of-600"),
        pytest.param([played(479, 479, ((0, 479),))], 600, 79.833, False, id="479-of-600"),
        pytest.param([played(10, 10, ((0, 30),))], 30, 100.0, True, id="all"),
        pytest.param([played(10, 10, ((0, 300),))], 30, 100.0, True, id="capped-at-100"),
        pytest.param([pos(0, 0), pos(10, 500)], 600, 0.0, False, id="seek-only"),
    ],
)
def test_progress_and_completion(
    hbs: list[Heartbeat], duration: float, progress: float, completed: bool
) -> None:
    s = run(hbs, duration)
    assert s.progress == pytest.approx(progress, abs=1e-3)
    assert s.completed is completed


def test_progress_never_decreases_even_if_duration_grows() -> None:
    s = run([played(90, 90, ((0, 90),))], 100)
    assert s.progress == 90.0 and s.completed
    # the catalog now says 1000 s: 90 / 1000 is 9 %, but progress never decreases
    s2 = run([played(95, 95, ((90, 95),))], 1000, state=s)
    assert s2.watched_seconds == 95
    assert s2.progress == 90.0
    assert s2.completed is True


def test_completion_is_sticky_and_completed_at_set_once() -> None:
    s = run([played(100, 100, ((0, 100),), received=100)], 600)
    assert not s.completed and s.completed_at is None
    s = run([played(480, 480, ((100, 480),), received=500)], 600, state=s)
    assert s.completed and s.completed_at == T0 + 500
    s = run([played(590, 590, ((480, 590),), received=700)], 600, state=s)
    assert s.completed and s.completed_at == T0 + 500
    # a rewind, a complete=True and a bigger duration later change neither
    s = run([played(600, 5, (), received=800)], 600, state=s)
    s = run([played(601, 6, ((5, 6),), received=900)], 6000, state=s)
    assert s.completed and s.completed_at == T0 + 500
    assert s.position == 6
    assert s.progress == pytest.approx(98.333, abs=1e-3)  # 590 / 600, kept though 591 / 6000
    s = run([Heartbeat(received_at=T0 + 1000, complete=True)], 600, state=s)
    assert s.completed and s.completed_at == T0 + 500
    assert s.progress == 100.0


@pytest.mark.parametrize(
    ("hb", "duration"),
    [
        pytest.param(Heartbeat(received_at=T0 + 5), None, id="non-video-opened"),
        pytest.param(Heartbeat(received_at=T0 + 5, watch_time=3), None, id="non-video-position"),
        pytest.param(Heartbeat(received_at=T0 + 5, complete=True), None, id="non-video-complete"),
        pytest.param(Heartbeat(received_at=T0 + 5, complete=True), 600.0, id="video-complete"),
    ],
)
def test_non_video_or_complete_heartbeat_completes(hb: Heartbeat, duration: float | None) -> None:
    s = apply_heartbeat(WatchState(), hb, duration=duration, threshold=THRESHOLD)
    assert s.completed is True
    assert s.progress == 100.0
    assert s.completed_at == T0 + 5
    again = apply_heartbeat(
        s, Heartbeat(received_at=T0 + 50, complete=True), duration=duration, threshold=THRESHOLD
    )
    assert again.completed_at == T0 + 5


def test_apply_heartbeat_does_not_modify_its_input_state() -> None:
    s = run([pos(0, 0), pos(10, 10), played(20, 20, ((10, 20),))])
    snapshot = WatchState.from_json(s.to_json())
    apply_heartbeat(s, pos(30, 30), duration=600, threshold=THRESHOLD)
    apply_heartbeat(
        s, Heartbeat(received_at=T0 + 40, complete=True), duration=600, threshold=THRESHOLD
    )
    assert s == snapshot


# --------------------------------------------------------------------------------------------
# Duplicates
# --------------------------------------------------------------------------------------------


BASE = [pos(0, 0), pos(10, 10), played(20, 30, ((10, 30),)), pos(30, 40, session="s2")]


@pytest.mark.parametrize(
    ("history", "hb", "duration"),
    [
        pytest.param([], pos(0, 0), 600.0, id="first-position-only"),
        pytest.param(BASE, pos(40, 50), 600.0, id="new-position-only"),
        pytest.param(BASE, BASE[1], 600.0, id="old-position-only-retried"),
        pytest.param(BASE, pos(5, 5), 600.0, id="late-position-only"),
        pytest.param(BASE, played(40, 50, ((30, 50),)), 600.0, id="played"),
        pytest.param(BASE, BASE[2], 600.0, id="old-played-retried"),
        pytest.param(BASE, Heartbeat(received_at=T0 + 50, complete=True), 600.0, id="complete"),
        pytest.param([], Heartbeat(received_at=T0 + 50), None, id="non-video"),
        pytest.param(BASE, played(500, 500, ((30, 500),)), 600.0, id="completing"),
    ],
)
def test_duplicate_changes_nothing(
    history: list[Heartbeat], hb: Heartbeat, duration: float | None
) -> None:
    once = run(history + [hb], duration)
    twice = apply_heartbeat(once, hb, duration=duration, threshold=THRESHOLD)
    assert twice == once
    assert run(history + [hb, hb, hb], duration) == once


# --------------------------------------------------------------------------------------------
# Hypothesis: strategies
# --------------------------------------------------------------------------------------------

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@st.composite
def any_heartbeat(
    draw: st.DrawFn, sessions: tuple[str | None, ...] = ("a", "b", None)
) -> Heartbeat:
    received = draw(st.integers(0, 2000))
    has_played = draw(st.booleans())
    rng = st.tuples(st.integers(-20, 320), st.integers(-20, 320))
    return Heartbeat(
        received_at=T0 + received,
        watch_time=draw(st.integers(-10, 320)),
        client_ts=draw(st.none() | st.integers(0, 2000).map(lambda x: T0 + x)),
        session_id=draw(st.sampled_from(sessions)),
        seq=draw(st.none() | st.integers(0, 50)),
        played=tuple(draw(st.lists(rng, max_size=3))) if has_played else None,
        complete=draw(st.integers(0, 19)) == 0,
    )


@st.composite
def with_duplicates(draw: st.DrawFn, hbs: list[Heartbeat]) -> list[Heartbeat]:
    """A permutation of `hbs` with extra copies of some of them inserted anywhere."""
    extra = draw(st.lists(st.sampled_from(hbs), max_size=len(hbs))) if hbs else []
    return draw(st.permutations(hbs + extra))


# --------------------------------------------------------------------------------------------
# Property (1): played ranges -> any permutation and duplication gives the same state
# --------------------------------------------------------------------------------------------


@st.composite
def played_scenario(draw: st.DrawFn) -> tuple[int, list[Heartbeat]]:
    duration = draw(st.integers(1, 300))
    n = draw(st.integers(1, 12))
    times = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n, unique=True))
    hbs = []
    for t in times:
        ranges = draw(st.lists(st.tuples(st.integers(-20, 320), st.integers(-20, 320)), max_size=3))
        hbs.append(
            Heartbeat(
                received_at=T0 + draw(st.integers(0, 5000)),  # ignored: client_ts present
                watch_time=draw(st.integers(-10, 320)),
                client_ts=T0 + t,
                session_id=draw(st.sampled_from(["a", "b", None])),
                seq=draw(st.none() | st.integers(0, 9)),
                played=tuple(ranges),
            )
        )
    return duration, hbs


@FAST
@given(played_scenario(), st.data())
def test_property_played_ranges_order_and_duplicates_do_not_matter(
    scenario: tuple[int, list[Heartbeat]], data: st.DataObject
) -> None:
    duration, hbs = scenario
    delivered = data.draw(with_duplicates(hbs))

    # independent reference: integer cells of the video covered by some range
    # (the scenario's ranges are whole seconds, and every heartbeat has played and client_ts)
    cells = {
        c
        for hb in hbs
        for a, b in present(hb.played)
        for c in range(max(int(a), 0), min(int(b), duration))
    }
    latest = max(hbs, key=lambda hb: present(hb.client_ts))  # client_ts are distinct
    exp_pos = min(max(latest.watch_time, 0), duration)
    exp_progress = min(100.0, len(cells) * 100.0 / duration)
    exp_completed = len(cells) * 100 >= THRESHOLD * duration

    for seq in (hbs, delivered):
        s = run(seq, duration)
        assert s.position == exp_pos
        assert s.watched_seconds == len(cells)
        assert s.progress == pytest.approx(exp_progress, abs=1e-3)
        assert s.completed is exp_completed

    assert run(delivered, duration).covered == run(hbs, duration).covered


# --------------------------------------------------------------------------------------------
# Property (2): continuous play as position-only readings -> order and duplicates do not matter
# --------------------------------------------------------------------------------------------


@st.composite
def continuous_play(draw: st.DrawFn, max_readings: int = 40) -> tuple[int, list[Heartbeat], int]:
    """One session, readings ~10 s apart in player time, position advancing ~10 s each time
    (positions in whole milliseconds). Returns duration (s), heartbeats, final position in ms."""
    n = draw(st.integers(2, max_readings))
    t_ms, p_ms = draw(st.integers(0, 100_000)), 0
    hbs = []
    for i in range(n):
        if i:
            t_ms += draw(st.integers(8_000, 12_000))
            p_ms += draw(st.integers(8_000, 12_000))  # <= 2 * 8 + 2 s: always play
        hbs.append(
            Heartbeat(
                received_at=T0 + t_ms / 1000 + draw(st.integers(0, 30)),  # network delay
                watch_time=p_ms / 1000,
                client_ts=T0 + t_ms / 1000,
                session_id="tab-1",
                seq=i,
            )
        )
    duration = draw(st.integers(20, 600))
    return duration, hbs, p_ms


@FAST
@given(continuous_play(), st.data())
def test_property_continuous_play_order_and_duplicates_do_not_matter(
    scenario: tuple[int, list[Heartbeat], int], data: st.DataObject
) -> None:
    duration, hbs, last_ms = scenario
    delivered = data.draw(with_duplicates(hbs))
    end = min(last_ms, duration * 1000) / 1000  # positions start at 0, clamped to the video

    in_order = run(hbs, duration)
    assert in_order.watched_seconds == pytest.approx(end, abs=1e-6)
    assert in_order.position == pytest.approx(end, abs=1e-6)

    shuffled = run(delivered, duration)
    assert shuffled.watched_seconds == pytest.approx(end, abs=1e-6)
    assert shuffled.position == pytest.approx(end, abs=1e-6)
    assert shuffled.completed is in_order.completed
    assert shuffled.progress == in_order.progress


# --------------------------------------------------------------------------------------------
# Property (3): seeking to the end then a little play never completes
# --------------------------------------------------------------------------------------------


@SLOW
@given(
    pre_steps=st.integers(0, 5),
    seek_elapsed=st.integers(1, 10),
    seek_to=st.integers(560, 650),
    post=st.lists(st.integers(1, 10), max_size=5),
    with_played=st.booleans(),
    data=st.data(),
)
def test_property_seek_to_end_then_play_never_completes(
    pre_steps: int,
    seek_elapsed: int,
    seek_to: int,
    post: list[int],
    with_played: bool,
    data: st.DataObject,
) -> None:
    duration = 600
    hbs: list[Heartbeat] = []
    t = p = 0

    def reading(t: int, w: int, rng: tuple[tuple[int, int], ...]) -> Heartbeat:
        return Heartbeat(
            received_at=T0 + t,
            watch_time=w,
            client_ts=T0 + t,
            session_id="x",
            seq=len(hbs),
            played=rng if with_played else None,
        )

    hbs.append(reading(0, 0, ()))
    for _ in range(pre_steps):  # honest play from the start
        hbs.append(reading(t + 10, p + 10, ((p, p + 10),)))
        t, p = t + 10, p + 10
    watched_before = p
    # the seek: a jump far larger than 2 x elapsed + 2 s
    assert seek_to - p > INFER_RATE * seek_elapsed + INFER_SLACK_S
    t, p = t + seek_elapsed, seek_to
    hbs.append(reading(t, p, ()))
    for step in post:
        hbs.append(reading(t + step, p + step, ((p, p + step),)))
        t, p = t + step, p + step

    exp_watched = watched_before + (min(p, duration) - min(seek_to, duration))
    for seq in (hbs, data.draw(with_duplicates(hbs))):
        s = run(seq, duration)
        assert s.completed is False
        assert s.progress < THRESHOLD
        assert s.watched_seconds == exp_watched
        assert s.position == min(p, duration)


# --------------------------------------------------------------------------------------------
# Property (4): continuous play to >= 80 % completes, to <= 75 % does not
# --------------------------------------------------------------------------------------------


@SLOW
@given(
    duration=st.integers(60, 1200),
    completes=st.booleans(),
    frac=st.floats(0, 1),
    with_played=st.booleans(),
    data=st.data(),
)
def test_property_continuous_play_completion_threshold(
    duration: int, completes: bool, frac: float, with_played: bool, data: st.DataObject
) -> None:
    if completes:
        lo, hi = math.ceil(0.8 * duration), duration + 30
    else:
        lo, hi = 0, math.floor(0.75 * duration)
    end = lo + round(frac * (hi - lo))
    hbs: list[Heartbeat] = [
        Heartbeat(
            received_at=T0,
            watch_time=0,
            client_ts=T0,
            session_id="s",
            played=() if with_played else None,
        )
    ]
    t = p = 0
    while p < end:
        step = min(data.draw(st.integers(5, 15)), end - p)
        elapsed = max(1, step + data.draw(st.integers(-2, 2)))
        t, p = t + elapsed, p + step
        hbs.append(
            Heartbeat(
                received_at=T0 + t,
                watch_time=p,
                client_ts=T0 + t,
                session_id="s",
                played=((p - step, p),) if with_played else None,
            )
        )
    s = run(hbs, duration)
    assert s.watched_seconds == min(end, duration)
    assert s.completed is completes
    assert (s.progress >= THRESHOLD) is completes


# --------------------------------------------------------------------------------------------
# Further properties over arbitrary heartbeats
# --------------------------------------------------------------------------------------------


@FAST
@given(
    st.lists(any_heartbeat(), max_size=20),
    st.lists(st.sampled_from([None, 100.0, 600.0]), min_size=20, max_size=20),
)
def test_property_progress_never_decreases_and_completion_is_sticky(
    hbs: list[Heartbeat], durations: list[float | None]
) -> None:
    s = WatchState()
    for hb, duration in zip(hbs, durations, strict=False):
        nxt = apply_heartbeat(s, hb, duration=duration, threshold=THRESHOLD)
        assert nxt.progress >= s.progress
        assert nxt.watched_seconds >= s.watched_seconds  # coverage only grows
        if s.completed:
            assert nxt.completed and nxt.completed_at == s.completed_at
        if nxt.completed and not s.completed:
            assert nxt.completed_at == hb.received_at
        s = nxt


@FAST
@given(st.lists(any_heartbeat(), min_size=1, max_size=20), st.data())
def test_property_duplicates_change_nothing(hbs: list[Heartbeat], data: st.DataObject) -> None:
    expected = run(hbs, 300)
    # a retry of any already-applied heartbeat, immediately or later, changes nothing
    delivered: list[Heartbeat] = []
    for i, hb in enumerate(hbs):
        delivered.append(hb)
        delivered.extend(data.draw(st.lists(st.sampled_from(hbs[: i + 1]), max_size=2)))
    assert run(delivered, 300) == expected
    assert apply_heartbeat(expected, hbs[-1], duration=300, threshold=THRESHOLD) == expected


# --------------------------------------------------------------------------------------------
# Serialization
# --------------------------------------------------------------------------------------------


@FAST
@given(
    received=finite,
    watch=finite,
    client_ts=st.none() | finite,
    session=st.none() | st.text(max_size=10),
    seq=st.none() | st.integers(-(2**40), 2**40),
    played_=st.none() | st.lists(st.tuples(finite, finite), max_size=4).map(tuple),
    complete=st.booleans(),
)
def test_heartbeat_json_round_trip(
    received: float,
    watch: float,
    client_ts: float | None,
    session: str | None,
    seq: int | None,
    played_: tuple[tuple[float, float], ...] | None,
    complete: bool,
) -> None:
    hb = Heartbeat(
        received_at=received,
        watch_time=watch,
        client_ts=client_ts,
        session_id=session,
        seq=seq,
        played=played_,
        complete=complete,
    )
    raw = hb.to_json()
    assert isinstance(raw, str)
    assert Heartbeat.from_json(raw) == hb
    assert Heartbeat.from_json(raw.encode()) == hb


@pytest.mark.parametrize(
    "state",
    [
        pytest.param(WatchState(), id="empty"),
        pytest.param(
            WatchState(
                position=12.5,
                position_key=(T0 + 3, -1, 12.5),
                covered=[[0.0, 10.0], [20.0, 30.5]],
                readings={"a": [[T0, 1, 0.0], [T0 + 10, 2, 10.0]], "": []},
                progress=81.25,
                completed=True,
                completed_at=T0 + 9,
                last_watched=T0 + 10,
            ),
            id="full",
        ),
        pytest.param(run(BASE), id="folded"),
        pytest.param(run([Heartbeat(received_at=T0)], None), id="non-video"),
    ],
)
def test_watch_state_json_round_trip(state: WatchState) -> None:
    raw = state.to_json()
    assert WatchState.from_json(raw) == state
    assert WatchState.from_json(raw.encode()) == state


@FAST
@given(
    st.lists(any_heartbeat(sessions=("a", "b", "c", "d", "e", None)), max_size=25),
    st.sampled_from([None, 50.0, 300.0]),
)
def test_property_watch_state_json_round_trip(hbs: list[Heartbeat], duration: float | None) -> None:
    s = run(hbs, duration)
    back = WatchState.from_json(s.to_json())
    assert back == s
    # and the restored state behaves the same
    nxt = Heartbeat(received_at=T0 + 3000, watch_time=5, client_ts=T0 + 3000, session_id="a")
    assert apply_heartbeat(back, nxt, duration=duration, threshold=THRESHOLD) == apply_heartbeat(
        s, nxt, duration=duration, threshold=THRESHOLD
    )


def test_coverage_is_capped_by_closing_the_smallest_gaps() -> None:
    from shared.domain.progress import MAX_INTERVALS

    # 300 one-second ranges 2 s apart, plus one 10 s gap: more than the cap allows.
    ranges = tuple((3.0 * i, 3.0 * i + 1) for i in range(300))
    hb = Heartbeat(received_at=1.0, watch_time=0.0, played=ranges)
    state = fold(None, [hb], duration=2000.0, threshold=80.0)
    assert len(state.covered) == MAX_INTERVALS
    # 300 intervals -> 256: 44 gaps of 2 s closed, all others kept.
    assert state.watched_seconds == 300.0 + 44 * 2.0
    assert state.covered[0] == [0.0, 3.0 * 44 + 1]  # the first gaps (ties) closed first


def test_readings_are_stored_as_session_pairs_never_as_field_names() -> None:
    # A session id is the client's string: the stored shape holds it as a value only.
    state = WatchState(readings={"a\x00b": [[T0, 1, 5.0]], "$x.y": [[T0 + 1, -1, 7.0]]})
    assert state.to_dict()["readings"] == [
        ["a\x00b", [[T0, 1, 5.0]]],
        ["$x.y", [[T0 + 1, -1, 7.0]]],
    ]
    assert WatchState.from_dict(state.to_dict()) == state


def test_readings_of_the_shape_before_0_8_are_read() -> None:
    # What 0.7 stored: an object keyed by session id, here with a NUL that MongoDB refused.
    old = {"obs": [], "readings": {"a\x00b": [[T0, 1, 5.0]], "": [[T0 + 2, -1, 9.0]]}}
    state = WatchState.from_dict(old)
    assert state.readings == {"a\x00b": [[T0, 1, 5.0]], "": [[T0 + 2, -1, 9.0]]}
    assert state.to_dict()["readings"] == [["a\x00b", [[T0, 1, 5.0]]], ["", [[T0 + 2, -1, 9.0]]]]
    # ...and a position-only reading of the same session is still paired with the old one:
    # 5 s of video in 10 s of player time is play, so [5, 10] is inferred.
    after = apply_heartbeat(
        state, pos(10, 10.0, session="a\x00b", seq=2), duration=100.0, threshold=THRESHOLD
    )
    assert after.covered == [[5.0, 10.0]]
