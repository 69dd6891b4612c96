"""Read-your-writes: every reply sees every accepted heartbeat, at a cost that does not grow
with the backlog. The protocol is here whole but for its Lua half, `lua/view.lua` (prepended to
ingest.lua and read.lua, which answer with a `HotView`).

Every heartbeat's reply is the key's state as of that heartbeat. Folding every heartbeat still
waiting for a flush into it would cost O(backlog) (while the worker tier is down, hundreds per
key). Instead each web process remembers, per key, the state it last computed and how far into
the key's pending list it reaches (a `CachedState`: the hash's epoch and version, and a count);
Redis, inside the same atomic step as the append, answers a caller whose view still holds with
only the heartbeats after it. A caller without a current view (another process, a restart, an
eviction) gets the key's preview (a state some process folded from the hot state and the first
pending heartbeats, offered every `PREVIEW_EVERY` heartbeats with a later request, in the same
round trip) and the heartbeats after it, else the hot state and the pending heartbeats. A key
with neither (expired from Redis) folds onto the state MongoDB holds. Either way a reply folds
a bounded number of heartbeats (`HotView.base` chooses what onto).

The cache is only a cache: the workers fold the hot state and the pending list themselves, and
folding a heartbeat twice changes nothing, so a cached state that went ahead of its count (two
requests of one key in flight) is harmless.
"""

from __future__ import annotations

import marshal
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import Any, Literal, cast

from shared.domain.progress import Heartbeat, WatchState
from shared.storage.keys import ProgressKey
from shared.storage.scripts import as_text

Mode = Literal["cache", "preview", "state"]  # what a view's heartbeats follow (view.lua)
Status = Literal[
    "ok", "enrollment_unknown", "not_enrolled", "buffer_full", "key_full", "rate_limited"
]

PREVIEW_EVERY = 16  # heartbeats between two previews offered to Redis


@dataclass(slots=True)
class CachedState:
    """What a process folded of a key: `state` holds the key's hot state of version `version`
    (the hash's `n` as text, '' when none) in the hash of epoch `epoch`, and its first `folded`
    pending heartbeats, the last of which has the SHA-1 `mark` ('' when none). Redis answers a
    caller holding a current one with only the heartbeats after it, and may keep its state as
    the key's preview."""

    epoch: str
    version: str
    folded: int
    mark: str
    # The state's fields as marshal's bytes: one object the garbage collector never scans. A
    # `WatchState` is a dozen containers, each fold makes new ones, and tens of thousands of
    # cached keys kept them young until their next heartbeat: the collector's passes grew to
    # 25-190 ms at 7,500-17,000 watchers, every request in flight waiting them out
    # (docs/performance.md). marshal, not JSON: a third of the time to freeze and thaw, and
    # the bytes never leave this process.
    frozen: bytes
    preview_folded: int = -1  # how far the key's preview in Redis reached, as last seen

    @classmethod
    def of(
        cls,
        epoch: str,
        version: str,
        folded: int,
        mark: str,
        state: WatchState,
        preview_folded: int = -1,
    ) -> CachedState:
        return cls(epoch, version, folded, mark, _frozen(state), preview_folded)

    @property
    def state(self) -> WatchState:
        """A copy of the cached state, the caller's own (to fold in place)."""
        return WatchState(*marshal.loads(self.frozen))


_STATE_FIELDS = tuple(f.name for f in fields(WatchState))  # WatchState's positional order


def _frozen(state: WatchState) -> bytes:
    """The state's fields as marshal's bytes. marshal takes only the built-in types themselves:
    a state read back from MongoDB can hold bson's `Int64` (an int subclass; a reading's `seq`
    past 2**31), which goes through the state's JSON once, as every cached state did before."""
    try:
        return marshal.dumps(_values(state))
    except ValueError:  # "unmarshallable object"
        return marshal.dumps(_values(WatchState.from_json(state.to_json())))


def _values(state: WatchState) -> tuple[Any, ...]:
    return tuple(getattr(state, name) for name in _STATE_FIELDS)


def view_args(cached: CachedState | None) -> list[Any]:
    """A caller's view as the scripts take it (ARGV): epoch, n, folded, mark; '' when none."""
    if cached is None:
        return ["", "", 0, ""]  # an epoch is never '': no key's view
    return [cached.epoch, cached.version, cached.folded, cached.mark]


