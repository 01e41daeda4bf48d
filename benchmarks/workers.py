"""Worker SDK against the real server, durable (SQLite WAL, synchronous=FULL), on this machine.

    python -m benchmarks.workers [--pickups 500] [--links 300] [--tasks 20000] [--procs 2]
                                 [--concurrency 2] [--dag-concurrency 8] [--prefetch 64]
                                 [--parts 123]

Prints, after the machine facts (cores; one single-row SQLite commit with WAL + FULL):

1. pickup latency with an idle WebSocket worker process (concurrency 2), two ways:
   a. tasks created one at a time: from ``time.time()`` just before the create request is sent
      (a push may arrive before the create's response) to ``time.time()`` at ``execute`` start
      in the worker process (same machine, same clock); the create's round trip for comparison;
   b. a chain of ``--links`` tasks, each the only parent of the next: from a link's ``execute``
      returning to the next link's ``execute`` starting (the release's trip to the server, its
      commit together with the child's lease, the push), both in the worker process.
2. throughput of ``--procs`` worker processes x ``--concurrency`` on no-op tasks, over the
   WebSocket with SDK prefetch 0 and ``--prefetch``, and over REST long-poll: ``--tasks`` tasks
   pre-created in batches of 1,000 before the workers start; from the first ``execute`` start to
   the last release's answer (both ``time.time()`` in the worker processes; the end is awaited by
   polling ``GET /channels``).
3. the 1,102-task DAG (root -> 100 children -> 10 each -> one join over all 1,000), run by
   ``--procs`` WebSocket worker processes x ``--concurrency`` and ``--dag-concurrency`` (prefetch
   0), and x ``--concurrency`` with ``--prefetch``, in two shapes: created as one batch DAG with
   pseudo-ids, and created by the root's release as continuations (the worker that runs the
   root builds the 1,101 specs, as a real worker would). The end is seen by a
   long-poll acquire on a probe task whose only parent is the join: it is answered when the
   join's completion is committed (1,103 tasks in all; the probe is not run).

Each part starts its own server (fresh data directory) and worker processes, and reports the
server's CPU seconds over the part (from /proc/PID/stat). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from benchmarks._bench_worker import dag_specs
from benchmarks._server import ServerProcess
from crew_aio.client import Client

TICK = os.sysconf("SC_CLK_TCK")
PART_TIMEOUT = 120.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat): with our processes'
    own CPU subtracted, what else ran on the machine meanwhile."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / TICK


def sqlite_commit_ms(commits: int = 200) -> float:
    """Mean ms of one single-row commit, WAL + synchronous=FULL, in a temp dir on this disk."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "probe.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)")
        row = b"x" * 300
        t0 = time.perf_counter()
        for i in range(commits):
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (str(i % 10), row))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        db.close()
    return elapsed / commits * 1000


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class WorkerProcs:
    """``n`` processes of ``benchmarks._bench_worker``; stopped with SIGTERM, stats read back."""

    def __init__(self, tmp: Path, url: str, channel: str, n: int, concurrency: int,
                 poll: bool, prefetch: int = 0) -> None:  # fmt: skip
        self.tmp, self.url, self.channel = tmp, url, channel
        self.n, self.concurrency, self.poll, self.prefetch = n, concurrency, poll, prefetch
        self.procs: list[asyncio.subprocess.Process] = []
        self.stats_paths: list[Path] = []

    async def start(self, limit: float = 30.0) -> None:
        for k in range(self.n):
            stats = self.tmp / f"{self.channel}-{k}.json"
            cmd = [sys.executable, "-m", "benchmarks._bench_worker", self.url, self.channel,
                   str(stats), "--concurrency", str(self.concurrency),
                   "--prefetch", str(self.prefetch)]  # fmt: skip
            cmd += ["--poll"] if self.poll else []
            proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
            self.procs.append(proc)
            self.stats_paths.append(stats)
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), limit)
            if line.strip() != b"READY":
                raise RuntimeError(f"worker process {proc.pid} did not start: {line!r}")

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.returncode is None)

    async def stop(self) -> list[dict[str, Any]]:
        for proc in self.procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        stats = []
        for path in self.stats_paths:
            with contextlib.suppress(OSError, ValueError):
                stats.append(json.loads(path.read_text()))
        return stats


@contextlib.asynccontextmanager
async def server_and_workers(
    channel: str,
    n: int,
    concurrency: int,
    poll: bool = False,
    start_workers: bool = True,
    prefetch: int = 0,
) -> AsyncIterator[tuple[ServerProcess, WorkerProcs, Client]]:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        url = server.start()
        workers = WorkerProcs(Path(tmp), url, channel, n, concurrency, poll, prefetch)
        try:
            async with Client(url) as client:
                if start_workers:
                    await workers.start()
                yield server, workers, client
        finally:
            await workers.stop()
            if server.proc is not None and server.proc.poll() is None:
                try:
                    server.terminate()
                except subprocess.TimeoutExpired:
                    server.proc.kill()
                    server.proc.wait()


