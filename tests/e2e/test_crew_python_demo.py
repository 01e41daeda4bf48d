"""Workers that talk like Crew's ``demo/python`` run the demo's DAG to the end on a real server.

The demo's three workers (A, B and C), with short sleeps: C's seed task answers with the demo's
continuation (integer pseudo-ids, two children sharing a key, quotes in names and inputs); B
fails whatever asks it to throw, including with an empty message, which Crew's
``req.body.error || null`` reads as a success. The workers never look at a status code, so
everything is checked on the server's final state and in the journal of what they were told.
"""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import pytest
import requests

from tests.e2e.crew_demo_worker import Call, DemoWorker, Journal, WorkerGroup, WorkerOutput
from tests.support.server import Server

pytestmark = pytest.mark.e2e

JOB_SECONDS = 0.05  # the demo sleeps 2 to 10 s
POLL_SECONDS = 0.05  # the demo polls every 15 s
DEADLINE_SECONDS = 20.0

SEED_NAME = 'Worker \' C "seed"'
SEED_INPUT = {"note": 'seed\'s "quoted" input', "nested": {"it's": ['"', "'"]}}
THROW = 'B can\'t "do" it'
D_NAME = "Child ' \" D Quotes"
D_INPUT = {"child": "D oh' no a single quote! And a double quote \" too!"}


def demo_output(worker: str) -> dict[str, Any]:
    return {"message": f"{worker} did it!", "at": str(datetime.now())}


class WorkerA(DemoWorker):
    channel = "worker_a"

    def execute_job(self, input: Any, parents: Any) -> WorkerOutput:
        time.sleep(JOB_SECONDS)
        return WorkerOutput(output=demo_output("Worker A"))


class WorkerB(DemoWorker):
    channel = "worker_b"

    def execute_job(self, input: Any, parents: Any) -> WorkerOutput:
        if "throw" in input:
            message = input["throw"]
            raise Exception(message) if message else Exception()
        time.sleep(JOB_SECONDS)
        return WorkerOutput(output=demo_output("Worker B"))


class WorkerC(DemoWorker):
    channel = "worker_c"

    def execute_job(self, input: Any, parents: Any) -> WorkerOutput:
        time.sleep(JOB_SECONDS)
        children = [
            {"_child_id": 1, "channel": "worker_a", "input": {"child": "A"},
             "key": "same_key", "name": "Child A"},
            {"_child_id": 2, "_parent_ids": [1], "channel": "worker_a", "input": {"child": "B"},
             "key": "same_key", "name": "Child B"},
            {"_child_id": 3, "_parent_ids": [1], "channel": "worker_b", "input": {"child": "C"},
             "name": "Child C"},
            {"_child_id": 4, "_parent_ids": [2, 3], "channel": "worker_a", "input": D_INPUT,
             "name": D_NAME},
        ]  # fmt: skip
        return WorkerOutput(output=demo_output("Worker C"), children=children)


def api(method: str, url: str, body: Any = None) -> Any:
    r = requests.request(method, url, json=body, timeout=10)
    assert r.status_code == 200, f"{method} {url} -> {r.status_code} {r.text}"
    return r.json()


def settled(tasks: list[dict[str, Any]]) -> bool:
    """Nothing more will happen: each task is complete or out of attempts, and none is held."""
    return len(tasks) == 7 and all(
        (t["isComplete"] or t["remainingAttempts"] == 0) and t["assignedTo"] is None for t in tasks
    )


def show(calls: list[Call]) -> str:
    return "\n".join(f"{c.kind} {c.request} -> {c.status} {c.body[:400]}" for c in calls)


def acquired(journal: Journal, task_id: str) -> list[tuple[Call, dict[str, Any]]]:
    """The acquire calls that handed out ``task_id``, with their parsed answers."""
    found = []
    for c in journal.snapshot():
        if c.kind == "acquire" and 200 <= c.status < 300:
            data = json.loads(c.body)
            if (data.get("task") or {}).get("_id") == task_id:
                found.append((c, data))
    return found


def released(journal: Journal, task_id: str) -> list[Call]:
    return [c for c in journal.snapshot() if c.kind == "release" and c.task_id == task_id]