@dataclass(slots=True)
class HotView:
    """What one atomic step saw of a key (view.lua's reply): a base and the heartbeats after it.

    `mode`: 'cache' (the base is the caller's cached state), 'preview' (`base` is the preview a
    web process stored) or 'state' (`base` is the hot state, None when there is none).
    """

    mode: Mode
    epoch: str  # '' when the key has no hash
    version: str
    preview_folded: int  # how far the key's preview reaches (-1: none for this version)
    stored: bool  # MongoDB holds a state for the key
    base: WatchState | None
    start: int  # the pending list's index of the first heartbeat in `tail`
    mark: str  # SHA-1 of the list's last heartbeat, the last one `tail` reaches
    tail: list[Heartbeat]

    @classmethod
    def parse(cls, reply: list[Any]) -> HotView:
        """ingest.lua's reply after its status, or read.lua's whole reply."""
        raw_base = reply[5]
        return cls(
            mode=cast(Mode, as_text(reply[0])),
            epoch=as_text(reply[1]),
            version=as_text(reply[2]),
            preview_folded=int(reply[3]),
            stored=as_text(reply[4]) == "1",
            base=WatchState.from_json(raw_base) if raw_base else None,
            start=int(reply[6]),
            mark=as_text(reply[7]),
            tail=[Heartbeat.from_json(raw) for raw in reply[8:]],
        )

    @property
    def folded(self) -> int:
        """Pending heartbeats a state built from this view holds."""
        return self.start + len(self.tail)

    def needs_stored_state(self, cached: CachedState | None) -> bool:
        """Whether the base is the state MongoDB holds: the key has no hot state (it expired
        from Redis) and MongoDB holds one, and neither the cache nor a preview stands in."""
        if self.base is not None or (self.mode == "cache" and cached is not None):
            return False
        return self.version == "" and self.stored

    def base_state(self, known: WatchState | None, stored: WatchState | None) -> WatchState:
        """What the tail folds onto: the caller's copy of its cached state (`known`:
        `CachedState.state`), the preview or hot state the view carries, else `stored`
        (MongoDB's), else nothing yet."""
        if self.mode == "cache" and known is not None:
            return known
        return self.base or stored or WatchState()

    def cached(self, state: WatchState) -> CachedState:
        """`state`, folded from this view's base and its whole tail, with where it reaches."""
        return CachedState.of(
            self.epoch, self.version, self.folded, self.mark, state, self.preview_folded
        )


@dataclass(slots=True)
class IngestReply:
    """ingest.lua's answer: `view` when the append was asked for it (status 'ok' only);
    `retry_after_s` when rate limited."""

    status: Status
    view: HotView | None = None
    retry_after_s: int = 0

    @classmethod
    def parse(cls, reply: list[Any]) -> IngestReply:
        status = cast(Status, as_text(reply[0]))
        if status == "rate_limited":
            return cls(status, retry_after_s=max(1, int(reply[1])))
        if status != "ok" or len(reply) == 1:
            return cls(status)
        return cls(status, HotView.parse(reply[1:]))


class StateCache:
    """An LRU map from key to the state this process last computed for it."""

    def __init__(self, capacity: int, preview_every: int = PREVIEW_EVERY) -> None:
        """`capacity`: keys kept (the service's is STATE_CACHE_KEYS)."""
        self.capacity = capacity
        self.preview_every = preview_every
        self._entries: OrderedDict[ProgressKey, CachedState] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: ProgressKey) -> CachedState | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: ProgressKey, view: HotView, state: WatchState) -> None:
        """Remember `state`, which holds `view`'s base and every heartbeat of its tail. A key
        without a hash in Redis (never written) is not kept: no view of it can ever match. Nor
        is a view older than the one kept (a request that started before a worker's fold)."""
        if not view.epoch:
            return
        kept = self._entries.get(key)
        if kept is not None and kept.epoch == view.epoch and _newer(kept, view):
            return
        self._entries[key] = view.cached(state)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def offers_preview(self, entry: CachedState | None) -> bool:
        """Whether to offer the cached state as the key's next preview: Redis' lags by enough."""
        return entry is not None and entry.folded - max(entry.preview_folded, 0) >= (
            self.preview_every
        )


def _newer(kept: CachedState, view: HotView) -> bool:
    """Whether the kept state is past `view` (a higher version, or more of the same version)."""
    kept_n, view_n = int(kept.version or 0), int(view.version or 0)
    return kept_n > view_n or (kept_n == view_n and kept.folded > view.folded)
