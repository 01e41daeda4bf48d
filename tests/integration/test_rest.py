"""Every REST endpoint of docs/API.md through the real app, SQLite store and all."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from crew_aio.app import STORE
from crew_aio.http_api import SERVICE
from crew_aio.service import Listing, Service
from tests.integration.conftest import T0, Api, ApiFactory

V1 = "/api/v1"


async def test_healthz(api: Api) -> None:
    health = await api.get("/healthz")
    assert health["healthy"] is True
    lag = health["loopLag"]  # crew_aio.loopmon: how late a 50 ms timer wakes, over a window
    assert set(lag) == {"p50Ms", "p99Ms", "maxMs", "samples", "windowSeconds", "stalls"}
    assert 0 <= lag["p50Ms"] <= lag["p99Ms"] <= lag["maxMs"]
    schemas = (await api.get(f"{V1}/openapi.json"))["components"]["schemas"]
    assert set(schemas["LoopLagOut"]["required"]) == set(lag)
    assert schemas["HealthOut"]["properties"]["loopLag"] == {
        "$ref": "#/components/schemas/LoopLagOut"
    }


async def test_group_crud_and_listing(api: Api) -> None:
    first = await api.group("first")
    second = await api.group("second")
    groups = await api.get(f"{V1}/task_groups")
    assert [g["_id"] for g in groups] == [second, first]  # newest first
    assert (await api.get(f"{V1}/task_groups?limit=1&skip=1"))[0]["_id"] == first
    assert await api.get(f"{V1}/task_groups/count") == {"count": 2}
    renamed = await api.put(f"{V1}/task_group/{first}", {"name": "renamed"})
    assert renamed["name"] == "renamed"
    assert renamed["createdAt"] == "2027-01-15T08:00:00.000Z"
    await api.delete(f"{V1}/task_group/{first}")
    await api.get(f"{V1}/task_group/{first}", status=404)
    assert await api.get(f"{V1}/task_groups/count") == {"count": 1}


async def test_three_task_dag_runs_in_order(api: Api) -> None:
    gid = await api.group()
    created = await api.post(
        f"{V1}/task_group/{gid}/tasks",
        [
            {"_child_id": "a", "name": "campaign", "channel": "c", "input": {"n": 1}},
            {"_child_id": "b", "_parent_ids": ["a"], "name": "adset", "channel": "c"},
            {"_parent_ids": ["a", "b"], "name": "qa", "channel": "qa"},
        ],
    )
    assert [t["status"] for t in created] == ["ready", "waiting", "waiting"]
    assert created[2]["parentIds"] == [created[0]["_id"], created[1]["_id"]]
    lease = await api.acquire("c")
    assert lease["task"]["name"] == "campaign"
    assert lease["task"]["leaseId"] and lease["parents"] == []
    assert (await api.acquire("c"))["task"] is None  # adset still waits
    done = await api.release(lease["task"]["_id"], output={"id": 7})
    assert done["status"] == "completed" and done["output"] == {"id": 7}
    lease = await api.acquire("c")
    assert lease["task"]["name"] == "adset"
    assert lease["parents"] == [{"_id": created[0]["_id"], "channel": "c", "input": {"n": 1},
                                 "output": {"id": 7}}]  # fmt: skip
    await api.release(lease["task"]["_id"], output=2)
    qa = await api.acquire("qa")
    assert [p["output"] for p in qa["parents"]] == [{"id": 7}, 2]
    group = await api.get(f"{V1}/task_group/{gid}")
    assert group["counts"]["completed"] == 2 and group["counts"]["leased"] == 1
    assert abs(group["progress"] - 2 / 3) < 1e-9


async def test_single_create_and_continuations(api: Api) -> None:
    gid = await api.group()
    task = await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "root", "channel": "c"})
    assert task["status"] == "ready" and task["remainingAttempts"] == 5
    lease = await api.acquire("c")
    children = [
        {"_child_id": "x", "name": "adset", "channel": "c"},
        {"_parent_ids": ["x"], "name": "ad", "channel": "c"},
    ]
    await api.release(lease["task"]["_id"], output=1, children=children, childrenDelayInSeconds=5)
    tasks = await api.get(f"{V1}/task_group/{gid}/tasks")  # newest first, as Crew lists
    assert [t["status"] for t in tasks] == ["waiting", "delayed", "completed"]
    assert tasks[1]["parentIds"] == [task["_id"]]
    api.clock.advance(6)
    assert (await api.acquire("c"))["task"]["name"] == "adset"


async def test_error_release_retries_then_fails(api: Api) -> None:
    gid = await api.group()
    body = {"name": "t", "channel": "c", "remainingAttempts": 2, "errorDelayInSeconds": 10}
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    tid = (await api.acquire("c"))["task"]["_id"]
    after = await api.release(tid, error={"message": "boom"})
    assert after["remainingAttempts"] == 1 and after["status"] == "delayed"
    assert after["errors"] == [{"message": "boom"}]
    assert (await api.acquire("c"))["task"] is None
    api.clock.advance(10)
    tid2 = (await api.acquire("c"))["task"]["_id"]
    assert tid2 == tid
    assert (await api.release(tid, error="again"))["status"] == "failed"
    group = await api.post(f"{V1}/task_group/{gid}/retry", {"remainingAttempts": 3})
    assert group["counts"]["ready"] == 1
    assert (await api.get(f"{V1}/task/{tid}"))["remainingAttempts"] == 3


async def test_release_conflicts_and_idempotency(api: Api) -> None:
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    lease = (await api.acquire("c"))["task"]
    tid = lease["_id"]
    wrong = await api.release(tid, worker="other", status=409)
    assert wrong["code"] == "stale_lease" and wrong["status"] == 409
    await api.release(tid, leaseId="nope", status=409)
    first = await api.release(tid, leaseId=lease["leaseId"], output="ok")
    again = await api.release(tid, output="different")
    assert again["output"] == "ok" and again["updatedAt"] == first["updatedAt"]
    await api.release("0" * 24, status=404)


async def test_lease_expiry_and_extend(api: Api) -> None:
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks",
                   {"name": "t", "channel": "c", "errorDelayInSeconds": 0})  # fmt: skip
    lease = (await api.acquire("c", leaseSeconds=10))["task"]
    assert lease["leaseExpiresAt"] == "2027-01-15T08:00:10.000Z"
    api.clock.advance(8)
    extended = await api.post(f"{V1}/task/{lease['_id']}/extend", {"workerId": "w1"})
    assert extended["leaseExpiresAt"] == "2027-01-15T08:01:08.000Z"  # default lease 60 s
    api.clock.advance(61)
    again = await api.acquire("c", worker="w2")  # the timer may not have ticked: acquire does
    assert again["task"]["_id"] == lease["_id"]
    assert again["task"]["errors"] == [{"message": "lease expired", "workerId": "w1"}]
    await api.release(lease["_id"], worker="w1", status=409)


async def test_long_poll_wakes_on_create(api: Api) -> None:
    gid = await api.group()
    loop = asyncio.get_running_loop()
    started = loop.time()
    poll = asyncio.create_task(api.acquire("c", waitSeconds=5))
    await asyncio.sleep(0.05)
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    lease = await poll
    assert lease["task"]["name"] == "t"
    assert loop.time() - started < 2


async def test_long_poll_times_out_empty(api: Api) -> None:
    assert await api.acquire("c", waitSeconds=0.1) == {"task": None, "parents": []}


async def test_acquire_count_and_priority(api: Api) -> None:
    gid = await api.group()
    body = [{"name": f"t{i}", "channel": "c", "priority": i % 3} for i in range(6)]
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    got = await api.acquire("c", count=4)
    assert [x["task"]["name"] for x in got["tasks"]] == ["t2", "t5", "t1", "t4"]


async def test_workgroup_delay(api: Api) -> None:
    gid = await api.group()
    body = [{"name": n, "channel": "c", "workgroup": wg}
            for n, wg in [("a", "tok1"), ("b", "tok1"), ("c", "tok2")]]  # fmt: skip
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    lease = (await api.acquire("c"))["task"]
    await api.release(lease["_id"], error="rate limited", workgroupDelayInSeconds=120)
    assert (await api.acquire("c"))["task"]["name"] == "c"
    assert (await api.acquire("c"))["task"] is None
    api.clock.advance(121)
    assert (await api.acquire("c"))["task"]["name"] in {"a", "b"}


async def test_key_merge_shares_result(api: Api) -> None:
    g1, g2 = await api.group("one"), await api.group("two")
    a = await api.post(f"{V1}/task_group/{g1}/tasks", {"name": "a", "channel": "c", "key": "k"})
    b = await api.post(f"{V1}/task_group/{g2}/tasks", {"name": "b", "channel": "c", "key": "k"})
    lease = (await api.acquire("c"))["task"]
    assert lease["_id"] == a["_id"]
    mate = await api.get(f"{V1}/task/{b['_id']}")
    assert mate["assignedTo"] == "w1" and mate["status"] == "leased"
    assert (await api.acquire("c"))["task"] is None
    await api.release(a["_id"], output={"shared": True})
    mate = await api.get(f"{V1}/task/{b['_id']}")
    assert mate["isComplete"] and mate["output"] == {"shared": True}
    channels = await api.get(f"{V1}/channels")
    assert channels == [{"name": "c", "totalCount": 2, "completedCount": 2, "assignedCount": 0}]


async def test_pause_resume_reset_pluck(api: Api) -> None:
    gid = await api.group()
    seed = await api.post(f"{V1}/task_group/{gid}/tasks",
                          {"name": "seed", "channel": "c", "isSeed": True})  # fmt: skip
    await api.post(f"{V1}/task_group/{gid}/pause")
    assert (await api.acquire("c"))["task"] is None
    assert (await api.get(f"{V1}/task/{seed['_id']}"))["status"] == "paused"
    await api.post(f"{V1}/task_group/{gid}/resume")
    lease = (await api.acquire("c"))["task"]
    child = {"name": "child", "channel": "d"}
    await api.release(lease["_id"], output=1, children=[child])
    reset = await api.post(f"{V1}/task_group/{gid}/reset")
    assert reset["counts"]["ready"] == 1 and sum(reset["counts"].values()) == 1
    plucked = await api.post(f"{V1}/task/{seed['_id']}/pluck")  # the copy, as Crew answers
    assert plucked["isPaused"] and plucked["status"] == "paused" and plucked["name"] == "seed"
    group = await api.get(f"{V1}/task_group/{plucked['taskGroupId']}")
    assert group["name"] == f"Pluck Task {seed['_id']}" and group["counts"]["paused"] == 1
    one = await api.post(f"{V1}/task/{seed['_id']}/reset")
    assert one["status"] == "ready" and one["remainingAttempts"] == 2


async def test_put_and_delete_task(api: Api) -> None:
    gid = await api.group()
    dag = await api.post(f"{V1}/task_group/{gid}/tasks", [
        {"_child_id": "a", "name": "a", "channel": "c"},
        {"_child_id": "b", "_parent_ids": ["a"], "name": "b", "channel": "c"},
    ])  # fmt: skip
    edit = {"priority": 5, "runAfter": "2030-01-01T00:00:00Z", "name": "A"}
    edited = await api.put(f"{V1}/task/{dag[0]['_id']}", edit)
    assert edited["status"] == "delayed" and edited["name"] == "A" and edited["priority"] == 5
    deleted = await api.delete(f"{V1}/task/{dag[0]['_id']}")
    assert deleted == {"acknowledged": True, "deletedCount": 1,
                       "deleted": [dag[0]["_id"], dag[1]["_id"]]}  # fmt: skip
    await api.get(f"{V1}/task/{dag[1]['_id']}", status=404)


async def test_channel_tasks_listing(api: Api) -> None:
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks",
                   [{"name": f"t{i}", "channel": "c"} for i in range(5)])  # fmt: skip
    page = await api.get(f"{V1}/channel/c/tasks?limit=2&skip=1")
    assert [t["name"] for t in page] == ["t3", "t2"]  # newest first


async def test_bad_input_names_the_field(api: Api) -> None:
    gid = await api.group()
    path = f"{V1}/task_group/{gid}/tasks"
    err = await api.post(path, {"name": "t", "channel": "c", "priority": "high"}, status=400)
    assert err["field"] == "priority" and "int" in err["message"]
    err = await api.post(path, {"name": "t", "channel": "c", "remainingAttempts": 2.5}, status=400)
    assert err["field"] == "remainingAttempts" and "whole number" in err["message"]
    err = await api.post(path, {"channel": "c"}, status=400)
    assert "name" in err["message"]
    err = await api.post(path, [{"name": "t", "channel": "c", "_parent_ids": ["zz"]}], status=400)
    assert err["field"] == "[0]._parent_ids"
    err = await api.post(path, [{"name": "t", "channel": "c"}, {"name": {}}], status=400)
    assert err["field"] == "[1].name"
    err = await api.get(f"{V1}/task_groups?limit=x", status=400)
    assert err["field"] == "limit"
    resp = await api.client.post(path, data=b"{nope", headers={"Content-Type": "application/json"})
    assert resp.status == 400 and "JSON" in (await resp.json())["message"]
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []  # nothing half-written
    await api.get(f"{V1}/task/nope", status=404)
    await api.post(f"{V1}/task_group/nope/tasks", {"name": "t", "channel": "c"}, status=404)


async def test_cycle_creates_nothing(api: Api) -> None:
    gid = await api.group()
    body = [{"_child_id": "a", "_parent_ids": ["b"], "name": "a", "channel": "c"},
            {"_child_id": "b", "_parent_ids": ["a"], "name": "b", "channel": "c"}]  # fmt: skip
    err = await api.post(f"{V1}/task_group/{gid}/tasks", body, status=400)
    assert "cycle" in err["message"]
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []


async def test_body_too_large(make_api: ApiFactory) -> None:
    api = await make_api(max_body_bytes=1024)
    gid = await api.group()
    big = {"name": "t", "channel": "c", "input": "x" * 4096}
    err = await api.post(f"{V1}/task_group/{gid}/tasks", big, status=413)
    assert err["code"] == "too_large"


async def test_unknown_route_is_json_404(api: Api) -> None:
    err = await api.get(f"{V1}/nothing", status=404)
    assert err["status"] == 404


async def test_time_inputs_accept_epoch_ms(api: Api) -> None:
    gid = await api.group()
    ms = int((T0 + 30) * 1000)
    task = await api.post(f"{V1}/task_group/{gid}/tasks",
                          {"name": "t", "channel": "c", "runAfter": ms})  # fmt: skip
    assert task["runAfter"] == "2027-01-15T08:00:30.000Z" and task["status"] == "delayed"


async def test_long_pollers_are_served_in_turn(api: Api) -> None:
    gid = await api.group()
    polls = []
    for worker in ("w1", "w2", "w3"):
        polls.append(asyncio.create_task(api.acquire("c", worker=worker, waitSeconds=5)))
        await asyncio.sleep(0.02)  # queue order = arrival order
    for name in ("first", "second", "third"):
        await api.post(f"{V1}/task_group/{gid}/tasks", {"name": name, "channel": "c"})
    got = [(await p)["task"] for p in polls]
    assert [(t["assignedTo"], t["name"]) for t in got] == [
        ("w1", "first"),
        ("w2", "second"),
        ("w3", "third"),
    ]


async def test_long_poll_with_count_takes_a_batch(api: Api) -> None:
    gid = await api.group()
    poll = asyncio.create_task(api.acquire("c", waitSeconds=5, count=10))
    await asyncio.sleep(0.02)
    await api.post(
        f"{V1}/task_group/{gid}/tasks", [{"name": f"t{i}", "channel": "c"} for i in range(3)]
    )
    got = await poll
    assert [x["task"]["name"] for x in got["tasks"]] == ["t0", "t1", "t2"]


async def test_cancelled_long_poll_hands_its_lease_back(api: Api) -> None:
    """A client that goes away right after its lease was granted costs the task no attempt."""
    from crew_aio import protocol as p
    from crew_aio.http_api import SERVICE

    app = api.client.app
    assert app is not None
    service = app[SERVICE]
    gid = await api.group()
    body = p.AcquireBody(worker_id="gone", wait_seconds=5)
    poll = asyncio.create_task(service.acquire("c", body))
    await asyncio.sleep(0.02)
    spec = p.TaskChildBody(name="t", channel="c")
    create = asyncio.create_task(service.create_tasks(gid, [spec]))
    await asyncio.sleep(0)  # the create stages its task: the dispatcher grants it to the poll
    poll.cancel()  # granted but not yet answered
    with pytest.raises(asyncio.CancelledError):
        await poll
    task = (await create)[0]
    after = await api.get(f"{V1}/task/{task['_id']}")
    assert after["status"] == "ready" and after["remainingAttempts"] == 5
    assert (await api.acquire("c", worker="next"))["task"]["_id"] == task["_id"]


async def test_a_big_listing_is_streamed_in_chunks_as_one_snapshot(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past Listing.CHUNK tasks the array is streamed chunk by chunk; what it shows is the state
    at the time of the request, even if a task changes while later chunks are rendered."""
    monkeypatch.setattr(Listing, "CHUNK", 3)
    gid = await api.group()
    created = await api.post(f"{V1}/task_group/{gid}/tasks",
                             [{"name": f"t{i}", "channel": "c"} for i in range(8)])  # fmt: skip
    assert api.client.app is not None
    engine = api.client.app[SERVICE].engine
    chunks = Listing.chunks

    def meddling(self: Listing) -> Iterator[list[Any]]:
        for n, chunk in enumerate(chunks(self)):
            yield chunk
            if n == 0:  # another request changes a task between chunks
                engine.tasks[created[0]["_id"]].name = "changed"  # listed last

    monkeypatch.setattr(Listing, "chunks", meddling)
    resp = await api.client.get(f"{V1}/task_group/{gid}/tasks")
    assert resp.status == 200 and resp.headers["Content-Type"].startswith("application/json")
    listed = await resp.json()
    assert [t["name"] for t in listed] == [f"t{i}" for i in reversed(range(8))]
    newest_first = created[::-1]
    assert listed == [
        {**t, "updatedAt": listed[i]["updatedAt"]} for i, t in enumerate(newest_first)
    ]
    small = await api.get(f"{V1}/channel/c/tasks?limit=2")  # not streamed: one body
    assert [t["name"] for t in small] == ["t7", "t6"]


