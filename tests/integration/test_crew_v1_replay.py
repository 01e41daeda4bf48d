"""Crew 1.0.25's own unit tests (src/task.test.ts, src/task_group.test.ts) replayed over HTTP.

Crew's tests call its model (``Task.fromData``, ``Task.release``...) and sometimes write MongoDB
directly; here every step goes through the REST routes a Crew client uses, and a state Crew sets
by hand is reached the way a client would reach it (a task is completed by acquire + release, its
attempts are used up by a failing release). One test per Crew test, named in its docstring, with
Crew's data where it matters (integer pseudo-ids, ``errorDelayInSeconds: 0``...). Crew's checks of
its realtime emitter (``realtime.emit`` call counts) have no REST equivalent and are left out.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.integration.conftest import T0, Api

V1 = "/api/v1"


async def new_group(api: Api, name: str, **fields: Any) -> dict[str, Any]:
    group: dict[str, Any] = await api.post(f"{V1}/task_groups", {"name": name, **fields})
    return group


async def new_task(api: Api, gid: str, **fields: Any) -> dict[str, Any]:
    task: dict[str, Any] = await api.post(f"{V1}/task_group/{gid}/tasks", fields)
    return task


async def get_task(api: Api, tid: str) -> dict[str, Any]:
    task: dict[str, Any] = await api.get(f"{V1}/task/{tid}")
    return task


async def group_tasks(api: Api, gid: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = await api.get(f"{V1}/task_group/{gid}/tasks")
    return tasks


async def complete(api: Api, channel: str, tid: str, output: Any) -> dict[str, Any]:
    """Crew's tests set ``isComplete: true, output, remainingAttempts: 0`` in MongoDB; a client
    gets there by acquiring the task and releasing it with that output."""
    lease = await api.acquire(channel, worker="setup-worker")
    assert lease["task"]["_id"] == tid
    done: dict[str, Any] = await api.release(tid, worker="setup-worker", output=output)
    assert done["isComplete"] is True and done["remainingAttempts"] == 0
    return done


async def exhaust(api: Api, channel: str, tid: str, error: Any) -> dict[str, Any]:
    """Crew's tests set ``remainingAttempts: 0`` (and an error) in MongoDB; a client gets there
    with a task created with ``remainingAttempts: 1`` whose one attempt fails."""
    lease = await api.acquire(channel, worker="setup-worker")
    assert lease["task"]["_id"] == tid
    failed: dict[str, Any] = await api.release(tid, worker="setup-worker", error=error)
    assert failed["remainingAttempts"] == 0 and failed["isComplete"] is False
    return failed


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# task.test.ts -------------------------------------------------------------------------------


async def test_can_create_task_group_and_task(api: Api) -> None:
    """task.test.ts: 'can create task group and task'"""
    group = await new_group(api, "Test Group")
    assert isinstance(group["_id"], str) and group["_id"]
    task = await new_task(api, group["_id"], name="You can do it", channel="test_a")
    assert isinstance(task["_id"], str) and task["_id"]
    assert task["taskGroupId"] == group["_id"]


async def test_can_update_task(api: Api) -> None:
    """task.test.ts: 'can update task'"""
    group = await new_group(api, "Test Group")
    task = await new_task(api, group["_id"], name="Wrong task name", channel="test_a")
    await api.put(f"{V1}/task/{task['_id']}", {"name": "Right task name"})
    updated = await get_task(api, task["_id"])
    assert updated["_id"] == task["_id"]
    assert updated["name"] == "Right task name"


async def test_can_acquire_and_complete_task(api: Api) -> None:
    """task.test.ts: 'can acquire and complete task'"""
    group = await new_group(api, "Test Group")
    task = await new_task(api, group["_id"], name="You can do it", channel="test_a")
    worker = "worker-acquire-complete"
    acquired = (await api.acquire("test_a", worker=worker))["task"]
    assert acquired["_id"] == task["_id"]
    assert acquired["assignedTo"] == worker
    assert acquired["assignedAt"] is not None
    completed = await api.release(acquired["_id"], worker=worker, output={"done": "yes"})
    assert completed["_id"] == task["_id"]
    assert completed["isComplete"] is True
    assert completed["output"]["done"] == "yes"


async def test_new_node_is_paused_in_paused_group(api: Api) -> None:
    """task.test.ts: 'new node is paused in paused group'"""
    group = await new_group(api, "Paused Group", isPaused=True)
    assert group["isPaused"] is True
    task = await new_task(api, group["_id"], name="I should be paused too", channel="test_a")
    assert isinstance(task["_id"], str) and task["_id"]
    assert task["isPaused"] is True


async def test_can_acquire_and_complete_task_with_an_error(api: Api) -> None:
    """task.test.ts: 'can acquire and complete task with an error'"""
    group = await new_group(api, "Error Group")
    task = await new_task(
        api, group["_id"], name="You can do it", channel="test_a", errorDelayInSeconds=0
    )
    worker = "worker-error"
    acquired = (await api.acquire("test_a", worker=worker))["task"]
    assert acquired["_id"] == task["_id"]
    assert acquired["assignedTo"] == worker
    assert acquired["assignedAt"] is not None

    errored = await api.release(acquired["_id"], worker=worker, error={"oops": "I died"})
    assert errored["isComplete"] is False
    assert errored["remainingAttempts"] == 4
    assert len(errored["errors"]) == 1

    # errorDelayInSeconds: 0 → offered again at once, without the clock moving
    again = (await api.acquire("test_a", worker=worker))["task"]
    assert again is not None
    assert again["_id"] == task["_id"]
    assert again["assignedTo"] == worker
    assert again["assignedAt"] is not None


async def test_can_reset_task(api: Api) -> None:
    """task.test.ts: 'can reset task'. Crew marks the seed complete in MongoDB; here it is
    acquired and released with ``{done: 'yes'}``, then reset with ``remainingAttempts: 2``
    (Crew's test calls ``Task.resetById(id, 2)``)."""
    group = await new_group(api, "Reset Group")
    seed = await new_task(api, group["_id"], name="I am the seed", isSeed=True, channel="completed")
    await complete(api, "completed", seed["_id"], {"done": "yes"})
    await api.post(f"{V1}/task/{seed['_id']}/reset", {"remainingAttempts": 2})
    reset = await get_task(api, seed["_id"])
    assert reset["_id"] == seed["_id"]
    assert reset["isComplete"] is False
    assert reset["remainingAttempts"] == 2


async def test_can_retry_task(api: Api) -> None:
    """task.test.ts: 'can retry task'. Crew sets ``errors: [{oops: 'I died'}],
    remainingAttempts: 0`` in MongoDB; here the task is created with ``remainingAttempts: 1``
    and its one attempt is released with that error, then retried with 3 attempts."""
    group = await new_group(api, "Retry Group")
    failed = await new_task(
        api, group["_id"], name="I need to be retried", channel="retry", remainingAttempts=1
    )
    exhausted = await exhaust(api, "retry", failed["_id"], {"oops": "I died"})
    assert exhausted["errors"] == [{"oops": "I died"}]
    await api.post(f"{V1}/task/{failed['_id']}/retry", {"remainingAttempts": 3})
    retried = await get_task(api, failed["_id"])
    assert retried["_id"] == failed["_id"]
    assert retried["isComplete"] is False
    assert retried["remainingAttempts"] == 3


async def test_can_complete_with_children(api: Api) -> None:
    """task.test.ts: 'can complete with children'"""
    group = await new_group(api, "Test Group")
    gid = group["_id"]
    task = await new_task(api, gid, name="You can do it", channel="test_a")
    worker = "worker-children"
    acquired = (await api.acquire("test_a", worker=worker))["task"]
    assert acquired["_id"] == task["_id"]
    assert acquired["assignedTo"] == worker
    assert acquired["assignedAt"] is not None

    children = [
        {
            "_child_id": 0,
            "name": "Continuation Child A",
            "channel": "continuation",
            "input": {"foo": "bar "},
        },
        {
            "_child_id": 1,
            "_parent_ids": [0],
            "name": "Continuation Grandchild B",
            "channel": "continuation",
            "input": {"foo": "baz "},
        },
    ]
    completed = await api.release(
        acquired["_id"], worker=worker, output={"done": "yep!"}, children=children
    )
    assert completed["isComplete"] is True
    assert completed["output"]["done"] == "yep!"

    assert len(await group_tasks(api, gid)) == 3

    # the next task acquired gets its parent's output
    lease = await api.acquire("continuation", worker=worker)
    child = lease["task"]
    assert child is not None
    assert child["name"] == "Continuation Child A"
    parents = lease["parents"]
    assert len(parents) == 1
    assert parents[0]["_id"] == acquired["_id"]
    assert parents[0]["output"]["done"] == "yep!"


async def test_can_complete_with_dag_children(api: Api) -> None:
    """task.test.ts: 'can complete with dag children' (A → B → C, D → E, E waits for C and D)"""
    group = await new_group(api, "DAG Group")
    gid = group["_id"]
    await new_task(api, gid, name="Task A", isSeed=True, channel="dag")
    worker = "worker-dag"
    acquired = (await api.acquire("dag", worker=worker))["task"]
    assert acquired is not None and acquired["name"] == "Task A"

    children = [
        {"_child_id": 0, "name": "Task B", "channel": "dag", "input": {"foo": "bar "}},
        {
            "_child_id": 1,
            "_parent_ids": [0],
            "name": "Task C",
            "priority": 1,  # C is worked before D
            "channel": "dag",
            "input": {"foo": "baz "},
        },
        {
            "_child_id": 2,
            "_parent_ids": [0],
            "name": "Task D",
            "priority": 0,
            "channel": "dag",
            "input": {"ding": "dong"},
        },
        {
            "_child_id": 3,
            "_parent_ids": [1, 2],
            "name": "Task E",
            "channel": "dag",
            "input": {"whoa": "there"},
        },
    ]
    completed = await api.release(
        acquired["_id"], worker=worker, output={"done": "yep!"}, children=children
    )
    assert completed["isComplete"] is True

    for name, output in (("Task B", "B"), ("Task C", "C"), ("Task D", "D"), ("Task E", "E")):
        task = (await api.acquire("dag", worker=worker))["task"]
        assert task is not None, f"no task acquired where Crew acquires {name}"
        assert task["name"] == name
        await api.release(task["_id"], worker=worker, output={"done": output})

    tasks = await group_tasks(api, gid)
    assert len(tasks) == 5
    for task in tasks:
        assert task["isComplete"] is True


async def test_can_complete_task_with_workgroup_delay(api: Api) -> None:
    """task.test.ts: 'can complete task with workgroup delay'. Crew compares runAfter with the
    wall clock before the release; here the clock is fake, so runAfter is exactly now + 35 s."""
    group = await new_group(api, "Test Group")
    gid = group["_id"]
    await new_task(api, gid, name="Over the limit", workgroup="rateLimitMe", channel="test_a")
    task_a = await new_task(
        api, gid, name="In Workgroup A", workgroup="rateLimitMe", channel="test_a"
    )
    task_b = await new_task(
        api, gid, name="In Workgroup B", workgroup="rateLimitMe", channel="test_b"
    )
    worker = "worker-workgroup"
    acquired = (await api.acquire("test_a", worker=worker))["task"]
    assert acquired is not None and acquired["name"] == "Over the limit"

    timestamp = api.clock.now()
    await api.release(
        acquired["_id"], worker=worker, output={"delay": "me"}, workgroupDelayInSeconds=35
    )

    delayed_a = await get_task(api, task_a["_id"])
    delayed_b = await get_task(api, task_b["_id"])
    assert delayed_a["runAfter"] is not None
    assert delayed_b["runAfter"] is not None
    assert epoch(delayed_a["runAfter"]) > timestamp
    assert epoch(delayed_b["runAfter"]) > timestamp
    assert epoch(delayed_a["runAfter"]) == T0 + 35
    assert epoch(delayed_b["runAfter"]) == T0 + 35


async def test_sync_parents_complete(api: Api) -> None:
    """task.test.ts: 'sync parents complete'. Crew completes Task A in MongoDB, creates B with A
    as parent, then forces B's ``parentsComplete`` back to false and runs ``Task.syncParents``.
    No REST call can make that stale state (a child created under a complete parent starts with
    ``parentsComplete: true``), so this replays the outcome: A completed by acquire + release, B
    created with ``parentIds: [A]`` is ``parentsComplete`` and acquirable, and the sync route
    (Crew's cron endpoint) answers ``{success: true}`` and leaves B so."""
    group = await new_group(api, "Out of Sync Parents Group")
    gid = group["_id"]
    task_a = await new_task(api, gid, name="Task A", isSeed=True, channel="dag")
    await complete(api, "dag", task_a["_id"], {"done": "yes"})

    task_b = await new_task(
        api, gid, name="Task A", isSeed=True, channel="dag", parentIds=[task_a["_id"]]
    )
    assert task_b["parentIds"] == [task_a["_id"]]
    assert task_b["parentsComplete"] is True

    assert await api.post(f"{V1}/sync") == {"success": True}

    refreshed = await get_task(api, task_b["_id"])
    assert refreshed["parentsComplete"] is True
    lease = await api.acquire("dag", worker="worker-sync")
    assert lease["task"] is not None
    assert lease["task"]["_id"] == task_b["_id"]


# task_group.test.ts -------------------------------------------------------------------------


async def test_can_update_group(api: Api) -> None:
    """task_group.test.ts: 'can update group'"""
    group = await new_group(api, "Wrong Name")
    await api.put(f"{V1}/task_group/{group['_id']}", {"name": "Right Name"})
    updated = await api.get(f"{V1}/task_group/{group['_id']}")
    assert updated["_id"] == group["_id"]
    assert updated["name"] == "Right Name"


async def test_can_pause_and_unpause_group(api: Api) -> None:
    """task_group.test.ts: 'can pause and unpause group'"""
    group = await new_group(api, "Test Group")
    gid = group["_id"]
    assert group["isPaused"] is False
    await new_task(api, gid, name="I am not paused", channel="test_a")
    await new_task(api, gid, name="Neither am I", channel="test_a")

    paused = await api.post(f"{V1}/task_group/{gid}/pause")
    assert paused["_id"] == gid
    assert paused["isPaused"] is True
    paused_tasks = await group_tasks(api, gid)
    assert len(paused_tasks) == 2
    for task in paused_tasks:
        assert task["isPaused"] is True

    unpaused = await api.post(f"{V1}/task_group/{gid}/resume")
    assert unpaused["_id"] == gid
    assert unpaused["isPaused"] is False
    unpaused_tasks = await group_tasks(api, gid)
    assert len(unpaused_tasks) == 2
    for task in unpaused_tasks:
        assert task["isPaused"] is False


async def test_can_reset_group_no_seed(api: Api) -> None:
    """task_group.test.ts: 'can reset group - no seed'. Crew completes the first task in
    MongoDB (here: acquire + release) and calls ``TaskGroup.resetById(id, 2)``; here the reset
    route gets ``{remainingAttempts: 2}``."""
    group = await new_group(api, "Reset Group")
    gid = group["_id"]
    done = await new_task(api, gid, name="I am completed", channel="completed")
    await new_task(api, gid, name="I am not completed", channel="not_completed")
    await complete(api, "completed", done["_id"], {"done": "yes"})

    await api.post(f"{V1}/task_group/{gid}/reset", {"remainingAttempts": 2})

    reset_tasks = await group_tasks(api, gid)
    assert len(reset_tasks) == 2
    for task in reset_tasks:
        assert task["isComplete"] is False
        assert task["remainingAttempts"] == 2


async def test_can_reset_group_with_seed(api: Api) -> None:
    """task_group.test.ts: 'can reset group - with seed'. The seed is completed by acquire +
    release (Crew: a MongoDB update); the reset route gets ``{remainingAttempts: 2}``."""
    group = await new_group(api, "Reset Group")
    gid = group["_id"]
    seed = await new_task(api, gid, name="I am the seed", isSeed=True, channel="completed")
    await new_task(api, gid, name="I am not completed nor a seed", channel="not_completed")
    await complete(api, "completed", seed["_id"], {"done": "yes"})

    await api.post(f"{V1}/task_group/{gid}/reset", {"remainingAttempts": 2})

    reset_tasks = await group_tasks(api, gid)
    assert len(reset_tasks) == 1
    assert reset_tasks[0]["_id"] == seed["_id"]
    assert reset_tasks[0]["isComplete"] is False
    assert reset_tasks[0]["remainingAttempts"] == 2


async def test_can_retry_group(api: Api) -> None:
    """task_group.test.ts: 'can retry group'. Crew completes one task and sets the other's
    ``remainingAttempts: 0`` in MongoDB; here the first is acquired and released with
    ``{done: 'yes'}``, the second is created with ``remainingAttempts: 1`` and fails its one
    attempt. The retry route gets ``{remainingAttempts: 2}``."""
    group = await new_group(api, "Retry Group")
    gid = group["_id"]
    done = await new_task(api, gid, name="I am the seed", channel="completed")
    failing = await new_task(
        api, gid, name="I am not completed", channel="not_completed", remainingAttempts=1
    )
    await complete(api, "completed", done["_id"], {"done": "yes"})
    await exhaust(api, "not_completed", failing["_id"], {"oops": "I died"})

    await api.post(f"{V1}/task_group/{gid}/retry", {"remainingAttempts": 2})

    tasks = await group_tasks(api, gid)
    completed = [t for t in tasks if t["isComplete"]]
    incomplete = [t for t in tasks if not t["isComplete"]]
    assert len(completed) == 1
    assert len(incomplete) == 1
    assert completed[0]["_id"] == done["_id"]
    assert completed[0]["isComplete"] is True
    assert incomplete[0]["_id"] == failing["_id"]
    assert incomplete[0]["isComplete"] is False
    assert incomplete[0]["remainingAttempts"] == 2
