"""``POST /channel/:id/exchange`` (ext): releases, hand-backs and an acquire in one request and
one commit, each entry answered on its own (the SDK's REST mode)."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Api, ApiFactory

V1 = "/api/v1"
ADMIN, WORKER = "admin-secret-1", "worker-secret-2"


async def add(api: Api, gid: str, n: int, channel: str = "c") -> list[Any]:
    body = [{"name": f"t{i}", "channel": channel} for i in range(n)]
    return list(await api.post(f"{V1}/task_group/{gid}/tasks", body))


async def exchange(api: Api, status: int = 200, **body: Any) -> Any:
    return await api.post(f"{V1}/channel/c/exchange", {"workerId": "w1", **body}, status)


async def test_it_releases_and_acquires_in_one_request(api: Api) -> None:
    gid = await api.group()
    await add(api, gid, 5)
    first = await exchange(api, count=2)
    assert first["released"] == [] and first["returned"] == []
    held = [lease["task"] for lease in first["tasks"]]
    assert [t["name"] for t in held] == ["t0", "t1"] and all(t["leaseId"] for t in held)
    releases = [{"taskId": held[0]["_id"], "leaseId": held[0]["leaseId"], "output": {"n": 0}},
                {"taskId": held[1]["_id"], "error": {"message": "boom"}}]  # fmt: skip
    second = await exchange(api, releases=releases, count=3)
    ok, failed = second["released"]
    assert ok["task"]["status"] == "completed" and ok["task"]["output"] == {"n": 0}
    assert failed["task"]["errors"] == [{"message": "boom"}]
    assert [lease["task"]["name"] for lease in second["tasks"]] == ["t2", "t3", "t4"]
    # everything it answered is committed: a restart would show the same
    assert (await api.get(f"{V1}/task/{held[0]['_id']}"))["status"] == "completed"


async def test_each_entry_is_answered_on_its_own(api: Api) -> None:
    gid = await api.group()
    await add(api, gid, 2)
    (lease,) = (await exchange(api, count=1))["tasks"]
    tid = lease["task"]["_id"]
    releases: list[Any] = [
        "nope",
        {"output": 1},
        {"taskId": "0" * 24, "output": 1},
        {"taskId": tid, "output": 1, "workgroupDelayInSeconds": -1},
        {"taskId": tid, "output": 2, "workerId": "someone-else"},
        {"taskId": tid, "output": 3},
    ]
    answer = await exchange(api, releases=releases)
    got = answer["released"]
    assert got[0]["error"]["status"] == 400 and got[0]["error"]["field"] == "releases[0]"
    assert got[1]["error"]["status"] == 400 and got[1]["error"]["field"] == "releases[1].taskId"
    assert got[2]["error"]["status"] == 404
    assert (
        got[3]["error"]["status"] == 400 and "workgroupDelayInSeconds" in got[3]["error"]["field"]
    )
    assert got[4]["error"]["status"] == 409  # not that worker's lease
    assert got[5]["task"]["output"] == 3 and answer["tasks"] == []


async def test_a_worker_token_learns_only_of_its_own_leases(make_api: ApiFactory) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    api.client.session.headers["Authorization"] = f"Bearer {ADMIN}"
    gid = await api.group()
    api.client.session.headers["Authorization"] = f"Bearer {WORKER}"
    answer = await exchange(api, releases=[{"taskId": "0" * 24, "output": 1}],
                            returns=[{"taskId": gid}])  # fmt: skip
    for entry in answer["released"] + answer["returned"]:
        assert (
            entry["error"]["status"] == 409
            and "not leased by this worker" in entry["error"]["message"]
        )


async def test_returns_hand_leases_back_without_an_attempt(api: Api) -> None:
    gid = await api.group()
    await add(api, gid, 3)
    leases = [x["task"] for x in (await exchange(api, count=3))["tasks"]]
    back = [{"taskId": t["_id"], "leaseId": t["leaseId"]} for t in leases[1:]]
    answer = await exchange(api, returns=back)
    assert [r["task"]["status"] for r in answer["returned"]] == ["ready", "ready"]
    again = await api.acquire("c", worker="w2", count=5)
    assert sorted(x["task"]["_id"] for x in again["tasks"]) == sorted(t["_id"] for t in leases[1:])
    assert all(not x["task"]["errors"] for x in again["tasks"])


async def test_the_body_is_checked_whole(api: Api) -> None:
    bad = await api.post(f"{V1}/channel/c/exchange", {"count": 1}, 400)
    assert bad["field"] == "workerId"
    bad = await exchange(api, 400, count=1001)
    assert bad["field"] == "count"
    bad = await exchange(api, 400, releases=[{}] * 1001)
    assert bad["field"] == "releases"
    bad = await exchange(api, 400, returns=[{"leaseId": "x"}])
    assert bad["field"] == "returns[0].taskId"


async def test_an_empty_exchange_with_a_wait_long_polls(api: Api) -> None:
    import asyncio

    gid = await api.group()
    poll = asyncio.create_task(exchange(api, count=2, waitSeconds=5))
    await asyncio.sleep(0.05)
    assert not poll.done()
    await add(api, gid, 1)
    answer = await asyncio.wait_for(poll, 5)
    assert [x["task"]["name"] for x in answer["tasks"]] == ["t0"]


async def test_a_brief_exchange_answers_successes_with_empty_entries(api: Api) -> None:
    gid = await api.group()
    await add(api, gid, 2)
    (lease,) = (await exchange(api, count=1))["tasks"]
    releases = [{"taskId": lease["task"]["_id"], "output": 1}, {"taskId": "0" * 24}]
    answer = await exchange(api, releases=releases, count=1, brief=True)
    ok, missing = answer["released"]
    assert ok == {} and missing["error"]["status"] == 404
    assert [x["task"]["name"] for x in answer["tasks"]] == ["t1"]
    assert (await api.get(f"{V1}/task/{lease['task']['_id']}"))["output"] == 1
