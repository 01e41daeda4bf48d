"""Runs the three workloads on each peer; see ``benchmarks.peers`` for how each figure is taken.

    await run_peers_async(tasks=20_000, procs=2, concurrency=2, pickups=300, only=None)

Each workload gets a fresh temp dir, its own broker (redis-server, or SqliteHuey's file) and
its own driver and worker processes, all stopped (SIGTERM, then SIGKILL) and the temp dir
removed when it ends, however it ends. Every wait is bounded, and each workload as a whole
too; a failed workload leaves its figures ``None`` and says why in the row's ``errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks.peers.children import Board, LineProc, PeerError
from benchmarks.peers.peers import PEERS, Peer
from benchmarks.peers.redis_server import RedisServer
from crew_aio.bench.procs import pct

Row = dict[str, Any]

BATCH = 1_000  # W1 enqueue batch (BullMQ addBulk)
DAG_RUNS = 3
DAG_TASKS = {"root": 1, "child": 100, "grandchild": 1_000, "join": 1}  # per run
PICKUP_WARMUP = 20
PICKUP_GAP = 0.002  # seconds slept after each W3 enqueue returns
READY_TIMEOUT = 60.0  # a process's start-up (a busy 2-core machine can be slow)
REQUEST_TIMEOUT = 30.0  # one enqueue command to the driver
DAG_TIMEOUT = 120.0  # one W2 run
PICKUP_TIMEOUT = 15.0  # one W3 task (SqliteHuey's poll interval backs off up to 10 s)
FIGURES = ("w1_rate", "w1_enqueue_rate", "w2_wall_s", "w2_join_lag_ms", "w3_p50_ms",
           "w3_p99_ms", "broker_cpu_ms_per_task", "workers_cpu_ms_per_task")  # fmt: skip


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class Session:
    """One workload's broker, driver and (once started) worker processes."""

    def __init__(self, peer: Peer, procs: int, concurrency: int, workdir: Path) -> None:
        self.peer, self.procs, self.concurrency, self.workdir = peer, procs, concurrency, workdir
        self.board = Board()
        self.redis = RedisServer(workdir) if peer.uses_redis else None
        self.env: dict[str, str] = {}
        self.children: list[LineProc] = []
        self.workers: list[LineProc] = []
        self._driver: LineProc | None = None

    @property
    def driver(self) -> LineProc:
        assert self._driver is not None
        return self._driver

    def broker_cpu(self) -> float | None:
        return self.redis.cpu() if self.redis is not None else None

    async def _launch(self, label: str, argv: list[str], cwd: Path) -> LineProc:
        child = LineProc(label, argv, cwd, self.env, self.workdir / f"{label}.log", self.board)
        self.children.append(child)
        await child.start()
        return child

    async def open(self) -> None:
        port = self.redis.start() if self.redis is not None else None
        self.env = self.peer.env(self.workdir, port)
        self._driver = await self._launch("driver", *self.peer.driver())
        await self._driver.wait_ready(READY_TIMEOUT)

    async def start_workers(self) -> None:
        for k in range(self.procs):
            self.workers.append(
                await self._launch(f"worker{k}", *self.peer.worker(self.concurrency))
            )
        for worker in self.workers:
            await worker.wait_ready(READY_TIMEOUT)

    async def warm_up(self, n: int) -> None:
        """``n`` untimed tasks, awaited: connections and code paths are warm."""
        for i in range(n):
            await self.driver.request({"cmd": "warm", "i": i}, REQUEST_TIMEOUT)
        await self.board.wait_for(
            lambda: len(self.board.warm) >= n,
            READY_TIMEOUT,
            lambda: f"{len(self.board.warm)} of {n} warm-up tasks ran",
        )

    async def close(self) -> None:
        try:
            await asyncio.gather(*(c.stop() for c in self.children), return_exceptions=True)
        finally:
            if self.redis is not None:
                self.redis.stop()


@contextlib.asynccontextmanager
async def session(peer: Peer, procs: int, concurrency: int) -> AsyncIterator[Session]:
    workdir = Path(tempfile.mkdtemp(prefix=f"peers-{peer.key}-"))
    s = Session(peer, procs, concurrency, workdir)
    try:
        await s.open()
        yield s
    finally:
        try:
            await s.close()
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


# W1 ------------------------------------------------------------------------------------------


async def w1(peer: Peer, tasks: int, procs: int, concurrency: int) -> Row:
    limit = 60 + tasks / 200
    async with session(peer, procs, concurrency) as s:
        command = {"cmd": "noops", "n": tasks, "batch": BATCH}
        enqueue_s = float((await s.driver.request(command, limit))["seconds"])
        broker0 = s.broker_cpu()
        await s.start_workers()
        board = s.board
        await board.wait_for(
            lambda: board.counts().get("noop", 0) >= tasks,
            limit,
            lambda: (
                f"{board.counts().get('noop', 0):,} of {tasks:,} no-ops reported run "
                f"(by {len(board.progress)} of {procs} worker processes)"
            ),
        )
        broker1 = s.broker_cpu()
        reports = [r for r in board.progress.values() if r["counts"].get("noop")]
        ran = sum(int(r["counts"]["noop"]) for r in reports)
        if ran != tasks:
            raise PeerError(f"{ran:,} no-ops ran, expected exactly {tasks:,}")
        span = max(float(r["last"]) for r in reports) - min(float(r["first"]) for r in reports)
        workers_cpu = sum(float(r["cpu_last"]) - float(r["cpu_first"]) for r in reports)
    broker = None if broker0 is None or broker1 is None else (broker1 - broker0) / tasks * 1e3
    shares = " + ".join(f"{int(r['counts']['noop']):,}" for r in reports)
    log(f"[{peer.key}] W1: {tasks:,} no-ops enqueued in {enqueue_s:.2f} s, run in {span:.2f} s "
        f"by {len(reports)} processes ({shares})")  # fmt: skip
    return {
        "w1_rate": tasks / span,
        "w1_enqueue_rate": tasks / enqueue_s,
        "broker_cpu_ms_per_task": broker,
        "workers_cpu_ms_per_task": workers_cpu / tasks * 1e3,
    }


