"""crew_aio.testing.CrewServer: a real server on a free port, memory store, fake clock."""

from __future__ import annotations

import asyncio
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import crew_aio.testing
from crew_aio.client import CrewClientError
from crew_aio.clock import FakeClock
from crew_aio.config import ConfigError
from crew_aio.store import MemoryStore
from crew_aio.testing import CrewServer
from crew_aio.worker import Worker
from tests.support.wait import eventually

V1 = "/api/v1"
Json = dict[str, Any]


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


class Double(Worker):
    channel = "double"

    def __init__(self, fail_first: int = 0) -> None:
        self.calls = 0
        self.fail_first = fail_first

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        self.calls += 1
        if self.calls <= self.fail_first:
            raise RuntimeError("flaky")
        return {"n": input["n"] * 2}


async def test_it_serves_real_http_on_a_free_port() -> None:
    async with CrewServer() as server, aiohttp.ClientSession() as http:
        assert server.url.startswith("http://127.0.0.1:") and not server.url.endswith(":0")
        async with http.get(server.url + "/healthz") as resp:
            assert resp.status == 200
        async with http.post(server.url + f"{V1}/task_groups", json={"name": "g"}) as resp:
            assert resp.status == 200
            group = await resp.json()
        async with http.get(server.url + f"{V1}/task_group/{group['_id']}") as resp:
            assert (await resp.json())["name"] == "g"
        assert f"g:{group['_id']}" in server.store.data  # committed to the memory store
        assert isinstance(server.clock, FakeClock)
    with pytest.raises(aiohttp.ClientConnectionError):  # closed: the port listens no more
        async with aiohttp.ClientSession() as http, http.get(server.url + "/healthz"):
            pass


async def test_a_worker_completes_a_task(mode: str) -> None:
    async with CrewServer() as server, server.client() as crew:
        group = await crew.create_group("g")
        task = await crew.add_tasks(group["_id"], {"name": "t", "channel": "double",
                                                   "input": {"n": 21}})  # fmt: skip
        async with server.workers(Double(), poll=mode == "poll", wait_seconds=1.0):
            done = await crew.wait(group["_id"], poll=0.05, limit=10)
        assert done["counts"]["completed"] == 1
        assert (await crew.get_task(task["_id"]))["output"] == {"n": 42}


async def test_advance_makes_a_delayed_task_runnable() -> None:
    async with CrewServer() as server, server.client() as crew:
        group = await crew.create_group("g")
        later = iso(server.clock.now() + 60)
        task = await crew.add_tasks(group["_id"], {"name": "t", "channel": "c", "runAfter": later})
        assert task["status"] == "delayed"
        poll = asyncio.create_task(crew.acquire("c", "w", wait_seconds=10))
        await asyncio.sleep(0.05)
        await server.advance(59)
        assert not poll.done() and (await crew.get_task(task["_id"]))["status"] == "delayed"
        await server.advance(1)
        got = await asyncio.wait_for(poll, 5)  # the waiting long poll got it
        assert got["task"]["_id"] == task["_id"] and got["task"]["status"] == "leased"


async def test_advance_retries_a_failed_task_after_its_error_delay(mode: str) -> None:
    async with CrewServer() as server, server.client() as crew:
        group = await crew.create_group("g")
        body = {"name": "t", "channel": "double", "input": {"n": 2}, "errorDelayInSeconds": 30}
        task = await crew.add_tasks(group["_id"], body)
        worker = Double(fail_first=1)

        async def delayed() -> bool:
            return bool((await crew.get_task(task["_id"]))["status"] == "delayed")

        async with server.workers(worker, poll=mode == "poll", wait_seconds=1.0):
            await eventually(delayed)  # failed once: waits out its error delay
            await server.advance(29)
            await asyncio.sleep(0.1)
            assert worker.calls == 1 and await delayed()
            await server.advance(1)
            done = await crew.wait(group["_id"], poll=0.05, limit=10)
        assert done["counts"]["completed"] == 1 and worker.calls == 2
        got = await crew.get_task(task["_id"])
        assert got["output"] == {"n": 4} and got["errors"][0]["message"] == "flaky"


async def test_advance_reclaims_an_expired_lease() -> None:
    async with CrewServer(lease_seconds=5) as server, server.client() as crew:
        group = await crew.create_group("g")
        body = {"name": "t", "channel": "c", "errorDelayInSeconds": 0}
        task = await crew.add_tasks(group["_id"], body)
        held = (await crew.acquire("c", "dead"))["task"]
        assert held["_id"] == task["_id"]
        await server.advance(4.9)
        assert (await crew.acquire("c", "w2"))["task"] is None  # still leased
        await server.advance(0.1)
        reclaimed = await crew.get_task(task["_id"])
        assert reclaimed["status"] == "ready" and reclaimed["errors"][0]["message"] == (
            "lease expired"
        )
        assert (await crew.acquire("c", "w2"))["task"]["assignedTo"] == "w2"


async def test_tokens_and_settings() -> None:
    async with CrewServer(api_token="admin", worker_token="work") as server:
        async with server.client() as crew:
            group = await crew.create_group("g")
            task = await crew.add_tasks(group["_id"], {"name": "t", "channel": "double",
                                                       "input": {"n": 1}})  # fmt: skip
            async with server.workers(Double(), poll=True, wait_seconds=1.0):  # the worker token
                await crew.wait(group["_id"], poll=0.05, limit=10)
            assert (await crew.get_task(task["_id"]))["output"] == {"n": 2}
        async with aiohttp.ClientSession() as http, http.get(server.url + f"{V1}/task_groups") as r:
            assert r.status == 401
    with pytest.raises(ConfigError):
        CrewServer(lease_seconds=0)


async def test_a_restart_on_the_committed_store() -> None:
    async with CrewServer() as first, first.client() as crew:
        gid = (await crew.create_group("kept"))["_id"]
    again = CrewServer(store=MemoryStore(first.store.data), clock=first.clock)
    async with again, again.client() as crew:
        assert (await crew.get_group(gid))["name"] == "kept"
        with pytest.raises(CrewClientError):
            await crew.get_group("nope")


def documented_examples() -> dict[str, str]:
    """The example of the README's "Testing your workers" and of the module's docstring."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Testing your workers", 1)[1]
    doc = crew_aio.testing.__doc__ or ""
    return {
        "README.md": section.split("```python\n", 1)[1].split("```", 1)[0],
        "docstring": textwrap.dedent(doc.split("::\n", 1)[1].split("\nTime:", 1)[0]),
    }


@pytest.mark.parametrize("where", ["README.md", "docstring"])
async def test_the_documented_example_runs(where: str) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(documented_examples()[where], where, "exec"), namespace)
    await namespace["test_double"]()
