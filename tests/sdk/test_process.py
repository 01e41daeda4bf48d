"""The SDK against ``crew-aio serve`` subprocesses: a restart mid-task, SIGTERM mid-task."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from crew_aio.client import Client
from crew_aio.worker import Worker
from tests.sdk.conftest import Running
from tests.support.server import Server
from tests.support.wait import eventually

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


class Gated(Worker):
    """Runs until the test opens the gate."""

    channel = "gated"

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.gate = asyncio.Event()

    async def execute(self, input: Any, parents: list[dict[str, Any]]) -> Any:
        self.started.set()
        await self.gate.wait()
        return {"delivered": True}


async def test_release_survives_a_server_restart(
    subprocess_server: Server, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    url = await asyncio.to_thread(subprocess_server.start)
    async with Client(url) as client:
        gid = (await client.create_group("restart"))["_id"]
        task = await client.add_tasks(gid, {"name": "t", "channel": "gated"})
    worker = Gated()
    caplog.set_level(logging.INFO, "crew_aio.worker")
    async with Running([worker], url, poll=mode == "poll"):
        await asyncio.wait_for(worker.started.wait(), 10)
        await asyncio.to_thread(subprocess_server.kill)
        worker.gate.set()  # the release now meets a dead server
        await asyncio.sleep(0.5)
        assert await asyncio.to_thread(subprocess_server.start) == url
        async with Client(url) as client:
            await client.wait(gid, poll=0.1, limit=15)
            done = await client.get_task(task["_id"])
    assert done["status"] == "completed" and done["output"] == {"delivered": True}
    assert done["errors"] == []
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "worker.release_retry" in events


async def _worker_process(log_path: Path, *args: str) -> asyncio.subprocess.Process:
    """``crew-aio worker tests.sdk.sample:SlowWorker ARGS``, its stderr in ``log_path``."""
    out = await asyncio.to_thread(log_path.open, "wb")
    with out:  # the child holds its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "crew_aio", "worker", "tests.sdk.sample:SlowWorker", *args,
            cwd=ROOT, stderr=out, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip


async def test_sigterm_lets_the_running_task_finish(subprocess_server: Server, mode: str) -> None:
    url = await asyncio.to_thread(subprocess_server.start)
    log_path = subprocess_server.data_dir.parent / "worker.log"
    async with Client(url) as client:
        gid = (await client.create_group("sigterm"))["_id"]
        task = await client.add_tasks(gid, {"name": "slow", "channel": "slow", "input": 7})
        proc = await _worker_process(log_path, "--url", url, *(["--poll"] * (mode == "poll")))

        async def leased() -> bool:
            return bool((await client.get_task(task["_id"]))["status"] == "leased")

        async def stopping() -> bool:
            return "worker.stopping" in await asyncio.to_thread(log_path.read_text)

        try:
            await eventually(leased)
            proc.send_signal(signal.SIGTERM)
            await eventually(stopping)
            late = await client.add_tasks(gid, {"name": "late", "channel": "slow"})
            code = await asyncio.wait_for(proc.wait(), 15)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        done = await client.get_task(task["_id"])
        late_task = await client.get_task(late["_id"])
    output = await asyncio.to_thread(log_path.read_text)
    assert code == 0, output
    assert done["status"] == "completed" and done["output"] == {"slept": 2.0, "input": 7}
    assert f"slow {task['_id']} ok in" in output
    # A stopping worker takes no new task; in push mode one pushed just before the server saw
    # the stop still runs. Nothing is stranded, unlike long-poll mode: there the server may
    # lease a task to the poll the worker abandoned at SIGTERM (until its waitSeconds run out).
    if mode == "push":
        assert late_task["status"] in ("ready", "completed"), late_task
    else:
        assert late_task["_id"] not in output and late_task["output"] is None
