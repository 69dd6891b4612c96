"""The registered platforms' `frame_origins`, which join FRAME_ANCESTORS in the pages'
`frame-ancestors` (API.md, Registration): where an LMS frames the tool.

The web edge reads them on every HTML answer, so they are held in memory: read from MongoDB at
start and again at most every REFRESH_S (in the background, when a page asks for stale ones),
and a platform's own are added at once by each of its logins, so the first launch of a new
registration is framed at once in the process that serves it. A removed registration's
origins leave within REFRESH_S.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Iterable

from shared.clock import Clock
from shared.errors import Unavailable
from shared.lti.registry import PlatformRegistry

log = logging.getLogger(__name__)

REFRESH_S = 30.0


class FrameOrigins:
    """Every registered platform's frame origins, in registration order; lives on one loop."""

    def __init__(self, registry: PlatformRegistry, clock: Clock) -> None:
        self.registry, self.clock = registry, clock
        self._origins: tuple[str, ...] = ()
        self._read_at = -math.inf
        self._refreshing: asyncio.Task[None] | None = None

    def current(self) -> tuple[str, ...]:
        """The origins held; starts a refresh in the background when they are stale."""
        stale = self.clock.monotonic() - self._read_at >= REFRESH_S
        if stale and (self._refreshing is None or self._refreshing.done()):
            self._read_at = self.clock.monotonic()  # one refresh per period, even a failed one
            self._refreshing = asyncio.get_running_loop().create_task(self.refresh())
        return self._origins

    async def refresh(self) -> None:
        """Read every registration's origins now (MongoDB down: the held ones stay)."""
        try:
            platforms = await asyncio.to_thread(self.registry.all)
        except Unavailable:
            log.warning("could not read the LTI platforms' frame origins; keeping the held ones")
            return
        self._read_at = self.clock.monotonic()
        self._origins = tuple(dict.fromkeys(o for p in platforms for o in p.frame_origins))

    def add(self, origins: Iterable[str]) -> None:
        """A registered platform's origins, known now (its login is being answered)."""
        self._origins = tuple(dict.fromkeys([*self._origins, *origins]))

    async def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
