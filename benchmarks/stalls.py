"""How long single big requests hold the server's event loop, with 200,000 tasks resident.

A probe asks ``GET /api/v1/openapi.json`` (served from memory: it waits for no commit) every
5 ms while each operation runs; its slowest answer during the operation is the worst stall of
the event loop a concurrent client saw (target: < 100 ms). A request that waits for a commit
also waits for the big commit in flight: that is latency, not a stall. Prints one row per
operation::

    python -m benchmarks.stalls [--tasks 200000] [--create 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks._server import ServerProcess

V1 = "/api/v1"


def probe(url: str, stop: Any, result: Any) -> None:
    """In a process of its own (the benchmark's client reading 100 MB answers must not delay
    it): GET the OpenAPI document every 5 ms; put the slowest answer's seconds on ``result``."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=60)
    worst = 0.0
    while not stop.is_set():
        started = time.perf_counter()
        conn.request("GET", f"{V1}/openapi.json")
        conn.getresponse().read()
        worst = max(worst, time.perf_counter() - started)
        time.sleep(0.005)
    result.put(worst)


async def measured(url: str, op: Callable[[], Awaitable[Any]]) -> tuple[float, float]:
    """(seconds the operation took, the worst probe wait during it)."""
    ctx = multiprocessing.get_context("spawn")
    stop, result = ctx.Event(), ctx.Queue()
    prober = ctx.Process(target=probe, args=(url, stop, result), daemon=True)
    prober.start()
    await asyncio.sleep(0.5)  # the probe process is up and asking
    started = time.perf_counter()
    await op()
    took = time.perf_counter() - started
    stop.set()
    worst: float = await asyncio.to_thread(result.get, True, 60)
    prober.join(10)
    return took, worst


async def call(session: aiohttp.ClientSession, method: str, url: str, body: Any = None) -> Any:
    async with session.request(method, url, json=body) as resp:
        data = await resp.read()
        assert resp.status == 200, (resp.status, data[:300])
        return data


async def fill(session: aiohttp.ClientSession, url: str, gid: str, n: int, wg: str) -> None:
    step = 10_000
    for start in range(0, n, step):
        body = [{"name": f"t{i}", "channel": "bulk", "workgroup": wg}
                for i in range(start, min(n, start + step))]  # fmt: skip
        await call(session, "POST", f"{url}{V1}/task_group/{gid}/tasks", body)


async def main(tasks: int, create: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        url = server.start()
        rows: list[tuple[str, float, float]] = []
        timeout = aiohttp.ClientTimeout(total=600)
        async with aiohttp.ClientSession(timeout=timeout) as s:
            gid = orjson_id(await call(s, "POST", f"{url}{V1}/task_groups", {"name": "big"}))
            await fill(s, url, gid, tasks, "token-1")
            side = orjson_id(await call(s, "POST", f"{url}{V1}/task_groups", {"name": "side"}))
            await call(s, "POST", f"{url}{V1}/task_group/{side}/tasks",
                       {"name": "rl", "channel": "rl", "workgroup": "token-1"})  # fmt: skip
            other = orjson_id(await call(s, "POST", f"{url}{V1}/task_groups", {"name": "c"}))
            body = [{"name": f"n{i}", "channel": "new"} for i in range(create)]

            async def op_create() -> None:
                await call(s, "POST", f"{url}{V1}/task_group/{other}/tasks", body)

            async def op_delay() -> None:
                lease = await call(s, "POST", f"{url}{V1}/channel/rl/acquire", {"workerId": "w"})
                tid = orjson_task(lease)
                body = {"workerId": "w", "error": "429", "workgroupDelayInSeconds": 60}
                await call(s, "POST", f"{url}{V1}/task/{tid}/release", body)

            async def op_list() -> None:
                await call(s, "GET", f"{url}{V1}/task_group/{gid}/tasks")

            async def op_reset() -> None:
                await call(s, "POST", f"{url}{V1}/task_group/{gid}/reset")

            async def op_pause() -> None:
                await call(s, "POST", f"{url}{V1}/task_group/{gid}/pause")
                await call(s, "POST", f"{url}{V1}/task_group/{gid}/resume")

            async def op_delete() -> None:
                await call(s, "DELETE", f"{url}{V1}/task_group/{gid}")

            for name, op in (
                (f"create {create:,} tasks in one request", op_create),
                (f"release with workgroupDelayInSeconds on a {tasks:,}-task workgroup", op_delay),
                (f"list a {tasks:,}-task group", op_list),
                (f"pause + resume a {tasks:,}-task group", op_pause),
                (f"reset a {tasks:,}-task group", op_reset),
                (f"delete a {tasks:,}-task group", op_delete),
            ):
                took, worst = await measured(url, op)
                rows.append((name, took, worst))
        server.terminate()
    print(f"{'operation':<62} {'took s':>8} {'worst stall ms':>15}")
    for name, took, worst in rows:
        print(f"{name:<62} {took:>8.2f} {worst * 1000:>15.0f}")


def orjson_id(raw: bytes) -> str:
    import orjson

    return str(orjson.loads(raw)["_id"])


def orjson_task(raw: bytes) -> str:
    import orjson

    return str(orjson.loads(raw)["task"]["_id"])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=200_000, help="tasks resident in one group")
    ap.add_argument("--create", type=int, default=100_000, help="tasks of the big create")
    args = ap.parse_args()
    asyncio.run(main(args.tasks, args.create))
