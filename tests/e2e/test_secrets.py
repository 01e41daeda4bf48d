"""Tokens never appear in the server's logs (docs/RELIABILITY.md), at debug level, plain and
JSON, whatever the requests carry them in: the header, ``?token=``, a wrong token, the WS URL."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.server import Server

pytestmark = pytest.mark.e2e

ADMIN, WORKER = "adm-7f3c9e1d2b", "wrk-5a8e0c4f6d"


async def traffic(url: str) -> None:
    admin = {"Authorization": f"Bearer {ADMIN}"}
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/api/v1/task_groups", json={"name": "g"}, headers=admin) as r:
            assert r.status == 200
            gid = (await r.json())["_id"]
        async with s.post(f"{url}/api/v1/task_group/{gid}/tasks", headers=admin,
                           json={"name": "t", "channel": "c"}) as r:  # fmt: skip
            assert r.status == 200
        async with s.get(f"{url}/api/v1/task_groups?token={WORKER}") as r:
            assert r.status == 401  # ?token= is for the WebSocket handshake only
        wrong = {"Authorization": f"Bearer {ADMIN}{WORKER}"}
        async with s.get(f"{url}/api/v1/task_groups", headers=wrong) as r:
            assert r.status == 401
        async with s.post(f"{url}/api/v1/task_groups", data=b"{", headers=admin) as r:
            assert r.status == 400
        async with s.ws_connect(f"{url}/api/v1/ws?token={WORKER}") as ws:
            await ws.send_json({"type": "subscribe", "workerId": "w", "channels": ["c"]})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
            task = (await ws.receive_json(timeout=5))["task"]
            await ws.send_json({"type": "release", "taskId": task["_id"], "output": WORKER})
            assert (await ws.receive_json(timeout=5))["type"] == "ack"


@pytest.mark.parametrize("json_logs", [False, True])
async def test_tokens_never_reach_the_log(server: Server, json_logs: bool) -> None:
    server.extra = ("--api-token", ADMIN, "--worker-token", WORKER, "--log-level", "debug",
                    *(("--log-json",) if json_logs else ()))  # fmt: skip
    url = server.start()
    await traffic(url)
    assert server.terminate() == 0
    log = server.log.read_text()
    assert "listening" in log and "stopped" in log  # the log is not empty
    assert ADMIN not in log and WORKER not in log