async def test_a_big_create_yields_while_building_and_answers_the_tasks_as_created(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch past Listing.CHUNK entries: its specs are built a chunk at a time (the loop runs
    other work in between), the engine steps are sliced too, and the answer shows every task as
    created, streamed, even though a waiting worker leased the first one right after."""
    monkeypatch.setattr(Listing, "CHUNK", 3)
    assert api.client.app is not None
    service = api.client.app[SERVICE]
    spec, built = Service.spec, []

    def counting(self: Service, body: Any, index: int) -> Any:
        built.append(index)
        return spec(self, body, index)

    monkeypatch.setattr(Service, "spec", counting)
    ticks: list[int] = []

    async def ticker() -> None:
        while True:
            ticks.append(len(built))
            await asyncio.sleep(0)

    gid = await api.group()
    poll = asyncio.create_task(api.acquire("c", worker="w", waitSeconds=5))
    await asyncio.sleep(0.05)  # the long poll waits in the channel's queue
    tick = asyncio.create_task(ticker())
    created = await api.post(f"{V1}/task_group/{gid}/tasks",
                             [{"name": f"t{i}", "channel": "c"} for i in range(8)])  # fmt: skip
    tick.cancel()
    assert {3, 6} <= set(ticks)  # other work ran between the chunks of specs
    assert [t["name"] for t in created] == [f"t{i}" for i in range(8)]
    assert {t["status"] for t in created} == {"ready"} and created[0]["assignedTo"] is None
    leased = (await poll)["task"]
    assert leased["_id"] == created[0]["_id"] and leased["assignedTo"] == "w"
    assert service.engine.tasks[created[0]["_id"]].assigned_to == "w"


async def test_a_big_snapshot_is_copied_in_chunks_and_leaves_out_deleted_tasks(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past SNAPSHOT_CHUNK tasks the copies are taken a chunk at a time, yielding between (a
    200,000-task listing held the loop 0.3 s); a task deleted meanwhile is left out."""
    from crew_aio import bulk as bulk_module

    monkeypatch.setattr(bulk_module, "SNAPSHOT_CHUNK", 3)
    gid = await api.group()
    created = await api.post(f"{V1}/task_group/{gid}/tasks",
                             [{"name": f"t{i}", "channel": "c"} for i in range(8)])  # fmt: skip
    assert api.client.app is not None
    engine = api.client.app[SERVICE].engine
    sleep = asyncio.sleep
    yields = 0

    async def deleting(delay: float) -> None:
        nonlocal yields
        yields += 1
        if yields == 1:  # between the first two chunks, another request deletes t0
            engine.delete_task(created[0]["_id"], api.clock.now())
        await sleep(delay)

    monkeypatch.setattr(asyncio, "sleep", deleting)
    listed = await api.get(f"{V1}/task_group/{gid}/tasks")
    monkeypatch.setattr(asyncio, "sleep", sleep)
    assert [t["name"] for t in listed] == [f"t{i}" for i in range(7, 0, -1)]
    assert yields >= 2


async def test_a_bad_entry_far_into_a_big_list_is_named_by_its_index(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from crew_aio import wire

    monkeypatch.setattr(wire, "ENTRIES_CHUNK", 4)
    gid = await api.group()
    body: list[Any] = [{"name": f"t{i}", "channel": "c"} for i in range(10)]
    body[9]["name"] = {}
    err = await api.post(f"{V1}/task_group/{gid}/tasks", body, status=400)
    assert err["field"] == "[9].name"
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []


async def test_operations_on_a_big_group_let_other_requests_run_and_commit_whole(
    api: Api,
) -> None:
    """A reset, a pause/resume and a delete of a group run a slice of tasks at a time: other
    requests are served between slices; the store commits nothing until it is all staged."""
    assert api.client.app is not None
    service = api.client.app[SERVICE]
    service.step = 3
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks",
                   [{"name": f"t{i}", "channel": "c"} for i in range(20)])  # fmt: skip
    store = api.client.app[STORE]
    commit, commits = store._commit, []

    async def counting(batch: Any) -> None:
        commits.append(len(batch))
        await commit(batch)

    store._commit = counting
    served: list[int] = []

    async def other() -> None:
        while True:
            served.append(len(commits))
            await asyncio.sleep(0)

    ticker = asyncio.create_task(other())
    reset = await api.post(f"{V1}/task_group/{gid}/reset", {"remainingAttempts": 3})
    assert reset["counts"]["ready"] == 20
    assert len(served) > 10 and commits[0] >= 20  # ran between slices; one commit of it all
    served.clear()
    await api.post(f"{V1}/task_group/{gid}/pause")
    await api.post(f"{V1}/task_group/{gid}/resume")
    deleted = await api.delete(f"{V1}/task_group/{gid}")
    assert deleted["deletedCount"] == 1 and len(served) > 5
    ticker.cancel()
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []
