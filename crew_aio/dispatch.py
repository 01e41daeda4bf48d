"""Fair hand-out of ready tasks to everyone waiting on a channel.

Long-polling acquires and WebSocket subscribers wait in one FIFO queue per channel. When a
channel may have ready tasks, the dispatcher leases them one per turn: a waiter that still wants
more after its turn goes to the back of the queue (round robin), so no worker starves another.
A waiter collects what its turns gave it and is flushed once the channel runs dry. Leasing and
staging happen synchronously on the loop; delivery waits for the commit (the waiter's business).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["Dispatcher", "Waiter"]

Json = dict[str, Any]


class Waiter(Protocol):
    worker_id: str
    lease_seconds: float

    def wants(self) -> int:
        """How many tasks it takes now (0: skip it and drop it from the queue)."""
        ...

    def deliver(self, leases: list[Json]) -> None:
        """Take leases (staged, not yet committed: the waiter awaits the commit itself)."""
        ...

    def flush(self) -> None:
        """The channel ran dry or the waiter is satisfied: act on what it was given."""
        ...


Lease = Callable[[str, Waiter, int], list[Json]]


class Dispatcher:
    """``ready(channel)`` answers cheaply whether the channel may have a ready task (False: it
    surely has none, so a drain costs nothing: 200 idle sockets x 1,000 channels re-offered
    cost a dict lookup each, not a lease attempt)."""

    def __init__(self, lease: Lease, ready: Callable[[str], bool] | None = None) -> None:
        self._lease = lease
        self._ready = ready or (lambda channel: True)
        # per channel, the waiters in turn order: a dict is a queue with O(1) membership
        self._queues: dict[str, dict[Waiter, None]] = {}
        self._pending: dict[str, None] = {}
        self._running = False

    def waiting(self, channel: str) -> int:
        return len(self._queues.get(channel, ()))

    def add(self, channel: str, waiter: Waiter) -> None:
        """Queue ``waiter`` on ``channel`` (once) and hand out what is ready there."""
        self.enqueue(channel, waiter)
        self.run([channel])

    def enqueue(self, channel: str, waiter: Waiter) -> None:
        """Queue ``waiter`` on ``channel`` (once), to be served by the next run of it."""
        queue = self._queues.get(channel)
        if queue is None:
            self._queues[channel] = {waiter: None}
        elif waiter not in queue:
            queue[waiter] = None

    def remove(self, channel: str, waiter: Waiter) -> None:
        queue = self._queues.get(channel)
        if queue is not None and waiter in queue:
            del queue[waiter]
            if not queue:
                del self._queues[channel]

    def run(self, channels: Iterable[str]) -> None:
        """Hand out what is ready on ``channels``; re-entrant calls are folded into this one."""
        for channel in channels:
            if channel in self._queues:
                self._pending[channel] = None
        if self._running:
            return
        self._running = True
        try:
            while self._pending:
                channel = next(iter(self._pending))
                del self._pending[channel]
                self._drain(channel)
        finally:
            self._running = False

    def _drain(self, channel: str) -> None:
        queue = self._queues.get(channel)
        served: dict[Waiter, None] = {}
        while queue and self._ready(channel):
            waiter = next(iter(queue))
            if waiter.wants() <= 0:
                del queue[waiter]
                continue
            leases = self._lease(channel, waiter, 1)
            if not leases:
                break
            del queue[waiter]
            waiter.deliver(leases)
            served[waiter] = None
            if waiter.wants() > 0:
                queue[waiter] = None  # to the back: round robin
        if not queue:
            self._queues.pop(channel, None)
        for waiter in served:
            waiter.flush()