def loop_thread_cpu(pid: int) -> float:
    """CPU seconds of a process's main thread (the server's event loop; the rest of the
    server's CPU is sqlitedict's writer thread)."""
    return _task_cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def _task_cpu(stat: Path) -> float:
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def server_cpu(server: ServerProcess) -> float:
    assert server.proc is not None
    return cpu_seconds(server.proc.pid)


# 1. pickup latency --------------------------------------------------------------------------


async def pickup(count: int) -> None:
    async with server_and_workers("pickup", 1, 2) as (_, workers, client):
        gid = (await client.create_group("pickup"))["_id"]
        sent: dict[int, float] = {}
        answered: list[float] = []
        warmup = 20
        for i in range(-warmup, count):
            t0 = time.time()
            await client.add_tasks(gid, {"name": f"p{i}", "channel": "pickup", "input": {"i": i}})
            answered.append(time.time() - t0)
            sent[i] = t0
            await asyncio.sleep(0.002)  # the worker is idle again before the next task
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            counts = (await client.get_group(gid))["counts"]
            if counts["completed"] == count + warmup:
                break
            await asyncio.sleep(0.05)
        stats = await workers.stop()
    starts = {i: t for i, t in stats[0]["starts"]} if stats else {}
    lat = [(starts[i] - t0) * 1000 for i, t0 in sent.items() if i >= 0 and i in starts]
    create = [s * 1000 for s in answered[warmup:]]
    print(
        f"pickup: {len(lat)} of {count} tasks, one at a time, 1 idle WS worker process "
        f"(concurrency 2): send of create -> execute start: p50 {pct(lat, 50):.2f} ms, "
        f"p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms (targets p50 <= 1 ms, p99 <= 3 ms)"
    )
    print(f"pickup:   for comparison, the create request's round trip: "
          f"p50 {pct(create, 50):.2f} ms, p99 {pct(create, 99):.2f} ms")  # fmt: skip


async def chain_pickup(links: int) -> None:
    """A chain (each task the only parent of the next) run by one idle WebSocket worker: from
    a link's ``execute`` returning (its output makes the next one ready once the release is
    in) to the next link's ``execute`` starting, in the same process."""
    async with server_and_workers("chain", 1, 2) as (_, workers, client):
        gid = (await client.create_group("chain"))["_id"]
        specs: list[dict[str, Any]] = [
            {"_child_id": f"l{k}", "name": f"l{k}", "channel": "chain", "input": {"link": k}}
            | ({"_parent_ids": [f"l{k - 1}"]} if k else {})
            for k in range(links)
        ]
        await client.add_tasks(gid, specs)
        deadline = time.monotonic() + PART_TIMEOUT
        while time.monotonic() < deadline:
            if (await client.get_group(gid))["counts"]["completed"] == links:
                break
            await asyncio.sleep(0.05)
        stats = await workers.stop()
    runs = {k: (start, end) for k, start, end in stats[0]["links"]} if stats else {}
    lat = [(runs[k][0] - runs[k - 1][1]) * 1000 for k in range(21, links)
           if k in runs and k - 1 in runs]  # fmt: skip
    if len(lat) < links - 21:
        print(f"pickup (chain): only {len(runs)} of {links} links ran within the time limit")
        return
    print(f"pickup (chain): {links} links, 1 idle WS worker process: a parent's execute returns "
          f"-> its child's execute starts: p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms, "
          f"max {max(lat):.2f} ms (the release's trip, its commit with the child's lease, "
          f"the push)")  # fmt: skip


# 2. throughput -------------------------------------------------------------------------------


async def precreate(client: Client, gid: str, channel: str, n: int) -> float:
    t0 = time.perf_counter()
    for start in range(0, n, 1000):
        batch = [{"name": f"t{i}", "channel": channel} for i in range(start, min(n, start + 1000))]
        await client.add_tasks(gid, batch)
    return n / (time.perf_counter() - t0)


async def wait_completed(client: Client, channel: str, n: int) -> int:
    """Poll ``GET /channels`` (cheap: a group's counts walk all its tasks) every 50 ms until
    ``n`` tasks of ``channel`` completed, or the part's timeout; the completed count."""
    deadline = time.monotonic() + PART_TIMEOUT
    completed = 0
    while time.monotonic() < deadline:
        for row in await client.request("GET", "/api/v1/channels"):
            if row["name"] == channel:
                completed = row["completedCount"]
        if completed >= n:
            break
        await asyncio.sleep(0.05)
    return completed


