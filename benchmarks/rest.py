"""The server over REST, durable (SQLite, synchronous=FULL), on this machine.

    python -m benchmarks.rest [--batches 20] [--cycles 20000] [--clients 4]

Prints: batch create (1,000 tasks a request) tasks/s, and acquire+release cycles/s with N
concurrent clients (each cycle is two HTTP requests, each answered after its commit).
The clients run in this process and share the machine's cores with the server.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks._server import ServerProcess


async def create(s: aiohttp.ClientSession, url: str, batches: int, gid: str) -> float:
    body = [{"name": f"t{i}", "channel": "bench", "input": {"i": i}} for i in range(1000)]
    t0 = time.perf_counter()
    for _ in range(batches):
        async with s.post(f"{url}/api/v1/task_group/{gid}/tasks", json=body) as r:
            assert r.status == 200, await r.text()
            await r.read()
    return batches * 1000 / (time.perf_counter() - t0)


async def worker(s: aiohttp.ClientSession, url: str, name: str, left: list[int]) -> int:
    done = 0
    while left[0] > 0:
        async with s.post(f"{url}/api/v1/channel/bench/acquire", json={"workerId": name}) as r:
            task = (await r.json())["task"]
        if task is None:
            break
        left[0] -= 1
        body = {"workerId": name, "leaseId": task["leaseId"], "output": {"ok": True}}
        async with s.post(f"{url}/api/v1/task/{task['_id']}/release", json=body) as r:
            assert r.status == 200, await r.text()
            await r.read()
        done += 1
    return done


async def wake(s: aiohttp.ClientSession, url: str, gid: str, rounds: int) -> list[float]:
    """Seconds from sending a create to the answer of a long poll waiting for that task."""
    out = []
    for _ in range(rounds):
        body = {"workerId": "poller", "waitSeconds": 5}
        poll = asyncio.create_task(s.post(f"{url}/api/v1/channel/wake/acquire", json=body))
        await asyncio.sleep(0.005)
        sent = time.perf_counter()
        task = {"name": "t", "channel": "wake"}
        async with s.post(f"{url}/api/v1/task_group/{gid}/tasks", json=task) as r:
            await r.read()
        async with await poll as r:
            assert (await r.json())["task"] is not None
        out.append(time.perf_counter() - sent)
    return sorted(out)


async def run(url: str, batches: int, cycles: int, clients: int) -> None:
    conn = aiohttp.TCPConnector(limit=clients + 2)
    async with aiohttp.ClientSession(connector=conn) as s:
        async with s.post(f"{url}/api/v1/task_groups", json={"name": "bench"}) as r:
            gid = (await r.json())["_id"]
        lat = await wake(s, url, gid, 200)
        print(f"rest: long-poll wake after a create: p50 {lat[len(lat) // 2] * 1000:.2f} ms, "
              f"p99 {lat[int(len(lat) * 0.99)] * 1000:.2f} ms (create + both commits)")  # fmt: skip
        rate = await create(s, url, batches, gid)
        print(f"rest: batch create {batches} x 1,000 tasks: {rate:,.0f} tasks/s")
        left = [min(cycles, batches * 1000)]
        t0 = time.perf_counter()
        counts = await asyncio.gather(*(worker(s, url, f"w{i}", left) for i in range(clients)))
        elapsed = time.perf_counter() - t0
        total = sum(counts)
        print(f"rest: {total:,} acquire+release cycles with {clients} clients in {elapsed:.2f} s: "
              f"{total / elapsed:,.0f} cycles/s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=20_000)
    ap.add_argument("--clients", type=int, default=4)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        url = server.start()
        try:
            asyncio.run(run(url, args.batches, args.cycles, args.clients))
        finally:
            server.terminate()


if __name__ == "__main__":
    main()
