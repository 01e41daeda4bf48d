"""Timers (lease reclaim, delayed tasks, expired groups), auth, and the OpenAPI document."""

from __future__ import annotations

import asyncio

import pytest
from openapi_spec_validator import validate

from crew_aio.app import TIMERS
from crew_aio.http_api import SERVICE
from crew_aio.routes import ROUTES
from tests.integration.conftest import Api, ApiFactory

V1 = "/api/v1"


async def settle(api: Api) -> None:
    """Let the timer task see the moved fake clock (it re-reads the clock when poked)."""
    app = api.client.app
    assert app is not None
    app[TIMERS].poke()
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_timer_reclaims_expired_lease_and_wakes_long_poll(api: Api) -> None:
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks",
                   {"name": "t", "channel": "c", "errorDelayInSeconds": 0})  # fmt: skip
    lease = (await api.acquire("c", leaseSeconds=5))["task"]
    poll = asyncio.create_task(api.acquire("c", worker="w2", waitSeconds=10))
    await asyncio.sleep(0.05)
    assert not poll.done()
    api.clock.advance(5)
    await settle(api)
    got = await asyncio.wait_for(poll, 5)
    assert got["task"]["_id"] == lease["_id"]
    assert got["task"]["assignedTo"] == "w2" and got["task"]["remainingAttempts"] == 4


async def test_timer_makes_delayed_task_ready(api: Api) -> None:
    gid = await api.group()
    body = {"name": "t", "channel": "c", "runAfter": "2027-01-15T08:01:00Z"}
    task = await api.post(f"{V1}/task_group/{gid}/tasks", body)
    assert task["status"] == "delayed"
    api.clock.advance(60)
    await settle(api)
    assert (await api.get(f"{V1}/task/{task['_id']}"))["status"] == "ready"


async def test_timer_wakes_a_long_poll_when_a_delayed_task_turns_ready(api: Api) -> None:
    gid = await api.group()
    body = {"name": "t", "channel": "c", "runAfter": "2027-01-15T08:01:00Z"}
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    poll = asyncio.create_task(api.acquire("c", waitSeconds=10))
    await asyncio.sleep(0.05)
    assert not poll.done()
    api.clock.advance(60)
    await settle(api)
    got = await asyncio.wait_for(poll, 5)
    assert got["task"]["name"] == "t"


async def test_timer_survives_a_failing_step(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    app = api.client.app
    assert app is not None
    service = app[TIMERS].service
    real_tick = service.tick
    calls: list[int] = []

    async def flaky_tick() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        await real_tick()

    monkeypatch.setattr(service, "tick", flaky_tick)
    gid = await api.group()
    body = {"name": "t", "channel": "c", "runAfter": "2027-01-15T08:01:00Z"}
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    poll = asyncio.create_task(api.acquire("c", waitSeconds=10))
    await asyncio.sleep(0.05)
    api.clock.advance(60)
    await settle(api)
    got = await asyncio.wait_for(poll, 5)
    assert got["task"]["name"] == "t"
    assert len(calls) >= 2


async def test_expired_groups_are_cleaned(make_api: ApiFactory) -> None:
    api = await make_api(clean_expired_groups=True, expired_group_interval_days=1)
    old = await api.group("old")
    api.clock.advance(86400 * 0.9)
    fresh = await api.group("fresh")
    api.clock.advance(86400 * 0.2)
    app = api.client.app
    assert app is not None
    assert await app[SERVICE].clean_expired_groups(86400) == 1
    await api.get(f"{V1}/task_group/{old}", status=404)
    await api.get(f"{V1}/task_group/{fresh}")


async def test_tokens(make_api: ApiFactory) -> None:
    api = await make_api(api_token="admin-secret", worker_token="worker-secret")
    admin = {"Authorization": "Bearer admin-secret"}
    worker = {"Authorization": "Bearer worker-secret"}
    assert (await api.client.get("/healthz")).status == 200
    assert (await api.client.get(f"{V1}/openapi.json")).status == 200
    assert (await api.client.get(f"{V1}/task_groups")).status == 401
    wrong = await api.client.get(f"{V1}/task_groups", headers={"Authorization": "Bearer x"})
    assert wrong.status == 401 and (await wrong.json())["code"] == "unauthorized"
    assert (await api.client.get(f"{V1}/task_groups", headers=admin)).status == 200
    resp = await api.client.get(f"{V1}/task_groups", headers=worker)
    assert resp.status == 403
    acq = await api.client.post(f"{V1}/channel/c/acquire", json={"workerId": "w"}, headers=worker)
    assert acq.status == 200
    acq = await api.client.post(f"{V1}/channel/c/acquire", json={"workerId": "w"}, headers=admin)
    assert acq.status == 200


async def test_openapi_document_is_valid_and_complete(api: Api) -> None:
    doc = await api.get(f"{V1}/openapi.json")
    validate(doc)
    for route in ROUTES:
        assert route.method.lower() in doc["paths"][route.path]
    create = doc["paths"][f"{V1}/task_group/{{id}}/tasks"]["post"]
    assert "requestBody" in create
    task = doc["components"]["schemas"]["TaskChildBody"]["properties"]
    assert {"_child_id", "_parent_ids", "errorDelayInSeconds", "runAfter"} <= set(task)
