"""Time, injected: the app and worker contexts take a `Clock`, so lease, due-time, expiry and
verified-watching logic is tested by moving a `MockedClock` instead of sleeping (the way
getsentry/arroyo's `utils/clock.py` does it)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def time(self) -> float:
        """Wall-clock time, epoch seconds (what is stored and compared across processes)."""
        ...

    def monotonic(self) -> float:
        """A clock that never goes back, for local timeouts and back-offs."""
        ...


class SystemClock:
    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()


class MockedClock:
    """A clock that moves only when told to."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self._now = start
        self._mono = 0.0

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._now += seconds
        self._mono += seconds
