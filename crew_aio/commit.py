"""What the service sees of persistence: the :class:`Store` protocol and its commit barrier.

The store (``crew_aio.store``) implements it twice, on SQLite and in memory; the service is
written against this module only, and a transport sees nothing of it but :class:`Barrier`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

from crew_aio.errors import StoreUnavailable

__all__ = ["DONE", "Barrier", "Chunk", "Store"]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Some of the records under one key prefix, as stored, in key order (:meth:`Store.chunks`):
    ``array`` is their ``count`` JSON values in one JSON array (joined by commas between
    brackets: a malformed value can make it invalid, or more or fewer than ``count``), decoded
    in one call. ``rows()`` reads the same records one by one, ``(key, stored value)``, for a
    reader that finds the array unusable: only the bad records are then skipped."""

    count: int
    array: bytes
    rows: Callable[[], list[tuple[str, Any]]]


class Barrier:
    """A commit barrier: awaiting it returns once every write staged before it was taken is
    committed, or raises StoreUnavailable when that commit failed (the writes were dropped: not
    done). Taken by :meth:`Store.barrier` right after staging; awaited by whoever tells a client.
    Barriers are ordered: batches commit in order, and a failure fails every batch behind it,
    so awaiting the last of several barriers covers them all. Awaitable any number of times."""

    __slots__ = ("_error", "future")

    def __init__(
        self,
        future: asyncio.Future[BaseException | None] | None = None,
        error: BaseException | None = None,
    ) -> None:
        self.future = future  # settled with None (committed) or the commit's error
        self._error = error

    def failed(self) -> bool:
        """True when the commit it waits for failed (its writes were dropped: not done)."""
        if self._error is not None:
            return True
        return self.future is not None and self.future.done() and self.future.result() is not None

    def __await__(self) -> Generator[Any, None, None]:
        if self._error is not None:
            raise _unavailable(self._error)
        fut = self.future
        if fut is None:
            return
        # one waiter's cancellation must not cancel the commit the others wait for
        error = yield from (fut if fut.done() else asyncio.shield(fut)).__await__()
        if error is not None:
            raise _unavailable(error) from error


def _unavailable(error: BaseException) -> StoreUnavailable:
    if isinstance(error, StoreUnavailable):
        return error
    return StoreUnavailable(f"the store cannot commit: {error}")


DONE = Barrier()  # nothing staged, nothing in flight


class Store(Protocol):
    """What the service uses. ``put``/``delete``/``sync`` are for the event loop's thread only.

    ``load`` (blocking, at boot) streams every committed record, skipping (and logging) any that
    cannot be decoded; with ``raw``, the records under that key prefix are left out, for
    ``chunks(raw)`` to hand over as stored, in key order (blocking too). ``put`` encodes at
    once; the last write to a key before a commit wins. A committer task commits each staged
    batch in one transaction, in order. ``barrier()`` is the :class:`Barrier` of everything
    staged so far; ``sync()`` awaits it: it returns once everything staged before the call is
    committed (at once if nothing is staged or in flight), or raises StoreUnavailable if that
    batch failed. A failed commit drops its writes and every write staged behind it (whoever
    waits on them gets the same error at once): a 503 means not done. The store is then
    ``failed``: ``put``, ``delete`` and ``sync`` raise StoreUnavailable and ``on_failure`` is
    called once, until ``recover`` commits a probe (the owner reloads what is committed before
    it writes again). ``close`` commits what is staged, then closes (idempotent). ``check``
    writes ``m:health`` and syncs. ``pending``: keys staged or in flight.
    """

    on_failure: Callable[[BaseException], None] | None

    def load(self, raw: str | None = None) -> Iterator[tuple[str, Any]]: ...
    def chunks(self, prefix: str) -> Iterator[Chunk]: ...
    def put(self, key: str, value: Any) -> None: ...
    def delete(self, key: str) -> None: ...
    def barrier(self) -> Barrier: ...
    async def sync(self) -> None: ...
    def hold(self) -> None: ...
    def release(self) -> None: ...
    async def start(self) -> None: ...
    async def close(self) -> None: ...
    async def check(self) -> bool: ...
    async def recover(self) -> bool: ...
    @property
    def failed(self) -> bool: ...
    @property
    def pending(self) -> int: ...
