"""``crew-aio bench``: how fast this machine runs crew_aio, measured the way workers use it.

It starts a server of its own on a temporary data dir (a fresh one per worker shape), or uses
``--url``, and real worker processes (``python -m crew_aio.bench.worker``), each a separate
Python process with the SDK, as users run them. Workloads:

- **W3 pickup**: with the workers idle, ``--pickups`` tasks created one at a time; from just
  before the create request is sent to the first line of ``execute`` (``time.time()`` in both
  processes: same machine, same clock). p50 and p99.
- **W2 DAG**: 1,102 tasks, root → 100 children → 10 grandchildren each → one join over the
  1,000 grandchildren, created in one request; from just before that request to the join's
  ``execute`` start (best of 3). Join lag: the last grandchild's ``execute`` end → the join's
  start. Also the same DAG created by the root's release (continuations).
- **W1 throughput**: ``--tasks`` no-op tasks created in batches of 1,000 before the workers
  start (the batch enqueue rate); from the first ``execute`` start to the last release's answer.
  With a server of its own, the server's CPU (all threads, from ``/proc``) over that window,
  per task.
- **long tasks**: once the workers ran ``--tasks``/10 no-op tasks (so an adaptive prefetch is
  at its largest), ``--long-tasks`` tasks created in one request, every other one 3 x
  ``--long-ms`` long and the others a fifth of it: from the first one's start to the last one's
  end, against a lower bound (every slot busy to the end). Tasks dealt in turn to the processes
  would put every long one in one process: prefetch must not park them there.
- **scale**: ``--scale-tasks`` tasks resident (100 groups of chains of 10, a small input each,
  ready or waiting in channels nobody works on), then W1 again beside them; the server's RSS,
  and a restart's time from spawn to listening.

Worker shapes (``--shapes``): ``ws`` (the SDK's defaults: WebSocket push, adaptive prefetch),
``ws64`` (prefetch pinned at 64), ``poll`` (the SDK's long-poll REST mode) and ``crew`` (Crew's
protocol as Crew's own Worker speaks it: acquire one task, release it).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from crew_aio.bench.dag import dag_specs
from crew_aio.bench.procs import ServerProc, Shape, Workers, cpu_seconds, machine, pct, rss_bytes
from crew_aio.bench.report import table
from crew_aio.client import Client

__all__ = ["SHAPES", "Options", "Shape", "run_bench", "steps_of", "table"]

Json = dict[str, Any]
PART_TIMEOUT: Final = 180.0


SHAPES: Final = {
    s.key: s
    for s in (
        Shape("ws", "WebSocket, SDK defaults", "ws"),
        Shape("ws64", "WebSocket, prefetch 64", "ws", "64"),
        Shape("poll", "REST long-poll, SDK --poll", "poll"),
        Shape("crew", "REST, Crew's protocol", "crew"),
    )
}


@dataclass
class Options:
    url: str | None = None
    token: str | None = None
    shapes: Sequence[str] = ("ws", "ws64", "poll", "crew")
    workloads: Sequence[str] = ("w3", "w2", "w1", "long", "scale")
    tasks: int = 20_000
    procs: int = 2
    concurrency: int = 2
    pickups: int = 300
    scale_tasks: int = 1_000_000
    long_tasks: int = 40
    long_ms: float = 50.0
    dag_runs: int = 3
    env: Mapping[str, str] = field(default_factory=dict)  # of the processes it starts
    cwd: Path | None = None  # of the processes it starts (`python -m` imports from there)


@dataclass
class Row:
    shape: str
    label: str
    figures: Json = field(default_factory=dict)


# processes ----------------------------------------------------------------------------------


async def create_batches(client: Client, gid: str, channel: str, n: int) -> float:
    """``n`` no-op tasks in requests of 1,000; the rate."""
    began = time.perf_counter()
    for start in range(0, n, 1000):
        batch = [{"name": f"t{i}", "channel": channel} for i in range(start, min(n, start + 1000))]
        await client.add_tasks(gid, batch)
    return n / (time.perf_counter() - began)


async def until(check: Callable[[], Any], limit: float, what: str, every: float = 0.05) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(every)
    raise TimeoutError(f"{what} did not happen within {limit:.0f} s")


async def completed(client: Client, gid: str) -> int:
    counts: Json = (await client.get_group(gid))["counts"]
    return int(counts.get("completed", 0))


# one shape's run ----------------------------------------------------------------------------


class Bench:
    def __init__(self, options: Options, step: Callable[[str], None]) -> None:
        self.o = options
        self.step = step
        self.server: ServerProc | None = None
        self.groups: list[str] = []

    @contextlib.asynccontextmanager
    async def target(self, tmp: Path) -> AsyncIterator[Client]:
        """A client of the server under test: ``--url``, or one started on a fresh data dir."""
        url = self.o.url
        if url is None:
            self.server = ServerProc(tmp / "data", self.o.env, self.o.cwd)
            url = await asyncio.to_thread(self.server.start)
        try:
            async with Client(url, self.o.token) as client:
                yield client
                if self.o.url is not None:  # leave a shared server as it was
                    for gid in self.groups:
                        with contextlib.suppress(Exception):
                            await client.request("DELETE", f"/api/v1/task_group/{gid}")
        finally:
            self.groups = []
            if self.server is not None:
                await asyncio.to_thread(self.server.stop)
                self.server = None

    async def group(self, client: Client, name: str, paused: bool = False) -> str:
        gid = str((await client.create_group(name, is_paused=paused))["_id"])
        self.groups.append(gid)
        return gid

    def workers(self, tmp: Path, url: str, channel: str, shape: Shape) -> Workers:
        o = self.o
        return Workers(tmp, url, o.token, channel, shape, o.procs, o.concurrency, o.env, o.cwd)

    def server_cpu(self) -> float | None:
        return None if self.server is None else cpu_seconds(self.server.pid)

    async def shape(self, shape: Shape) -> Row:
        row = Row(shape.key, shape.label)
        todo = [w for w in ("w3", "w2", "w1", "long") if w in self.o.workloads]
        if shape.mode == "crew":  # Crew's workers poll on a timer: only throughput is theirs
            todo = [w for w in todo if w in ("w1", "long")]
        if not todo:
            return row
        with tempfile.TemporaryDirectory(prefix="crew-bench-") as name:
            tmp = Path(name)
            async with self.target(tmp) as client:
                tag = uuid.uuid4().hex[:8]
                channel = f"bench-{tag}-{shape.key}"
                workers = self.workers(tmp, client.url, channel, shape)
                try:
                    if "w3" in todo:
                        self.step(f"{shape.key}: W3 pickup")
                        await workers.start()
                        row.figures |= await self.pickup(client, channel, workers)
                    if "w2" in todo:
                        self.step(f"{shape.key}: W2 DAG")
                        await workers.start()
                        row.figures |= await self.dag(client, channel, workers)
                    if "w1" in todo:
                        self.step(f"{shape.key}: W1 throughput")
                        row.figures |= await self.throughput(client, channel, workers)
                    if "long" in todo:
                        self.step(f"{shape.key}: long tasks")
                        row.figures |= await self.long(client, channel, workers)
                finally:
                    await workers.stop()
        return row

    async def pickup(self, client: Client, channel: str, workers: Workers) -> Json:
        gid = await self.group(client, "bench-pickup")
        sent: dict[int, float] = {}
        warmup = 20
        for i in range(-warmup, self.o.pickups):
            began = time.time()
            await client.add_tasks(gid, {"name": f"p{i}", "channel": channel, "input": {"i": i}})
            sent[i] = began
            await asyncio.sleep(0.002)  # the workers are idle again before the next task
        total = self.o.pickups + warmup
        await until(lambda: _at_least(client, gid, total), 30, f"{total} pickups completed")
        stats = await workers.stop()
        starts = {i: t for s in stats for i, t in s["starts"]}
        lat = [(starts[i] - t) * 1000 for i, t in sent.items() if i >= 0 and i in starts]
        return {"w3_p50_ms": round(pct(lat, 50), 3), "w3_p99_ms": round(pct(lat, 99), 3)}

    async def dag(self, client: Client, channel: str, workers: Workers) -> Json:
        best: tuple[float, float] | None = None
        cont: float | None = None
        began_at: dict[int, float] = {}
        for run_no in range(2 * self.o.dag_runs):
            continuation = run_no >= self.o.dag_runs
            gid = await self.group(client, f"bench-dag{run_no}")
            body: Any = dag_specs(channel, continuation=False, run_no=run_no)
            if continuation:  # the worker that runs the root builds the rest, as a real one would
                body = {"name": "root", "channel": channel,
                        "input": {"dag": channel, "run": run_no}}  # fmt: skip
            began_at[run_no] = time.time()
            await client.add_tasks(gid, body)
            await until(functools.partial(_at_least, client, gid, 1102), PART_TIMEOUT, "the DAG")
        stats = await workers.stop()
        for run_no, began in began_at.items():
            marks = [m for s in stats for m in s["marks"] if m[1] == run_no]
            join = [m[2] for m in marks if m[0] == "join"]
            grand_end = max((m[3] for m in marks if m[0] == "g"), default=None)
            if not join or grand_end is None:
                raise RuntimeError(f"DAG run {run_no}: the workers did not note its join")
            wall, lag = join[0] - began, join[0] - grand_end
            if run_no >= self.o.dag_runs:
                cont = wall if cont is None else min(cont, wall)
            elif best is None or wall < best[0]:
                best = (wall, lag)
        assert best is not None and cont is not None
        return {"w2_wall_s": round(best[0], 4), "w2_join_lag_ms": round(best[1] * 1000, 3),
                "w2_continuation_wall_s": round(cont, 4)}  # fmt: skip

    async def long(self, client: Client, channel: str, workers: Workers) -> Json:
        o = self.o
        gid = await self.group(client, "bench-long")
        await workers.start()
        warm = max(1000, o.tasks // 10)
        await create_batches(client, gid, channel, warm)
        await until(functools.partial(_at_least, client, gid, warm), PART_TIMEOUT, "warm-up")
        # uneven: every other task 3x --long-ms, the others a fifth of it; dealt in turn to
        # the processes, the long ones would all land in one of them
        seconds = [o.long_ms / 1000 * (3 if i % 2 == 0 else 0.2) for i in range(o.long_tasks)]
        body = [{"name": f"long{i}", "channel": channel, "input": {"sleep": s, "run": i}}
                for i, s in enumerate(seconds)]  # fmt: skip
        await client.add_tasks(gid, body)
        total = warm + o.long_tasks
        await until(functools.partial(_at_least, client, gid, total), PART_TIMEOUT, "long tasks")
        stats = await workers.stop()
        spans = [m for s in stats for m in s["marks"] if m[0] == "long"]
        if len(spans) < o.long_tasks:
            raise RuntimeError(f"long tasks: {len(spans)} of {o.long_tasks} noted")
        makespan = max(m[3] for m in spans) - min(m[2] for m in spans)
        # a lower bound: all slots busy to the end, and no task shorter than its own length
        ideal = max(sum(seconds) / (o.procs * o.concurrency), max(seconds))
        per_proc = sorted(sum(m[0] == "long" for m in s["marks"]) for s in stats)
        return {"long_makespan_s": round(makespan, 3), "long_ideal_s": round(ideal, 3),
                "long_split": per_proc}  # fmt: skip

    async def throughput(self, client: Client, channel: str, workers: Workers) -> Json:
        n = self.o.tasks
        gid = await self.group(client, "bench-w1")
        enqueue = await create_batches(client, gid, channel, n)
        await workers.start()
        cpu0 = self.server_cpu()
        await until(lambda: _at_least(client, gid, n), PART_TIMEOUT, f"{n:,} tasks completed")
        cpu1 = self.server_cpu()
        stats = await workers.stop()
        firsts = [s["first"] for s in stats if s["count"]]
        ends = [s["last_end"] for s in stats if s["released"]]
        executed = sum(s["count"] for s in stats)
        if not firsts or executed < n:
            raise RuntimeError(f"W1: {executed:,} of {n:,} tasks executed")
        elapsed = max(ends) - min(firsts)
        out: Json = {"w1_rate": round(n / elapsed), "w1_enqueue_rate": round(enqueue)}
        if cpu0 is not None and cpu1 is not None:
            out["server_cpu_ms_per_task"] = round((cpu1 - cpu0) / n * 1000, 4)
        return out

    async def fill(self, client: Client, n: int) -> float:
        """``n`` resident tasks, as a busy server holds them: 100 groups of chains of 10, each
        with a small input, over 10 channels nobody works on (ready, or waiting on a parent);
        the create rate."""
        tag = uuid.uuid4().hex[:6]
        groups = [await self.group(client, f"bench-resident-{g}") for g in range(100)]
        began = time.perf_counter()
        for start in range(0, n, 1000):
            batch = [{"_child_id": str(i), "name": f"r{i}", "channel": f"resident-{tag}-{i % 10}",
                      "input": {"i": i}} | ({"_parent_ids": [str(i - 1)]} if i % 10 else {})
                     for i in range(start, min(n, start + 1000))]  # fmt: skip
            await client.add_tasks(groups[start // 1000 % len(groups)], batch)
        return n / (time.perf_counter() - began)

    async def scale(self) -> Json:
        n = self.o.scale_tasks
        shape = SHAPES["ws"]
        with tempfile.TemporaryDirectory(prefix="crew-bench-") as name:
            tmp = Path(name)
            async with self.target(tmp) as client:
                self.step(f"scale: {n:,} tasks resident")
                fill = await self.fill(client, n)
                self.step("scale: W1 beside them")
                channel = f"bench-{uuid.uuid4().hex[:8]}-scale"
                workers = self.workers(tmp, client.url, channel, shape)
                try:
                    w1 = await self.throughput(client, channel, workers)
                finally:
                    await workers.stop()
                out: Json = {"tasks": n, "fill_rate": round(fill),
                             "w1_rate": w1["w1_rate"]}  # fmt: skip
                server = self.server
                if server is not None:
                    out["rss_mib"] = round(rss_bytes(server.pid) / 2**20)
                    self.step("scale: restart")
                    await asyncio.to_thread(server.stop)
                    await asyncio.to_thread(server.start)
                    out["restart_s"] = round(server.ready_seconds, 3)
                    out["rss_after_restart_mib"] = round(rss_bytes(server.pid) / 2**20)
        return out


async def _at_least(client: Client, gid: str, n: int) -> bool:
    return await completed(client, gid) >= n


# the whole run ------------------------------------------------------------------------------


def steps_of(options: Options) -> int:
    """How many steps :func:`run_bench` reports (the progress bar's length)."""
    per = [w for w in ("w3", "w2", "w1", "long") if w in options.workloads]
    crew = [w for w in per if w in ("w1", "long")]
    total = sum(len(crew if SHAPES[key].mode == "crew" else per) for key in options.shapes)
    if "scale" in options.workloads:
        total += 3 if options.url is None else 2
    return max(total, 1)


async def run_bench(options: Options, step: Callable[[str], None] = lambda _: None) -> Json:
    """Every shape's workloads, then the scale run; the figures as JSON-ready data."""
    bench = Bench(options, step)
    rows = []
    for key in options.shapes:
        row = await bench.shape(SHAPES[key])
        rows.append({"shape": row.shape, "label": row.label, **row.figures})
    result: Json = {"machine": machine(), "options": _options_json(options), "rows": rows}
    if "scale" in options.workloads:
        result["scale"] = await bench.scale()
        w1 = next((r.get("w1_rate") for r in rows if r["shape"] == "ws"), None)
        if w1:
            result["scale"]["w1_ratio_to_20k"] = round(result["scale"]["w1_rate"] / w1, 3)
    return result


def _options_json(options: Options) -> Json:
    out = {k: v for k, v in vars(options).items() if k not in ("token", "env", "cwd")}
    out["shapes"], out["workloads"] = list(options.shapes), list(options.workloads)
    return out
