"""Run one leased task: execute with heartbeats, then deliver the release, whatever it takes.

A :class:`Transport` carries ``release`` and ``extend``: the REST :class:`~crew_aio.client.Client`
is one, the WebSocket session another (falling back to REST when its socket is gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Protocol

import aiohttp
import orjson

from crew_aio.client import CrewClientError
from crew_aio.worker.api import Worker, outcome
from crew_aio.worker.backoff import Backoff, sleep_unless

__all__ = ["NETWORK_ERRORS", "Lease", "LeaseRunner", "Transport", "log"]

Json = dict[str, Any]
log: Final = logging.getLogger("crew_aio.worker")
# "no answer": worth retrying. An HTTP error status is an answer (CrewClientError).
NETWORK_ERRORS: Final = (aiohttp.ClientError, TimeoutError, OSError)
DEFAULT_LEASE: Final = 60.0
LONG_AFTER: Final = 0.02  # an execute still running this long is told to on_executed early
SHUTDOWN_ERROR: Final = {
    "type": "WorkerShutdown",
    "message": "worker stopped before the task ended",
}


class Transport(Protocol):
    async def release(self, task_id: str, body: Mapping[str, Any]) -> Json: ...

    async def extend(
        self, task_id: str, worker_id: str, lease_id: str | None, lease_seconds: float | None
    ) -> Json: ...


@dataclass(frozen=True, slots=True)
class Lease:
    """A task handed to ``worker_id``, with its parents (the acquire answer's shape)."""

    task: Json
    parents: list[Json]
    worker_id: str

    @property
    def task_id(self) -> str:
        return str(self.task["_id"])

    @property
    def lease_id(self) -> str | None:
        lease_id = self.task.get("leaseId")
        return None if lease_id is None else str(lease_id)


def seconds_left(task: Mapping[str, Any], now: float) -> float | None:
    """``leaseExpiresAt`` minus ``now``, or None when the task carries no (readable) expiry."""
    expires = task.get("leaseExpiresAt")
    if not isinstance(expires, str):
        return None
    try:
        return datetime.fromisoformat(expires).timestamp() - now
    except ValueError:
        return None


class LeaseRunner:
    """Runs leases for one :class:`Worker`; ``hard_stop`` cancels executes still running at the
    end of a graceful stop, ``give_up`` ends release retries when the process must exit."""

    def __init__(
        self,
        worker: Worker,
        transport: Transport,
        hard_stop: asyncio.Event,
        give_up: asyncio.Event,
    ) -> None:
        self.worker = worker
        self.transport = transport
        self.hard_stop = hard_stop
        self.give_up = give_up
        # ``concurrency`` executes at a time, pushed, prefetched and long-polled leases alike
        self.slots = asyncio.Semaphore(worker.concurrency)
        self._works: set[asyncio.Task[Any]] = set()  # tasks inside ``execute`` now
        self._stopped: set[asyncio.Task[Any]] = set()  # of those, cancelled by the hard stop
        self._stopper: asyncio.Task[None] | None = None
        # adaptive prefetch: gets each execute's seconds, and those of an execute still running
        # after LONG_AFTER (a long task is seen while it runs, not only once it ended)
        self.on_executed: Callable[[float], object] | None = None
        # leases waiting for a slot, oldest first, by (task id, lease id): a task handed back may
        # come back to this process under a new lease while its old run still waits
        self.waiting: dict[tuple[str, str | None], _Heartbeat] = {}

    async def run(self, lease: Lease) -> str:
        """Wait for a slot, execute, heartbeat meanwhile (from the start: a prefetched lease
        waiting for its slot is kept too), release; log one line; the outcome word."""
        started = time.monotonic()
        key = (lease.task_id, lease.lease_id)
        heartbeat = self.waiting[key] = _Heartbeat(self, lease)
        try:
            async with self.slots:
                if self.waiting.pop(key, None) is None:
                    return "handed back"  # see hand_back: another process runs it
                body, result = await self._timed(lease)
        finally:
            self.waiting.pop(key, None)
            await heartbeat.stop()
        delivered = await self.release(lease, body)
        if delivered != "released":
            result = f"{result}/{delivered}"
        if log.isEnabledFor(logging.INFO):
            seconds = round(time.monotonic() - started, 3)
            channel = self.worker.channel
            log.info(
                f"{channel} {lease.task_id} {result} in {seconds:.3f}s",
                extra={"event": "worker.task", "channel": channel, "task_id": lease.task_id,
                       "duration": seconds, "outcome": result},
            )  # fmt: skip
        return result

    async def _timed(self, lease: Lease) -> tuple[Json, str]:
        """:meth:`_execute`, its duration told to :attr:`on_executed` (also at LONG_AFTER if it
        still runs then)."""
        told = self.on_executed
        if told is None:
            return await self._execute(lease)
        began = time.monotonic()
        watch = asyncio.get_running_loop().call_later(
            LONG_AFTER, lambda: told(time.monotonic() - began)
        )
        try:
            return await self._execute(lease)
        finally:
            watch.cancel()
            told(time.monotonic() - began)

    def hand_back(self, keep: int) -> list[Lease]:
        """Give up the newest leases waiting for a slot beyond ``keep``: they will not run
        here (the caller returns them to the server). Their heartbeats stop now."""
        given: list[Lease] = []
        while len(self.waiting) > keep:
            _, heartbeat = self.waiting.popitem()
            heartbeat.cancel()
            given.append(heartbeat.lease)
        return given

    async def _execute(self, lease: Lease) -> tuple[Json, str]:
        """The outcome of ``execute``, run in the caller's task (no task of its own: that costs
        ~10 % of a short task's CPU). A hard stop cancels the caller while it runs here: that
        cancellation is taken back and the task released as a :data:`SHUTDOWN_ERROR`."""
        if self.hard_stop.is_set():
            return {"error": dict(SHUTDOWN_ERROR)}, "cancelled"
        if self._stopper is None:
            self._stopper = asyncio.create_task(self._cancel_on_hard_stop())
        me = asyncio.current_task()
        assert me is not None
        self._works.add(me)
        try:
            return await outcome(self.worker, lease.task.get("input"), lease.parents)
        except asyncio.CancelledError:
            if me not in self._stopped or me.cancelling() > 1:
                raise  # cancelled by someone else too: let it end the run
            me.uncancel()
            return {"error": dict(SHUTDOWN_ERROR)}, "cancelled"
        finally:
            self._works.discard(me)
            self._stopped.discard(me)

    async def _cancel_on_hard_stop(self) -> None:
        await self.hard_stop.wait()
        for run in list(self._works):
            self._stopped.add(run)
            run.cancel()

    async def release(self, lease: Lease, fields: Json) -> str:
        """Deliver the release until the server answers: ``released``, ``lost`` (409: the lease
        is gone), ``rejected`` (another 4xx) or ``abandoned`` (gave up at exit)."""
        body = {"workerId": lease.worker_id, "leaseId": lease.lease_id, **fields}
        backoff = Backoff()
        while True:
            verdict, body = await self._try_release(lease, body)
            if verdict == "again":
                continue
            if verdict != "retry":
                return verdict
            if self.give_up.is_set():
                return "abandoned"
            await sleep_unless(backoff.next(), self.give_up)

    async def _try_release(self, lease: Lease, body: Json) -> tuple[str, Json]:
        """One attempt: the verdict, and the body to send next (``again``: at once)."""
        extra = {"event": "worker.release_retry", "task_id": lease.task_id}
        try:
            await self.transport.release(lease.task_id, body)
            return "released", body
        except CrewClientError as exc:
            verdict = self._verdict(lease, exc, body)
            if verdict == "retry_as_error":
                return "again", _as_error(body, "InvalidRelease", exc.message, exc.field)
            return verdict, body
        except orjson.JSONEncodeError as exc:  # the output (or a child) is not JSON
            log.error(f"release of {lease.task_id}: {exc}: releasing as an error", extra=extra)
            return "again", _as_error(body, "JSONEncodeError", str(exc))
        except NETWORK_ERRORS as exc:
            log.warning(f"release of {lease.task_id} failed, retrying: {exc!r}", extra=extra)
            return "retry", body

    def _verdict(self, lease: Lease, exc: CrewClientError, body: Json) -> str:
        extra = {"event": "worker.release_refused", "task_id": lease.task_id, "status": exc.status}
        if exc.status >= 500:
            log.warning(f"release of {lease.task_id} got {exc}, retrying", extra=extra)
            return "retry"
        if exc.status == 400 and "error" not in body:
            log.error(f"release of {lease.task_id} refused ({exc}): releasing as an error",
                      extra=extra)  # fmt: skip
            return "retry_as_error"
        if exc.status == 409:
            log.warning(f"lease of {lease.task_id} is gone: {exc}", extra=extra)
            return "lost"
        log.error(f"release of {lease.task_id} refused: {exc}", extra=extra)
        return "rejected"

    def lease_length(self, lease: Lease) -> float:
        if self.worker.lease_seconds:
            return float(self.worker.lease_seconds)
        left = seconds_left(lease.task, time.time())
        return left if left is not None and left > 0 else DEFAULT_LEASE

    def heartbeat_period(self, lease: Lease) -> float:
        return max(self.lease_length(lease) / 3, 0.05)

    async def heartbeat(self, lease: Lease) -> None:
        """Extend the lease now, then every lease/3 while execute runs; stop once the lease is
        gone."""
        period = self.heartbeat_period(lease)
        backoff = Backoff(cap=period)
        delay = 0.0
        extra = {"event": "worker.heartbeat_failed", "task_id": lease.task_id}
        while True:
            await asyncio.sleep(delay)
            try:
                await self.transport.extend(
                    lease.task_id, lease.worker_id, lease.lease_id, self.worker.lease_seconds
                )
                delay = period
                backoff.reset()
            except CrewClientError as exc:
                if exc.status < 500:
                    log.warning(f"heartbeat of {lease.task_id} refused: {exc}", extra=extra)
                    return
                delay = backoff.next()
            except NETWORK_ERRORS as exc:
                log.warning(f"heartbeat of {lease.task_id} failed: {exc!r}", extra=extra)
                delay = backoff.next()


class _Heartbeat:
    """Heartbeats of one lease: a timer until the first one is due, so a short task (the usual
    case) costs no task of its own."""

    def __init__(self, runner: LeaseRunner, lease: Lease) -> None:
        self.task: asyncio.Task[None] | None = None
        self.lease = lease
        self._runner, self._lease = runner, lease
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(runner.heartbeat_period(lease), self._start)

    def _start(self) -> None:
        self.task = asyncio.create_task(
            self._runner.heartbeat(self._lease), name="crew_aio.heartbeat"
        )

    def cancel(self) -> None:
        self._timer.cancel()
        if self.task is not None:
            self.task.cancel()

    async def stop(self) -> None:
        self.cancel()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


def _as_error(body: Json, kind: str, message: str, field: str | None = None) -> Json:
    """The error release replacing a success release the server could not take."""
    error = {"type": kind, "message": message} | ({"field": field} if field else {})
    return {"workerId": body["workerId"], "leaseId": body["leaseId"], "error": error}
