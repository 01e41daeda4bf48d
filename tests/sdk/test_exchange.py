"""REST mode (``poll=True``): releases ride with acquires on ``/channel/:c/exchange``; against a
server without that route (Crew), Crew's acquire and release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from crew_aio.app import create_app
from crew_aio.client import Client
from crew_aio.clock import SystemClock
from crew_aio.config import Settings
from crew_aio.worker import Result, Worker
from tests.sdk.conftest import Running
from tests.support.wait import eventually

Json = dict[str, Any]


class Count(Worker):
    channel = "ex"
    concurrency = 2

    def __init__(self, long: float = 0.3) -> None:
        self.done = 0
        self.long = long
        self.ran_long: list[int] = []

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        if isinstance(input, dict) and "s" in input:
            await asyncio.sleep(input["s"])
            if input["s"] >= self.long:
                self.ran_long.append(input["i"])
        self.done += 1
        return {"ok": True}


async def test_releases_ride_with_acquires(
    client: Client, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []
    exchange = Client.exchange

    async def counted(self: Client, *args: Any, **kw: Any) -> Json:
        calls.append((len(kw.get("releases") or ()), kw.get("count", 0)))
        return await exchange(self, *args, **kw)

    monkeypatch.setattr(Client, "exchange", counted)
    gid = (await client.create_group("g"))["_id"]
    await client.add_tasks(gid, [{"name": f"t{i}", "channel": "ex"} for i in range(300)])
    worker = Count()
    async with Running([worker], server_url):
        await eventually(lambda: worker.done == 300, what="300 tasks ran")
        group = await client.wait(gid, poll=0.05, limit=10)
    assert group["counts"]["completed"] == 300
    assert sum(released for released, _ in calls) == 300  # every release rode an exchange
    assert len(calls) < 60, calls  # not two requests a task: a share of one
    outputs = {t["output"]["ok"] for t in await client.list_tasks(gid)}
    assert outputs == {True}


class Parent(Worker):
    channel = "ex"
    concurrency = 2

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        kids = [{"name": f"k{input['i']}-{j}", "channel": "kids"} for j in range(6000)]
        return Result({"ok": True}, children=kids)


async def test_no_request_carries_more_children_than_the_server_takes(
    client: Client, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Releases queue while one request is out; the next request takes no more than 10,000
    children together (a server refuses one over its create limit, 100,000 by default)."""
    sent: list[int] = []
    exchange = Client.exchange

    async def counted(self: Client, *args: Any, **kw: Any) -> Json:
        sent.append(sum(len(r.get("children") or ()) for r in kw.get("releases") or ()))
        return await exchange(self, *args, **kw)

    monkeypatch.setattr(Client, "exchange", counted)
    monkeypatch.setattr("crew_aio.worker.exchange.CHILDREN", 8000)
    gid = (await client.create_group("g"))["_id"]
    await client.add_tasks(gid, [{"name": f"t{i}", "channel": "ex", "input": {"i": i}}
                                 for i in range(6)])  # fmt: skip
    async with Running([Parent()], server_url):
        await eventually(lambda: sum(sent) == 36_000, limit=30, what="every child was sent")
    assert max(sent) == 6000, sent  # two releases (12,000) never went together
    channels = await client.request("GET", "/api/v1/channels")
    assert {c["name"]: c["totalCount"] for c in channels}["kids"] == 36_000


async def test_leases_waiting_behind_a_long_task_are_handed_back(
    client: Client, server_url: str
) -> None:
    gid = (await client.create_group("g"))["_id"]
    a, b = Count(), Count()
    a.concurrency = b.concurrency = 1
    async with Running([a, b], server_url):
        await client.add_tasks(gid, [{"name": f"q{i}", "channel": "ex"} for i in range(200)])
        await eventually(lambda: a.done + b.done == 200, what="the warm-up ran")
        mixed = [{"name": f"m{i}", "channel": "ex", "input": {"i": i, "s": 0.3 if i % 2 == 0
                  else 0.01}} for i in range(6)]  # fmt: skip
        await client.add_tasks(gid, mixed)
        await eventually(lambda: a.done + b.done == 206, limit=15, what="the mixed ran")
    assert sorted(a.ran_long + b.ran_long) == [0, 2, 4]
    assert a.ran_long and b.ran_long, (a.ran_long, b.ran_long)  # not all in one process
    tasks = await client.list_tasks(gid)
    assert all(not t["errors"] for t in tasks)  # a hand-back costs no attempt


def crew_shaped(test_dir: Path) -> web.Application:
    """Our server without what Crew lacks: the exchange route and the WebSocket (404)."""
    app = create_app(Settings(data_dir=test_dir / "data"), clock=SystemClock())

    @web.middleware
    async def like_crew(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/exchange") or request.path.endswith("/ws"):
            raise web.HTTPNotFound()
        return await handler(request)

    app.middlewares.insert(0, like_crew)
    return app


@pytest.fixture
async def crew_url(tmp_path: Path) -> AsyncIterator[str]:
    server = TestServer(crew_shaped(tmp_path))
    await server.start_server()
    yield str(server.make_url("")).rstrip("/")
    await server.close()


@pytest.mark.parametrize("poll", [True, False])
async def test_a_server_without_the_route_gets_crews_protocol(crew_url: str, poll: bool) -> None:
    async with Client(crew_url) as crew:
        gid = (await crew.create_group("g"))["_id"]
        await crew.add_tasks(gid, [{"name": f"t{i}", "channel": "ex"} for i in range(20)])
        worker = Count()
        async with Running([worker], crew_url, poll=poll):
            group = await crew.wait(gid, poll=0.05, limit=15)
        assert group["counts"]["completed"] == 20 and worker.done == 20
