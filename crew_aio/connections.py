"""Slow and silent clients: connections that hold a socket without using it are closed.

aiohttp closes a kept-alive connection that sent nothing for ``keepalive_timeout`` (the idle
timeout, which also ends a half-sent head after a first request) and a request body that stalls
is cut by ``read_json``'s body timeout; what neither covers is a connection that never finishes
its first request head (slowloris) or never sends anything at all. The reaper closes those after
the head timeout. WebSocket peers are checked by their heartbeat instead.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from typing import Any

from aiohttp import web

from crew_aio.wire import Handler

__all__ = ["Reaper", "raise_file_limit"]

log = logging.getLogger("crew_aio.http")


class Reaper:
    """Closes connections that have not completed a request head ``head_timeout`` seconds
    after they were first seen. A connection counts as "seen" once a request reaches the
    middleware: a kept-alive one is then aiohttp's (idle timeout)."""

    def __init__(self, head_timeout: float) -> None:
        self.head_timeout = head_timeout
        self._served: set[Any] = set()  # transports that completed a request head
        self._born: dict[Any, float] = {}  # the others: when the reaper first saw them
        self.closed = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.transport is not None:
            self._served.add(request.transport)
        return await handler(request)

    async def run(self, server: web.Server) -> None:
        every = min(1.0, self.head_timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(every)
            try:
                self.sweep(server, loop.time())
            except Exception:  # a bug here must not stop the reaping
                log.exception("reaping connections failed")

    def sweep(self, server: web.Server, now: float) -> None:
        alive = set()
        for handler in server.connections:
            transport = handler.transport
            if transport is None:
                continue
            alive.add(transport)
            if transport in self._served:
                continue
            born = self._born.setdefault(transport, now)
            if now - born >= self.head_timeout:
                transport.close()
                self.closed += 1
                log.debug("closed a connection that sent no request head in time",
                          extra={"event": "http.head_timeout"})  # fmt: skip
        self._served &= alive
        for transport in list(self._born):
            if transport not in alive or transport in self._served:
                del self._born[transport]


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard one (each client is a socket): returns
    the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft
