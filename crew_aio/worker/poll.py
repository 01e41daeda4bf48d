"""Long-poll mode: each slot loops acquire (``waitSeconds``) → execute → release over REST."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Final, TypeVar

from crew_aio.client import Client
from crew_aio.worker.backoff import Backoff
from crew_aio.worker.lease import Lease, LeaseRunner, log

__all__ = ["PollSlot", "guarded", "until_set"]

T = TypeVar("T")
WAIT_SECONDS: Final = 30.0


async def until_set(awaitable: Awaitable[T], event: asyncio.Event) -> tuple[bool, T | None]:
    """Await ``awaitable`` unless ``event`` gets set first (then it is cancelled):
    ``(True, result)`` when it finished, ``(False, None)`` when the event won."""
    work = asyncio.ensure_future(awaitable)
    waiter = asyncio.create_task(event.wait())
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not work.done():
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
    if work.cancelled() or not work.done():
        return False, None
    return True, work.result()


async def guarded(runner: LeaseRunner, lease: Lease) -> None:
    """Run a lease; a bug in the SDK is logged, and the loop that met it lives on."""
    try:
        await runner.run(lease)
    except Exception:
        log.exception(f"running {lease.task_id} failed", extra={"event": "worker.bug"})


class PollSlot:
    """One of a worker's ``concurrency`` loops. Clearing ``active`` parks the slot between
    tasks: push mode does so while its socket is up, and sets it again to fall back."""

    def __init__(
        self,
        runner: LeaseRunner,
        client: Client,
        worker_id: str,
        stop: asyncio.Event,
        wait_seconds: float = WAIT_SECONDS,
    ) -> None:
        self.runner = runner
        self.client = client
        self.worker_id = worker_id
        self.stop = stop
        self.wait_seconds = wait_seconds
        self.active = asyncio.Event()
        self.active.set()
        self._backoff = Backoff()

    async def run(self) -> None:
        while not self.stop.is_set():
            ready, _ = await until_set(self.active.wait(), self.stop)
            if not ready:
                return
            got, lease = await until_set(self._acquire(), self.stop)
            if got and lease is not None:
                await guarded(self.runner, lease)

    async def _acquire(self) -> Lease | None:
        """One acquire; None when nothing came (or after a backoff on failure: an HTTP error,
        no answer, or an answer that is not the expected JSON)."""
        channel = self.runner.worker.channel
        try:
            answer = await self.client.acquire(
                channel,
                self.worker_id,
                wait_seconds=self.wait_seconds,
                lease_seconds=self.runner.worker.lease_seconds,
            )
            task, parents = answer.get("task"), list(answer.get("parents") or [])
        except Exception as exc:  # any failure: keep the loop alive, back off, try again
            delay = self._backoff.next()
            log.warning(f"acquire on {channel} failed ({exc!r}), retrying in {delay:.2f}s",
                        extra={"event": "worker.acquire_failed", "channel": channel})  # fmt: skip
            await asyncio.sleep(delay)
            return None
        self._backoff.reset()
        return Lease(task, parents, self.worker_id) if task else None
