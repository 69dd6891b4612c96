"""Progress arithmetic: resume position, watched coverage, completion. Pure, no I/O.

The rules are API.md's "Progress semantics":
- the resume position is the latest reading by the player's clock (client_ts, else the server
  receive time; then seq), so a student who rewinds resumes where they rewound to;
- watched seconds are the union of played ranges; a heartbeat with `played` is taken at its word,
  one without it gets a range inferred from its time-neighbours in the same session when the
  position advanced by at most 2 x elapsed + 2 s (anything else is a seek);
- verified watching: the watched seconds credited are at most
  `max_rate x observed + slack`, where `observed` is the server time over which heartbeats of
  this key were received (chains of receipts no further than `gap_s` apart; parallel sessions
  share them; the player's clock is never used), so no client can claim more than it could
  have played while it kept sending (`Verification`; `max_rate = 0` trusts the client);
- the percentage (of the credited seconds) never decreases and completion, once reached, is
  sticky.

`apply_heartbeat` is idempotent (a duplicate changes nothing) and, for `played` ranges and
continuous play, independent of arrival order: the state is a join of its heartbeats. The claimed
coverage and the observed receipts are each joins, and credited = min(claimed, budget), so
verification keeps both properties at O(1) per heartbeat.

Verified watching is also bounded per student (API.md, "Verified watching (per student)"): ten
tabs on ten videos must earn what one player at the top rate could. That budget is shared by
all of a student's keys, so it cannot be a join of one key's heartbeats: which key gets a second
of it depends on the order of all of them. The order is decided once, by the ingest script,
which keeps the student's budget (`StudentLedger` is its arithmetic) and spends it atomically
as heartbeats arrive; each heartbeat is stamped with its key's cumulative grant
(`Heartbeat.grant`: the hot hash's epoch and the seconds granted to the key in it). A state's
grant is the sum over epochs of the highest stamp seen in each: a join again, so the fold stays
idempotent and order-independent at O(1) per heartbeat, whoever folds it (web reply, worker,
rebuild), and the sum of all keys' grants can never pass what the ledger gave out.
To bound a state's size, position-only readings are kept for the last MAX_READINGS_PER_SESSION
readings of the last MAX_SESSIONS sessions: a reading later than that is paired with the oldest
one kept, and a reading of a session already forgotten infers nothing. Players that send
`played` (the project's tracker does) are not affected.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic_core import from_json, to_json

Interval = tuple[float, float]

INFER_RATE = 2.0  # a position may advance at most this many seconds per elapsed second...
INFER_SLACK_S = 2.0  # ...plus this slack, to count as played rather than a seek
MAX_READINGS_PER_SESSION = 64  # position-only readings kept for late neighbours
MAX_SESSIONS = 4
# Coverage is kept to this many intervals (the smallest gaps are closed first), so a client
# sending thousands of tiny ranges cannot grow a state without bound.
MAX_INTERVALS = 256
MAX_CHAINS = 64  # observed receipt chains kept; older ones are banked as a sum
IDLE = ("pause", "seek")  # events of a player that is not playing
MAX_GRANT_EPOCHS = 16  # grant stamps of this many hot-hash epochs kept; older ones are banked
_DIGITS = 3  # millisecond precision keeps stored states small


@dataclass(frozen=True, slots=True)
class Verification:
    """The bound on credited watching (docs/verified-watching.md).

    `max_rate`: the fastest playback credited (0: the client is trusted, no bound);
    `slack_s`: seconds credited beyond the bound; `gap_s`: the longest silence between two
    receipts that still counts as watching time.
    """

    max_rate: float = 0.0
    slack_s: float = 0.0
    gap_s: float = 60.0

    @property
    def trusted(self) -> bool:
        return self.max_rate <= 0


TRUST_CLIENT = Verification()


def _r(x: float) -> float:
    return round(x, _DIGITS)


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """One reading from a player, as accepted by ingest (already validated)."""

    received_at: float  # server time, epoch seconds
    watch_time: float = 0.0
    client_ts: float | None = None  # player time of the reading, epoch seconds
    session_id: str | None = None
    seq: int | None = None
    played: tuple[Interval, ...] | None = None
    complete: bool = False  # a non-video material opened or downloaded
    playback_rate: float | None = None  # as the player reports it: shown, never trusted
    event: str | None = None  # player event that sent it (play, pause, seek, ended, exit)
    # The student budget granted to this key so far, stamped by the ingest script: (the hot
    # hash's epoch, cumulative seconds granted in that epoch). None: not metered (trusted).
    grant: tuple[str, float] | None = None

    @property
    def reading_time(self) -> float:
        return self.client_ts if self.client_ts is not None else self.received_at

    @property
    def order_key(self) -> tuple[float, int, float]:
        """Last-writer-wins order of readings; the position breaks ties deterministically."""
        return (self.reading_time, self.seq if self.seq is not None else -1, self.watch_time)

    def to_json(self) -> str:
        doc: dict[str, Any] = {"r": self.received_at, "w": self.watch_time}
        if self.client_ts is not None:
            doc["t"] = self.client_ts
        if self.session_id is not None:
            doc["s"] = self.session_id
        if self.seq is not None:
            doc["q"] = self.seq
        if self.played is not None:
            doc["p"] = [list(iv) for iv in self.played]
        if self.complete:
            doc["c"] = 1
        if self.playback_rate is not None:
            doc["pr"] = self.playback_rate
        if self.event is not None:
            doc["e"] = self.event
        if self.grant is not None:
            doc["g"] = list(self.grant)
        return to_json(doc).decode()  # pydantic-core's encoder: a sixth of json.dumps' time

    @classmethod
    def from_json(cls, raw: str | bytes) -> Heartbeat:
        doc = from_json(raw)  # pydantic-core's parser: a third of json.loads' time
        played = doc.get("p")
        grant = doc.get("g")
        return cls(
            received_at=doc["r"],
            watch_time=doc["w"],
            client_ts=doc.get("t"),
            session_id=doc.get("s"),
            seq=doc.get("q"),
            played=tuple((a, b) for a, b in played) if played is not None else None,
            complete=bool(doc.get("c")),
            playback_rate=doc.get("pr"),
            event=doc.get("e"),
            grant=(str(grant[0]), float(grant[1])) if grant is not None else None,
        )


@dataclass(slots=True)
class WatchState:
    """Everything known about one student's progress on one material."""

    position: float = 0.0
    position_key: tuple[float, int, float] | None = None
    covered: list[list[float]] = field(default_factory=list)  # sorted, disjoint
    # session id -> sorted [reading_time, seq, position] of position-only readings
    readings: dict[str, list[list[float]]] = field(default_factory=dict)
    progress: float = 0.0  # highest percentage ever reached
    completed: bool = False
    completed_at: float | None = None
    last_watched: float | None = None
    # Verified watching: chains of server receive times (sorted, more than gap_s apart), the
    # seconds of chains banked to keep the list short, the receive time at or before which
    # receipts are no longer counted (the banked horizon), and the credit a state carried
    # before receipts were recorded (trusted as it was).
    observed: list[list[float]] = field(default_factory=list)
    observed_banked: float = 0.0
    horizon: float | None = None
    legacy_credit: float = 0.0
    credited: float = 0.0  # watched seconds credited, as of the last fold
    # The student budget granted to this key: [epoch, highest cumulative stamp] per hot-hash
    # epoch (a list, never a document's field names), and the grants of older epochs banked.
    grants: list[list[Any]] = field(default_factory=list)
    grants_banked: float = 0.0
    playback_rate: float | None = None  # as last reported, for display only
    rate_key: tuple[float, int, float] | None = None

    @property
    def claimed_seconds(self) -> float:
        """The union of the ranges the player claims to have played."""
        return _r(sum((b - a for a, b in self.covered), 0.0))  # 0.0, not 0, when empty

    @property
    def watched_seconds(self) -> float:
        """The credited watched seconds: what every figure of the service is built on."""
        return self.credited

    @property
    def unverified_seconds(self) -> float:
        """Claimed but not credited: more than the player could have played while sending."""
        return _r(max(0.0, self.claimed_seconds - self.credited))

    @property
    def observed_seconds(self) -> float:
        return _r(self.observed_banked + sum((b - a for a, b in self.observed), 0.0))

    @property
    def granted_seconds(self) -> float:
        """The student budget granted to this key (see the module doc)."""
        return _r(self.grants_banked + sum((g for _, g in self.grants), 0.0))

    def to_dict(self) -> dict[str, Any]:
        return {
            "position": self.position,
            "position_key": list(self.position_key) if self.position_key else None,
            "covered": self.covered,
            # [session id, readings] pairs: a session id is the client's string, never a key
            "readings": [[session, rs] for session, rs in self.readings.items()],
            "progress": self.progress,
            "completed": self.completed,
            "completed_at": self.completed_at,
            "last_watched": self.last_watched,
            "obs": self.observed,
            "obs_banked": self.observed_banked,
            "horizon": self.horizon,
            "legacy": self.legacy_credit,
            "credited": self.credited,
            "grants": self.grants,
            "grants_banked": self.grants_banked,
            "rate": self.playback_rate,
            "rate_key": list(self.rate_key) if self.rate_key else None,
        }

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> WatchState:
        key = doc.get("position_key")
        covered = [list(iv) for iv in doc.get("covered", [])]
        if "obs" not in doc:  # written before verified watching: it keeps the credit it had
            legacy = _r(sum((b - a for a, b in covered), 0.0))
            doc = {**doc, "obs": [], "legacy": legacy, "credited": legacy}
        if "grants" not in doc:  # credited before the per-student budget: kept as it was
            doc = {**doc, "legacy": max(doc.get("legacy", 0.0), doc.get("credited", 0.0))}
        rate_key = doc.get("rate_key")
        return cls(
            position=doc.get("position", 0.0),
            position_key=(key[0], int(key[1]), key[2]) if key else None,
            covered=covered,
            readings=_readings(doc.get("readings", [])),
            progress=doc.get("progress", 0.0),
            completed=bool(doc.get("completed", False)),
            completed_at=doc.get("completed_at"),
            last_watched=doc.get("last_watched"),
            observed=[list(c) for c in doc["obs"]],
            observed_banked=doc.get("obs_banked", 0.0),
            horizon=doc.get("horizon"),
            legacy_credit=doc.get("legacy", 0.0),
            credited=doc.get("credited", 0.0),
            grants=[[str(e), float(g)] for e, g in doc.get("grants", [])],
            grants_banked=doc.get("grants_banked", 0.0),
            playback_rate=doc.get("rate"),
            rate_key=(rate_key[0], int(rate_key[1]), rate_key[2]) if rate_key else None,
        )

    def to_json(self) -> str:
        return to_json(self.to_dict()).decode()

    @classmethod
    def from_json(cls, raw: str | bytes) -> WatchState:
        return cls.from_dict(from_json(raw))


