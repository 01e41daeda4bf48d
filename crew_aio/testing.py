"""Test your workers against a real crew_aio server, in your test's own event loop.

:class:`CrewServer` serves the real application (REST and WebSocket) on a free port of 127.0.0.1,
with the in-memory store (nothing on disk) and a fake clock that moves only when the test moves
it, so a delayed task becomes ready, and a lease expires, exactly when the test says::

    from crew_aio.testing import CrewServer
    from crew_aio.worker import Worker


    class Double(Worker):
        channel = "double"

        async def execute(self, input, parents):
            return {"n": input["n"] * 2}


    async def test_double():  # pytest-asyncio or pytest-aiohttp runs it
        async with CrewServer() as server, server.client() as crew:
            group = await crew.create_group("g")
            task = {"name": "t", "channel": "double", "input": {"n": 21}}
            [created] = await crew.add_tasks(group["_id"], [task])
            async with server.workers(Double()):  # run_workers until the block ends
                await crew.wait(group["_id"], poll=0.05, limit=10)
            assert (await crew.get_task(created["_id"]))["output"] == {"n": 42}

Time: ``await server.advance(30)`` moves the clock 30 s and lets the server act on it before it
returns: delayed tasks that came due are ready (and handed to waiting workers), expired leases
are taken back and their tasks offered again. The SDK's own timers (heartbeats every lease/3,
long-poll waits, backoff) run on real time, so a jump past the lease of a task a worker is still
running expires that lease, as if the worker had died.

Settings: other keyword arguments are :class:`crew_aio.config.Settings` fields, e.g.
``CrewServer(lease_seconds=5, api_token="t")``; ``server.client()`` and ``server.workers()``
pass the token on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from crew_aio.app import STORE, TIMERS, create_app
from crew_aio.client import Client
from crew_aio.clock import FakeClock
from crew_aio.config import Settings
from crew_aio.store import MemoryStore
from crew_aio.worker import Worker, run_workers
from crew_aio.ws_hub import HUB

__all__ = ["CrewServer"]

SETTLE_TURNS = 20  # loop turns given to the server after a move of the clock


class CrewServer:
    """An in-process crew_aio server: :class:`MemoryStore`, :class:`FakeClock`, a free port.

    Use it as ``async with CrewServer() as server`` (or :meth:`start` and :meth:`close`).
    ``clock`` and ``store`` may be given: ``CrewServer(store=MemoryStore(old.store.data))`` is a
    restart on what the old server committed. Other keywords are Settings fields.
    """

    def __init__(
        self, *, clock: FakeClock | None = None, store: MemoryStore | None = None, **settings: Any
    ) -> None:
        settings.setdefault("port", 0)
        settings.setdefault("data_dir", Path("unused"))  # the memory store writes no file
        self.settings = Settings(**settings)
        self.settings.validate()
        self.clock = clock if clock is not None else FakeClock()
        self.store = store if store is not None else MemoryStore()
        self.app = create_app(self.settings, store=self.store, clock=self.clock)
        self.url = ""  # "http://127.0.0.1:PORT" once started
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        """Load the store, listen, and return :attr:`url`."""
        if self._runner is not None:
            raise RuntimeError("CrewServer is already started (one start per instance)")
        # as `crew-aio serve` runs it: a long poll whose client went away stops waiting
        self._runner = web.AppRunner(
            self.app, access_log=None, handler_cancellation=True, shutdown_timeout=5.0
        )
        await self._runner.setup()
        try:
            site = web.TCPSite(self._runner, self.settings.host, self.settings.port)
            await site.start()
        except BaseException:
            await self._runner.cleanup()
            raise
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        """Stop as ``crew-aio serve`` does at SIGTERM: long polls end, sockets close."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        if STORE in self.app:  # started: stop handing out tasks, close the WebSockets
            self.app[TIMERS].service.drain()
            await self.app[HUB].close_all()
        await runner.cleanup()

    async def __aenter__(self) -> CrewServer:
        await self.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def advance(self, seconds: float) -> float:
        """Move the clock ``seconds`` ahead and let the server act on the new time: delayed
        tasks that came due are ready (and handed to waiting workers), expired leases are
        taken back. Returns the new time (epoch seconds)."""
        now = self.clock.advance(seconds)
        await self.tick()
        return now

    async def tick(self) -> None:
        """Let the server act on the clock as it reads now (:meth:`advance` calls this)."""
        timers = self.app[TIMERS]
        await timers.service.tick()  # committed when it returns
        timers.poke()  # the timer task re-reads the clock (expired-group cleanup, if enabled)
        for _ in range(SETTLE_TURNS):  # waiting long polls and sockets get their tasks
            await asyncio.sleep(0)

    def client(self, *, timeout: float = 75.0) -> Client:
        """A :class:`crew_aio.client.Client` of this server (with its API token, if set)."""
        return Client(self.url, self.settings.api_token, timeout=timeout)

    @contextlib.asynccontextmanager
    async def workers(self, *workers: Worker, **options: Any) -> AsyncIterator[None]:
        """Run ``workers`` against this server while the block runs, then stop them gracefully
        (running executes finish). ``options`` go to :func:`crew_aio.worker.run_workers`, e.g.
        ``poll=True`` for long-poll REST only; the token defaults to the server's worker token
        (else its API token)."""
        options.setdefault("token", self.settings.worker_token or self.settings.api_token)
        stop = asyncio.Event()
        running = asyncio.create_task(
            run_workers(workers, self.url, stop=stop, handle_signals=False, **options)
        )
        try:
            yield
        finally:
            stop.set()
            await running
