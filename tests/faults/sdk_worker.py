"""Workers the fault scenarios run as real SDK processes (``crew-aio worker MODULE:CLASS``).

Configured by environment (the harness sets it): ``FAULT_CHANNEL``, ``FAULT_CONCURRENCY``,
``FAULT_LEASE`` (leaseSeconds asked for; heartbeats extend it), ``FAULT_WORK`` (seconds per task),
``FAULT_LOG`` (a JSON-lines file). Each execution start and each release the SDK saw answered
with a 2xx is appended to ``FAULT_LOG`` (one ``write`` per line, so a kill -9 loses no earlier
line): the harness's Checker reads them back. The records come from wrapping the SDK's
``LeaseRunner`` in this process only, as ``crew_aio/bench/worker.py`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from crew_aio.worker import Result, Worker
from crew_aio.worker.lease import Lease, LeaseRunner

LOG = os.environ.get("FAULT_LOG", "")
_fd: int | None = None


def record(rec: dict[str, Any]) -> None:
    global _fd
    if not LOG:
        return
    if _fd is None:
        _fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, (json.dumps(rec) + "\n").encode())


def _wrap_runner() -> None:
    run, release = LeaseRunner.run, LeaseRunner.release

    async def traced_run(self: LeaseRunner, lease: Lease) -> str:
        parents = [p["_id"] for p in lease.parents if p.get("output") is not None]
        record({"kind": "exec", "task": lease.task_id, "lease": lease.lease_id,
                "worker": lease.worker_id, "t": time.time(), "parents": parents})  # fmt: skip
        return await run(self, lease)

    async def traced_release(self: LeaseRunner, lease: Lease, fields: dict[str, Any]) -> str:
        verdict = await release(self, lease, fields)
        record({"kind": "verdict", "task": lease.task_id, "verdict": verdict})
        if verdict == "released" and "error" not in fields:
            kids = fields.get("children") or []
            record({"kind": "ack", "task": lease.task_id, "output": fields.get("output"),
                    "children": kids})  # fmt: skip
        return verdict

    LeaseRunner.run = traced_run  # type: ignore[method-assign]
    LeaseRunner.release = traced_release  # type: ignore[method-assign]


_wrap_runner()


class FaultWorker(Worker):
    """Output ``{"i", "by": pid}``; an input ``{"spawn": n}`` asks for n continuation children
    (named ``<task name>/<j>``: the harness's ``children_of`` needs the name, which the SDK does
    not pass to ``execute``, so the input carries it as ``"name"``)."""

    def __init__(self) -> None:
        self.channel = os.environ.get("FAULT_CHANNEL", "sdk")
        self.concurrency = int(os.environ.get("FAULT_CONCURRENCY", "4"))
        self.lease_seconds = float(os.environ.get("FAULT_LEASE", "5"))
        self.work = float(os.environ.get("FAULT_WORK", "0"))

    async def execute(self, input: Any, parents: list[dict[str, Any]]) -> Any:
        if self.work:
            await asyncio.sleep(self.work)
        inp = input if isinstance(input, dict) else {}
        output = {"i": inp.get("i"), "by": f"sdk-{os.getpid()}"}
        kids = [
            {"name": f"{inp.get('name')}/{j}", "channel": self.channel, "errorDelayInSeconds": 0.5,
             "input": {"i": f"{inp.get('i')}.{j}", "name": f"{inp.get('name')}/{j}"}}
            for j in range(int(inp.get("spawn", 0)))
        ]  # fmt: skip
        return Result(output=output, children=kids) if kids else output


class Sleeper(FaultWorker):
    """Never finishes by itself (R3, R4: the harness kills or stops the process)."""

    async def execute(self, input: Any, parents: list[dict[str, Any]]) -> Any:
        record({"kind": "started", "t": time.time(), "input": input})
        await asyncio.sleep(self.work or 3600.0)
        return await super().execute(input, parents)
