"""Targeted tests of bugs the fault scenarios found (fixed since): each fails on the code that
had the bug. ``python -m tests.faults`` runs this file too (row BUGS).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crew_aio.app import create_app
from crew_aio.clock import SystemClock
from crew_aio.config import Settings
from crew_aio.store import MemoryStore
from tests.support.wait import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


class GatedStore(MemoryStore):
    """The in-memory twin whose commits wait for permits once ``gated`` is set: the test decides
    which batch becomes durable when (a crash would lose the others)."""

    def __init__(self) -> None:
        super().__init__()
        self.gated = False
        self.permits = 0
        self.changed = asyncio.Event()

    async def _commit(self, batch: dict[str, bytes | None]) -> None:
        while self.gated and self.permits == 0:
            self.changed.clear()
            await self.changed.wait()
        if self.gated:
            self.permits -= 1
        await super()._commit(batch)

    def allow(self, n: int) -> None:
        self.permits += n
        self.changed.set()

    def committed_names(self) -> set[str]:
        return {json.loads(v)["name"] for k, v in self.data.items() if k.startswith("t:")}


async def _until(predicate: Callable[[], bool]) -> None:
    await eventually(predicate, 5, 0.01)


async def test_a_pushed_task_waits_for_the_commit_of_its_own_lease(tmp_path: Path) -> None:
    """docs/API.md: "a pushed task is sent only after every change it depends on is committed".
    Found by the full R1 run (tasks pushed over WS ran twice with no expiry or error, one with a
    parent whose completion was not durable yet). ws_hub ``Peer.run_sender`` awaited
    ``store.sync()`` and then sent the whole outbox, including frames queued *during* that
    wait, whose leases were only staged: a kill -9 then lost a lease the worker already held.
    Now a flush sends only the frames queued before its sync."""
    store = GatedStore()
    app = create_app(Settings(data_dir=tmp_path / "data"), store=store, clock=SystemClock())
    async with TestClient(TestServer(app)) as client:
        got = await client.post("/api/v1/task_groups", json={"name": "g"})
        tasks = f"/api/v1/task_group/{(await got.json())['_id']}/tasks"
        ws = await client.ws_connect("/api/v1/ws")
        await ws.send_json({"type": "subscribe", "workerId": "w", "channels": ["c"],
                            "capacity": 2})  # fmt: skip
        assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        store.gated = True
        one = asyncio.create_task(client.post(tasks, json={"name": "one", "channel": "c"}))
        await _until(lambda: bool(store._inflight))  # batch 1: "one" and its lease
        two = asyncio.create_task(client.post(tasks, json={"name": "two", "channel": "c"}))
        await _until(lambda: bool(store._staged))  # batch 2: "two" and its lease, staged
        store.allow(1)  # batch 1 becomes durable; batch 2 does not (a crash now loses it)
        pushed: list[str] = []
        with contextlib.suppress(TimeoutError):
            while len(pushed) < 2:
                frame = await ws.receive_json(timeout=1.0)
                if frame["type"] == "task":
                    pushed.append(frame["task"]["name"])
        durable = store.committed_names()
        store.gated = False
        store.allow(100)
        for req in (one, two):
            (await req).release()
        await ws.close()
    assert set(pushed) <= durable, f"pushed {pushed} while only {sorted(durable)} was committed"
