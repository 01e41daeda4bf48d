"""Operators (Crew's HTTP push): the server leases a channel's ready tasks and POSTs each to a
worker's URL; the answer is the release. The worker here is a real HTTP server on a free port
speaking Crew's HttpWorker protocol (POST /execute/<channel> with {input, parents, taskId})."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.integration.conftest import Api, ApiFactory
from tests.support.wait import eventually

V1 = "/api/v1"
Handler = Callable[[dict[str, Any], web.Request], Awaitable[web.StreamResponse]]


class Worker:
    """An HTTP worker: one handler per channel; every request is kept."""

    def __init__(self) -> None:
        self.handlers: dict[str, Handler] = {}
        self.seen: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        app = web.Application()
        app.router.add_post("/execute/{channel}", self.execute)
        self.server = TestServer(app)

    async def execute(self, request: web.Request) -> web.StreamResponse:
        channel = request.match_info["channel"]
        body = await request.json()
        self.seen.append((channel, body, dict(request.headers)))
        return await self.handlers[channel](body, request)

    def url(self, channel: str) -> str:
        return str(self.server.make_url(f"/execute/{channel}"))


@pytest.fixture
async def worker() -> AsyncIterator[Worker]:
    w = Worker()
    await w.server.start_server()
    yield w
    await w.server.close()


async def tasks_of(api: Api, gid: str) -> dict[str, Any]:
    return {t["name"]: t for t in await api.get(f"{V1}/task_group/{gid}/tasks")}


async def all_done(api: Api, gid: str) -> bool:
    tasks = await tasks_of(api, gid)
    return bool(tasks) and all(t["isComplete"] for t in tasks.values())


async def test_operator_routes_as_crew_has_them(api: Api) -> None:
    first = await api.post(f"{V1}/operators", {"channel": "a", "url": "http://127.0.0.1:9/x",
                                               "isPaused": True})  # fmt: skip
    second = await api.post(f"{V1}/operators", {
        "channel": "b", "url": "https://workers.example/execute/b", "isPaused": 1,
        "requestConfig": {"headers": {"Authorization": "Bearer t"}, "timeout": 5000},
    })  # fmt: skip
    assert set(first) == {"_id", "channel", "url", "requestConfig", "isPaused", "createdAt"}
    assert first["requestConfig"] is None and second["isPaused"] is True
    listed = await api.get(f"{V1}/operators")
    assert [o["_id"] for o in listed] == [second["_id"], first["_id"]]  # newest first
    assert await api.get(f"{V1}/operators/count") == {"count": 2}
    assert await api.get(f"{V1}/operator/{first['_id']}") == first
    edited = await api.put(f"{V1}/operator/{first['_id']}", {"url": "http://127.0.0.1:9/y"})
    assert edited["url"] == "http://127.0.0.1:9/y" and edited["isPaused"] is True
    gone = await api.delete(f"{V1}/operator/{first['_id']}")
    assert gone == {"acknowledged": True, "deletedCount": 1}
    assert (await api.delete(f"{V1}/operator/{first['_id']}"))["deletedCount"] == 0
    missing = await api.get(f"{V1}/operator/{first['_id']}", status=404)
    assert missing["code"] == "not_found"
    bad = await api.post(f"{V1}/operators", {"channel": "c", "url": "file:///etc/passwd"}, 400)
    assert bad["field"] == "url"
    config = {"timeout": "soon"}
    bad = await api.post(f"{V1}/operators", {"channel": "c", "url": "http://x/",
                                             "requestConfig": config}, 400)  # fmt: skip
    assert "requestConfig" in bad["message"]
    assert await api.get(f"{V1}/operators/count") == {"count": 1}


async def test_an_operator_runs_a_dag_with_a_continuation_and_an_error_retry(
    api: Api, worker: Worker
) -> None:
    calls = {"flaky": 0}

    async def root(body: dict[str, Any], request: web.Request) -> web.Response:
        kids = [{"_child_id": 1, "name": "kid", "channel": "ops", "input": {"n": 1}},
                {"_child_id": 2, "_parent_ids": [1], "name": "flaky", "channel": "ops",
                 "errorDelayInSeconds": 0}]  # fmt: skip
        return web.json_response({"output": {"root": True}, "children": kids})

    async def ops(body: dict[str, Any], request: web.Request) -> web.Response:
        task = await api.get(f"{V1}/task/{body['taskId']}")
        if task["name"] == "flaky":
            calls["flaky"] += 1
            if calls["flaky"] == 1:
                return web.json_response({"error": {"message": "boom"}}, status=500)
            return web.json_response(
                {"output": {"parents": [p["output"] for p in body["parents"]]}}
            )
        return web.json_response({"output": {"kid": body["input"]["n"]}})

    worker.handlers = {"root": root, "ops": ops}
    for channel in ("root", "ops"):
        await api.post(f"{V1}/operators", {
            "channel": channel, "url": worker.url(channel),
            "requestConfig": {"headers": {"Authorization": "Bearer op-secret"}},
        })  # fmt: skip
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "root", "channel": "root"})
    await eventually(lambda: all_done(api, gid), 10, what="the DAG did not complete")
    tasks = await tasks_of(api, gid)
    assert tasks["flaky"]["output"] == {"parents": [{"kid": 1}]}
    assert tasks["flaky"]["errors"] == [{"message": "boom"}]  # the worker's error, kept
    assert tasks["flaky"]["remainingAttempts"] == 0 and calls["flaky"] == 2
    assert all(t["assignedTo"] is None for t in tasks.values())
    assert {headers.get("Authorization") for _, _, headers in worker.seen} == {"Bearer op-secret"}
    assert worker.seen[0][1] == {"input": None, "parents": [], "taskId": tasks["root"]["_id"]}


async def test_a_paused_operator_waits_and_a_timeout_is_an_error(api: Api, worker: Worker) -> None:
    async def slow(body: dict[str, Any], request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response({"output": 1})

    worker.handlers = {"slow": slow}
    op = await api.post(f"{V1}/operators", {"channel": "slow", "url": worker.url("slow"),
                                            "isPaused": True,
                                            "requestConfig": {"timeout": 200}})  # fmt: skip
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "slow"})
    await asyncio.sleep(0.3)
    assert worker.seen == []  # paused: nothing is sent
    await api.put(f"{V1}/operator/{op['_id']}", {"isPaused": False})

    async def failed_once() -> bool:
        return bool((await tasks_of(api, gid))["t"]["errors"])

    await eventually(failed_once, 10, what="the timeout was not released as an error")
    task = (await tasks_of(api, gid))["t"]
    assert task["errors"] == ["timeout of 200ms exceeded"] and task["remainingAttempts"] == 4
    assert task["assignedTo"] is None


async def test_a_429_cools_the_workgroup_for_its_retry_after(
    make_api: ApiFactory, worker: Worker
) -> None:
    api = await make_api(operator_concurrency=1)  # one request at a time: the next one waits

    async def limited(body: dict[str, Any], request: web.Request) -> web.Response:
        return web.json_response({"message": "slow down"}, status=429,
                                 headers={"Retry-After": "120"})  # fmt: skip

    worker.handlers = {"ads": limited}
    await api.post(f"{V1}/operators", {"channel": "ads", "url": worker.url("ads")})
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", [
        {"name": "a", "channel": "ads", "workgroup": "acct-1"},
        {"name": "b", "channel": "ads", "workgroup": "acct-1"},
    ])  # fmt: skip

    async def cooled() -> bool:
        return any(t["errors"] for t in (await tasks_of(api, gid)).values())

    await eventually(cooled, 10, what="the 429 was not released")
    await asyncio.sleep(0.2)
    tasks = await tasks_of(api, gid)
    assert len(worker.seen) == 1  # the workgroup cooled: the other task was not sent
    assert {t["status"] for t in tasks.values()} == {"delayed"}
    hit = next(t for t in tasks.values() if t["errors"])
    assert hit["errors"] == ["slow down"]


async def test_operators_post_only_to_allowed_hosts(make_api: ApiFactory, worker: Worker) -> None:
    api = await make_api(operator_hosts="workers.internal")
    worker.handlers = {"x": lambda body, request: asyncio.sleep(0, web.json_response({}))}
    await api.post(f"{V1}/operators", {"channel": "x", "url": worker.url("x")})
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "x"})

    async def refused() -> bool:
        return bool((await tasks_of(api, gid))["t"]["errors"])

    await eventually(refused, 10, what="the refusal was not released")
    assert worker.seen == []
    assert "not in --operator-hosts" in (await tasks_of(api, gid))["t"]["errors"][0]


async def test_a_worker_dying_mid_request_gets_the_task_again(api: Api, worker: Worker) -> None:
    """The connection drops mid-request (the worker process died): an error release, and the
    task runs again on the next request."""
    calls = {"n": 0}

    async def dies_once(body: dict[str, Any], request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] == 1:
            assert request.transport is not None
            request.transport.abort()  # as a killed process: no answer, the socket reset
            await asyncio.sleep(1)
        return web.json_response({"output": {"run": calls["n"]}})

    worker.handlers = {"d": dies_once}
    await api.post(f"{V1}/operators", {"channel": "d", "url": worker.url("d")})
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks",
                   {"name": "t", "channel": "d", "errorDelayInSeconds": 0})  # fmt: skip
    await eventually(lambda: all_done(api, gid), 10, what="the task was not run again")
    task = (await tasks_of(api, gid))["t"]
    assert task["output"] == {"run": 2} and len(task["errors"]) == 1 and task["errors"][0]


async def test_virtual_operators_serve_every_channel(make_api: ApiFactory, worker: Worker) -> None:
    base = worker.url("x")[: -len("x")]  # http://127.0.0.1:PORT/execute/
    api = await make_api(virtual_operator_base_url=base, virtual_operator_auth_token="vt")

    async def echo(body: dict[str, Any], request: web.Request) -> web.Response:
        return web.json_response({"output": body["input"]})

    worker.handlers = {"v1": echo, "v2": echo}
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", [
        {"name": "a", "channel": "v1", "input": 1}, {"name": "b", "channel": "v2", "input": 2},
    ])  # fmt: skip
    await eventually(lambda: all_done(api, gid), 10, what="virtual operators did not run")
    assert {t["name"]: t["output"] for t in (await tasks_of(api, gid)).values()} == {"a": 1, "b": 2}
    assert {headers["Authorization"] for _, _, headers in worker.seen} == {"Bearer vt"}
    assert await api.get(f"{V1}/operators/count") == {"count": 0}  # nothing stored


async def test_operators_survive_a_restart(make_api: ApiFactory) -> None:
    api = await make_api()
    made = await api.post(f"{V1}/operators", {
        "channel": "keep", "url": "http://127.0.0.1:9/execute/keep", "isPaused": True,
        "requestConfig": {"headers": {"Authorization": "Bearer k"}, "timeout": 1000},
    })  # fmt: skip
    gone = await api.post(f"{V1}/operators", {"channel": "gone", "url": "http://127.0.0.1:9/g",
                                              "isPaused": True})  # fmt: skip
    await api.delete(f"{V1}/operator/{gone['_id']}")
    await api.client.close()
    again = await make_api()  # a restart on the same data directory
    assert await again.get(f"{V1}/operators") == [made]


async def test_an_operator_moved_to_another_channel_serves_that_one(
    api: Api, worker: Worker
) -> None:
    async def echo(body: dict[str, Any], request: web.Request) -> web.Response:
        return web.json_response({"output": body["input"]})

    worker.handlers = {"x": echo}
    op = await api.post(f"{V1}/operators", {"channel": "old", "url": worker.url("x")})
    await api.put(f"{V1}/operator/{op['_id']}", {"channel": "new"})
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", [
        {"name": "on_old", "channel": "old", "input": 1},
        {"name": "on_new", "channel": "new", "input": 2},
    ])  # fmt: skip

    async def new_done() -> bool:
        return bool((await tasks_of(api, gid))["on_new"]["isComplete"])

    await eventually(new_done, 10, what="the moved operator did not serve its new channel")
    await asyncio.sleep(0.2)
    tasks = await tasks_of(api, gid)
    assert tasks["on_old"]["status"] == "ready" and len(worker.seen) == 1