async def throughput(n: int, procs: int, concurrency: int, poll: bool, prefetch: int = 0) -> None:
    mode = "REST long-poll" if poll else f"WS prefetch {prefetch}"
    async with server_and_workers(
        "noop", procs, concurrency, poll, start_workers=False, prefetch=prefetch
    ) as (server, workers, client):
        gid = (await client.create_group("throughput"))["_id"]
        rate = await precreate(client, gid, "noop", n)
        await workers.start()
        cpu0, t_start, busy0 = server_cpu(server), time.time(), busy_seconds()
        assert server.proc is not None
        loop0 = loop_thread_cpu(server.proc.pid)
        me0, cpu_w0 = cpu_seconds(os.getpid()), workers.cpu()
        completed = await wait_completed(client, "noop", n)
        cpu_server = server_cpu(server) - cpu0
        cpu_loop = loop_thread_cpu(server.proc.pid) - loop0
        cpu_workers = workers.cpu() - cpu_w0
        busy = busy_seconds() - busy0
        other = busy - cpu_server - cpu_workers - (cpu_seconds(os.getpid()) - me0)
        window = time.time() - t_start
        stats = await workers.stop()
    firsts = [s["first"] for s in stats if s["count"]]
    executed = sum(s["count"] for s in stats)
    released = sum(s["released"] for s in stats)
    label = f"throughput {mode}: {procs} worker processes x concurrency {concurrency}"
    if completed < n or released < n or not firsts:
        print(f"{label}: only {completed:,} of {n:,} completed within {PART_TIMEOUT:.0f} s")
        return
    done_at = max(s["released_last"] for s in stats)
    elapsed = done_at - min(firsts)
    print(
        f"{label}: {n:,} no-op tasks in {elapsed:.2f} s from first pickup to last completion: "
        f"{n / elapsed:,.0f} tasks/s" + ("  (target >= 10,000/s)" if not poll else "")
    )
    print(f"{label}:   pre-created at {rate:,.0f} tasks/s; {executed:,} executes; server CPU "
          f"{cpu_server:.2f} s ({cpu_server / window:.0%} of one core over the {window:.2f} s "
          f"after both workers were up; event loop {cpu_loop / n * 1e6:,.0f} us per task, "
          f"store thread {(cpu_server - cpu_loop) / n * 1e6:,.0f} us per task); "
          f"workers' CPU {cpu_workers:.2f} s; other processes "
          f"on the machine meanwhile {max(other, 0.0):.2f} s")  # fmt: skip


# 3. the DAG --------------------------------------------------------------------------------


async def dag(
    procs: int, concurrency: int, continuation: bool, prefetch: int = 0, runs: int = 3
) -> None:
    shape = "root's release creates the rest" if continuation else "one batch DAG"
    async with server_and_workers("dag", procs, concurrency, prefetch=prefetch) as (
        server, _, client,
    ):  # fmt: skip
        times, cpus = [], []
        for run in range(runs):
            gid = (await client.create_group(f"dag{run}"))["_id"]
            body: Any = dag_specs("dag", continuation=False)
            if continuation:  # the worker builds the children, as a real continuation would
                body = {"name": "root", "channel": "dag", "input": {"dag": "dag"}}
            probe = asyncio.create_task(
                client.acquire("probe", "bench", wait_seconds=PART_TIMEOUT / 2)
            )
            await asyncio.sleep(0.05)  # the long-poll is waiting on the server
            cpu0 = server_cpu(server)
            t0 = time.time()
            await client.add_tasks(gid, body)
            answer = await asyncio.wait_for(probe, PART_TIMEOUT)
            times.append(time.time() - t0)
            cpus.append(server_cpu(server) - cpu0)
            assert answer["task"] is not None and answer["task"]["name"] == "probe", answer
            counts = (await client.get_group(gid))["counts"]
            assert counts["completed"] == 1102, counts
    runs_ms = ", ".join(f"{t * 1000:.0f}" for t in times)
    print(f"dag ({shape}): 1,102 tasks, {procs} WS worker processes x concurrency "
          f"{concurrency} prefetch {prefetch}: submit -> join completed "
          f"{min(times) * 1000:.0f} ms best of {runs} (runs: {runs_ms} ms; target <= 300 ms); "
          f"server CPU {statistics.mean(cpus):.2f} s per run")  # fmt: skip


# ---------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    prefetches = list(dict.fromkeys((0, args.prefetch)))
    if "1" in args.parts:
        await pickup(args.pickups)
        await chain_pickup(args.links)
    if "2" in args.parts:
        for prefetch in prefetches:
            await throughput(args.tasks, args.procs, args.concurrency, False, prefetch)
        await throughput(args.tasks, args.procs, args.concurrency, poll=True)
    if "3" in args.parts:
        shapes = [(args.concurrency, 0), (args.dag_concurrency, 0)]
        shapes += [(args.concurrency, p) for p in prefetches if p]
        for concurrency, prefetch in dict.fromkeys(shapes):
            await dag(args.procs, concurrency, continuation=False, prefetch=prefetch)
            await dag(args.procs, concurrency, continuation=True, prefetch=prefetch)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--pickups", type=int, default=500)
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--dag-concurrency", type=int, default=8)
    ap.add_argument(
        "--prefetch",
        type=int,
        default=64,
        help="SDK prefetch of the extra WS runs (every part also runs prefetch 0)",
    )
    ap.add_argument("--links", type=int, default=300, help="tasks in the pickup chain")
    ap.add_argument("--parts", default="123", help="which parts to run, e.g. 13")
    args = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; one "
          f"single-row SQLite commit (WAL, synchronous=FULL) in a temp dir: "
          f"{sqlite_commit_ms():.3f} ms mean")  # fmt: skip
    t0 = time.perf_counter()
    asyncio.run(run(args))
    print(f"done in {time.perf_counter() - t0:.0f} s; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
