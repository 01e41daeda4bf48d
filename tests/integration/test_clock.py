"""D11: lease deadlines and runAfter survive steps of the host's clock, in the process and
across a restart (the server's clock is monotonic, anchored once, and never runs backwards)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from crew_aio.app import create_app
from crew_aio.clock import SystemClock
from crew_aio.config import Settings

V1 = "/api/v1"


class HostClock:
    """``time.time`` of the host, which a test may step; ``monotonic`` stays real."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return REAL_TIME() + self.offset


REAL_TIME = time.time


def test_a_step_of_the_host_clock_moves_no_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    host = HostClock()
    monkeypatch.setattr(time, "time", host)
    clock = SystemClock()
    before = clock.now()
    host.offset = -3600.0  # the host steps back an hour ...
    assert 0 <= clock.now() - before < 1
    host.offset = +3600.0  # ... then forward two
    assert 0 <= clock.now() - before < 1
    clock.keep_after(before + 100)  # a stored mark ahead of it: counted on from there
    assert clock.now() >= before + 100
    clock.keep_after(0)  # a mark behind it changes nothing
    assert clock.now() - before < 101


async def start(data: Path) -> TestClient[Any, Any]:
    settings = Settings(data_dir=data, lease_seconds=0.6)
    client = TestClient(TestServer(create_app(settings, clock=SystemClock())))
    await client.start_server()
    return client


async def test_a_host_clock_stepped_back_across_a_restart_wedges_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker takes a task and dies; the server restarts on a host whose clock went back an
    hour. The lease still ends 0.6 s after it began, not an hour later."""
    host = HostClock()
    monkeypatch.setattr(time, "time", host)
    first = await start(tmp_path / "data")
    gid = (await (await first.post(f"{V1}/task_groups", json={"name": "g"})).json())["_id"]
    await first.post(f"{V1}/task_group/{gid}/tasks", json={"name": "t", "channel": "c",
                                                            "errorDelayInSeconds": 0})  # fmt: skip
    await asyncio.sleep(1.1)  # the clock mark is stored at most once a second, with changes
    lease = await (await first.post(f"{V1}/channel/c/acquire", json={"workerId": "dead"})).json()
    assert lease["task"]["assignedTo"] == "dead"
    await first.close()
    host.offset = -3600.0
    second = await start(tmp_path / "data")
    try:
        deadline = time.monotonic() + 5
        got: Any = {"task": None}
        while got["task"] is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            resp = await second.post(f"{V1}/channel/c/acquire", json={"workerId": "alive"})
            got = await resp.json()
        assert got["task"] is not None, "the dead worker's task stayed wedged"
        assert got["task"]["errors"][0]["message"] == "lease expired"
    finally:
        await second.close()
