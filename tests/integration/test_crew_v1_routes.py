"""Every route handler of Crew 1.0.25's router (src/crew.ts), as a Crew client sees it.

One test (or a few) per handler: the status, the body, and the JSON type of each field Crew's
clients read (crew-ui, the Crew worker SDK, scripts written against MongoDB documents). Where a
Crew handler throws (a 500 from its catch-all), the contract is a 4xx naming the bad field.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from yarl import URL

from tests.integration.conftest import T0, Api, ApiFactory

V1 = "/api/v1"
MISSING = "0" * 24  # a well-formed id that names nothing

CREW_TASK_FIELDS = (
    "_id", "taskGroupId", "name", "channel", "workgroup", "key", "remainingAttempts",
    "isPaused", "parentsComplete", "isComplete", "priority", "runAfter", "progressWeight",
    "isSeed", "errorDelayInSeconds", "input", "output", "errors", "createdAt", "parentIds",
    "assignedTo", "assignedAt", "executeMessageId", "examineMessageId",
)  # fmt: skip
CREW_GROUP_FIELDS = ("_id", "name", "isPaused", "createdAt")
JS_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")  # Date.prototype.toJSON


def iso(seconds: float) -> str:
    """Epoch seconds → the string JSON.stringify gives a JavaScript Date."""
    when = datetime.fromtimestamp(seconds, UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def is_number(value: Any) -> bool:
    return type(value) in (int, float)


def assert_time(value: Any, nullable: bool = False) -> None:
    if nullable and value is None:
        return
    assert isinstance(value, str) and JS_DATE.match(value), value


def assert_crew_task(task: Any) -> None:
    """Every field of Crew's Task document, in its order (ours may follow), with its JSON type."""
    assert isinstance(task, dict), task
    assert tuple(task)[: len(CREW_TASK_FIELDS)] == CREW_TASK_FIELDS, list(task)
    assert type(task["_id"]) is str and task["_id"]
    assert type(task["taskGroupId"]) is str and task["taskGroupId"]
    assert type(task["name"]) is str or is_number(task["name"])
    assert type(task["channel"]) is str
    for name in ("workgroup", "key"):
        assert task[name] is None or type(task[name]) is str or is_number(task[name])
    assert type(task["remainingAttempts"]) is int
    for name in ("isPaused", "parentsComplete", "isComplete", "isSeed"):
        assert type(task[name]) is bool, (name, task[name])
    for name in ("priority", "progressWeight", "errorDelayInSeconds"):
        assert is_number(task[name]), (name, task[name])
        if isinstance(task[name], float):
            assert not task[name].is_integer(), (name, "a whole number must be a JSON integer")
    assert_time(task["runAfter"], nullable=True)
    assert type(task["errors"]) is list
    assert_time(task["createdAt"])
    assert type(task["parentIds"]) is list
    assert all(type(pid) is str for pid in task["parentIds"])
    assert task["assignedTo"] is None or type(task["assignedTo"]) is str
    assert_time(task["assignedAt"], nullable=True)
    assert task["executeMessageId"] is None
    assert task["examineMessageId"] is None


def assert_crew_group(group: Any) -> None:
    assert isinstance(group, dict), group
    assert tuple(group)[: len(CREW_GROUP_FIELDS)] == CREW_GROUP_FIELDS, list(group)
    assert type(group["_id"]) is str and group["_id"]
    assert type(group["name"]) is str or is_number(group["name"])
    assert type(group["isPaused"]) is bool
    assert_time(group["createdAt"])


def crew_fields(task: dict[str, Any]) -> dict[str, Any]:
    return {name: task[name] for name in CREW_TASK_FIELDS}