def _readings(stored: Any) -> dict[str, list[list[float]]]:
    """The readings of a stored state: [session, readings] pairs, or the session-keyed object
    that states written before 0.8.0 hold."""
    pairs = stored.items() if isinstance(stored, dict) else stored
    return {session: [list(r) for r in rs] for session, rs in pairs}


def add_interval(covered: list[list[float]], start: float, end: float) -> list[list[float]]:
    """The union of sorted disjoint intervals with [start, end]; touching intervals merge."""
    return add_intervals(covered, [(start, end)])


def add_intervals(
    covered: list[list[float]], ranges: Iterable[tuple[float, float]]
) -> list[list[float]]:
    """The union of sorted disjoint intervals with every [start, end] of `ranges` (empty and
    reversed ones ignored), as sorted intervals, touching ones merged; `covered` is left as it
    is. One pass over `covered` for all of `ranges`: a heartbeat's 50 short ranges into 256
    intervals cost one sweep, not 50 (a hostile player's heartbeats cost 150 times an honest
    one's when each range rebuilt the list)."""
    new = [[a, b] for a, b in ranges if b > a]
    if not new:
        return covered
    new.sort()
    merged: list[list[float]] = []
    for a, b in sorted([*covered, *new]):  # two sorted runs: one merge for the sort
        if merged and a <= merged[-1][1]:
            if b > merged[-1][1]:
                merged[-1][1] = b
        else:
            merged.append([a, b])
    return merged


