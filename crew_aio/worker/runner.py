"""``run_workers``: start every worker's loops, stop gracefully on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Coroutine, Iterator, Sequence
from typing import Any, Final, TypeVar

from crew_aio.client import Client
from crew_aio.worker.api import Worker
from crew_aio.worker.exchange import ExchangeSession
from crew_aio.worker.lease import log
from crew_aio.worker.poll import WAIT_SECONDS, PollSlot
from crew_aio.worker.push import PushSession

__all__ = ["DEFAULT_URL", "run", "run_workers", "worker_id"]

DEFAULT_URL: Final = "http://127.0.0.1:3000"
RELEASE_GRACE: Final = 10.0
T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (a dependency on POSIX): a worker spends
    most of its time in the event loop, and uvloop roughly halves that time."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(main)
    return uvloop.run(main)


def worker_id(worker: Worker, n: int | str) -> str:
    """Unique per loop and readable in the dashboard: host, pid, channel, loop number."""
    return f"{socket.gethostname()}-{os.getpid()}-{worker.channel}-{n}"


def _check(workers: Sequence[Worker]) -> None:
    for worker in workers:
        if not worker.channel:
            raise ValueError(f"{type(worker).__name__} has no channel")
        if worker.concurrency < 1:
            raise ValueError(f"{type(worker).__name__}.concurrency must be >= 1")
        if worker.prefetch is not None and worker.prefetch < 0:
            raise ValueError(f"{type(worker).__name__}.prefetch must be >= 0")


@contextlib.contextmanager
def _signals(stop: asyncio.Event, hard_stop: asyncio.Event, enabled: bool) -> Iterator[None]:
    """SIGTERM/SIGINT: the first stops taking tasks, a second one cancels running ones."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal() -> None:
        (hard_stop if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT) if enabled else ():
        try:
            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
        except (RuntimeError, NotImplementedError, ValueError):  # not the main thread / Windows
            break
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _drain(tasks: list[asyncio.Task[None]], hard_stop: asyncio.Event,
                 give_up: asyncio.Event, grace: float) -> None:  # fmt: skip
    """Let running executes finish within ``grace`` s, then cancel them (they release as errors);
    release retries get :data:`RELEASE_GRACE` more seconds before the process gives up."""
    if not tasks:
        return
    _, pending = await asyncio.wait(tasks, timeout=grace)
    if pending:
        log.warning(f"{len(pending)} task(s) still running after {grace:g}s: cancelling",
                    extra={"event": "worker.shutdown_timeout"})  # fmt: skip
        hard_stop.set()
        _, pending = await asyncio.wait(pending, timeout=RELEASE_GRACE)
    if pending:
        give_up.set()
        _, pending = await asyncio.wait(pending, timeout=1.0)
    for task in pending:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _start(
    worker: Worker,
    client: Client,
    stop: asyncio.Event,
    hard_stop: asyncio.Event,
    give_up: asyncio.Event,
    poll: bool,
    wait_seconds: float,
) -> list[asyncio.Task[None]]:
    """One worker's loops: with ``poll``, its REST exchange session; else its socket, and
    ``concurrency`` long-poll slots that start parked and take over while the socket is down."""
    if poll:
        rest = ExchangeSession(worker, client, worker_id(worker, "rest"), stop, hard_stop,
                               give_up, wait_seconds)  # fmt: skip
        return [asyncio.create_task(rest.run(), name=f"crew_aio.{worker.channel}")]
    session = PushSession(worker, client, worker_id(worker, "ws"), stop, hard_stop, give_up)
    runner = session.runner
    slots = [
        PollSlot(runner, client, worker_id(worker, n), stop, wait_seconds)
        for n in range(worker.concurrency)
    ]
    coros = [slot.run() for slot in slots]
    session.slots = slots
    session.use_poll(False)
    coros.append(session.run())
    return [asyncio.create_task(coro, name=f"crew_aio.{worker.channel}") for coro in coros]


async def run_workers(
    workers: Sequence[Worker],
    url: str = DEFAULT_URL,
    token: str | None = None,
    poll: bool = False,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
    shutdown_timeout: float = 30.0,
    wait_seconds: float = WAIT_SECONDS,
) -> None:
    """Run ``workers`` until ``stop`` is set (or SIGTERM/SIGINT when ``handle_signals``).

    ``poll=True`` uses long-poll REST only; otherwise tasks are pushed over the WebSocket when
    the server offers it, with long-poll as the fallback while the socket is down.
    ``shutdown_timeout`` bounds how long running executes may take after a stop;
    ``wait_seconds`` is each long-poll's ``waitSeconds``.
    """
    _check(workers)
    stop = stop if stop is not None else asyncio.Event()
    hard_stop, give_up = asyncio.Event(), asyncio.Event()
    async with Client(url, token) as client:
        tasks: list[asyncio.Task[None]] = []
        for worker in workers:
            tasks += _start(worker, client, stop, hard_stop, give_up, poll, wait_seconds)
        log.info(f"worker started: {len(tasks)} loop(s) on {url}",
                 extra={"event": "worker.started", "url": url})  # fmt: skip
        with _signals(stop, hard_stop, handle_signals):
            await stop.wait()
            log.info("worker stopping", extra={"event": "worker.stopping"})
            await _drain(tasks, hard_stop, give_up, shutdown_timeout)
    log.info("worker stopped", extra={"event": "worker.stopped"})
