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
    """The server's time: the wall clock read once, at start, then carried forward by the
    monotonic clock. A step of the host's clock while the server runs (an NTP correction, an
    operator's ``date -s``) moves no lease deadline or ``runAfter``: a step back would wedge a
    dead worker's task for as long as the step, a step forward would void every lease at once.

    :meth:`keep_after` carries time across restarts: the server stores how far its clock got,
    and a host clock found behind that at the next start is not believed (the server's clock
    never runs backwards; it counts on from the stored mark until the host catches up).
    """

    def __init__(self, start: float | None = None) -> None:
        self._mono = time.monotonic()
        self._base = time.time() if start is None else start

    def now(self) -> float:
        return self._base + (time.monotonic() - self._mono)

    def keep_after(self, mark: float) -> None:
        """Never read a time earlier than ``mark`` (the last time stored before a restart)."""
        behind = mark - self.now()
        if behind > 0:
            self._base += behind


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
