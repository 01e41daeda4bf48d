"""After a failed commit: refuse work (503) until the store commits again, then reload.

A failed commit drops its writes (and those staged behind them): what memory holds is no longer
what was acknowledged. Everything waiting hears 503 at once; the engine is rebuilt from what the
store committed as soon as it commits again, so memory then holds exactly what was acknowledged
(a 503 means not done). Owned by the service (:attr:`crew_aio.service.Service.recovery`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from crew_aio.commit import Store
from crew_aio.engine import Engine
from crew_aio.errors import StoreUnavailable

__all__ = ["Recovery"]

log = logging.getLogger("crew_aio.service")


class Host(Protocol):
    """What :class:`Recovery` uses of the service that owns it."""

    store: Store
    draining: bool

    def refuse_waiters(self) -> None: ...
    def install(self, engine: Engine) -> None: ...


class Recovery:
    def __init__(self, host: Host, reload: Callable[[], Awaitable[Engine]] | None) -> None:
        self.host = host
        self.reload = reload
        self.rebuilding: asyncio.Task[None] | None = None
        self.on_reset: list[Callable[[], None]] = []  # told when the engine is to be rebuilt
        host.store.on_failure = self.store_failed

    def check_available(self) -> None:
        """Refuse work while the engine is being rebuilt after a failed commit."""
        if self.rebuilding is not None:
            raise StoreUnavailable("a commit failed: the server is reloading what was committed")

    def store_failed(self, exc: BaseException) -> None:
        """The store's ``on_failure``: everything waiting hears 503 now; the engine is rebuilt
        from the store as soon as it commits again."""
        if self.rebuilding is not None or self.reload is None:
            return
        log.error("a commit failed: reloading the state from the store once it commits again",
                  extra={"event": "store.failed", "error": str(exc)})  # fmt: skip
        self.rebuilding = asyncio.get_running_loop().create_task(
            self._rebuild(), name="crew_aio.rebuild"
        )
        self.host.refuse_waiters()
        for hook in self.on_reset:
            hook()

    async def _rebuild(self) -> None:
        assert self.reload is not None
        delay = 0.1
        try:
            while True:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
                if not await self.host.store.recover():
                    continue
                try:
                    engine = await self.reload()
                except Exception:
                    log.exception("reloading the state failed", extra={"event": "store.reload"})
                    continue
                break
        finally:
            self.rebuilding = None
        self.host.install(engine)
        log.info("reloaded the committed state", extra={"event": "store.recovered",
                                                         "tasks": len(engine.tasks)})  # fmt: skip
