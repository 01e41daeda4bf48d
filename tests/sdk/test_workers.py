"""The worker SDK, long-poll and push, against a real in-process server (real clock)."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest

from crew_aio.client import Client, CrewClientError
from crew_aio.worker import RateLimited, Result, Worker
from tests.sdk.conftest import Running

Json = dict[str, Any]


class Step(Worker):
    """Outputs its name and the sum of its parents' outputs."""

    concurrency = 3

    def __init__(self, channel: str) -> None:
        self.channel = channel
        self.seen: list[Json] = []

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        self.seen.append({"input": input, "parents": parents})
        return {"n": input["n"] + sum(p["output"]["n"] for p in parents)}


async def test_a_dag_runs_to_completion(client: Client, server_url: str, mode: str) -> None:
    group = await client.create_group("dag")

    def node(name: str, channel: str, n: int, *parents: str) -> Json:
        entry = {"_child_id": name, "name": name, "channel": channel, "input": {"n": n}}
        return entry | ({"_parent_ids": list(parents)} if parents else {})

    dag = [node("a", "left", 1), node("b", "right", 10, "a"), node("c", "left", 100, "a"),
           node("d", "right", 1000, "b", "c")]  # fmt: skip
    created = await client.add_tasks(group["_id"], dag)
    left, right = Step("left"), Step("right")
    async with Running([left, right], server_url, poll=mode == "poll"):
        done = await client.wait(group["_id"], poll=0.05, limit=10)
    assert done["counts"]["completed"] == 4 and done["progress"] == 1.0
    d = await client.get_task(created[3]["_id"])
    assert d["output"] == {"n": 1000 + 11 + 101}
    assert len(left.seen) == 2 and len(right.seen) == 2


class Fanout(Worker):
    channel = "fan"

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        if input.get("leaf"):
            return {"leaf": input["i"]}
        kids = [{"name": f"kid{i}", "channel": "fan", "input": {"leaf": True, "i": i}}
                for i in range(3)]  # fmt: skip
        return Result(output={"spawned": 3}, children=kids)


async def test_children_from_result(client: Client, server_url: str, mode: str) -> None:
    group = await client.create_group("fan")
    root = await client.add_tasks(group["_id"], {"name": "root", "channel": "fan", "input": {}})
    async with Running([Fanout()], server_url, poll=mode == "poll"):
        done = await client.wait(group["_id"], poll=0.05, limit=10)
    assert done["counts"]["completed"] == 4
    tasks = await client.list_tasks(group["_id"])
    kids = [t for t in tasks if t["_id"] != root["_id"]]
    assert sorted(t["output"]["leaf"] for t in kids) == [0, 1, 2]
    assert all(t["parentIds"] == [root["_id"]] for t in kids)


class Broken(Worker):
    channel = "broken"

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        raise ValueError("boom")


async def test_an_exception_is_an_error_release(client: Client, server_url: str, mode: str) -> None:
    group = await client.create_group("errors")
    spec = {"name": "x", "channel": "broken", "remainingAttempts": 2, "errorDelayInSeconds": 0}
    task = await client.add_tasks(group["_id"], spec)
    async with Running([Broken()], server_url, poll=mode == "poll"):
        done = await client.wait(group["_id"], poll=0.05, limit=10)
    assert done["counts"]["failed"] == 1
    failed = await client.get_task(task["_id"])
    assert failed["remainingAttempts"] == 0 and failed["status"] == "failed"
    assert [e["type"] for e in failed["errors"]] == ["ValueError", "ValueError"]
    assert failed["errors"][0]["message"] == "boom"


class BadChildren(Worker):
    channel = "bad_children"

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        return Result(output={"x": 1}, children=[{"name": "no channel"}])


async def test_a_refused_release_becomes_an_error_release(client: Client, server_url: str) -> None:
    group = await client.create_group("bad children")
    spec = {"name": "x", "channel": "bad_children", "remainingAttempts": 1}
    task = await client.add_tasks(group["_id"], spec)
    async with Running([BadChildren()], server_url):
        await client.wait(group["_id"], poll=0.05, limit=10)
    failed = await client.get_task(task["_id"])
    assert failed["status"] == "failed" and failed["output"] is None
    assert failed["errors"][0]["type"] == "InvalidRelease"
    assert "channel" in failed["errors"][0]["message"]


class Unencodable(Worker):
    channel = "unencodable"

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        return {"when": object()}


async def test_an_output_that_is_not_json_is_an_error(
    client: Client, server_url: str, mode: str
) -> None:
    group = await client.create_group("not json")
    spec = {"name": "x", "channel": "unencodable", "remainingAttempts": 1}
    task = await client.add_tasks(group["_id"], spec)
    async with Running([Unencodable()], server_url, poll=mode == "poll"):
        await client.wait(group["_id"], poll=0.05, limit=10)
    failed = await client.get_task(task["_id"])
    assert failed["status"] == "failed"
    assert failed["errors"][0]["type"] == "JSONEncodeError"


