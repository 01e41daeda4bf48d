"""WebSocket push mode: tasks arrive over the socket; losing it falls back to long-poll + REST."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from crew_aio.app import create_app
from crew_aio.client import Client, CrewClientError
from crew_aio.clock import SystemClock
from crew_aio.config import Settings
from crew_aio.worker import Worker
from crew_aio.ws_hub import HUB
from tests.sdk.conftest import Running
from tests.support.wait import eventually

Json = dict[str, Any]


class Gated(Worker):
    channel = "gated"
    concurrency = 2

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        self.started.set()
        await self.gate.wait()
        return {"i": input}


async def test_tasks_are_pushed_over_the_socket(
    client: Client, server_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crew_aio.worker")
    gid = (await client.create_group("push"))["_id"]
    worker = Gated()
    async with Running([worker], server_url, poll=False):
        task = await client.add_tasks(gid, {"name": "t", "channel": "gated", "input": 1})
        await asyncio.wait_for(worker.started.wait(), 5)
        leased = await client.get_task(task["_id"])
        worker.gate.set()
        await client.wait(gid, poll=0.05, limit=5)
    assert leased["assignedTo"].endswith("-gated-ws")
    assert (await client.get_task(task["_id"]))["output"] == {"i": 1}
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "worker.ws_up" in events and "worker.ws_down" not in events


async def test_a_lost_socket_falls_back_and_releases_over_rest(
    client: Client, server_url: str, test_server: TestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "crew_aio.worker")
    hub = test_server.app[HUB]
    gid = (await client.create_group("drop"))["_id"]
    worker = Gated()
    async with Running([worker], server_url, poll=False, wait_seconds=0.5):
        first = await client.add_tasks(gid, {"name": "a", "channel": "gated", "input": 1})
        await asyncio.wait_for(worker.started.wait(), 5)
        await hub.close_all()  # the socket the task came over is gone; its lease is not
        worker.gate.set()
        await client.wait(gid, poll=0.05, limit=5)
        second = await client.add_tasks(gid, {"name": "b", "channel": "gated", "input": 2})
        await client.wait(gid, poll=0.05, limit=5)

        async def subscribed_again() -> bool:
            return any(peer.sub is not None for peer in hub.peers)

        await eventually(subscribed_again)
    done = [await client.get_task(t["_id"]) for t in (first, second)]
    assert [t["output"] for t in done] == [{"i": 1}, {"i": 2}]
    assert all(t["errors"] == [] for t in done)
    events = [getattr(r, "event", None) for r in caplog.records]
    assert events.count("worker.ws_up") >= 2 and "worker.ws_down" in events


async def test_stopping_takes_no_new_task(client: Client, server_url: str) -> None:
    gid = (await client.create_group("stop"))["_id"]
    worker = Gated()
    running = Running([worker], server_url, poll=False)
    task = await client.add_tasks(gid, {"name": "a", "channel": "gated", "input": 1})
    await asyncio.wait_for(worker.started.wait(), 5)
    running.stop.set()
    await asyncio.sleep(0.1)
    late = await client.add_tasks(gid, {"name": "late", "channel": "gated"})
    worker.gate.set()
    await asyncio.wait_for(running.task, 10)
    assert (await client.get_task(task["_id"]))["status"] == "completed"
    assert (await client.get_task(late["_id"]))["status"] == "ready"


async def test_tokens_reach_rest_and_the_socket(tmp_path: Path, mode: str) -> None:
    settings = Settings(data_dir=tmp_path / "auth", api_token="admin-t", worker_token="worker-t")
    server = TestServer(create_app(settings, clock=SystemClock()))
    await server.start_server()
    url = str(server.make_url("")).rstrip("/")
    try:
        async with Client(url, token="admin-t") as admin:
            gid = (await admin.create_group("auth"))["_id"]
            task = await admin.add_tasks(gid, {"name": "t", "channel": "gated", "input": 5})
            worker = Gated()
            async with Running([worker], url, token="worker-t", poll=mode == "poll"):
                await asyncio.wait_for(worker.started.wait(), 5)
                leased = await admin.get_task(task["_id"])
                worker.gate.set()
                await admin.wait(gid, poll=0.05, limit=5)
            done = await admin.get_task(task["_id"])
        async with Client(url) as anonymous:
            with pytest.raises(CrewClientError) as refused:
                await anonymous.get_task(task["_id"])
    finally:
        await server.close()
    assert done["output"] == {"i": 5}
    assert leased["assignedTo"].endswith("-ws") is (mode == "push")
    assert refused.value.status == 401


async def test_a_task_outlasting_the_shutdown_timeout_is_released_as_an_error(
    client: Client, server_url: str, mode: str
) -> None:
    gid = (await client.create_group("hard stop"))["_id"]
    task = await client.add_tasks(gid, {"name": "stuck", "channel": "gated"})
    worker = Gated()  # its gate never opens
    running = Running([worker], server_url, poll=mode == "poll", shutdown_timeout=0.3)
    await asyncio.wait_for(worker.started.wait(), 5)
    running.stop.set()
    await asyncio.wait_for(running.task, 5)
    stuck = await client.get_task(task["_id"])
    assert stuck["status"] == "delayed" and stuck["remainingAttempts"] == 4
    assert stuck["errors"][0]["type"] == "WorkerShutdown"


class Prefetching(Worker):
    """One execute at a time, three more tasks leased ahead; short leases, slow executes."""

    channel = "prefetch"
    concurrency = 1
    prefetch = 3
    lease_seconds = 0.6

    def __init__(self) -> None:
        self.running = 0
        self.most = 0

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        self.running += 1
        self.most = max(self.most, self.running)
        await asyncio.sleep(0.4)
        self.running -= 1
        return input


async def test_prefetched_tasks_wait_for_a_slot_with_their_leases_kept(
    client: Client, server_url: str, test_server: TestServer
) -> None:
    hub = test_server.app[HUB]
    gid = (await client.create_group("prefetch"))["_id"]
    worker = Prefetching()
    async with Running([worker], server_url, poll=False):
        await eventually(lambda: _subscribed(hub))
        tasks = await client.add_tasks(
            gid, [{"name": f"t{i}", "channel": "prefetch", "input": [i]} for i in range(5)]
        )
        await asyncio.sleep(0.2)
        [sub] = [peer.sub for peer in hub.peers if peer.sub is not None]
        assert sub.capacity == 4 and len(sub.held) == 4  # concurrency + prefetch leased at once
        await client.wait(gid, poll=0.05, limit=10)
    done = [await client.get_task(t["_id"]) for t in tasks]
    assert [t["output"] for t in done] == [[i] for i in range(5)]
    # the last prefetched task waited ~1.2 s, twice its lease: heartbeats kept it
    assert all(t["errors"] == [] for t in done)
    assert worker.most == 1


async def _subscribed(hub: Any) -> bool:
    return any(peer.sub is not None for peer in hub.peers)


async def test_releases_of_one_loop_turn_travel_as_one_batch(
    client: Client, server_url: str, test_server: TestServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = test_server.app[HUB]
    messages: list[Any] = []
    handle = type(hub).handle

    def counting(self: Any, peer: Any, data: str | bytes) -> Any:
        messages.append(data)
        return handle(self, peer, data)

    monkeypatch.setattr(type(hub), "handle", counting)
    gid = (await client.create_group("batch"))["_id"]
    worker = Gated()
    worker.concurrency = 8
    async with Running([worker], server_url, poll=False):
        await eventually(lambda: _subscribed(hub))
        await client.add_tasks(
            gid, [{"name": f"t{i}", "channel": "gated", "input": i} for i in range(8)]
        )
        await eventually(lambda: _held(hub, 8))
        messages.clear()
        worker.gate.set()  # eight executes end in the same turn: one message, eight releases
        await client.wait(gid, poll=0.05, limit=5)
    batches = [orjson.loads(m) for m in messages]
    carrying = [[f for f in (b if isinstance(b, list) else [b]) if f["type"] == "release"]
                for b in batches]  # fmt: skip
    carrying = [releases for releases in carrying if releases]
    assert sum(map(len, carrying)) == 8
    assert len(carrying) < 8  # not one message per release


async def _held(hub: Any, n: int) -> bool:
    return sum(len(peer.sub.held) for peer in hub.peers if peer.sub is not None) == n


class Quick(Worker):
    channel = "quick"
    concurrency = 2

    def __init__(self, seconds: float = 0.0) -> None:
        self.seconds = seconds
        self.done = 0

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        if self.seconds:
            await asyncio.sleep(self.seconds)
        self.done += 1
        return None


def capacities(server: Any) -> list[int]:
    return [peer.sub.capacity for peer in server.app[HUB].peers if peer.sub is not None]


async def test_adaptive_prefetch_leases_ahead_for_short_tasks_only() -> None:
    """SDK defaults: short executes raise the socket's capacity (a capacity frame), long ones
    bring it back to the worker's concurrency, so a long task waits in no process's queue."""
    from crew_aio.testing import CrewServer

    async with CrewServer() as server, server.client() as client:
        gid = (await client.create_group("g"))["_id"]
        quick = Quick()
        async with server.workers(quick):
            await eventually(lambda: capacities(server) == [2], what="subscribed at concurrency")
            await client.add_tasks(gid, [{"name": f"q{i}", "channel": "quick"} for i in range(50)])
            await eventually(lambda: quick.done == 50, what="50 quick tasks ran")
            await eventually(lambda: capacities(server)[0] > 2 + 32, what="capacity grew")
            quick.seconds = 0.2  # now long: after one, nothing is leased ahead any more
            await client.add_tasks(gid, [{"name": f"s{i}", "channel": "quick"} for i in range(4)])
            await eventually(lambda: capacities(server) == [2], limit=5, what="back to 2")
            await eventually(lambda: quick.done == 54, limit=5, what="the slow ones ran")


class Mixed(Worker):
    """Sleeps ``input["s"]`` seconds; notes which long tasks it ran."""

    channel = "mix"
    concurrency = 1

    def __init__(self) -> None:
        self.done = 0
        self.long: list[int] = []

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        if isinstance(input, dict):
            await asyncio.sleep(input["s"])
            if input["s"] >= 0.2:
                self.long.append(input["i"])
        self.done += 1
        return None


async def test_adaptive_prefetch_hands_back_what_waits_behind_a_long_task() -> None:
    """Two processes hot from short tasks (a large prefetch each), then long and short tasks
    in turn: dealt one each in turn, every long one would wait in one process. The process
    that meets a long task shrinks its prefetch and hands the leases waiting behind it back,
    and the other process runs them."""
    from crew_aio.testing import CrewServer

    async with CrewServer() as server, server.client() as client:
        gid = (await client.create_group("g"))["_id"]
        a, b = Mixed(), Mixed()
        async with server.workers(a, b):
            await eventually(lambda: len(capacities(server)) == 2, what="both subscribed")
            await client.add_tasks(gid, [{"name": f"q{i}", "channel": "mix"} for i in range(200)])
            await eventually(lambda: a.done + b.done == 200, what="the warm-up ran")
            await eventually(lambda: min(capacities(server)) > 10, what="both prefetch")
            mixed = [{"name": f"m{i}", "channel": "mix", "input": {"i": i, "s": 0.3 if i % 2 == 0
                      else 0.01}} for i in range(6)]  # fmt: skip
            await client.add_tasks(gid, mixed)
            await eventually(lambda: a.done + b.done == 206, limit=15, what="the mixed ran")
        assert sorted(a.long + b.long) == [0, 2, 4]
        assert a.long and b.long, (a.long, b.long)  # not all three in one process
        group = await client.get_group(gid)
        assert group["counts"]["completed"] == 206
        tasks = await client.list_tasks(gid)
        assert all(not t["errors"] for t in tasks)  # a hand-back is not a failed attempt
