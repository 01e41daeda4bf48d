"""One harness per store kind, so the contract suite runs unchanged over both."""

from __future__ import annotations

import pathlib
import sqlite3
from collections.abc import AsyncIterator
from typing import Any

import pytest

from crew_aio.store import TABLE, MemoryStore, SqliteStore


class SqliteHarness:
    kind = "sqlite"

    def __init__(self, tmp_path: pathlib.Path) -> None:
        self.path = tmp_path / "data" / "crew.sqlite"
        self.opened: list[SqliteStore] = []

    def open_unstarted(self, **kwargs: Any) -> SqliteStore:
        store = SqliteStore.open(self.path, **kwargs)
        self.opened.append(store)
        return store

    async def open(self, **kwargs: Any) -> SqliteStore:
        store = self.open_unstarted(**kwargs)
        await store.start()
        return store

    async def reopen(self, store: Any) -> SqliteStore:
        await store.close()
        return await self.open()

    async def break_commits(self, store: Any) -> None:
        """Cap the file at its current size: the next write that needs a page hits SQLITE_FULL."""
        (pages,) = await store._query("PRAGMA page_count")
        await store._query(f"PRAGMA max_page_count={pages}")

    async def heal_commits(self, store: Any) -> None:
        await store._query("PRAGMA max_page_count=1073741823")

    def write_raw(self, key: Any, raw: Any) -> None:
        """Write a record behind the store's back (the store must be closed)."""
        with sqlite3.connect(self.path) as conn:
            conn.execute(f'REPLACE INTO "{TABLE}" (key, value) VALUES (?, ?)', (key, raw))
        conn.close()

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


class MemoryHarness:
    kind = "memory"

    def __init__(self) -> None:
        self.opened: list[MemoryStore] = []

    def open_unstarted(self) -> MemoryStore:
        """A store over the bytes the last one committed: a "restart"."""
        store = MemoryStore(self.opened[-1].data if self.opened else None)
        self.opened.append(store)
        return store

    async def open(self) -> MemoryStore:
        store = self.open_unstarted()
        await store.start()
        return store

    async def reopen(self, store: Any) -> MemoryStore:
        await store.close()
        return await self.open()

    async def break_commits(self, store: Any) -> None:
        store.fail_commits(OSError(28, "No space left on device"))

    async def heal_commits(self, store: Any) -> None:
        store.fail_commits(None)

    def write_raw(self, key: Any, raw: Any) -> None:
        """Write a record behind the store's back (the store must be closed)."""
        self.opened[-1].data[key] = raw

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


Harness = SqliteHarness | MemoryHarness


@pytest.fixture(params=["sqlite", "memory"])
async def harness(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> AsyncIterator[Harness]:
    h: Harness = SqliteHarness(tmp_path) if request.param == "sqlite" else MemoryHarness()
    yield h
    await h.close_all()


@pytest.fixture
async def sqlite_harness(tmp_path: pathlib.Path) -> AsyncIterator[SqliteHarness]:
    h = SqliteHarness(tmp_path)
    yield h
    await h.close_all()
