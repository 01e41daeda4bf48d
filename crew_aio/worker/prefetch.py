"""Adaptive prefetch: lease ahead only while recent executes are short.

A prefetched task waits in the worker process for one of its ``concurrency`` slots. That is
free throughput for tasks of a millisecond, and a bad deal for tasks of a minute: another
process may sit idle while the task waits here. So the SDK sizes the prefetch from the recent
mean execute time: as many tasks as the slots get through in :data:`WAIT` seconds, at most
:data:`MAX`. Executes of 300 us or less give 128 at 2 slots; of 1 ms, 40; of 10 ms, 4; of 20 ms
or more, none, and then each task goes to whichever process is free first.

Why 128: each worker process has one message of releases in flight at a time, and a commit
per round trip; the tasks held are the pipeline's window. A bigger window feeds the server
bigger batches, which cost it less per task, but a DAG's join then waits for the server to work
through the releases queued ahead of its last parent's. On a 2-core machine, no-op tasks, 2
processes x concurrency 2 (``crew-aio bench --workloads w2,w1 --shapes ws``, 2026-12-05, one run
each): at most 32 ahead, 9,900 tasks/s and a 3.4 ms join lag; 128, 13,100-13,500/s and 4.8-8.1
ms; 512, 15,000/s and 17 ms; 1,000, 15,200/s and 35 ms. The 20 ms rule keeps the window short
in time whatever its size.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MAX", "WAIT", "Prefetch"]

WAIT: Final = 0.02  # seconds a prefetched task may wait for a slot, at the recent mean
MAX: Final = 128  # tasks leased ahead, at most
ALPHA: Final = 0.2  # weight of the newest execute in the running mean (5 tasks to adapt)


class Prefetch:
    """How many tasks to lease ahead: ``fixed`` when the worker sets one, else adaptive,
    starting at 0 (the first tasks might be long)."""

    def __init__(self, concurrency: int, fixed: int | None) -> None:
        self.concurrency = concurrency
        self.fixed = fixed
        self.value = 0 if fixed is None else fixed
        self.mean: float | None = None  # running mean of execute seconds

    @property
    def capacity(self) -> int:
        """What a subscription asks for: the slots plus the tasks leased ahead."""
        return self.concurrency + self.value

    def executed(self, seconds: float) -> bool:
        """Note one execute's duration; True when :attr:`value` changed enough to tell the
        server (it doubled or halved, or it left or reached 0)."""
        if self.fixed is not None:
            return False
        mean = self.mean = (
            seconds if self.mean is None else self.mean + ALPHA * (seconds - self.mean)
        )
        target = MAX if mean <= 0 else min(MAX, int(WAIT * self.concurrency / mean))
        now = self.value
        if target == now:
            return False
        if (now == 0) != (target == 0) or target >= 2 * now or 2 * target <= now:
            self.value = target
            return True
        return False
