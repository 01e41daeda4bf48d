"""SqliteStore figures: durable writes/s by batch size, open and load time for many records.

Run: .venv/bin/python tests/store/bench_store.py [--records 1000000] [--writes 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import resource
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2]))

from crew_aio.store import SqliteStore


def record(i: int) -> dict[str, object]:
    """About 200 bytes of orjson, shaped like a task."""
    return {
        "id": f"{i:032x}",
        "channel": "default",
        "status": "pending",
        "priority": i % 7,
        "attempts": 0,
        "runAfter": 1_800_000_000.0 + i,
        "payload": {"url": f"https://example.org/items/{i}", "n": i},
    }


async def writes_per_second(path: pathlib.Path, batch: int, total: int, run: int) -> float:
    """Sequential batches of new keys: put `batch` records, sync, repeat."""
    store = SqliteStore.open(path)
    await store.start()
    start = time.perf_counter()
    for first in range(0, total, batch):
        for i in range(first, first + batch):
            store.put(f"t:{batch}:{run}:{i}", record(i))
        await store.sync()
    elapsed = time.perf_counter() - start
    await store.close()
    return total / elapsed


async def pipelined_writes_per_second(
    path: pathlib.Path, clients: int, total: int, run: int
) -> float:
    """`clients` tasks each put one record and sync, over and over: batches form by themselves."""
    store = SqliteStore.open(path)
    await store.start()

    async def client(c: int) -> None:
        for i in range(c, total, clients):
            store.put(f"p:{run}:{i}", record(i))
            await store.sync()

    start = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - start
    await store.close()
    return total / elapsed


def fmt(rates: list[float]) -> str:
    """Best and median of a few runs: a shared machine is noisy."""
    return f"best {max(rates):>9,.0f}  median {sorted(rates)[len(rates) // 2]:>9,.0f}"


async def fill(path: pathlib.Path, records: int) -> None:
    store = SqliteStore.open(path)
    await store.start()
    for first in range(0, records, 10_000):
        for i in range(first, min(first + 10_000, records)):
            store.put(f"t:{i:032x}", record(i))
        await store.sync()
    await store.close()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--writes", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "bench.sqlite"
        for batch in (1, 100, 1000):
            total = 2_000 if batch == 1 else args.writes
            rates = [await writes_per_second(path, batch, total, run) for run in range(3)]
            print(f"batches of {batch:>5}: {fmt(rates)} durable writes/s")
        rates = [
            await pipelined_writes_per_second(path, 64, args.writes // 4, run) for run in range(3)
        ]
        print(f"64 clients put+sync: {fmt(rates)} durable writes/s")

    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "load.sqlite"
        start = time.perf_counter()
        await fill(path, args.records)
        size = path.stat().st_size / 1e6
        took = time.perf_counter() - start
        print(f"filled {args.records:,} records ({size:,.0f} MB) in {took:.1f} s")
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        start = time.perf_counter()
        store = SqliteStore.open(path)
        opened = time.perf_counter() - start
        count = sum(1 for _ in store.load())
        loaded = time.perf_counter() - start - opened
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        await store.close()
        print(f"open (lock + quick_check + sqlitedict): {opened:.2f} s")
        print(f"load {count:,} records (decoded, streamed): {loaded:.2f} s")
        print(f"peak RSS {rss_after:.0f} MB (was {rss_before:.0f} MB before open)")


if __name__ == "__main__":
    asyncio.run(main())
