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

# Keys. A state is a few KB as Python objects, tens of KB at its caps (256 intervals, 4 x 64
# readings, 64 chains): 10,000 keys stay well under 100 MB even for adversarial keys.
CAPACITY = 10_000
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
        """Remember `state`, which holds `view`'s base and every heartbeat of its tail. A key
        without a hash in Redis (never written) is not kept: no view of it can ever match. Nor
        is a view older than the one kept (a request that started before a worker's fold)."""
        if not view.epoch:
            return
        kept = self._entries.get(key)
        if kept is not None and kept.view.epoch == view.epoch and _newer(kept.view, view):
            return
        self._entries[key] = CachedState(view.cached_view(), state, view.preview_folded)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def proposal(self, entry: CachedState | None) -> Proposal | None:
        """The cached state as the key's next preview, when Redis' preview lags by enough."""
        if entry is None or entry.view.folded - max(entry.preview_folded, 0) < self.preview_every:
            return None
        return Proposal(entry.view, entry.state.to_json())


def _newer(kept: CachedView, view: HotView) -> bool:
    """Whether the kept view is past `view` (a higher version, or more of the same version)."""
    kept_n, view_n = int(kept.version or 0), int(view.version or 0)
    return kept_n > view_n or (kept_n == view_n and kept.folded > view.folded)