class Limited(Worker):
    channel = "limited"

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        raise RateLimited(5)


async def test_rate_limited_delays_the_workgroup(
    client: Client, server_url: str, mode: str
) -> None:
    group = await client.create_group("rate")
    first = {"name": "a", "channel": "limited", "workgroup": "token-1", "errorDelayInSeconds": 0}
    sibling = {"name": "b", "channel": "elsewhere", "workgroup": "token-1"}
    other = {"name": "c", "channel": "elsewhere", "workgroup": "token-2"}
    a, b, c = await client.add_tasks(group["_id"], [first, sibling, other])
    started = time.time()
    async with Running([Limited()], server_url, poll=mode == "poll"):
        while not (await client.get_task(a["_id"]))["errors"]:
            await _tick()
    for task_id in (a["_id"], b["_id"]):
        task = await client.get_task(task_id)
        assert _epoch(task["runAfter"]) >= started + 4.5, task
        assert task["status"] == "delayed"
    assert (await client.get_task(c["_id"]))["status"] == "ready"
    error = (await client.get_task(a["_id"]))["errors"][0]
    assert error["type"] == "RateLimited"


class Blocking(Worker):
    channel = "sync"
    concurrency = 2

    def __init__(self) -> None:
        self.threads: set[str] = set()

    def execute(self, input: Any, parents: list[Json]) -> Any:
        time.sleep(0.05)  # a blocking call: fine in a thread, fatal on the loop
        self.threads.add(threading.current_thread().name)
        return {"thread": threading.current_thread() is not threading.main_thread()}


async def test_a_sync_execute_runs_in_a_thread(client: Client, server_url: str, mode: str) -> None:
    group = await client.create_group("sync")
    await client.add_tasks(group["_id"], [{"name": f"t{i}", "channel": "sync"} for i in range(4)])
    worker = Blocking()
    async with Running([worker], server_url, poll=mode == "poll"):
        await client.wait(group["_id"], poll=0.05, limit=10)
    tasks = await client.list_tasks(group["_id"])
    assert all(t["output"] == {"thread": True} for t in tasks)
    assert threading.main_thread().name not in worker.threads


class Sleepy(Worker):
    channel = "sleepy"
    lease_seconds = 1.0

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        import asyncio

        await asyncio.sleep(2.5)
        return {"awake": True}


async def test_heartbeats_keep_a_task_leased(client: Client, server_url: str, mode: str) -> None:
    group = await client.create_group("slow")
    task = await client.add_tasks(group["_id"], {"name": "nap", "channel": "sleepy"})
    async with Running([Sleepy()], server_url, poll=mode == "poll"):
        await client.wait(group["_id"], poll=0.1, limit=10)
    done = await client.get_task(task["_id"])
    assert done["status"] == "completed" and done["output"] == {"awake": True}
    assert done["errors"] == [] and done["isComplete"]  # no lease expired: no attempt charged


async def test_wait_returns_when_the_group_is_done(client: Client) -> None:
    group = await client.create_group("manual")
    gid = group["_id"]
    a, _ = await client.add_tasks(gid, [
        {"_child_id": "a", "name": "a", "channel": "m", "remainingAttempts": 1},
        {"_child_id": "b", "_parent_ids": ["a"], "name": "b", "channel": "m"},
    ])  # fmt: skip
    with pytest.raises(TimeoutError):
        await client.wait(gid, poll=0.05, limit=0.2)
    lease = await client.acquire("m", "me")
    await client.release(a["_id"], {"workerId": "me", "error": {"message": "no"}})
    done = await client.wait(gid, poll=0.05, limit=5)  # b waits behind a failed parent
    assert done["counts"]["failed"] == 1 and done["counts"]["waiting"] == 1
    assert lease["task"]["_id"] == a["_id"]


async def test_errors_carry_status_code_and_field(client: Client) -> None:
    with pytest.raises(CrewClientError) as missing:
        await client.get_task("nope")
    assert missing.value.status == 404 and missing.value.code == "not_found"
    group = await client.create_group("bad")
    with pytest.raises(CrewClientError) as bad:
        await client.add_tasks(group["_id"], {"name": "x", "channel": "q", "priority": "high"})
    assert bad.value.status == 400 and bad.value.field == "priority"


async def test_group_actions(client: Client) -> None:
    gid = (await client.create_group("actions"))["_id"]
    await client.add_tasks(gid, {"name": "x", "channel": "q"})
    assert (await client.pause(gid))["isPaused"] is True
    assert (await client.resume(gid))["isPaused"] is False
    await client.retry(gid)
    await client.reset(gid)
    assert (await client.get_group(gid))["counts"]["ready"] == 1


async def _tick() -> None:
    import asyncio

    await asyncio.sleep(0.05)


def _epoch(when: str) -> float:
    return datetime.fromisoformat(when).timestamp()
