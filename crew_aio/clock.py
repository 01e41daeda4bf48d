"""The only source of ``now`` in server code.

Time is a float of seconds since the epoch (UTC). The engine never reads the clock: the service
passes ``clock.now()`` into every engine call, so tests drive time with :class:`FakeClock`.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "FakeClock", "SystemClock"]


class Clock(Protocol):
    def now(self) -> float: ...


class SystemClock:
    """Wall-clock time, as the server uses in production."""

    def now(self) -> float:
        return time.time()


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        self._now += seconds
        return self._now

    def set(self, when: float) -> None:
        self._now = when
