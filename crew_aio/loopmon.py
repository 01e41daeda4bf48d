"""Event-loop lag: how late a timer wakes up, the number that says whether the loop is healthy.

A task sleeps ``interval`` seconds again and again and records how much later than asked it woke
(the lag: time the loop spent on something else — a blocking call, a long callback, a GC pause).
It keeps the last ``window`` samples; :meth:`LoopMonitor.snapshot` gives p50/p99/max over them
in milliseconds (``GET /healthz`` shows it), and a lag above ``warn_ms`` logs one WARNING naming
the stall. Monotonic loop time only: no wall clock, no I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections import deque
from typing import Any

from aiohttp import web

__all__ = ["LOOP_MONITOR", "LoopMonitor"]

log = logging.getLogger("crew_aio.loop")


class LoopMonitor:
    """Sample the running loop's lag every ``interval`` seconds; start/stop with the app."""

    def __init__(self, interval: float = 0.05, window: int = 1200, warn_ms: float = 100.0) -> None:
        if interval <= 0 or window < 1:
            raise ValueError("interval must be > 0 and window >= 1")
        self.interval = interval
        self.warn_ms = warn_ms
        self.samples: deque[float] = deque(maxlen=window)  # lag of each wake-up, in ms
        self.stalls = 0  # wake-ups later than warn_ms since start
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="crew_aio.loopmon")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def record(self, lag_ms: float) -> None:
        """One sample (the task calls this; tests may too)."""
        lag_ms = max(0.0, lag_ms)
        self.samples.append(lag_ms)
        if lag_ms > self.warn_ms:
            self.stalls += 1
            log.warning(
                f"event loop stalled for {lag_ms:.0f} ms (a blocking call or a long callback)",
                extra={"event": "loop.stall", "lag_ms": round(lag_ms, 1)},
            )

    def snapshot(self) -> dict[str, Any]:
        """``{"p50Ms", "p99Ms", "maxMs", "samples", "windowSeconds", "stalls"}``."""
        ordered = sorted(self.samples)
        return {
            "p50Ms": round(_percentile(ordered, 0.50), 2),
            "p99Ms": round(_percentile(ordered, 0.99), 2),
            "maxMs": round(ordered[-1], 2) if ordered else 0.0,
            "samples": len(ordered),
            "windowSeconds": round(len(ordered) * self.interval, 1),
            "stalls": self.stalls,
        }

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            asked = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self.record((loop.time() - asked) * 1000.0)


def _percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list (0.0 when empty)."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


LOOP_MONITOR = web.AppKey("loop_monitor", LoopMonitor)