def close_smallest_gaps(covered: list[list[float]], limit: int) -> list[list[float]]:
    """Merge neighbours across the smallest gaps until at most `limit` intervals remain.

    Coverage only grows (by those gaps); ties are broken by position, so the result depends on
    the intervals alone.
    """
    gaps = sorted(range(len(covered) - 1), key=lambda i: (covered[i + 1][0] - covered[i][1], i))
    closing = set(gaps[: len(covered) - limit])
    merged = [list(covered[0])]
    for i in range(1, len(covered)):
        if i - 1 in closing:
            merged[-1][1] = covered[i][1]
        else:
            merged.append(list(covered[i]))
    return merged


def _clamp(x: float, duration: float) -> float:
    return _r(min(max(float(x), 0.0), duration))


def _inferred(earlier: list[float], later: list[float]) -> Interval | None:
    """The range played between two time-neighbour readings, or None for a seek or a pause."""
    elapsed = later[0] - earlier[0]
    advanced = later[2] - earlier[2]
    if 0 < advanced <= INFER_RATE * elapsed + INFER_SLACK_S:
        return (earlier[2], later[2])
    return None


def _record_reading(state: WatchState, hb: Heartbeat, position: float) -> list[Interval]:
    """Store a position-only reading; return the ranges inferred against its neighbours."""
    session = hb.session_id or ""
    readings = state.readings.setdefault(session, [])
    reading = [hb.reading_time, hb.seq if hb.seq is not None else -1, position]
    if reading in readings:
        return []
    if len(readings) >= MAX_READINGS_PER_SESSION and reading < readings[0]:
        # Older than the whole window: pair it with the oldest kept reading, don't keep it.
        iv = _inferred(reading, readings[0])
        return [iv] if iv else []
    insort(readings, reading)
    i = readings.index(reading)
    ranges = []
    if i > 0 and (iv := _inferred(readings[i - 1], reading)):
        ranges.append(iv)
    if i + 1 < len(readings) and (iv := _inferred(reading, readings[i + 1])):
        ranges.append(iv)
    del readings[:-MAX_READINGS_PER_SESSION]
    if len(state.readings) > MAX_SESSIONS:
        oldest = min(state.readings, key=lambda s: state.readings[s][-1][0])
        del state.readings[oldest]
    return ranges


