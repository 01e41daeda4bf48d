"""The server process: crash after acknowledgement, restart, graceful stop, single instance."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.server import Server

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


async def test_sigterm_with_websocket_workers_connected_exits_at_once(server: Server) -> None:
    """D15: the sockets get a close frame (1001) first, instead of aiohttp waiting its whole
    shutdown timeout for them (23 s with one worker connected)."""
    url = server.start()
    async with aiohttp.ClientSession() as session:
        sockets = [await session.ws_connect(f"{url}/api/v1/ws") for _ in range(3)]
        for i, ws in enumerate(sockets):
            await ws.send_json({"type": "subscribe", "workerId": f"w{i}", "channels": ["c"]})
            assert (await ws.receive_json(timeout=5))["type"] == "subscribed"
        silent = sockets[0]  # one peer never reads again: it must not hold the exit up
        started = time.monotonic()
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        for ws in sockets[1:]:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1001
        code = await asyncio.to_thread(server.proc.wait, 10)
        assert code == 0 and time.monotonic() - started < 1.5
        assert not silent.closed or silent.close_code in (1001, 1006, None)


def _serve(args: list[str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crew_aio", "serve", *args]
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREW_")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


def _one_line(proc: subprocess.CompletedProcess[str], code: int, words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert proc.returncode == code, proc.stderr
    assert len(lines) == 1 and words in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_startup_mistakes_are_one_line_and_a_named_exit_code(tmp_path: Path) -> None:
    """D16: a taken port, an unknown host, a data directory that is a file or under one: one
    log line and an exit code systemd can tell apart (68, 69, 73), never a traceback."""
    afile = tmp_path / "a-file"
    afile.write_text("")
    _one_line(_serve(["--port", "0", "--data-dir", str(afile)]), 73, "cannot use data directory")
    _one_line(_serve(["--port", "0", "--data-dir", str(afile / "sub")]), 73, "Not a directory")
    bad_host = ["--host", "no-such-host.invalid", "--insecure", "--port", "0"]
    _one_line(_serve([*bad_host, "--data-dir", str(tmp_path / "h")]), 68, "unknown host")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        proc = _serve(["--port", port, "--data-dir", str(tmp_path / "p")])
        _one_line(proc, 69, "the port is in use")


def test_a_read_only_data_directory_is_exit_73(tmp_path: Path) -> None:
    """A read-only file system (as root, file modes do not stop writes: a read-only mount
    does)."""
    ro = tmp_path / "ro"
    ro.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a read-only tmpfs here: {mounted.stderr.strip()}")
    try:
        proc = _serve(["--port", "0", "--data-dir", str(ro / "data")])
        _one_line(proc, 73, "Read-only file system")
    finally:
        subprocess.run(["umount", str(ro)], check=False)
