"""socket.io at /socket.io/ (Crew's live updates): a python-socketio client as crew-ui uses it.

Events arrive only after what they announce is committed, in order per task, and stop after
``unwatchTaskGroup``; with a token set, the handshake must carry the admin token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio

from crew_aio.app import STORE
from crew_aio.sio import SIO
from tests.integration.conftest import Api, ApiFactory

V1 = "/api/v1"
EVENTS = ("task:create", "task:update", "task:delete", "task_group:update", "group:delete",
          "group:syncPause", "group:retry", "group:reset", "workgroup:delay",
          "task:acquire:key", "task:release:key")  # fmt: skip


class Watcher:
    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        for name in EVENTS:
            self.client.on(name, self._collector(name))

    def _collector(self, name: str) -> Any:
        async def collect(*data: Any) -> None:  # a null payload comes as no argument
            await self.events.put((name, data[0] if data else None))

        return collect

    async def next(self, wait: float = 3.0) -> tuple[str, Any]:
        return await asyncio.wait_for(self.events.get(), wait)

    async def nothing(self, wait: float = 0.3) -> None:
        with contextlib.suppress(TimeoutError):
            event = await asyncio.wait_for(self.events.get(), wait)
            raise AssertionError(f"unexpected event {event}")


def url(api: Api) -> str:
    return str(api.client.make_url("/")).rstrip("/")


async def watched(api: Api, gid: str, watcher: Watcher) -> None:
    await watcher.client.emit("watchTaskGroup", {"taskGroupId": gid})
    assert api.client.app is not None
    for _ in range(200):  # Crew's watchTaskGroup has no answer: wait until the room is joined
        if gid in api.client.app[SIO].watched:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not watching")


@pytest.fixture
async def watcher() -> AsyncIterator[Watcher]:
    w = Watcher()
    yield w
    await w.client.disconnect()


async def test_events_come_after_commit_in_order_and_stop_after_unwatch(
    api: Api, watcher: Watcher
) -> None:
    assert api.client.app is not None
    store = api.client.app[STORE]
    gid = await api.group()
    await watcher.client.connect(url(api), transports=["websocket"])
    await watched(api, gid, watcher)
    store.hold()  # staged, not committed: nothing may be announced
    create = asyncio.create_task(
        api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    )
    await watcher.nothing()
    store.release()
    name, task = await watcher.next()
    assert name == "task:create" and task["name"] == "t" and task["status"] == "ready"
    await create
    lease = (await api.acquire("c"))["task"]
    assert await watcher.next() == ("task:update", {**lease})
    await api.release(lease["_id"], leaseId=lease["leaseId"], output={"ok": 1})
    name, done = await watcher.next()
    assert name == "task:update" and done["isComplete"] is True and done["output"] == {"ok": 1}
    await api.post(f"{V1}/task_group/{gid}/pause")
    seen = dict([await watcher.next(), await watcher.next()])
    assert seen["group:syncPause"] == {"isPaused": True}
    assert seen["task_group:update"]["isPaused"] is True
    await api.post(f"{V1}/task_group/{gid}/retry")
    assert (await watcher.next())[0] in ("group:retry", "task_group:update")
    await watcher.client.emit("unwatchTaskGroup", {"taskGroupId": gid})
    for _ in range(200):
        if gid not in api.client.app[SIO].watched:
            break
        await asyncio.sleep(0.01)
    while not watcher.events.empty():
        watcher.events.get_nowait()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "u", "channel": "c"})
    await watcher.nothing()


async def test_only_the_watched_group_is_heard(api: Api, watcher: Watcher) -> None:
    mine, other = await api.group("mine"), await api.group("other")
    await watcher.client.connect(url(api))  # long-polling, then upgraded: as crew-ui connects
    await watched(api, mine, watcher)
    await api.post(f"{V1}/task_group/{other}/tasks", {"name": "x", "channel": "c"})
    await api.post(f"{V1}/task_group/{mine}/tasks", {"name": "y", "channel": "c"})
    name, task = await watcher.next()
    assert (name, task["name"], task["taskGroupId"]) == ("task:create", "y", mine)
    await api.delete(f"{V1}/task_group/{mine}")
    names = [(await watcher.next())[0] for _ in range(2)]
    assert sorted(names) == ["group:delete", "task:delete"]


async def test_a_workgroup_delay_is_announced(api: Api, watcher: Watcher) -> None:
    gid = await api.group()
    await api.post(
        f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c", "workgroup": "acct"}
    )
    await watcher.client.connect(url(api), transports=["websocket"])
    await watched(api, gid, watcher)
    lease = (await api.acquire("c"))["task"]
    await watcher.next()  # the lease
    await api.release(lease["_id"], leaseId=lease["leaseId"], error={"message": "429"},
                      workgroupDelayInSeconds=60)  # fmt: skip
    got = dict([await watcher.next(), await watcher.next()])
    assert got["workgroup:delay"]["workgroup"] == "acct"
    assert got["workgroup:delay"]["update"]["runAfter"].endswith("Z")
    assert got["task:update"]["remainingAttempts"] == 4


async def test_with_a_token_the_handshake_must_carry_the_admin_token(
    make_api: ApiFactory,
) -> None:
    api = await make_api(api_token="admin-secret", worker_token="worker-secret")
    for auth in (None, {"token": "wrong"}, {"token": "worker-secret"}):
        client = socketio.AsyncClient(reconnection=False)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(url(api), auth=auth, transports=["websocket"])
        await client.disconnect()
    for how in ({"auth": {"token": "admin-secret"}},
                {"headers": {"Authorization": "Bearer admin-secret"}}):  # fmt: skip
        client = socketio.AsyncClient(reconnection=False)
        await client.connect(url(api), transports=["websocket"], **how)
        assert client.connected
        await client.disconnect()
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(url(api) + "?token=admin-secret")
    assert client.connected
    await client.disconnect()


async def test_what_a_failed_commit_dropped_is_never_announced(api: Api, watcher: Watcher) -> None:
    from tests.integration.conftest import until_healthy
    from tests.integration.test_rollback import break_store, heal

    gid = await api.group()
    await watcher.client.connect(url(api), transports=["websocket"])
    await watched(api, gid, watcher)
    store = await break_store(api)
    big = {"name": "refused", "channel": "c", "input": {"blob": "x" * 100_000}}
    await api.post(f"{V1}/task_group/{gid}/tasks", big, status=503)
    await watcher.nothing(0.5)
    await heal(store)
    await until_healthy(api)
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "kept", "channel": "c"})
    name, task = await watcher.next()  # the feed lives on after the failure
    assert (name, task["name"]) == ("task:create", "kept")


async def test_key_mates_are_summarised_as_crew_does(api: Api, watcher: Watcher) -> None:
    gid = await api.group()
    twins = [{"name": n, "channel": "c", "key": "same"} for n in ("a", "b")]
    await api.post(f"{V1}/task_group/{gid}/tasks", twins)
    await watcher.client.connect(url(api), transports=["websocket"])
    await watched(api, gid, watcher)
    lease = (await api.acquire("c"))["task"]
    got = [await watcher.next() for _ in range(3)]  # both tasks' updates and the summary
    summary = dict(e for e in got if e[0] == "task:acquire:key")["task:acquire:key"]
    assert summary["channel"] == "c" and summary["key"] == "same"
    assert summary["update"]["assignedTo"] == "w1"
    await api.release(lease["_id"], leaseId=lease["leaseId"], output={"ok": 1})
    got = [await watcher.next() for _ in range(3)]
    summary = dict(e for e in got if e[0] == "task:release:key")["task:release:key"]
    assert summary["update"] == {
        "assignedTo": None,
        "assignedAt": None,
        "output": {"ok": 1},
        "isComplete": True,
        "runAfter": None,
        "remainingAttempts": 0,
    }