def apply_heartbeat(
    state: WatchState,
    hb: Heartbeat,
    *,
    duration: float | None,
    threshold: float,
    verification: Verification = TRUST_CLIENT,
) -> WatchState:
    """A copy of `state` with one heartbeat folded in. Idempotent; never lowers progress.

    `duration` is the catalog's duration in seconds (None for a non-video material).
    """
    return fold(state, [hb], duration=duration, threshold=threshold, verification=verification)


def join_receipt(chains: list[list[float]], received_at: float, gap_s: float) -> None:
    """Add one server receive time to `chains` (sorted, disjoint, more than `gap_s` apart), in
    place: it extends the chain within `gap_s` of it, bridges two, or starts its own. A join:
    repeats and order do not change the result. Receipts arrive in order, so the search starts
    from the end."""
    r = _r(received_at)
    i = len(chains)
    while i > 0 and chains[i - 1][0] > r:
        i -= 1
    lo = hi = r
    j = i
    if i > 0 and r <= chains[i - 1][1] + gap_s:  # within reach of the chain before
        i -= 1
        lo, hi = chains[i][0], max(chains[i][1], r)
    if j < len(chains) and chains[j][0] - gap_s <= hi:  # and of the one after: bridge them
        hi = max(hi, chains[j][1])
        j += 1
    chains[i:j] = [[lo, hi]]


def _observe(state: WatchState, received_at: float, gap_s: float) -> None:
    if state.horizon is not None and received_at <= state.horizon:
        return  # older than the banked chains: already counted, or too old to count
    join_receipt(state.observed, received_at, gap_s)
    if len(state.observed) > MAX_CHAINS:
        a, b = state.observed.pop(0)
        state.observed_banked = _r(state.observed_banked + b - a)
        state.horizon = b + gap_s


