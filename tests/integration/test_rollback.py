"""D2: a 503 means not done. A commit that fails drops its writes; the server answers 503 until
the store commits again, then reloads what was committed: nothing a client was refused appears
later, and nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp

from crew_aio.app import STORE
from crew_aio.http_api import SERVICE
from tests.integration.conftest import Api, ApiFactory, until_healthy

V1 = "/api/v1"


async def break_store(api: Api) -> Any:
    """Cap the SQLite file at its size: the next write that needs a page fails (SQLITE_FULL)."""
    assert api.client.app is not None
    store = api.client.app[STORE]
    (pages,) = await store._query("PRAGMA page_count")
    await store._query(f"PRAGMA max_page_count={pages}")
    return store


async def heal(store: Any) -> None:
    await store._query("PRAGMA max_page_count=1073741823")


async def test_a_503_means_not_done(api: Api) -> None:
    gid = await api.group("kept")
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    lease = (await api.acquire("c"))["task"]
    store = await break_store(api)
    big = {"name": "refused", "channel": "c", "input": {"blob": "x" * 100_000}}
    refused = await api.post(f"{V1}/task_group/{gid}/tasks", big, status=503)
    assert refused["code"] == "store_unavailable"
    # while the store is down (and the state reloads), everything answers 503
    await api.get(f"{V1}/task_groups", status=503)
    for public in ("/api-docs/", "/api-docs/static/swagger-ui.css", f"{V1}/openapi.json"):
        assert (await api.client.get(public)).status == 200, public  # the public pages stay
    children = [{"name": f"k{i}", "channel": "d", "input": {"pad": "y" * 5000}} for i in range(40)]
    await api.release(lease["_id"], output={"done": True}, children=children, status=503)
    await heal(store)
    await until_healthy(api)
    groups = await api.get(f"{V1}/task_groups")
    assert [g["name"] for g in groups] == ["kept"]
    task = await api.get(f"{V1}/task/{lease['_id']}")
    assert task["status"] == "leased" and task["leaseId"] == lease["leaseId"]  # as acknowledged
    assert [t["name"] for t in await api.get(f"{V1}/task_group/{gid}/tasks")] == ["t"]  # no
    # "refused" task, no children of the refused release
    # and the worker's retry of its release now goes through, once
    done = await api.release(lease["_id"], leaseId=lease["leaseId"], output={"done": True},
                             children=children[:2])  # fmt: skip
    assert done["isComplete"] is True
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 3


async def test_an_idempotency_key_makes_a_retried_create_safe(make_api: ApiFactory) -> None:
    """A create whose answer was lost is retried with the same key: the first try's objects
    come back, nothing is created twice, even across a restart; the key reused for another
    request is a 409."""
    api = await make_api()
    key = {"Idempotency-Key": "create-42"}
    first = await api.call("POST", f"{V1}/task_groups", {"name": "g"}, headers=key)
    again = await api.call("POST", f"{V1}/task_groups", {"name": "g"}, headers=key)
    assert again["_id"] == first["_id"] and len(await api.get(f"{V1}/task_groups")) == 1
    other = await api.call("POST", f"{V1}/task_groups", {"name": "h"}, headers=key, status=409)
    assert other["code"] == "conflict" and "Idempotency-Key" in other["message"]
    gid = first["_id"]
    dag = [{"_child_id": 1, "name": "a", "channel": "c"},
           {"_parent_ids": [1], "name": "b", "channel": "c"}]  # fmt: skip
    tasks_key = {"Idempotency-Key": "dag-7"}
    made = await api.call("POST", f"{V1}/task_group/{gid}/tasks", dag, headers=tasks_key)
    await api.client.close()
    api = await make_api()  # a restart: the key is committed with what it made
    redo = await api.call("POST", f"{V1}/task_group/{gid}/tasks", dag, headers=tasks_key)
    assert [t["_id"] for t in redo] == [t["_id"] for t in made]
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 2
    api.clock.advance(86_401)  # a day later the key is forgotten: a new create
    assert api.client.app is not None
    await api.client.app[SERVICE].tick()
    fresh = await api.call("POST", f"{V1}/task_group/{gid}/tasks", dag, headers=tasks_key)
    assert {t["_id"] for t in fresh}.isdisjoint(t["_id"] for t in made)


async def test_twin_creates_sent_together_with_one_key_create_once(api: Api) -> None:
    """A client that retries while its first try is still running (its timeout passed): the
    twin waits for the first and gets its tasks; nothing is created twice."""
    assert api.client.app is not None
    api.client.app[SERVICE].step = 1  # the first try yields after every task: a wide window
    gid = await api.group()
    body = [{"name": f"t{i}", "channel": "c"} for i in range(50)]
    key = {"Idempotency-Key": "twins"}
    path = f"{V1}/task_group/{gid}/tasks"
    answers = await asyncio.gather(*(api.call("POST", path, body, headers=key) for _ in range(4)))
    ids = {tuple(t["_id"] for t in answer) for answer in answers}
    assert len(ids) == 1
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 50


async def test_a_socket_writes_an_ack_only_after_its_commit(api: Api) -> None:
    """Issue 11's seam: the service hands the WebSocket each answer with its commit barrier;
    the socket writes the ``ack`` once that commit is done, not before."""
    assert api.client.app is not None
    store = api.client.app[STORE]
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    lease = (await api.acquire("c"))["task"]
    ws = await api.client.ws_connect(f"{V1}/ws")
    store.hold()  # the release is staged, its commit cannot start
    await ws.send_json({"type": "release", "ref": 1, "taskId": lease["_id"], "workerId": "w1",
                        "leaseId": lease["leaseId"], "output": 1})  # fmt: skip
    with contextlib.suppress(TimeoutError):
        msg = await asyncio.wait_for(ws.receive(), 0.3)
        raise AssertionError(f"an ack before its commit: {msg.data}")
    assert store.pending > 0
    store.release()
    ack = await asyncio.wait_for(ws.receive_json(), 3)
    assert ack["type"] == "ack" and ack["task"]["isComplete"] is True
    assert store.pending == 0
    await ws.close()


async def test_a_socket_never_acks_a_release_whose_commit_failed(api: Api) -> None:
    """A WebSocket release whose commit fails gets no ``ack``: the socket closes with 1013 and
    the task is as last acknowledged (leased), for the worker to release again."""
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    lease = (await api.acquire("c"))["task"]
    ws = await api.client.ws_connect(f"{V1}/ws")
    store = await break_store(api)
    await ws.send_json({"type": "release", "ref": 1, "taskId": lease["_id"], "workerId": "w1",
                        "leaseId": lease["leaseId"],
                        "children": [{"name": f"k{i}", "channel": "d", "input": "y" * 5000}
                                     for i in range(40)]})  # fmt: skip
    msg = await asyncio.wait_for(ws.receive(), 5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED), msg
    assert ws.close_code == 1013
    await heal(store)
    await until_healthy(api)
    task = await api.get(f"{V1}/task/{lease['_id']}")
    assert task["status"] == "leased" and task["leaseId"] == lease["leaseId"]
    assert [t["name"] for t in await api.get(f"{V1}/task_group/{gid}/tasks")] == ["t"]


async def test_healthz_says_unhealthy_until_the_reload_is_done(api: Api) -> None:
    """The store commits again before the committed state is reloaded: ``/healthz`` answers
    503 until the reload is in, since every request is refused meanwhile (a supervisor or a
    load balancer that trusts /healthz sends no work to a server that would answer 503)."""
    assert api.client.app is not None
    service = api.client.app[SERVICE]
    gate = asyncio.Event()
    reload = service.recovery.reload

    async def slow_reload() -> Any:
        await gate.wait()
        return await reload()

    service.recovery.reload = slow_reload
    gid = await api.group()
    store = await break_store(api)
    big = {"name": "refused", "channel": "c", "input": {"blob": "x" * 100_000}}
    await api.post(f"{V1}/task_group/{gid}/tasks", big, status=503)
    await heal(store)
    for _ in range(20):  # the store commits again (its probe does), the reload waits
        if await store.check():
            break
        await asyncio.sleep(0.05)
    assert (await api.client.get("/healthz")).status == 503
    await api.get(f"{V1}/task_groups", status=503)
    gate.set()
    await until_healthy(api)
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "kept", "channel": "c"})
