"""The ingest tier's cache of the states it computed: what keeps a heartbeat's cost flat.

Every heartbeat's reply is the key's state as of that heartbeat. Folding every heartbeat still
waiting for a flush into it would cost O(backlog) (while the worker tier is down, hundreds per
key). Instead each web process remembers, per key, the state it last computed and how far into
the key's pending list it reaches (a `CachedView`: the hash's epoch and version, and a count);
Redis, inside the same atomic step as the append, answers a caller whose view still holds with
only the heartbeats after it. A caller without a current view (another process, a restart, an
eviction) gets the key's preview (a state some process folded from the hot state and the first
pending heartbeats, offered every `PREVIEW_EVERY` heartbeats with a later request, in the same
round trip) and the heartbeats after it. Either way a reply folds a bounded number of heartbeats.

The cache is only a cache: the workers fold the hot state and the pending list themselves, and
folding a heartbeat twice changes nothing, so a cached state that went ahead of its count (two
requests of one key in flight) is harmless.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from shared.domain.progress import WatchState
from shared.storage.hot_store import CachedView, HotView, Proposal
from shared.storage.keys import ProgressKey

CAPACITY = 20_000  # keys; a few KB each at most
PREVIEW_EVERY = 16  # heartbeats between two previews offered to Redis


@dataclass(slots=True)
class CachedState:
    view: CachedView
    state: WatchState  # owned by the cache: folded in place
    preview_folded: int  # how far the key's preview in Redis reached, as last seen


class StateCache:
    """An LRU map from key to the state this process last computed for it."""

    def __init__(self, capacity: int = CAPACITY, preview_every: int = PREVIEW_EVERY) -> None:
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
        """Remember `state`, which holds `view`'s base and every heartbeat of its tail."""
        self._entries[key] = CachedState(view.cached_view(), state, view.preview_folded)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def forget(self, key: ProgressKey) -> None:
        self._entries.pop(key, None)

    def proposal(self, entry: CachedState | None) -> Proposal | None:
        """The cached state as the key's next preview, when Redis' preview lags by enough."""
        if entry is None or entry.view.folded - max(entry.preview_folded, 0) < self.preview_every:
            return None
        return Proposal(entry.view, entry.state.to_json())