def _join_grant(state: WatchState, grant: tuple[str, float]) -> None:
    """Keep the highest stamp of the grant's epoch (a join: repeats and order change nothing)."""
    epoch, granted = grant
    for entry in state.grants:
        if entry[0] == epoch:
            entry[1] = max(entry[1], granted)
            return
    state.grants.append([epoch, granted])
    if len(state.grants) > MAX_GRANT_EPOCHS:  # an epoch is a hot hash's life: rarely many
        state.grants_banked = _r(state.grants_banked + state.grants.pop(0)[1])


@dataclass(slots=True)
class StudentLedger:
    """One student's viewing budget, as the ingest script keeps it (`ingest.lua`; this is the
    same arithmetic, for the tests and the reasoning). Shared by all of the student's keys.

    Every receipt of the student's heartbeats extends the student's observed time when it comes
    within `gap_s` of the previous one, and the budget grows by `max_rate` x that time; a
    heartbeat then takes what its key needs (claimed seconds not yet granted), up to what is
    there. Unspent budget is capped at `cap_s(verification)`: one gap's worth at the top rate,
    so budget saved up while watching slowly cannot complete other videos in a burst.
    """

    last: float | None = None  # the latest receipt (server time)
    tokens: float = 0.0

    def grant(self, now: float, need: float, verification: Verification) -> float:
        """Spend up to `need` seconds at receipt time `now`; return the seconds granted."""
        if self.last is None:
            self.last, self.tokens = now, verification.slack_s
        elif now > self.last:
            if now - self.last <= verification.gap_s:
                earned = _floor_ms(verification.max_rate * (now - self.last))
                self.tokens = min(cap_s(verification), self.tokens + earned)
            self.last = now
        granted = _floor_ms(max(0.0, min(self.tokens, need)))
        self.tokens = _r(self.tokens - granted)
        return granted


def cap_s(verification: Verification) -> float:
    """The most unspent student budget kept: `max_rate x gap_s + slack_s`
    (docs/verified-watching.md)."""
    return verification.max_rate * verification.gap_s + verification.slack_s


def _floor_ms(x: float) -> float:
    return int(x * 1000 + 1e-6) / 1000


def budget_needed(
    state: WatchState | None, heartbeats: list[Heartbeat], duration: float | None
) -> float:
    """What these heartbeats ask of the student's budget: the claimed seconds they bring the key
    to, less what it was credited or granted already, as far as `state` (this process's latest
    state of the key, possibly behind) knows. A state that is behind may ask again for seconds
    another process's heartbeats were already granted (the excess stays with this key, within
    its own receipts' bound); one that asks too little asks again with a later heartbeat.
    O(intervals) per heartbeat, no copy of the state.

    Heartbeats of an idle player (a pause or a seek that played nothing) ask for nothing.
    Without a state (a process that has not seen the key yet, or the batch route's) it asks
    for what the heartbeats claim by themselves, the grants not taken off: the ingest script
    takes off the key's grants that the state had not seen (`IngestItem.seen`), all of them
    here. (It used to ask for a whole video, and idle heartbeats without one moved the
    student's budget into their keys, past the cap, to complete videos in one burst later.)
    """
    if duration is None or all(hb.played == () and hb.event in IDLE for hb in heartbeats):
        return 0.0
    # add_intervals returns a new list: the state is only read
    covered = state.covered if state is not None else []
    last = {s: rs[-1] for s, rs in state.readings.items() if rs} if state is not None else {}
    for hb in heartbeats:
        position = _clamp(hb.watch_time, duration)
        if hb.played is not None:
            ranges = [(_clamp(a, duration), _clamp(b, duration)) for a, b in hb.played]
        else:  # a position-only reading: what it infers against its session's latest one
            reading = [hb.reading_time, hb.seq if hb.seq is not None else -1, position]
            before = last.get(hb.session_id or "")
            iv = _inferred(before, reading) if before and before < reading else None
            ranges = [iv] if iv else []
            last[hb.session_id or ""] = reading
        covered = add_intervals(covered, ranges)
    claimed = sum((b - a for a, b in covered), 0.0)
    if state is None:
        return _r(claimed)
    return _r(max(0.0, claimed - state.legacy_credit - state.granted_seconds))