# W2 ------------------------------------------------------------------------------------------


async def dag_run(s: Session, run: int) -> tuple[float, float]:
    """One DAG: (join start - root enqueue, join start - last grandchild) in seconds."""
    board = s.board
    t0 = float((await s.driver.request({"cmd": "root", "run": run}, REQUEST_TIMEOUT))["t0"])
    await board.wait_for(
        lambda: run in board.joins,
        DAG_TIMEOUT,
        lambda: (
            f"run {run}: the join has not started; tasks run so far over all runs, as "
            f"last reported: {board.counts()}"
        ),
    )
    join = board.joins[run]
    expected = {kind: n * run for kind, n in DAG_TASKS.items()}

    def counted() -> bool:
        counts = board.counts()
        return all(counts.get(kind, 0) >= n for kind, n in expected.items())

    await board.wait_for(
        counted, 10, lambda: f"after run {run}: counts {board.counts()}, expected {expected}"
    )
    counts = {kind: board.counts().get(kind, 0) for kind in expected}
    if counts != expected:
        raise PeerError(f"after run {run}: counts {counts}, expected {expected}")
    return float(join["t"]) - t0, float(join["t"]) - float(join["gc"])


async def w2(peer: Peer, tasks: int, procs: int, concurrency: int) -> Row:
    async with session(peer, procs, concurrency) as s:
        await s.start_workers()
        await s.warm_up(2 * procs * concurrency)
        runs = [await dag_run(s, run) for run in range(1, DAG_RUNS + 1)]
    wall, lag = min(runs)
    shown = ", ".join(f"{w * 1e3:.0f} ms (lag {g * 1e3:.1f})" for w, g in runs)
    log(f"[{peer.key}] W2: root enqueue -> join start: {shown}")
    return {"w2_wall_s": wall, "w2_join_lag_ms": lag * 1e3}


# W3 ------------------------------------------------------------------------------------------


async def pickup_one(s: Session, i: int) -> float:
    """Enqueue pickup ``i``; return its enqueue-call start once the task has been seen."""
    t0 = float((await s.driver.request({"cmd": "pickup", "i": i}, REQUEST_TIMEOUT))["t0"])
    await asyncio.sleep(PICKUP_GAP)
    await s.board.wait_for(
        lambda: i in s.board.pickups,
        PICKUP_TIMEOUT,
        lambda: f"pickup task {i} (enqueued {time.time() - t0:.1f} s ago) has not started",
    )
    return t0


async def w3(peer: Peer, pickups: int, procs: int, concurrency: int) -> Row:
    async with session(peer, procs, concurrency) as s:
        await s.start_workers()
        sent = {i: await pickup_one(s, i) for i in range(-PICKUP_WARMUP, pickups)}
        lat = [(s.board.pickups[i] - sent[i]) * 1e3 for i in range(pickups)]
    p50, p99 = pct(lat, 50), pct(lat, 99)  # the one definition crew-aio bench uses too
    log(f"[{peer.key}] W3: {pickups} pickups: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
        f"max {max(lat):.2f} ms")  # fmt: skip
    return {"w3_p50_ms": p50, "w3_p99_ms": p99}


# ---------------------------------------------------------------------------------------------


async def run_peer(peer: Peer, tasks: int, procs: int, concurrency: int, pickups: int) -> Row:
    row: Row = {"name": peer.key, "key": peer.key, **dict.fromkeys(FIGURES), "errors": []}
    try:
        peer.check()
        row["name"] = peer.name
    except (RuntimeError, OSError) as exc:
        row["errors"].append(str(exc))
        log(f"[{peer.key}] FAILED: {exc}")
        return row
    w3_limit = 180 + (pickups + PICKUP_WARMUP) * 1.0
    workloads: list[tuple[str, float, Callable[[], Awaitable[Row]]]] = [
        ("W1", 240 + tasks / 50, lambda: w1(peer, tasks, procs, concurrency)),
        ("W2", DAG_RUNS * DAG_TIMEOUT + 180, lambda: w2(peer, tasks, procs, concurrency)),
        ("W3", w3_limit, lambda: w3(peer, pickups, procs, concurrency)),
    ]
    for label, limit, workload in workloads:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(limit):
                row.update(await workload())
        except TimeoutError:
            error = f"{label}: did not finish within its overall limit of {limit:.0f} s"
        except Exception as exc:  # reported in the row; the other workloads still run
            error = f"{label}: {type(exc).__name__}: {exc}"
        else:
            continue
        finally:
            log(f"[{peer.key}] {label} took {time.perf_counter() - started:.1f} s")
        row["errors"].append(error)
        log(f"[{peer.key}] FAILED {error}")
    return row


async def run_peers_async(
    tasks: int = 20_000,
    procs: int = 2,
    concurrency: int = 2,
    pickups: int = 300,
    only: Sequence[str] | None = None,
) -> list[Row]:
    """One row per peer (keys of :data:`~benchmarks.peers.peers.PEERS`, in ``only``'s order)."""
    keys = list(only) if only else list(PEERS)
    unknown = [k for k in keys if k not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {unknown}; known: {', '.join(PEERS)}")
    return [await run_peer(PEERS[k], tasks, procs, concurrency, pickups) for k in keys]
