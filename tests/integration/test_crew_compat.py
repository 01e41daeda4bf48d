"""A worker that speaks only Crew v1's wire protocol runs a DAG to completion unchanged.

It sends `{workerId}` to acquire (no waitSeconds, count, leaseSeconds or leaseId), reads the
acquire response's top-level `parents`, and releases with `{workerId, output | error, children,
workgroupDelayInSeconds}`; it ignores every field crew_aio adds.
"""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import Api

V1 = "/api/v1"
CHANNELS = ("campaign", "adset", "qa")


async def crew_worker_step(api: Api, seen: list[str], failed: set[str]) -> bool:
    """One pass of a Crew worker over its channels; False when nothing was acquired."""
    worked = False
    for channel in CHANNELS:
        resp = await api.post(f"{V1}/channel/{channel}/acquire", {"workerId": "crew-worker"})
        task = resp["task"]
        if task is None:
            continue
        worked = True
        body = crew_release(task, resp["parents"], failed)
        await api.post(f"{V1}/task/{task['_id']}/release", {"workerId": "crew-worker", **body})
        seen.append(task["name"])
    return worked


def crew_release(task: dict[str, Any], parents: list[dict[str, Any]], failed: set[str]) -> Any:
    name = task["name"]
    if name == "adset-1" and name not in failed:  # flaky API: first try fails
        failed.add(name)
        return {"error": "HTTP 500 from the ads API", "workgroupDelayInSeconds": 0}
    if name == "campaign":
        children = [
            {"_child_id": f"s{i}", "name": f"adset-{i}", "channel": "adset", "input": {"i": i}}
            for i in range(3)
        ]
        children.append({"name": "qa", "channel": "qa", "_parent_ids": ["s0", "s1", "s2"]})
        return {"output": {"campaignId": 42}, "children": children}
    if name.startswith("adset"):
        assert parents[0]["output"] == {"campaignId": 42}
        return {"output": {"adsetId": task["input"]["i"]}}
    assert sorted(p["output"]["adsetId"] for p in parents) == [0, 1, 2]
    return {"output": "qa ok"}


async def test_crew_v1_worker_runs_a_dag(api: Api) -> None:
    gid = await api.group("crew")
    root = {"name": "campaign", "channel": "campaign", "errorDelayInSeconds": 0}
    await api.post(f"{V1}/task_group/{gid}/tasks", root)
    seen: list[str] = []
    failed: set[str] = set()
    for _ in range(20):
        if not await crew_worker_step(api, seen, failed):
            api.clock.advance(31)  # the failed ad set waits out its default 30 s error delay
    group = await api.get(f"{V1}/task_group/{gid}")
    assert group["counts"]["completed"] == 5 and group["progress"] == 1.0
    assert seen[0] == "campaign" and seen[-1] == "qa"
    assert seen.count("adset-1") == 2  # failed once, retried