def create_tasks(base: str) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The demo's seed and two tasks that fail, one per call (Crew's create route takes one)."""
    gid = api("POST", f"{base}/task_groups", {"name": "crew python demo"})["_id"]
    tasks = f"{base}/task_group/{gid}/tasks"
    seed = api("POST", tasks, {"name": SEED_NAME, "channel": "worker_c", "input": SEED_INPUT,
                               "isSeed": True})  # fmt: skip
    failing = api("POST", tasks, {"name": "B always throws", "channel": "worker_b",
                                  "input": {"throw": THROW}, "errorDelayInSeconds": 0,
                                  "remainingAttempts": 2})  # fmt: skip
    empty = api("POST", tasks, {"name": "B throws an empty message", "channel": "worker_b",
                                "input": {"throw": ""}, "errorDelayInSeconds": 0})  # fmt: skip
    return gid, seed, failing, empty


def run_until_settled(url: str, base: str, gid: str, journal: Journal) -> list[dict[str, Any]]:
    """The demo's workers (A twice, B, C) in threads until the group settles."""
    group = WorkerGroup(
        worker(url, journal, POLL_SECONDS) for worker in (WorkerA, WorkerA, WorkerB, WorkerC)
    )
    group.start()
    try:
        deadline = time.monotonic() + DEADLINE_SECONDS
        tasks: list[dict[str, Any]] = api("GET", f"{base}/task_group/{gid}/tasks")
        while not settled(tasks) and time.monotonic() < deadline:
            time.sleep(0.1)
            tasks = api("GET", f"{base}/task_group/{gid}/tasks")
    finally:
        group.stop()
    result: list[dict[str, Any]] = api("GET", f"{base}/task_group/{gid}/tasks")
    return result


def check_the_dag(by_name: dict[str, Any], seed: Any, journal: Journal, context: str) -> None:
    """The seed ran once; its continuation (integer pseudo-ids) became the real graph."""
    done_seed = by_name[SEED_NAME]
    assert done_seed["_id"] == seed["_id"] and done_seed["isComplete"] is True, context
    assert done_seed["input"] == SEED_INPUT, context
    assert journal.executions(seed["_id"]) == 1, context
    a, b, c, d = (by_name[n] for n in ("Child A", "Child B", "Child C", D_NAME))
    for child in (a, b, c, d):
        assert child["isComplete"] is True, f"{child['name']} not complete{context}"
    assert (a["input"], b["input"], c["input"], d["input"]) == (
        {"child": "A"}, {"child": "B"}, {"child": "C"}, D_INPUT), context  # fmt: skip
    assert a["parentIds"] == [seed["_id"]], context  # roots hang off the seed
    assert b["parentIds"] == [a["_id"]] and c["parentIds"] == [a["_id"]], context
    assert sorted(d["parentIds"]) == sorted([b["_id"], c["_id"]]), context
    # key-mates: one execution (A's), and B completed with A's output
    assert journal.executions(a["_id"]) + journal.executions(b["_id"]) == 1, context
    assert a["output"] is not None and b["output"] == a["output"], context
    assert journal.executions(c["_id"]) == 1 and journal.executions(d["_id"]) == 1, context
    # D ran after both its parents completed, and was handed their outputs
    d_leases = acquired(journal, d["_id"])
    assert len(d_leases) == 1, context
    d_call, d_answer = d_leases[0]
    parent_releases = released(journal, a["_id"]) + released(journal, c["_id"])
    assert parent_releases and all(p.sent < d_call.received for p in parent_releases), context
    handed = {p["_id"]: p["output"] for p in d_answer.get("parents", [])}
    assert handed == {b["_id"]: b["output"], c["_id"]: c["output"]}, f"{d_answer}{context}"


def check_the_failures(
    by_name: dict[str, Any], failing: Any, empty: Any, journal: Journal, context: str
) -> None:
    # a task that fails every time: both attempts spent, both errors kept, never complete
    f = by_name["B always throws"]
    assert f["_id"] == failing["_id"], context
    assert f["isComplete"] is False and f["remainingAttempts"] == 0, context
    assert f["errors"] == [THROW, THROW], context
    assert journal.executions(f["_id"]) == 2, context
    # an empty error message is falsy in Crew's `req.body.error || null`: a success
    e = by_name["B throws an empty message"]
    assert e["_id"] == empty["_id"], context
    assert e["isComplete"] is True and e["errors"] == [] and e["output"] is None, context
    assert journal.executions(e["_id"]) == 1, context


def test_crew_python_demo_workers_run_the_demo_dag(server: Server) -> None:
    url = server.start()
    base = url + "/api/v1"
    gid, seed, failing, empty = create_tasks(base)
    journal = Journal()
    tasks = run_until_settled(url, base, gid, journal)
    by_name = {t["name"]: t for t in tasks}
    refused = journal.refused()
    context = f"\nnon-2xx answers to the workers:\n{show(refused)}\nfinal tasks:\n" + "\n".join(
        json.dumps(t) for t in tasks
    )
    # the continuation was created exactly once, quotes intact
    expected = sorted([SEED_NAME, "B always throws", "B throws an empty message",
                       "Child A", "Child B", "Child C", D_NAME])  # fmt: skip
    assert sorted(t["name"] for t in tasks) == expected, context
    check_the_dag(by_name, seed, journal, context)
    check_the_failures(by_name, failing, empty, journal, context)
    # nothing left leased, and every answer the workers got was a 2xx
    assert [t["name"] for t in tasks if t["assignedTo"] is not None] == [], context
    assert refused == [], context
