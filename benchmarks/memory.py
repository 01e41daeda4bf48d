"""Resident memory with N small tasks loaded, and the restart time to load them.

    python -m benchmarks.memory [--tasks 1000000] [--groups 100]

Writes N tasks (chains of 10 in each of ``--groups`` groups, a small input each) into a fresh
store through the engine and SqliteStore, then starts ``crew-aio serve`` on it and reports the
seconds from spawn to "listening" (everything loaded, indexes rebuilt) and the server's RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
from pathlib import Path

from benchmarks._server import ServerProcess
from crew_aio import keys
from crew_aio.engine import Engine, TaskSpec
from crew_aio.store import SqliteStore


def build(n: int, groups: int) -> Engine:
    engine = Engine()
    now = 1_800_000_000.0
    per_group = n // groups
    for g in range(groups):
        group, _ = engine.create_group(f"g{g}", now)
        specs = [
            TaskSpec(name=f"t{i}", channel=f"c{i % 10}", input={"i": i}, child_id=str(i),
                     pseudo_parents=(str(i - 1),) if i % 10 else None)
            for i in range(per_group)
        ]  # fmt: skip
        engine.create_tasks(group.id, specs, now)
    return engine


async def persist(engine: Engine, path: Path) -> int:
    store = SqliteStore.open(path)
    await store.start()
    count = 0
    for key, record in keys.records_of(engine):
        store.put(key, record)
        count += 1
        if count % 20_000 == 0:
            await store.sync()
    await store.close()
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=100)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        t0 = time.perf_counter()
        engine = build(args.tasks, args.groups)
        records = asyncio.run(persist(engine, data / "crew.sqlite"))
        del engine
        size = (data / "crew.sqlite").stat().st_size / 2**20
        print(
            f"memory: wrote {records:,} records ({size:,.0f} MiB) "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        server = ServerProcess(data)
        url = server.start(timeout=600)
        seconds = server.ready_seconds
        with urllib.request.urlopen(f"{url}/api/v1/channels") as resp:
            total = sum(c["totalCount"] for c in __import__("json").load(resp))
        rss = server.rss_mib()
        code = server.terminate()
        print(f"memory: restart with {total:,} tasks: listening after {seconds:.2f} s "
              f"(target <= 15 s)")  # fmt: skip
        print(
            f"memory: server RSS with {total:,} tasks loaded: {rss:,.0f} MiB (target <= 1,536 MiB)"
        )
        print(f"memory: SIGTERM exit code {code}")


if __name__ == "__main__":
    main()
