"""REST mode (``poll=True``): releases and acquires share requests.

Each worker gets one :class:`ExchangeSession` on ``POST /channel/:c/exchange``:

- a **poller** long-polls for as many tasks as the worker has room for (``concurrency`` plus
  the adaptive prefetch, minus what it holds), whenever it has room;
- a **flusher** sends the releases queued since its last request, one request in flight at a
  time (Nagle's rule, clocked by the server's answers), each carrying an acquire for the room
  those releases make. With a backlog, a task costs a share of one request and one commit.

Heartbeats go to ``/extend``. Leases the adaptive prefetch gives back ride along as
``returns``. A server without the exchange route (Crew itself: 404) gets Crew's protocol
instead: ``concurrency`` loops of acquire, execute, release.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from crew_aio.client import Client, CrewClientError, error_from
from crew_aio.worker.api import Worker
from crew_aio.worker.backoff import Backoff
from crew_aio.worker.lease import Lease, LeaseRunner, log
from crew_aio.worker.poll import PollSlot, until_set
from crew_aio.worker.prefetch import Prefetch

__all__ = ["ExchangeSession"]

Json = dict[str, Any]
BATCH: Final = 500  # releases (or returns) per request; the server takes up to 1,000
# children the releases of one request create together, at most (the server refuses a request
# over its create limit, 100,000 by default); a release with more goes alone
CHILDREN: Final = 10_000
MOST: Final = 1000  # tasks one request may ask for
NO_EXCHANGE: Final = frozenset({404, 405, 501})


class ExchangeSession:
    """A worker's REST session; also the :class:`~crew_aio.worker.lease.Transport` of its
    leases."""

    def __init__(self, worker: Worker, client: Client, worker_id: str, stop: asyncio.Event,
                 hard_stop: asyncio.Event, give_up: asyncio.Event,
                 wait_seconds: float) -> None:  # fmt: skip
        self.worker = worker
        self.client = client
        self.worker_id = worker_id
        self.stop = stop
        self.wait_seconds = wait_seconds
        self.runner = LeaseRunner(worker, self, hard_stop, give_up)
        self.runner.on_executed = self._executed
        self.prefetch = Prefetch(worker.concurrency, worker.prefetch)
        self.held = 0  # leases taken and not yet released or handed back
        self.asked = 0  # tasks asked for by requests in flight
        self.running: set[asyncio.Task[Any]] = set()
        self.crew_only = False  # the server has no exchange route: Crew's protocol
        self._outbox: list[tuple[str, Json, asyncio.Future[Json]]] = []
        self._returns: list[Lease] = []
        self._flushing = False
        self._room = asyncio.Event()  # set whenever the room may have grown
        self._backoff = Backoff()

    def room(self) -> int:
        return self.prefetch.capacity - self.held - self.asked

    # Transport ------------------------------------------------------------------------------

    async def release(self, task_id: str, body: Mapping[str, Any]) -> Json:
        if self.crew_only:
            return await self.client.release(task_id, body)
        future: asyncio.Future[Json] = asyncio.get_running_loop().create_future()
        self._outbox.append((task_id, dict(body), future))
        self._kick()
        return await future

    async def extend(
        self, task_id: str, worker_id: str, lease_id: str | None, lease_seconds: float | None
    ) -> Json:
        return await self.client.extend(task_id, worker_id, lease_id, lease_seconds)

    # the flusher ----------------------------------------------------------------------------

    def _kick(self) -> None:
        if not self._flushing and (self._outbox or self._returns):
            self._flushing = True
            self._spawn(self._flush())

    async def _flush(self) -> None:
        try:
            while self._outbox or self._returns:
                cut = _cut(self._outbox)
                batch, self._outbox = self._outbox[:cut], self._outbox[cut:]
                returns, self._returns = self._returns[:BATCH], self._returns[BATCH:]
                # ask for the room these releases make, unless stopping
                ask = 0 if self.stop.is_set() else max(0, min(MOST, self.room() + len(batch)))
                await self._exchange(batch, returns, ask)
        finally:
            self._flushing = False
            self._kick()  # queued while the last answer was being read

    async def _exchange(
        self, batch: list[tuple[str, Json, asyncio.Future[Json]]], returns: list[Lease], ask: int
    ) -> None:
        self.asked += ask
        try:
            answer = await self.client.exchange(
                self.worker.channel,
                self.worker_id,
                releases=[{"taskId": task_id, **body} for task_id, body, _ in batch],
                returns=[_ref(lease) for lease in returns],
                count=ask,
                lease_seconds=self.worker.lease_seconds,
                brief=True,
            )
        except Exception as exc:  # the releases' runners retry (or give up) as for /release
            self._no_exchange(exc)
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            for lease in returns:  # unconfirmed: it may still be ours, so it runs here
                self._start(lease)
            return
        finally:
            self.asked -= ask
            self._room.set()
        released = answer.get("released") or []
        for k, (_, _, future) in enumerate(batch):
            entry = released[k] if k < len(released) else {"error": {"status": 502}}
            if future.done():
                continue
            if "error" in entry:
                future.set_exception(error_from(502, entry["error"]))
            else:
                future.set_result(entry.get("task") or {})
        confirmed = answer.get("returned") or []
        for k, lease in enumerate(returns):
            if k < len(confirmed) and "task" in confirmed[k]:
                self.held -= 1
            else:
                self._start(lease)
        self._take(answer.get("tasks") or [])

    def _no_exchange(self, exc: Exception) -> None:
        if isinstance(exc, CrewClientError) and exc.status in NO_EXCHANGE and not self.crew_only:
            log.warning(f"no exchange route ({exc.status}): Crew's acquire and release",
                        extra={"event": "worker.exchange_unsupported"})  # fmt: skip
            self.crew_only = True
            self._room.set()

    # leases -----------------------------------------------------------------------------------

    def _take(self, leases: list[Json]) -> None:
        for lease in leases:
            task = lease.get("task") if isinstance(lease, dict) else None
            if isinstance(task, dict):
                self.held += 1
                self._start(Lease(task, list(lease.get("parents") or []), self.worker_id))

    def _start(self, lease: Lease) -> None:
        self._spawn(self._run(lease))

    def _spawn(self, coro: Any) -> None:
        job = asyncio.create_task(coro, name="crew_aio.rest.task")
        self.running.add(job)
        job.add_done_callback(self.running.discard)

    async def _run(self, lease: Lease) -> None:
        outcome = ""
        try:
            outcome = await self.runner.run(lease)
        except Exception:
            log.exception(f"running {lease.task_id} failed", extra={"event": "worker.bug"})
        finally:
            if outcome != "handed back":  # a handed-back lease is counted off when confirmed
                self.held -= 1
                self._room.set()

    def _executed(self, seconds: float) -> None:
        """Adaptive prefetch: more room, or leases waiting here given back (see push.py)."""
        if not self.prefetch.executed(seconds):
            return
        self._room.set()
        given = self.runner.hand_back(self.prefetch.value)
        if given and not self.crew_only:
            self._returns += given
            self._kick()
        else:
            for lease in given:  # Crew has no hand-back: they run here after all
                self._start(lease)

    # the poller -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Long-poll for tasks while there is room, until stopped; then wait for the tasks
        still running and their releases."""
        try:
            while not self.stop.is_set() and not self.crew_only:
                room = self.room()
                if room <= 0:
                    self._room.clear()
                    if not (await until_set(self._room.wait(), self.stop))[0]:
                        break
                    continue
                await self._poll(min(room, MOST))
            if self.crew_only and not self.stop.is_set():
                await self._crew_loops()
        finally:
            while self.running:
                await asyncio.gather(*list(self.running), return_exceptions=True)

    async def _poll(self, ask: int) -> None:
        self.asked += ask
        try:
            done, answer = await until_set(
                self.client.exchange(self.worker.channel, self.worker_id, count=ask,
                                     wait_seconds=self.wait_seconds,
                                     lease_seconds=self.worker.lease_seconds),
                self.stop,
            )  # fmt: skip
        except Exception as exc:
            self._no_exchange(exc)
            if not self.crew_only:
                delay = self._backoff.next()
                log.warning(f"acquire on {self.worker.channel} failed ({exc!r}), retrying in "
                            f"{delay:.2f}s", extra={"event": "worker.acquire_failed"})  # fmt: skip
                await until_set(asyncio.sleep(delay), self.stop)
            return
        finally:
            self.asked -= ask
        if done and answer is not None:
            self._backoff.reset()
            self._take(answer.get("tasks") or [])

    async def _crew_loops(self) -> None:
        slots = [PollSlot(self.runner, self.client, f"{self.worker_id}-{n}", self.stop,
                          self.wait_seconds) for n in range(self.worker.concurrency)]  # fmt: skip
        await asyncio.gather(*(slot.run() for slot in slots))


def _ref(lease: Lease) -> Json:
    return {"taskId": lease.task_id} | ({"leaseId": lease.lease_id} if lease.lease_id else {})


def _cut(outbox: list[tuple[str, Json, asyncio.Future[Json]]]) -> int:
    """How many queued releases the next request carries: :data:`BATCH` at most, and no more
    than :data:`CHILDREN` children together unless the first alone has more."""
    children = 0
    for k, (_, body, _) in enumerate(outbox[:BATCH]):
        children += len(body.get("children") or ())
        if children > CHILDREN and k:
            return k
    return min(len(outbox), BATCH)