async def raw(api: Api, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """Any status; the body parsed as JSON when it is JSON."""
    resp = await api.client.request(method, path, json=body)
    text = await resp.text()
    try:
        return resp.status, json.loads(text)
    except ValueError:
        return resp.status, text


def assert_4xx_naming(status: int, body: Any, field: str) -> None:
    assert 400 <= status < 500, (status, body)
    assert field in json.dumps(body), (field, body)


async def new_group(api: Api, name: Any = "g", **fields: Any) -> dict[str, Any]:
    group: dict[str, Any] = await api.post(f"{V1}/task_groups", {"name": name, **fields})
    return group


async def new_task(api: Api, gid: str, name: Any = "t", channel: str = "c", **fields: Any) -> Any:
    return await api.post(f"{V1}/task_group/{gid}/tasks", {"name": name, "channel": channel,
                                                           **fields})  # fmt: skip


async def get_task(api: Api, tid: str) -> Any:
    return await api.get(f"{V1}/task/{tid}")


async def complete(api: Api, channel: str, tid: str, output: Any = "done") -> Any:
    lease = await api.acquire(channel, worker="finisher")
    assert lease["task"]["_id"] == tid
    return await api.release(tid, worker="finisher", output=output)


async def fail_once(api: Api, channel: str, tid: str, error: Any = "boom") -> Any:
    lease = await api.acquire(channel, worker="failer")
    assert lease["task"]["_id"] == tid
    return await api.release(tid, worker="failer", error=error)


# GET / and /healthz -------------------------------------------------------------------------


async def test_home_page_points_to_the_api_docs(api: Api) -> None:
    resp = await api.client.get("/")
    assert resp.status == 200
    assert resp.content_type == "text/html"
    assert "api-docs" in await resp.text()


async def test_healthz(api: Api) -> None:
    health = await api.get("/healthz")
    assert health["healthy"] is True


# task groups --------------------------------------------------------------------------------


async def test_list_task_groups_newest_first_default_limit_50(api: Api) -> None:
    assert await api.get(f"{V1}/task_groups") == []
    ids = []
    for i in range(52):
        ids.append((await new_group(api, f"g{i}"))["_id"])
        api.clock.advance(1)
    newest_first = ids[::-1]
    groups = await api.get(f"{V1}/task_groups")
    assert [g["_id"] for g in groups] == newest_first[:50]
    for group in groups:
        assert_crew_group(group)
    assert groups[0]["name"] == "g51" and groups[0]["createdAt"] == iso(T0 + 51)
    page = await api.get(f"{V1}/task_groups?limit=3&skip=2")
    assert [g["_id"] for g in page] == newest_first[2:5]
    tail = await api.get(f"{V1}/task_groups?skip=50")
    assert [g["_id"] for g in tail] == newest_first[50:]
    everything = await api.get(f"{V1}/task_groups?limit=0")  # MongoDB: limit(0) is no limit
    assert [g["_id"] for g in everything] == newest_first


async def test_count_task_groups(api: Api) -> None:
    assert await api.get(f"{V1}/task_groups/count") == {"count": 0}
    for i in range(3):
        await new_group(api, f"g{i}")
    count = await api.get(f"{V1}/task_groups/count")
    assert count == {"count": 3}
    assert type(count["count"]) is int


async def test_create_task_group(api: Api) -> None:
    group = await new_group(api, "Test Group")
    assert_crew_group(group)
    assert group["name"] == "Test Group"
    assert group["isPaused"] is False
    assert group["createdAt"] == iso(T0)
    paused = await new_group(api, "Paused", isPaused=True)
    assert paused["isPaused"] is True
    numbered = await new_group(api, 12345)
    assert numbered["name"] == 12345 and type(numbered["name"]) is int


async def test_get_task_group(api: Api) -> None:
    group = await new_group(api, "Test Group")
    got = await api.get(f"{V1}/task_group/{group['_id']}")
    assert_crew_group(got)
    assert {k: got[k] for k in CREW_GROUP_FIELDS} == {k: group[k] for k in CREW_GROUP_FIELDS}
    missing = await api.get(f"{V1}/task_group/{MISSING}", status=404)
    assert type(missing["message"]) is str and MISSING in missing["message"]
    status, body = await raw(api, "GET", f"{V1}/task_group/not-an-id")
    assert 400 <= status < 500, (status, body)


async def test_update_task_group_renames_only(api: Api) -> None:
    group = await new_group(api, "Wrong Name")
    gid = group["_id"]
    await new_task(api, gid)
    api.clock.advance(5)
    updated = await api.put(f"{V1}/task_group/{gid}", {"name": "Right Name", "isPaused": True})
    assert_crew_group(updated)
    assert updated["name"] == "Right Name"
    assert updated["isPaused"] is False  # pause has its own route
    assert updated["createdAt"] == group["createdAt"]
    got = await api.get(f"{V1}/task_group/{gid}")
    assert got["name"] == "Right Name" and got["isPaused"] is False
    assert (await api.acquire("c"))["task"] is not None
    status, body = await raw(api, "PUT", f"{V1}/task_group/{MISSING}", {"name": "x"})
    assert 400 <= status < 500, (status, body)


async def test_delete_task_group(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    other = (await new_group(api, "other"))["_id"]
    tasks = [await new_task(api, gid, f"t{i}") for i in range(2)]
    kept = await new_task(api, other, "kept")
    deleted = await api.delete(f"{V1}/task_group/{gid}")
    assert deleted["acknowledged"] is True
    assert deleted["deletedCount"] == 1 and type(deleted["deletedCount"]) is int
    await api.get(f"{V1}/task_group/{gid}", status=404)
    for task in tasks:
        await api.get(f"{V1}/task/{task['_id']}", status=404)
    assert (await get_task(api, kept["_id"]))["name"] == "kept"
    assert await api.get(f"{V1}/task_groups/count") == {"count": 1}
    again = await api.delete(f"{V1}/task_group/{gid}")
    assert again["acknowledged"] is True and again["deletedCount"] == 0
    unknown = await api.delete(f"{V1}/task_group/{MISSING}")
    assert unknown["acknowledged"] is True and unknown["deletedCount"] == 0


# tasks of a group ---------------------------------------------------------------------------


async def test_list_group_tasks_newest_first_all_by_default(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    other = (await new_group(api, "other"))["_id"]
    await new_task(api, other, "elsewhere")
    ids = []
    for i in range(55):
        api.clock.advance(1)
        ids.append((await new_task(api, gid, f"t{i}"))["_id"])
    newest_first = ids[::-1]
    tasks = await api.get(f"{V1}/task_group/{gid}/tasks")
    assert [t["_id"] for t in tasks] == newest_first  # all 55: no default limit
    for task in tasks:
        assert_crew_task(task)
        assert task["taskGroupId"] == gid
    page = await api.get(f"{V1}/task_group/{gid}/tasks?limit=10&skip=5")
    assert [t["_id"] for t in page] == newest_first[5:15]
    for limit in ("-1", "0"):
        everything = await api.get(f"{V1}/task_group/{gid}/tasks?limit={limit}")
        assert [t["_id"] for t in everything] == newest_first
    skipped = await api.get(f"{V1}/task_group/{gid}/tasks?limit=-1&skip=50")
    assert [t["_id"] for t in skipped] == newest_first[50:]


async def test_list_tasks_of_an_unknown_group_is_empty(api: Api) -> None:
    """Crew's handler only filters tasks by ``taskGroupId``: a group that is gone (deleted,
    cleaned) lists no tasks rather than a 404."""
    gid = (await new_group(api))["_id"]
    await new_task(api, gid)
    await api.delete(f"{V1}/task_group/{gid}")
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []
    assert await api.get(f"{V1}/task_group/{MISSING}/tasks") == []


async def test_create_task_has_every_crew_field_with_crew_defaults(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, "You can do it", "test_a")
    assert_crew_task(task)
    assert crew_fields(task) == {
        "_id": task["_id"],
        "taskGroupId": gid,
        "name": "You can do it",
        "channel": "test_a",
        "workgroup": None,
        "key": None,
        "remainingAttempts": 5,
        "isPaused": False,
        "parentsComplete": False,  # fromData: no parentIds field → false
        "isComplete": False,
        "priority": 0,
        "runAfter": None,
        "progressWeight": 1,
        "isSeed": False,
        "errorDelayInSeconds": 30,
        "input": None,
        "output": None,
        "errors": [],
        "createdAt": iso(T0),
        "parentIds": [],
        "assignedTo": None,
        "assignedAt": None,
        "executeMessageId": None,
        "examineMessageId": None,
    }
    for name in ("remainingAttempts", "priority", "progressWeight", "errorDelayInSeconds"):
        assert type(task[name]) is int, (name, task[name])
    got = await get_task(api, task["_id"])
    assert_crew_task(got)
    assert crew_fields(got) == crew_fields(task)


async def test_create_task_applies_crew_js_or_defaults(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(
        api, gid, remainingAttempts=0, key="", workgroup=0, input=0, priority=0,
        progressWeight=0, isSeed=0, runAfter="", errorDelayInSeconds=0,
    )  # fmt: skip
    assert_crew_task(task)
    assert task["remainingAttempts"] == 5 and type(task["remainingAttempts"]) is int
    assert task["key"] is None
    assert task["workgroup"] is None
    assert task["input"] is None
    assert task["priority"] == 0 and type(task["priority"]) is int
    assert task["progressWeight"] == 1 and type(task["progressWeight"]) is int
    assert task["isSeed"] is False
    assert task["runAfter"] is None
    assert task["errorDelayInSeconds"] == 0 and type(task["errorDelayInSeconds"]) is int


async def test_create_task_keeps_numbers_as_sent(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(
        api, gid, 67890, key=12345, workgroup=12345, remainingAttempts=2.0, priority=2.0
    )
    assert_crew_task(task)
    assert task["name"] == 67890 and type(task["name"]) is int
    assert task["key"] == 12345 and type(task["key"]) is int
    assert task["workgroup"] == 12345 and type(task["workgroup"]) is int
    assert task["remainingAttempts"] == 2 and type(task["remainingAttempts"]) is int
    assert task["priority"] == 2 and type(task["priority"]) is int
    for truthy in (1, "yes", True):
        seed = await new_task(api, gid, isSeed=truthy)
        assert seed["isSeed"] is True, truthy


async def test_create_task_ignores_is_paused_and_follows_its_group(api: Api) -> None:
    running = (await new_group(api, "running"))["_id"]
    paused = (await new_group(api, "paused", isPaused=True))["_id"]
    a = await new_task(api, running, "a", isPaused=True)
    assert a["isPaused"] is False
    b = await new_task(api, paused, "b", isPaused=False)
    b2 = await new_task(api, paused, "b2")
    assert b["isPaused"] is True and b2["isPaused"] is True
    assert (await api.acquire("c"))["task"]["_id"] == a["_id"]
    assert (await api.acquire("c"))["task"] is None  # b and b2 are paused
    await api.post(f"{V1}/task_group/{paused}/resume")
    for task in await api.get(f"{V1}/task_group/{paused}/tasks"):
        assert task["isPaused"] is False
    await api.post(f"{V1}/task_group/{paused}/pause")
    for task in await api.get(f"{V1}/task_group/{paused}/tasks"):
        assert task["isPaused"] is True

    # a child a release creates in a group paused meanwhile is paused too
    spawner = await new_task(api, running, "spawner", "s")
    await api.acquire("s")
    await api.post(f"{V1}/task_group/{running}/pause")
    children = [{"name": "spawned", "channel": "s", "isPaused": False}]
    await api.release(spawner["_id"], output="o", children=children)
    spawned = [t for t in await api.get(f"{V1}/task_group/{running}/tasks")
               if t["name"] == "spawned"]  # fmt: skip
    assert len(spawned) == 1 and spawned[0]["isPaused"] is True


async def test_create_task_parents_complete_as_crew_from_data_sets_it(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    no_field = await new_task(api, gid, "no field", "p")
    assert no_field["parentsComplete"] is False and no_field["parentIds"] == []
    empty = await new_task(api, gid, "empty", "p", parentIds=[])
    assert empty["parentsComplete"] is True and empty["parentIds"] == []
    # a root created without parentIds is still acquirable (Crew: parentIds of size 0)
    assert (await api.acquire("p"))["task"]["_id"] == no_field["_id"]

    parent = await new_task(api, gid, "parent", "q")
    waiting = await new_task(api, gid, "waiting", "r", parentIds=[parent["_id"]])
    assert waiting["parentsComplete"] is False and waiting["parentIds"] == [parent["_id"]]
    await complete(api, "q", parent["_id"])
    assert (await get_task(api, waiting["_id"]))["parentsComplete"] is True
    ready = await new_task(api, gid, "ready", "r", parentIds=[parent["_id"]])
    assert ready["parentsComplete"] is True
    other = await new_task(api, gid, "other parent", "s")
    mixed = await new_task(api, gid, "mixed", "r", parentIds=[parent["_id"], other["_id"]])
    assert mixed["parentsComplete"] is False
    assert mixed["parentIds"] == [parent["_id"], other["_id"]]

    orphan = {"name": "orphan", "channel": "r", "parentIds": [MISSING]}
    status, body = await raw(api, "POST", f"{V1}/task_group/{gid}/tasks", orphan)
    assert 400 <= status < 500, (status, body)


async def test_create_task_with_run_after(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, runAfter=iso(T0 + 3600))
    assert_crew_task(task)
    assert task["runAfter"] == iso(T0 + 3600)
    assert (await api.acquire("c"))["task"] is None
    api.clock.advance(3601)
    assert (await api.acquire("c"))["task"]["_id"] == task["_id"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "t"}, "channel"),
        ({"name": {"not": "a name"}, "channel": "c"}, "name"),
        ({"name": "t", "channel": "c", "remainingAttempts": "abc"}, "remainingAttempts"),
        ({"name": "t", "channel": "c", "parentIds": "not a list"}, "parentIds"),
    ],
)
async def test_create_task_bad_input_is_a_4xx_naming_the_field(
    api: Api, body: dict[str, Any], field: str
) -> None:
    gid = (await new_group(api))["_id"]
    status, answer = await raw(api, "POST", f"{V1}/task_group/{gid}/tasks", body)
    assert_4xx_naming(status, answer, field)
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []


async def test_create_task_in_unknown_group_is_a_4xx(api: Api) -> None:
    status, body = await raw(api, "POST", f"{V1}/task_group/{MISSING}/tasks",
                             {"name": "t", "channel": "c"})  # fmt: skip
    assert 400 <= status < 500, (status, body)


# pause, resume, retry, reset of a group -----------------------------------------------------


async def test_pause_group(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    tasks = [await new_task(api, gid, f"t{i}") for i in range(2)]
    paused = await api.post(f"{V1}/task_group/{gid}/pause")
    assert_crew_group(paused)
    assert paused["_id"] == gid and paused["isPaused"] is True
    for task in tasks:
        assert (await get_task(api, task["_id"]))["isPaused"] is True
    assert (await api.acquire("c"))["task"] is None
    assert (await api.get(f"{V1}/task_group/{gid}"))["isPaused"] is True


async def test_resume_group(api: Api) -> None:
    gid = (await new_group(api, isPaused=True))["_id"]
    task = await new_task(api, gid)
    assert (await api.acquire("c"))["task"] is None
    resumed = await api.post(f"{V1}/task_group/{gid}/resume")
    assert_crew_group(resumed)
    assert resumed["_id"] == gid and resumed["isPaused"] is False
    assert (await get_task(api, task["_id"]))["isPaused"] is False
    assert (await api.acquire("c"))["task"]["_id"] == task["_id"]


async def test_retry_group(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    failed = await new_task(api, gid, "failed", "f", remainingAttempts=1)
    done = await new_task(api, gid, "done", "d")
    fresh = await new_task(api, gid, "fresh", "n")
    await fail_once(api, "f", failed["_id"])
    await complete(api, "d", done["_id"])

    retried = await api.post(f"{V1}/task_group/{gid}/retry")
    assert_crew_group(retried)
    assert retried["_id"] == gid
    assert (await get_task(api, failed["_id"]))["remainingAttempts"] == 2  # Crew's default
    after_done = await get_task(api, done["_id"])
    assert after_done["isComplete"] is True and after_done["remainingAttempts"] == 0
    assert (await get_task(api, fresh["_id"]))["remainingAttempts"] == 5  # had attempts left

    await api.put(f"{V1}/task/{failed['_id']}", {"remainingAttempts": 0})
    await api.post(f"{V1}/task_group/{gid}/retry", {"remainingAttempts": "3"})  # parseInt
    again = await get_task(api, failed["_id"])
    assert again["remainingAttempts"] == 3 and type(again["remainingAttempts"]) is int


async def test_reset_group(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    root = await new_task(api, gid, "root", "a", errorDelayInSeconds=0)
    child = await new_task(api, gid, "child", "b", parentIds=[root["_id"]])
    await fail_once(api, "a", root["_id"])
    await complete(api, "a", root["_id"], {"out": 1})
    lease = await api.acquire("b", worker="holder")
    assert lease["task"]["_id"] == child["_id"]

    reset = await api.post(f"{V1}/task_group/{gid}/reset")
    assert_crew_group(reset)
    assert reset["_id"] == gid
    tasks = await api.get(f"{V1}/task_group/{gid}/tasks")
    assert len(tasks) == 2  # no seed: nothing deleted
    for task in tasks:
        assert_crew_task(task)
        assert task["isComplete"] is False
        assert task["remainingAttempts"] == 5  # Crew's route default
        assert task["errors"] == []
        assert task["output"] is None
        assert task["runAfter"] is None
        assert task["assignedTo"] is None
        assert task["assignedAt"] is None
        assert task["parentsComplete"] is False  # Crew's resetById sets it on every task
    assert (await api.acquire("b"))["task"] is None  # the child waits for its parent again
    assert (await api.acquire("a"))["task"]["_id"] == root["_id"]


async def test_reset_group_with_seeds_deletes_the_other_tasks(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    seed = await new_task(api, gid, "seed", "s", isSeed=True)
    lease = await api.acquire("s")
    children = [{"_child_id": 0, "name": "spawned", "channel": "x"}]
    await api.release(lease["task"]["_id"], output="o", children=children)
    await new_task(api, gid, "plain", "y")
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 3
    await api.post(f"{V1}/task_group/{gid}/reset")
    tasks = await api.get(f"{V1}/task_group/{gid}/tasks")
    assert [t["_id"] for t in tasks] == [seed["_id"]]
    assert tasks[0]["isComplete"] is False and tasks[0]["remainingAttempts"] == 5


# a task -------------------------------------------------------------------------------------


async def test_get_task(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, input={"a": [1, 2]})
    got = await get_task(api, task["_id"])
    assert_crew_task(got)
    assert crew_fields(got) == crew_fields(task)
    assert got["input"] == {"a": [1, 2]}
    missing = await api.get(f"{V1}/task/{MISSING}", status=404)
    assert type(missing["message"]) is str and MISSING in missing["message"]
    status, body = await raw(api, "GET", f"{V1}/task/not-an-id")
    assert 400 <= status < 500, (status, body)


async def test_update_task_ignores_the_fields_crew_will_not_change(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    other = (await new_group(api, "other"))["_id"]
    task = await new_task(api, gid, "Wrong task name")
    api.clock.advance(10)
    updated = await api.put(f"{V1}/task/{task['_id']}", {
        "name": "Right task name",
        "isPaused": True, "isComplete": True, "output": {"x": 1}, "errors": ["e"],
        "assignedTo": "someone", "createdAt": "2001-01-01T00:00:00.000Z",
        "taskGroupId": other, "parentsComplete": True, "assignedAt": "2001-01-01T00:00:00.000Z",
        "executeMessageId": "m1", "examineMessageId": "m2",
    })  # fmt: skip
    assert_crew_task(updated)
    assert updated["name"] == "Right task name"
    unchanged = {k: v for k, v in crew_fields(updated).items() if k != "name"}
    assert unchanged == {k: v for k, v in crew_fields(task).items() if k != "name"}
    got = await get_task(api, task["_id"])
    assert crew_fields(got) == crew_fields(updated)
    assert await api.get(f"{V1}/task_group/{other}/tasks") == []
    status, body = await raw(api, "PUT", f"{V1}/task/{MISSING}", {"name": "x"})
    assert 400 <= status < 500, (status, body)


async def test_update_task_accepts_crew_ui_edit_form(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    parent = await new_task(api, gid, "parent", "p")
    task = await new_task(api, gid, "child", "c", parentIds=[parent["_id"]])
    form = {
        "name": "edited", "channel": "c2", "workgroup": None, "key": None,
        "remainingAttempts": 3, "priority": 7, "progressWeight": 2, "errorDelayInSeconds": 10,
        "isSeed": True, "runAfter": None, "input": {"edited": True},
        "parentIds": [parent["_id"]],
    }  # fmt: skip
    updated = await api.put(f"{V1}/task/{task['_id']}", form)
    assert_crew_task(updated)
    for name, value in form.items():
        assert updated[name] == value, name
    for name in ("remainingAttempts", "priority", "progressWeight", "errorDelayInSeconds"):
        assert type(updated[name]) is int, name
    assert updated["parentsComplete"] is False
    assert updated["taskGroupId"] == gid and updated["createdAt"] == task["createdAt"]

    later = await api.put(f"{V1}/task/{task['_id']}", {"runAfter": iso(T0 + 600)})
    assert later["runAfter"] == iso(T0 + 600)
    assert later["name"] == "edited"  # a partial body changes only what it names


async def test_delete_task(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    leaf = await new_task(api, gid, "leaf")
    deleted = await api.delete(f"{V1}/task/{leaf['_id']}")
    assert deleted["acknowledged"] is True
    assert deleted["deletedCount"] == 1 and type(deleted["deletedCount"]) is int
    await api.get(f"{V1}/task/{leaf['_id']}", status=404)

    parent = await new_task(api, gid, "parent", "p")
    child = await new_task(api, gid, "child", "q", parentIds=[parent["_id"]])
    grandchild = await new_task(api, gid, "grandchild", "r", parentIds=[child["_id"]])
    bystander = await new_task(api, gid, "bystander")
    gone = await api.delete(f"{V1}/task/{parent['_id']}")
    assert gone["acknowledged"] is True
    assert gone["deletedCount"] == 1  # Crew answers its deleteOne of the task itself
    for task in (parent, child, grandchild):  # descendants go with it
        await api.get(f"{V1}/task/{task['_id']}", status=404)
    assert [t["_id"] for t in await api.get(f"{V1}/task_group/{gid}/tasks")] == [bystander["_id"]]
    status, body = await raw(api, "DELETE", f"{V1}/task/{MISSING}")
    assert status in (200, 404), (status, body)  # Crew: a TypeError (500)
    if status == 200:
        assert body["acknowledged"] is True and body["deletedCount"] == 0


async def test_reset_task(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, errorDelayInSeconds=0)
    await fail_once(api, "c", task["_id"], {"oops": 1})
    await complete(api, "c", task["_id"], {"done": "yes"})

    reset = await api.post(f"{V1}/task/{task['_id']}/reset", {"remainingAttempts": 1})
    assert_crew_task(reset)
    assert reset["_id"] == task["_id"]
    assert reset["isComplete"] is False
    assert reset["remainingAttempts"] == 1 and type(reset["remainingAttempts"]) is int
    assert reset["errors"] == []
    assert reset["output"] is None
    assert reset["runAfter"] is None
    assert reset["assignedTo"] is None and reset["assignedAt"] is None
    assert crew_fields(await get_task(api, task["_id"])) == crew_fields(reset)

    lease = await api.acquire("c")
    assert lease["task"]["_id"] == task["_id"]
    await api.release(task["_id"], output="again")
    no_body = await api.post(f"{V1}/task/{task['_id']}/reset")
    assert no_body["remainingAttempts"] == 2  # Crew's route default
    assert no_body["isComplete"] is False


async def test_retry_task(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, remainingAttempts=1)
    failed = await fail_once(api, "c", task["_id"])
    assert failed["remainingAttempts"] == 0

    retried = await api.post(f"{V1}/task/{task['_id']}/retry")
    assert_crew_task(retried)
    assert retried["_id"] == task["_id"]
    assert retried["remainingAttempts"] == 2 and retried["isComplete"] is False
    assert retried["errors"] == ["boom"]  # retry keeps the history; reset clears it

    three = await api.post(f"{V1}/task/{task['_id']}/retry", {"remainingAttempts": "3"})
    assert three["remainingAttempts"] == 3 and type(three["remainingAttempts"]) is int

    done = await new_task(api, gid, "done", "d")
    await complete(api, "d", done["_id"], "out")
    on_complete = await api.post(f"{V1}/task/{done['_id']}/retry")
    assert on_complete["remainingAttempts"] == 2
    assert on_complete["isComplete"] is True and on_complete["output"] == "out"


async def test_pluck_task(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    parent = await new_task(api, gid, "parent", "p")
    original = await new_task(
        api, gid, "plucked", "c", input={"n": 1}, key="k", workgroup="wg", priority=3,
        progressWeight=2, isSeed=True, errorDelayInSeconds=0, remainingAttempts=9,
        parentIds=[parent["_id"]],
    )  # fmt: skip
    plucked = await api.post(f"{V1}/task/{original['_id']}/pluck")
    assert_crew_task(plucked)
    assert plucked["_id"] != original["_id"]
    for name in ("name", "channel", "input", "key", "workgroup", "priority", "progressWeight",
                 "isSeed", "errorDelayInSeconds"):  # fmt: skip
        assert plucked[name] == original[name], name
    assert plucked["taskGroupId"] != gid
    assert plucked["isPaused"] is True
    assert plucked["isComplete"] is False
    assert plucked["remainingAttempts"] == 5  # not copied: fromData's default
    assert plucked["parentIds"] == []  # not copied
    assert plucked["parentsComplete"] is False  # fromData without a parentIds field
    assert plucked["errors"] == [] and plucked["output"] is None

    group = await api.get(f"{V1}/task_group/{plucked['taskGroupId']}")
    assert_crew_group(group)
    assert group["name"] == f"Pluck Task {original['_id']}"
    assert group["isPaused"] is True
    tasks = await api.get(f"{V1}/task_group/{plucked['taskGroupId']}/tasks")
    assert [t["_id"] for t in tasks] == [plucked["_id"]]
    assert crew_fields(await get_task(api, original["_id"])) == crew_fields(original)


# channels -----------------------------------------------------------------------------------


async def test_channels(api: Api) -> None:
    assert await api.get(f"{V1}/channels") == []
    gid = (await new_group(api))["_id"]
    done = await new_task(api, gid, "done", "c1")
    await new_task(api, gid, "held", "c1")
    await new_task(api, gid, "waiting", "c1")
    await new_task(api, gid, "other", "c2")
    await complete(api, "c1", done["_id"])
    await api.acquire("c1", worker="holder")
    stats = await api.get(f"{V1}/channels")
    assert isinstance(stats, list)
    by_name = {s["name"]: s for s in stats}
    assert by_name == {
        "c1": {"name": "c1", "totalCount": 3, "completedCount": 1, "assignedCount": 1},
        "c2": {"name": "c2", "totalCount": 1, "completedCount": 0, "assignedCount": 0},
    }
    for s in stats:
        for name in ("totalCount", "completedCount", "assignedCount"):
            assert type(s[name]) is int


async def test_channel_tasks_newest_first_default_limit_50(api: Api) -> None:
    assert await api.get(f"{V1}/channel/c/tasks") == []
    groups = [(await new_group(api, f"g{i}"))["_id"] for i in range(2)]
    await new_task(api, groups[0], "elsewhere", "other")
    ids = []
    for i in range(52):
        api.clock.advance(1)
        ids.append((await new_task(api, groups[i % 2], f"t{i}", "c"))["_id"])
    newest_first = ids[::-1]
    tasks = await api.get(f"{V1}/channel/c/tasks")
    assert [t["_id"] for t in tasks] == newest_first[:50]
    for task in tasks:
        assert_crew_task(task)
        assert task["channel"] == "c"
    assert [t["_id"] for t in await api.get(f"{V1}/channel/c/tasks?limit=0")] == newest_first
    page = await api.get(f"{V1}/channel/c/tasks?limit=5&skip=3")
    assert [t["_id"] for t in page] == newest_first[3:8]
    tail = await api.get(f"{V1}/channel/c/tasks?skip=50")
    assert [t["_id"] for t in tail] == newest_first[50:]


# acquire ------------------------------------------------------------------------------------


async def test_acquire(api: Api) -> None:
    empty = await api.acquire("c")
    assert empty["task"] is None

    gid = (await new_group(api))["_id"]
    low = await new_task(api, gid, "low", priority=0)
    api.clock.advance(1)
    high = await new_task(api, gid, "high", priority=5)
    api.clock.advance(1)
    high_later = await new_task(api, gid, "high later", priority=5)
    api.clock.advance(1)

    lease = await api.acquire("c", worker="w-acq")
    assert set(lease) >= {"task", "parents"}
    task = lease["task"]
    assert_crew_task(task)
    assert task["_id"] == high["_id"]  # priority first, then the oldest
    assert task["assignedTo"] == "w-acq"
    assert task["assignedAt"] == iso(T0 + 3)
    assert lease["parents"] == []
    got = await get_task(api, high["_id"])
    assert got["assignedTo"] == "w-acq" and got["assignedAt"] == iso(T0 + 3)
    assert (await api.acquire("c"))["task"]["_id"] == high_later["_id"]
    assert (await api.acquire("c"))["task"]["_id"] == low["_id"]
    assert (await api.acquire("c"))["task"] is None


async def test_acquire_answers_parents_in_parent_order(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    first = await new_task(api, gid, "first", "a", input={"i": 1})
    second = await new_task(api, gid, "second", "b", input=None)
    child = await new_task(api, gid, "child", "c", parentIds=[second["_id"], first["_id"]])
    assert (await api.acquire("c"))["task"] is None  # parents not complete
    await complete(api, "a", first["_id"], {"o": 1})
    assert (await api.acquire("c"))["task"] is None
    await complete(api, "b", second["_id"], [1, 2])
    lease = await api.acquire("c")
    assert lease["task"]["_id"] == child["_id"]
    assert lease["parents"] == [
        {"_id": second["_id"], "channel": "b", "input": None, "output": [1, 2]},
        {"_id": first["_id"], "channel": "a", "input": {"i": 1}, "output": {"o": 1}},
    ]
    for parent in lease["parents"]:
        assert list(parent) == ["_id", "channel", "input", "output"]


async def test_acquire_without_worker_id_is_a_4xx(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    status, body = await raw(api, "POST", f"{V1}/channel/c/acquire", {})
    assert_4xx_naming(status, body, "workerId")
    assert (await get_task(api, task["_id"]))["assignedTo"] is None


# release ------------------------------------------------------------------------------------


async def test_release_success(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, runAfter=iso(T0 + 10))
    api.clock.advance(11)
    lease = await api.acquire("c")
    assert lease["task"]["_id"] == task["_id"]
    done = await api.release(task["_id"], output={"done": "yes"})
    assert_crew_task(done)
    assert done["isComplete"] is True
    assert done["output"] == {"done": "yes"}
    assert done["remainingAttempts"] == 0 and type(done["remainingAttempts"]) is int
    assert done["assignedTo"] is None
    assert done["assignedAt"] is None
    assert done["runAfter"] is None
    assert done["errors"] == []
    assert crew_fields(await get_task(api, task["_id"])) == crew_fields(done)


@pytest.mark.parametrize("falsy", ["", 0, False, None])
async def test_release_with_a_falsy_error_is_a_success(api: Api, falsy: Any) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    await api.acquire("c")
    done = await api.release(task["_id"], error=falsy, output="fine")
    assert done["isComplete"] is True
    assert done["output"] == "fine"
    assert done["errors"] == []
    assert done["remainingAttempts"] == 0


@pytest.mark.parametrize("falsy", ["", 0, False])
async def test_release_with_a_falsy_output_stores_null(api: Api, falsy: Any) -> None:
    """Crew reads ``req.body.output || null``."""
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    await api.acquire("c")
    done = await api.release(task["_id"], output=falsy)
    assert done["isComplete"] is True
    assert done["output"] is None


async def test_release_with_an_error(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    now_task = await new_task(api, gid, "now", "n", errorDelayInSeconds=0)
    later_task = await new_task(api, gid, "later", "l")  # default 30 s delay
    await api.acquire("n")
    errored = await api.release(now_task["_id"], error={"oops": "I died"},
                                children=[{"name": "never", "channel": "x"}])  # fmt: skip
    assert_crew_task(errored)
    assert errored["isComplete"] is False
    assert errored["remainingAttempts"] == 4
    assert errored["errors"] == [{"oops": "I died"}]
    assert errored["runAfter"] is None
    assert errored["assignedTo"] is None and errored["assignedAt"] is None
    assert errored["output"] is None
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 2  # no children on error

    await api.acquire("n")
    twice = await api.release(now_task["_id"], error="plain text")
    assert twice["errors"] == [{"oops": "I died"}, "plain text"]
    assert twice["remainingAttempts"] == 3

    await api.acquire("l")
    delayed = await api.release(later_task["_id"], error=["a", 1])
    assert delayed["errors"] == [["a", 1]]
    assert delayed["runAfter"] == iso(T0 + 30)
    assert (await api.acquire("l"))["task"] is None
    api.clock.advance(31)
    assert (await api.acquire("l"))["task"]["_id"] == later_task["_id"]


async def test_release_of_the_last_attempt_leaves_the_task_failed(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid, remainingAttempts=1, errorDelayInSeconds=0)
    await api.acquire("c")
    failed = await api.release(task["_id"], error="boom")
    assert failed["remainingAttempts"] == 0 and failed["isComplete"] is False
    assert (await api.acquire("c"))["task"] is None


async def test_release_with_children(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    root = await new_task(api, gid, "root", "r")
    await api.acquire("r")
    children = [
        {"_child_id": 0, "name": "a", "channel": "k", "input": {"a": 1}, "priority": 2},
        {"_child_id": 1, "name": "b", "channel": "k", "runAfter": iso(T0 + 100)},
        {"_child_id": 2, "_parent_ids": [0, 1], "name": "c", "channel": "k", "key": 5},
        {"_child_id": 3, "name": "d", "channel": "k", "runAfter": iso(T0 + 5)},
    ]
    await api.release(root["_id"], output="o", children=children, childrenDelayInSeconds=20)
    tasks = {t["name"]: t for t in await api.get(f"{V1}/task_group/{gid}/tasks")}
    assert set(tasks) == {"root", "a", "b", "c", "d"}
    for task in tasks.values():
        assert_crew_task(task)
        assert task["taskGroupId"] == gid
    assert tasks["a"]["parentIds"] == [root["_id"]]
    assert tasks["a"]["parentsComplete"] is True
    assert tasks["a"]["input"] == {"a": 1} and tasks["a"]["priority"] == 2
    assert tasks["a"]["runAfter"] == iso(T0 + 20)  # childrenDelayInSeconds
    assert tasks["b"]["runAfter"] == iso(T0 + 100)  # already later than the delay
    assert tasks["c"]["parentIds"] == [tasks["a"]["_id"], tasks["b"]["_id"]]
    assert tasks["c"]["parentsComplete"] is False
    assert tasks["c"]["key"] == 5
    assert tasks["c"]["runAfter"] == iso(T0 + 20)  # every child created without a runAfter
    assert tasks["d"]["runAfter"] == iso(T0 + 20)  # a direct child's earlier runAfter is raised


async def test_release_with_a_child_naming_an_unknown_pseudo_id_is_a_4xx(api: Api) -> None:
    """Crew throws (its catch-all answers 500), deletes the children it made and leaves the task
    as it was: leased, not complete."""
    gid = (await new_group(api))["_id"]
    root = await new_task(api, gid, "root", "r")
    await api.acquire("r")
    children = [
        {"_child_id": 0, "name": "a", "channel": "k"},
        {"_child_id": 1, "_parent_ids": [7], "name": "b", "channel": "k"},
    ]
    body = {"workerId": "w1", "output": "o", "children": children}
    status, answer = await raw(api, "POST", f"{V1}/task/{root['_id']}/release", body)
    assert 400 <= status < 500, (status, answer)
    after = await get_task(api, root["_id"])
    assert after["isComplete"] is False and after["assignedTo"] == "w1"
    assert [t["name"] for t in await api.get(f"{V1}/task_group/{gid}/tasks")] == ["root"]


async def test_release_workgroup_delay(api: Api) -> None:
    """Crew applies ``workgroupDelayInSeconds`` after a success and after an error alike."""
    gid = (await new_group(api))["_id"]
    first = await new_task(api, gid, "first", "a", workgroup="wg", errorDelayInSeconds=0)
    mate = await new_task(api, gid, "mate", "b", workgroup="wg")
    stranger = await new_task(api, gid, "stranger", "b", workgroup="other")
    await api.acquire("a")
    await api.release(first["_id"], error="rate limited", workgroupDelayInSeconds=35)
    assert (await get_task(api, mate["_id"]))["runAfter"] == iso(T0 + 35)
    assert (await get_task(api, first["_id"]))["runAfter"] == iso(T0 + 35)
    assert (await get_task(api, stranger["_id"]))["runAfter"] is None
    api.clock.advance(36)
    await api.acquire("a")
    await api.release(first["_id"], output="ok", workgroupDelayInSeconds=10)
    assert (await get_task(api, mate["_id"]))["runAfter"] == iso(T0 + 46)
    assert (await get_task(api, first["_id"]))["runAfter"] is None  # complete: not delayed


async def test_release_completes_every_task_with_the_same_channel_and_key(api: Api) -> None:
    g1 = (await new_group(api, "g1"))["_id"]
    g2 = (await new_group(api, "g2"))["_id"]
    first = await new_task(api, g1, "first", "c", key="k")
    mate = await new_task(api, g2, "mate", "c", key="k")
    other_channel = await new_task(api, g1, "other channel", "d", key="k")
    other_key = await new_task(api, g1, "other key", "c", key="k2")
    lease = await api.acquire("c", worker="w1")
    assert lease["task"]["_id"] == first["_id"]
    held = await get_task(api, mate["_id"])
    assert held["assignedTo"] == "w1" and held["assignedAt"] == iso(T0)
    assert (await get_task(api, other_channel["_id"]))["assignedTo"] is None
    nxt = await api.acquire("c", worker="w2")  # the mate is held: the other key is next
    assert nxt["task"]["_id"] == other_key["_id"]

    await api.release(first["_id"], worker="w1", output={"shared": True})
    done = await get_task(api, mate["_id"])
    assert done["isComplete"] is True
    assert done["output"] == {"shared": True}
    assert done["remainingAttempts"] == 0
    assert done["assignedTo"] is None and done["assignedAt"] is None
    assert done["runAfter"] is None
    untouched = await get_task(api, other_channel["_id"])
    assert untouched["isComplete"] is False and untouched["remainingAttempts"] == 5


async def test_error_release_charges_every_task_with_the_same_channel_and_key(api: Api) -> None:
    g1 = (await new_group(api, "g1"))["_id"]
    g2 = (await new_group(api, "g2"))["_id"]
    first = await new_task(api, g1, "first", "c", key=77)
    mate = await new_task(api, g2, "mate", "c", key=77)
    other_channel = await new_task(api, g1, "other channel", "d", key=77)
    await api.acquire("c", worker="w1")
    assert (await get_task(api, mate["_id"]))["assignedTo"] == "w1"

    errored = await api.release(first["_id"], worker="w1", error={"code": 500})
    assert errored["remainingAttempts"] == 4
    assert errored["errors"] == [{"code": 500}]
    charged = await get_task(api, mate["_id"])
    assert charged["isComplete"] is False
    assert charged["remainingAttempts"] == 4
    assert charged["errors"] == [{"code": 500}]
    assert charged["assignedTo"] is None and charged["assignedAt"] is None
    assert charged["runAfter"] == iso(T0 + 30)
    untouched = await get_task(api, other_channel["_id"])
    assert untouched["remainingAttempts"] == 5 and untouched["errors"] == []


async def test_release_after_the_lease_expired(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    late = await new_task(api, gid, "late", "a", errorDelayInSeconds=0)
    taken = await new_task(api, gid, "taken", "b", errorDelayInSeconds=0)

    await api.acquire("a", worker="w1")
    api.clock.advance(61)  # past the 60 s default lease; nobody leases it since
    done = await api.release(late["_id"], worker="w1", output={"late": True})
    assert done["isComplete"] is True
    assert done["output"] == {"late": True}
    assert done["assignedTo"] is None

    await api.acquire("b", worker="w1")
    api.clock.advance(61)
    again = await api.acquire("b", worker="w2")
    assert again["task"]["_id"] == taken["_id"]
    stale = await api.release(taken["_id"], worker="w1", output="stale", status=409)
    assert type(stale["message"]) is str
    mine = await api.release(taken["_id"], worker="w2", output="mine")
    assert mine["isComplete"] is True and mine["output"] == "mine"


async def test_release_repeated_after_completion(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    await api.acquire("c", worker="w1")
    first = await api.release(task["_id"], worker="w1", output="first")
    again = await api.release(task["_id"], worker="w1", output="second")
    assert crew_fields(again) == crew_fields(first)
    assert again["output"] == "first"
    await api.release(task["_id"], worker="w2", output="third", status=409)
    assert (await get_task(api, task["_id"]))["output"] == "first"


async def test_release_by_a_worker_without_the_lease_is_a_409(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    await api.release(task["_id"], worker="w1", output="x", status=409)  # never acquired
    await api.acquire("c", worker="w1")
    await api.release(task["_id"], worker="w2", output="x", status=409)
    assert (await get_task(api, task["_id"]))["assignedTo"] == "w1"


async def test_release_bad_input_is_a_4xx(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    await api.acquire("c")
    status, body = await raw(api, "POST", f"{V1}/task/{task['_id']}/release", {"output": 1})
    assert_4xx_naming(status, body, "workerId")
    status, body = await raw(api, "POST", f"{V1}/task/{MISSING}/release", {"workerId": "w1"})
    assert status == 404, (status, body)
    assert (await get_task(api, task["_id"]))["isComplete"] is False


# Crew's cron endpoints (router.all) ---------------------------------------------------------


@pytest.mark.parametrize("route", ["clean", "bootstrap", "sync"])
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH"])
async def test_cron_endpoints_answer_success_for_any_method(
    api: Api, route: str, method: str
) -> None:
    status, body = await raw(api, method, f"{V1}/{route}")
    assert (status, body) == (200, {"success": True})
    status, body = await raw(api, method, f"{V1}/{route}?batch=10")
    assert (status, body) == (200, {"success": True})


async def test_clean_deletes_expired_groups(make_api: ApiFactory) -> None:
    """With cleanup on (Crew: CREW_CLEAN_EXPIRED_GROUPS), clean deletes groups older than the
    interval, their tasks with them. (The server's own hourly sweep may run as the fake clock
    jumps, so only the end state is checked, not how many one ``?batch=`` took.)"""
    api = await make_api(clean_expired_groups=True, expired_group_interval_days=7)
    old = [(await new_group(api, f"old{i}"))["_id"] for i in range(2)]
    task = await new_task(api, old[0])
    assert await api.post(f"{V1}/clean") == {"success": True}
    assert await api.get(f"{V1}/task_groups/count") == {"count": 2}  # not expired yet
    api.clock.advance(8 * 86400)
    fresh = (await new_group(api, "fresh"))["_id"]
    assert await api.post(f"{V1}/clean?batch=1") == {"success": True}
    assert await api.get(f"{V1}/clean") == {"success": True}
    assert [g["_id"] for g in await api.get(f"{V1}/task_groups")] == [fresh]
    await api.get(f"{V1}/task/{task['_id']}", status=404)


async def test_bootstrap_leaves_tasks_as_they_are(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    task = await new_task(api, gid)
    assert await api.post(f"{V1}/bootstrap") == {"success": True}
    assert crew_fields(await get_task(api, task["_id"])) == crew_fields(task)
    assert (await api.acquire("c"))["task"]["_id"] == task["_id"]


async def test_sync_answers_success_and_children_of_complete_parents_are_ready(api: Api) -> None:
    gid = (await new_group(api))["_id"]
    parent = await new_task(api, gid, "parent", "p")
    child = await new_task(api, gid, "child", "c", parentIds=[parent["_id"]])
    await complete(api, "p", parent["_id"])
    assert await api.post(f"{V1}/sync") == {"success": True}
    assert (await get_task(api, child["_id"]))["parentsComplete"] is True


# Swagger UI ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api-docs", "/api-docs/"])
async def test_api_docs_serves_swagger_ui_without_a_cdn(api: Api, path: str) -> None:
    resp = await api.client.get(path)
    assert resp.status == 200
    assert resp.content_type == "text/html"
    page = await resp.text()
    assert "swagger" in page.lower()
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page)
    assert any(a.endswith(".js") for a in assets), assets
    assert any(a.endswith(".css") for a in assets), assets
    for asset in assets:
        url = resp.url.join(URL(asset))
        assert url.host == resp.url.host and url.port == resp.url.port, asset
        fetched = await api.client.session.get(url)
        assert fetched.status == 200, (asset, fetched.status)
        await fetched.read()


# trailing slashes ---------------------------------------------------------------------------


async def test_every_route_accepts_a_trailing_slash(api: Api) -> None:
    group = await api.post(f"{V1}/task_groups/", {"name": "g"})
    gid = group["_id"]
    task = await api.post(f"{V1}/task_group/{gid}/tasks/", {"name": "t", "channel": "c"})
    tid = task["_id"]
    assert (await api.get("/healthz/"))["healthy"] is True
    assert [g["_id"] for g in await api.get(f"{V1}/task_groups/")] == [gid]
    assert await api.get(f"{V1}/task_groups/count/") == {"count": 1}
    assert (await api.get(f"{V1}/task_group/{gid}/"))["_id"] == gid
    assert (await api.put(f"{V1}/task_group/{gid}/", {"name": "g2"}))["name"] == "g2"
    assert [t["_id"] for t in await api.get(f"{V1}/task_group/{gid}/tasks/")] == [tid]
    assert (await api.post(f"{V1}/task_group/{gid}/pause/"))["isPaused"] is True
    assert (await api.post(f"{V1}/task_group/{gid}/resume/"))["isPaused"] is False
    assert (await api.post(f"{V1}/task_group/{gid}/retry/"))["_id"] == gid
    assert (await api.post(f"{V1}/task_group/{gid}/reset/"))["_id"] == gid
    assert (await api.get(f"{V1}/task/{tid}/"))["_id"] == tid
    assert (await api.put(f"{V1}/task/{tid}/", {"name": "t2"}))["name"] == "t2"
    assert (await api.post(f"{V1}/task/{tid}/reset/"))["remainingAttempts"] == 2
    assert (await api.post(f"{V1}/task/{tid}/retry/"))["remainingAttempts"] == 2
    assert [c["name"] for c in await api.get(f"{V1}/channels/")] == ["c"]
    assert [t["_id"] for t in await api.get(f"{V1}/channel/c/tasks/")] == [tid]
    lease = await api.post(f"{V1}/channel/c/acquire/", {"workerId": "w1"})
    assert lease["task"]["_id"] == tid
    done = await api.post(f"{V1}/task/{tid}/release/", {"workerId": "w1", "output": 1})
    assert done["isComplete"] is True
    plucked = await api.post(f"{V1}/task/{tid}/pluck/")
    assert plucked["name"] == "t2"
    for route in ("clean", "bootstrap", "sync"):
        assert await api.post(f"{V1}/{route}/") == {"success": True}
    assert (await api.delete(f"{V1}/task/{plucked['_id']}/"))["deletedCount"] == 1
    assert (await api.delete(f"{V1}/task_group/{gid}/"))["deletedCount"] == 1
    home = await api.client.get("/")
    assert home.status == 200


async def test_put_task_parent_ids_relinks_or_names_the_field(api: Api) -> None:
    """crew-ui's edit form sends ``parentIds``: a new set re-links the task (Crew would store
    the strings and lose the links); a cycle or a stranger is a 400 and nothing changes."""
    gid = (await new_group(api))["_id"]
    a = await new_task(api, gid, "a", "c")
    b = await new_task(api, gid, "b", "c")
    c = await new_task(api, gid, "c", "c", parentIds=[a["_id"]])
    moved = await api.put(f"{V1}/task/{c['_id']}", {"name": "c", "parentIds": [b["_id"]]})
    assert moved["parentIds"] == [b["_id"]] and moved["status"] == "waiting"
    err = await api.put(f"{V1}/task/{b['_id']}", {"parentIds": [c["_id"]]}, status=400)
    assert err["field"] == "parentIds" and "cycle" in err["message"]
    assert (await api.get(f"{V1}/task/{b['_id']}"))["parentIds"] == []