def grant_seen(epoch: str | None, state: WatchState | None) -> tuple[str, float]:
    """What of its key's grant `state` (a process's state of the key, of the hot hash's epoch
    `epoch`) has seen: that epoch and its stamp there (`IngestItem.seen`); ("", 0.0) for no
    state."""
    if epoch is None or state is None:
        return "", 0.0
    return epoch, next((float(g) for e, g in state.grants if e == epoch), 0.0)


def credit(state: WatchState, claimed: float, verification: Verification) -> float:
    """The watched seconds credited: what is claimed, up to the key's own budget (its receipts)
    and up to what the student's budget granted it."""
    if verification.trusted:
        return claimed
    own = verification.max_rate * state.observed_seconds + verification.slack_s
    granted = state.granted_seconds
    return _r(min(claimed, state.legacy_credit + min(own, granted)))


def _apply_in_place(
    state: WatchState,
    hb: Heartbeat,
    duration: float | None,
    threshold: float,
    verification: Verification,
) -> bool:
    """Fold one heartbeat in place; True when its claims went over the budget (they raised
    the unverified seconds)."""
    state.last_watched = max(state.last_watched or hb.received_at, hb.received_at)
    if hb.complete or duration is None:
        state.progress = 100.0
        _mark_complete(state, hb)
        return False
    unverified_before = state.unverified_seconds

    _observe(state, hb.received_at, verification.gap_s)
    if hb.grant is not None:
        _join_grant(state, hb.grant)
    position = _clamp(hb.watch_time, duration)
    if state.position_key is None or hb.order_key > state.position_key:
        state.position, state.position_key = position, hb.order_key
    if hb.playback_rate is not None and (state.rate_key is None or hb.order_key > state.rate_key):
        state.playback_rate, state.rate_key = hb.playback_rate, hb.order_key

    if hb.played is not None:
        ranges = [(_clamp(a, duration), _clamp(b, duration)) for a, b in hb.played]
    else:
        ranges = _record_reading(state, hb, position)
    state.covered = add_intervals(state.covered, ranges)
    if len(state.covered) > MAX_INTERVALS:
        state.covered = close_smallest_gaps(state.covered, MAX_INTERVALS)

    claimed = state.claimed_seconds
    # Credit never falls back (a stricter setting later does not take away what was credited).
    state.credited = max(state.credited, credit(state, claimed, verification))
    percentage = min(100.0, state.credited / duration * 100.0)
    state.progress = max(state.progress, _r(percentage))
    if percentage >= threshold:
        _mark_complete(state, hb)
    return _r(max(0.0, claimed - state.credited)) > unverified_before + 0.001


def _mark_complete(state: WatchState, hb: Heartbeat) -> None:
    if not state.completed:
        state.completed = True
        state.completed_at = hb.received_at


def fold(
    state: WatchState | None,
    heartbeats: list[Heartbeat],
    *,
    duration: float | None,
    threshold: float,
    verification: Verification = TRUST_CLIENT,
) -> WatchState:
    """A new state with `heartbeats` folded in; `state` itself is left unchanged.

    Any arrival order gives the same result for `played` ranges and continuous play (module doc).
    """
    current = WatchState.from_dict(state.to_dict()) if state else WatchState()
    fold_into(
        current, heartbeats, duration=duration, threshold=threshold, verification=verification
    )
    return current


def fold_into(
    state: WatchState,
    heartbeats: list[Heartbeat],
    *,
    duration: float | None,
    threshold: float,
    verification: Verification = TRUST_CLIENT,
) -> int:
    """`fold`, in place, for a state nobody else holds. Returns how many of the heartbeats
    claimed more than the budget allowed (for the operators' counter)."""
    return sum(_apply_in_place(state, hb, duration, threshold, verification) for hb in heartbeats)
