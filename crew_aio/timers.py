"""One background task with a deadline: runAfter, lease expiry, expired-group cleanup.

It holds no task state: the engine's heaps say when the next deadline is; the timer sleeps until
then (or until a change brings an earlier one) and asks the service to let time pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math

from crew_aio.clock import Clock
from crew_aio.errors import StoreUnavailable
from crew_aio.model import Change
from crew_aio.service import Service

__all__ = ["Timers"]

log = logging.getLogger("crew_aio.timers")

MAX_SLEEP = 1.0  # re-read the clock at least this often (wall-clock jumps, fake clocks)
CLEANUP_EVERY = 3600.0


class Timers:
    def __init__(self, service: Service, clock: Clock, expire_groups_after: float | None) -> None:
        self.service = service
        self.clock = clock
        self.expire_groups_after = expire_groups_after
        self._wake = asyncio.Event()
        self._target = math.inf
        self._next_cleanup = clock.now()

    def on_change(self, change: Change) -> None:
        deadline = self.service.next_deadline()
        if deadline is not None and deadline < self._target:
            self._wake.set()

    def poke(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            now = self.clock.now()
            deadline = self.service.next_deadline()
            self._target = min(deadline if deadline is not None else math.inf, self._cleanup_at())
            if self._target > now:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(self._target - now, MAX_SLEEP))
                continue
            await self._step(now)

    def _cleanup_at(self) -> float:
        return math.inf if self.expire_groups_after is None else self._next_cleanup

    async def _step(self, now: float) -> None:
        try:
            await self.service.tick()
            if self.expire_groups_after is not None and now >= self._next_cleanup:
                self._next_cleanup = now + CLEANUP_EVERY
                await self.service.clean_expired_groups(self.expire_groups_after)
        except StoreUnavailable as exc:
            log.warning("timer step failed", extra={"event": "timers.store", "error": str(exc)})
            await asyncio.sleep(0.5)
        except Exception:  # a dead timer would wedge every delayed task and lease: never die
            log.exception("timer step failed", extra={"event": "timers.error"})
            await asyncio.sleep(0.5)
