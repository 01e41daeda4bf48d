"""The server process: crash after acknowledgement, restart, graceful stop, single instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.conftest import Server

pytestmark = pytest.mark.e2e


async def call(url: str, method: str, path: str, body: Any = None) -> Any:
    async with aiohttp.ClientSession() as s, s.request(method, url + path, json=body) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def test_kill9_after_ack_then_restart_keeps_everything(server: Server) -> None:
    url = server.start()
    gid = (await call(url, "POST", "/api/v1/task_groups", {"name": "g"}))["_id"]
    dag = [{"_child_id": "a", "name": "a", "channel": "c"},
           {"_child_id": "b", "_parent_ids": ["a"], "name": "b", "channel": "c"},
           {"name": "other", "channel": "d"}]  # fmt: skip
    created = await call(url, "POST", f"/api/v1/task_group/{gid}/tasks", dag)
    lease = await call(url, "POST", "/api/v1/channel/c/acquire", {"workerId": "w"})
    done = await call(url, "POST", f"/api/v1/task/{lease['task']['_id']}/release",
                      {"workerId": "w", "output": {"ok": 1}})  # fmt: skip
    held = await call(url, "POST", "/api/v1/channel/d/acquire",
                      {"workerId": "w2", "leaseSeconds": 600})  # fmt: skip
    server.kill()  # kill -9 right after the acknowledgements

    url = server.start()
    after = await call(url, "GET", f"/api/v1/task/{created[0]['_id']}")
    assert after["isComplete"] and after["output"] == {"ok": 1}
    assert after["completedAt"] == done["completedAt"]
    leased = await call(url, "GET", f"/api/v1/task/{held['task']['_id']}")
    assert leased["status"] == "leased" and leased["leaseId"] == held["task"]["leaseId"]
    assert leased["leaseExpiresAt"] == held["task"]["leaseExpiresAt"]
    nxt = await call(url, "POST", "/api/v1/channel/c/acquire", {"workerId": "w"})
    assert nxt["task"]["_id"] == created[1]["_id"]
    assert await call(url, "POST", f"/api/v1/task/{held['task']['_id']}/release",
                      {"workerId": "w2", "leaseId": held["task"]["leaseId"]})  # fmt: skip
    assert server.terminate() == 0


async def test_sigterm_exits_zero(server: Server) -> None:
    url = server.start()
    assert (await call(url, "GET", "/healthz"))["healthy"] is True
    assert server.terminate() == 0


def test_second_instance_is_refused(server: Server, tmp_path: Path) -> None:
    server.start()
    cmd = [sys.executable, "-m", "crew_aio", "serve", "--port", "0",
           "--data-dir", str(tmp_path / "data")]  # fmt: skip
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    assert second.returncode == 75, second.stderr
    assert "another crew-aio" in second.stderr
