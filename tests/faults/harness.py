"""Shared pieces of the fault scenarios: a real server process, a checker, REST and WS workers.

- :class:`Crew` runs ``crew-aio serve`` as a subprocess on a fixed free port and its own data dir
  (start, ``kill -9``, restart on the same file and address) and reads ``/healthz``.
- :class:`Checker` records every acknowledged write a client saw (a 2xx, a WS ``ack``, a pushed
  task) and every execution a worker started; :meth:`Checker.verify` compares them with the
  server's final state: lost writes, duplicate executions beyond lease semantics, tasks started
  before their parents completed, tasks not completed.
- :class:`RestWorker` and :class:`WsWorker` speak the wire protocol from this process;
  :func:`sdk_worker` starts real SDK worker processes (``crew-aio worker``, see ``sdk_worker.py``)
  whose records :meth:`Checker.load_sdk_log` reads back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import wait
from tests.support.server import Server, free_port

ROOT = Path(__file__).resolve().parents[2]
V1 = "/api/v1"
Json = dict[str, Any]
NETWORK = (aiohttp.ClientError, OSError, asyncio.TimeoutError)
TICK = 1.0  # the server's timer re-reads the clock at least this often (timers.MAX_SLEEP)


_ALIVE: list[Crew | asyncio.subprocess.Process] = []  # what cleanup() kills


def cleanup() -> None:
    """``kill -9`` every server and worker process the harness started that still runs (a
    scenario that failed midway must not leave them to slow down the next one)."""
    while _ALIVE:
        item = _ALIVE.pop()
        if isinstance(item, Crew):
            item.server.kill()
        elif item.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                item.kill()


def track(proc: asyncio.subprocess.Process) -> asyncio.subprocess.Process:
    _ALIVE.append(proc)
    return proc


def epoch(iso: str | None) -> float:
    """An API timestamp (ISO-8601 UTC, ms) → epoch seconds."""
    assert iso is not None
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


class Crew:
    """One ``crew-aio serve`` on ``root/data``: same port and file across restarts."""

    def __init__(self, root: Path, *extra: str) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.server = Server(root / "data", *extra, port=free_port())
        self.kills = 0
        _ALIVE.append(self)
        self.lags: list[float] = []  # loopLag p99 (ms) read from /healthz before kills and at end

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def pid(self) -> int:
        assert self.server.proc is not None
        return self.server.proc.pid

    @property
    def db(self) -> Path:
        return self.server.data_dir / "crew.sqlite"

    async def start(self) -> str:
        return await asyncio.to_thread(self.server.start, 30.0)

    async def kill(self) -> None:
        """``kill -9``, as a crash does it."""
        await asyncio.to_thread(self.server.kill)
        self.kills += 1

    async def restart(self, down: float = 0.0) -> str:
        await self.kill()
        await asyncio.sleep(down)
        return await self.start()

    async def stop(self) -> int:
        code = await asyncio.to_thread(self.server.terminate)
        return code

    def exit_code(self) -> int | None:
        assert self.server.proc is not None
        return self.server.proc.poll()

    async def health(self, limit: float = 2.0) -> tuple[int, Json]:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=limit)) as s,
            s.get(self.url + "/healthz") as resp,
        ):
            return resp.status, await resp.json()

    async def note_lag(self) -> None:
        """Read the event-loop lag p99 (a failed read notes nothing)."""
        with contextlib.suppress(*NETWORK):
            _, body = await self.health()
            if "loopLag" in body:
                self.lags.append(float(body["loopLag"]["p99Ms"]))

    def log_text(self) -> str:
        logs = sorted(self.server.data_dir.parent.glob("server-*.log"))
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in logs)


class Api:
    """A small REST client that returns (status, body) and never raises on HTTP statuses."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with self.session.request(method, self.url + path, json=body) as resp:
            data = await resp.read()
            return resp.status, json.loads(data) if data else None

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        status, data = await self.call(method, path, body)
        assert status == 200, (method, path, status, data)
        return data

    async def retry(self, method: str, path: str, body: Any = None, limit: float = 60) -> Any:
        """``ok`` through a server that is down or restarting (reads and idempotent calls)."""
        deadline = time.monotonic() + limit
        while True:
            try:
                status, data = await self.call(method, path, body)
                if status == 200:
                    return data
                if status < 500:
                    raise AssertionError((method, path, status, data))
            except NETWORK:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"{method} {path}: no 200 within {limit} s")
            await asyncio.sleep(0.05)


# the checker ---------------------------------------------------------------------------------


@dataclass
class Execution:
    task_id: str
    lease_id: str | None
    worker: str
    started: float  # time.time() when the worker got the task
    parents: dict[str, bool]  # parent id → its output was handed over (not None)


@dataclass
class Ack:
    task_id: str
    output: Any
    task: Json | None  # the task the server answered with (None: the SDK saw a 2xx only)
    children: tuple[str, ...]  # names of continuation children the release asked for


@dataclass
class Report:
    acked: int = 0
    lost: int = 0
    duplicates: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicates and not self.problems

    def problem(self, text: str) -> None:
        if len(self.problems) < 20:
            self.problems.append(text)
        elif len(self.problems) == 20:
            self.problems.append("...")

    def add(self, other: Report) -> None:
        self.acked += other.acked
        self.lost += other.lost
        self.duplicates += other.duplicates
        for text in other.problems:
            self.problem(text)


class Checker:
    """What clients were told, to hold against the server's state after the run."""

    def __init__(self) -> None:
        self.groups: set[str] = set()
        self.created: dict[str, Json] = {}  # task id → the created task as acknowledged
        self.acks: list[Ack] = []
        self.executions: list[Execution] = []
        self.statuses: Counter[int] = Counter()  # every HTTP status / WS answer workers saw

    def group_created(self, group: Json) -> None:
        self.groups.add(group["_id"])

    def tasks_created(self, tasks: Iterable[Json]) -> None:
        for t in tasks:
            self.created[t["_id"]] = t

    def released(self, task_id: str, output: Any, task: Json | None, children: Any) -> None:
        names = tuple(c["name"] for c in children or ())
        self.acks.append(Ack(task_id, output, task, names))

    def executed(self, task: Json, parents: list[Json], worker: str) -> None:
        seen = {p["_id"]: p.get("output") is not None for p in parents}
        self.executions.append(
            Execution(task["_id"], task.get("leaseId"), worker, time.time(), seen)
        )

    def load_sdk_log(self, path: Path) -> None:
        """Records written by ``tests.faults.sdk_worker`` processes (one JSON object a line)."""
        if not path.exists():
            return
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # the last line of a process killed mid-write
            if rec["kind"] == "exec":
                seen = {pid: True for pid in rec["parents"]}
                self.executions.append(
                    Execution(rec["task"], rec["lease"], "sdk-" + rec["worker"], rec["t"], seen)
                )
            elif rec["kind"] == "ack":
                self.released(rec["task"], rec["output"], None, rec["children"])

    def verify(self, tasks: list[Json], *, groups: Iterable[str] = (),
               all_complete: bool = True) -> Report:  # fmt: skip
        """Hold every acknowledgement and execution against ``tasks`` (the final state)."""
        report = Report()
        by_id = {t["_id"]: t for t in tasks}
        for gid in self.groups:
            report.acked += 1
            if gid not in set(groups):
                report.lost += 1
                report.problem(f"acknowledged group {gid} is missing")
        self._check_creates(by_id, report)
        self._check_acks(tasks, by_id, report)
        self._check_executions(by_id, report)
        if all_complete:
            stuck = [t for t in tasks if t["status"] != "completed"]
            for t in stuck[:5]:
                report.problem(f"task {t['name']} ({t['_id']}) ended {t['status']}")
        return report

    def _check_creates(self, by_id: dict[str, Json], report: Report) -> None:
        for tid, created in self.created.items():
            report.acked += 1
            got = by_id.get(tid)
            if got is None:
                report.lost += 1
                report.problem(f"acknowledged create of {created['name']} ({tid}) is missing")
            elif got["input"] != created["input"] or got["parentIds"] != created["parentIds"]:
                report.lost += 1
                report.problem(f"task {tid} differs from its acknowledged create")

    def _check_acks(self, tasks: list[Json], by_id: dict[str, Json], report: Report) -> None:
        children: dict[tuple[str, str], int] = Counter()
        for t in tasks:
            for pid in t["parentIds"]:
                children[pid, t["name"]] += 1
        for ack in self.acks:
            report.acked += 1
            got = by_id.get(ack.task_id)
            if got is None or got["status"] != "completed" or got["output"] != ack.output:
                report.lost += 1
                state = None if got is None else (got["status"], got["output"])
                report.problem(f"acknowledged release of {ack.task_id} ({ack.output}): {state}")
                continue
            if ack.task is not None and ack.task.get("completedAt") != got["completedAt"]:
                report.lost += 1
                report.problem(f"completion of {ack.task_id} changed after it was acknowledged")
            for name in ack.children:
                report.acked += 1
                n = children.get((ack.task_id, name), 0)
                if n == 0:
                    report.lost += 1
                    report.problem(f"acknowledged child {name} of {ack.task_id} is missing")
                elif n > 1:
                    report.duplicates += n - 1
                    report.problem(f"child {name} of {ack.task_id} exists {n} times")

    def _check_executions(self, by_id: dict[str, Json], report: Report) -> None:
        runs: dict[str, list[Execution]] = defaultdict(list)
        for ex in self.executions:
            runs[ex.task_id].append(ex)
        for tid, execs in runs.items():
            t = by_id.get(tid)
            if t is None:
                report.problem(f"executed task {tid} is missing")
                continue
            # at least once, usually once: a re-run needs an expired lease or an error release
            extra = len(execs) - 1 - len(t["errors"])
            if extra > 0:
                report.duplicates += extra
                report.problem(f"{t['name']} ran {len(execs)}x with {len(t['errors'])} errors")
            for ex in execs:
                self._check_order(ex, t, by_id, report)

    def _check_order(self, ex: Execution, t: Json, by_id: dict[str, Json], report: Report) -> None:
        for pid in t["parentIds"]:
            parent = by_id.get(pid)
            done = parent is not None and parent["completedAt"] is not None
            # completedAt has ms resolution: allow the rounding
            if not done or epoch(parent["completedAt"]) > ex.started + 0.002:  # type: ignore[index]
                report.problem(f"{t['name']} started before its parent {pid} completed")
            elif not ex.parents.get(pid, False):
                report.problem(f"{t['name']} got no output of its parent {pid}")


# workers -------------------------------------------------------------------------------------

OutputOf = Callable[[Json, str], Any]


def traced_output(task: Json, worker: str) -> Any:
    """Names the lease that produced it, so the checker can tell executions apart."""
    inp = task.get("input") or {}
    return {"i": inp.get("i"), "by": worker, "lease": task.get("leaseId")}


def plain_output(task: Json, worker: str) -> Any:
    """Depends on the input only (R5 compares two runs)."""
    return {"i": (task.get("input") or {}).get("i"), "done": True}


def children_of(task: Json) -> list[Json]:
    """Continuations a task asks for in its input: ``{"spawn": n, "i": ...}``."""
    inp = task.get("input") or {}
    names = [f"{task['name']}/{j}" for j in range(int(inp.get("spawn", 0)))]
    return [
        {
            "name": n,
            "channel": task["channel"],
            "errorDelayInSeconds": 0.5,
            "input": {"i": f"{inp.get('i')}.{j}", "name": n},
        }
        for j, n in enumerate(names)
    ]


class RestWorker:
    """Long-polls a channel, runs each task for ``work`` seconds, releases until answered."""

    def __init__(self, url: str, channel: str, checker: Checker, name: str, *,
                 lease: float = 5.0, work: float = 0.0, output: OutputOf = traced_output,
                 ) -> None:  # fmt: skip
        self.url, self.channel, self.checker, self.name = url, channel, checker, name
        self.lease, self.work, self.output = lease, work, output
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with Api(self.url, timeout=10) as api:
            while not self.stop.is_set():
                try:
                    status, got = await api.call(
                        "POST", f"{V1}/channel/{self.channel}/acquire",
                        {"workerId": self.name, "leaseSeconds": self.lease, "waitSeconds": 0.5},
                    )  # fmt: skip
                except NETWORK:
                    await asyncio.sleep(0.05)
                    continue
                self.checker.statuses[status] += 1
                if status == 200 and got["task"] is not None:
                    await self.execute(api, got["task"], got["parents"])
                elif status != 200:
                    await asyncio.sleep(0.05)

    async def execute(self, api: Api, task: Json, parents: list[Json]) -> None:
        self.checker.executed(task, parents, self.name)
        if self.work:
            await asyncio.sleep(self.work)
        output, children = self.output(task, self.name), children_of(task)
        body = {"workerId": self.name, "leaseId": task["leaseId"], "output": output,
                "children": children}  # fmt: skip
        while True:  # deliver the release: it is idempotent
            try:
                status, got = await api.call("POST", f"{V1}/task/{task['_id']}/release", body)
            except NETWORK:
                await asyncio.sleep(0.05)
                continue
            self.checker.statuses[status] += 1
            if status == 200:
                self.checker.released(task["_id"], output, got, children)
                return
            if status < 500:  # 409: the lease is gone (expired while the server was down)
                return
            await asyncio.sleep(0.05)


class WsWorker:
    """A WebSocket push worker: subscribe, run pushed tasks, release by frame; reconnects and
    re-sends every release not yet answered (releases are idempotent)."""

    def __init__(self, url: str, channel: str, checker: Checker, name: str, *,
                 lease: float = 5.0, capacity: int = 4, work: float = 0.0,
                 output: OutputOf = traced_output) -> None:  # fmt: skip
        self.url, self.channel, self.checker, self.name = url, channel, checker, name
        self.lease, self.capacity, self.work, self.output = lease, capacity, work, output
        self.stop = asyncio.Event()
        self.pending: dict[str, tuple[Json, Any, list[Json]]] = {}  # ref → frame, output, kids
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._refs = 0
        self._jobs: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self.stop.is_set():
                with contextlib.suppress(*NETWORK):
                    await self._connection(session)
                self.ws = None
                await asyncio.sleep(0.05)
        for job in list(self._jobs):
            job.cancel()

    async def _connection(self, session: aiohttp.ClientSession) -> None:
        async with session.ws_connect(self.url + f"{V1}/ws", heartbeat=5.0) as ws:
            self.ws = ws
            await self.on_open(ws)
            helper = self.helper(ws)
            stopper = asyncio.create_task(self.stop.wait())
            try:
                while not self.stop.is_set():
                    recv = asyncio.create_task(ws.receive())
                    await asyncio.wait({recv, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if not recv.done():
                        recv.cancel()
                        return
                    msg = recv.result()
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        return
                    self._on_frame(json.loads(msg.data))
            finally:
                stopper.cancel()
                if helper is not None:
                    helper.cancel()

    async def on_open(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Subscribe; re-send every release not answered yet."""
        await ws.send_json({"type": "subscribe", "workerId": self.name,
                            "channels": [self.channel], "capacity": self.capacity,
                            "leaseSeconds": self.lease})  # fmt: skip
        for frame, _, _ in list(self.pending.values()):
            await ws.send_json(frame)

    def helper(self, ws: aiohttp.ClientWebSocketResponse) -> asyncio.Task[None] | None:
        """A task to run while the socket is up (none here)."""
        return None

    def _on_frame(self, frame: Json) -> None:
        kind = frame.get("type")
        if kind == "task":
            job = asyncio.create_task(self.execute(frame["task"], frame["parents"]))
            self._jobs.add(job)
            job.add_done_callback(self._jobs.discard)
        elif kind == "ack" and frame.get("ref") in self.pending:
            sent, output, kids = self.pending.pop(frame["ref"])
            self.checker.statuses[200] += 1
            self.checker.released(sent["taskId"], output, frame["task"], kids)
        elif kind == "error" and frame.get("ref") in self.pending:
            self.checker.statuses[int(frame["status"])] += 1
            if int(frame["status"]) < 500:  # 409: the lease is gone
                self.pending.pop(frame["ref"])

    async def execute(self, task: Json, parents: list[Json]) -> None:
        self.checker.executed(task, parents, self.name)
        if self.work:
            await asyncio.sleep(self.work)
        self._refs += 1
        ref = f"{self.name}-{self._refs}"
        output, kids = self.output(task, self.name), children_of(task)
        frame = {"type": "release", "ref": ref, "taskId": task["_id"],
                 "leaseId": task["leaseId"], "output": output, "children": kids}  # fmt: skip
        self.pending[ref] = (frame, output, kids)
        with contextlib.suppress(*NETWORK, ConnectionResetError, RuntimeError):
            if self.ws is not None:
                await self.ws.send_json(frame)
        # a 5xx answer or a lost socket: the frame is re-sent on reconnect; nudge meanwhile
        while ref in self.pending and not self.stop.is_set():
            await asyncio.sleep(0.5)
            ws = self.ws
            if ref in self.pending and ws is not None and not ws.closed:
                with contextlib.suppress(*NETWORK, ConnectionResetError, RuntimeError):
                    await ws.send_json(frame)


class Workers:
    """Run a set of in-harness workers as tasks; ``stop`` ends them."""

    def __init__(self, workers: list[RestWorker | WsWorker]) -> None:
        self.workers = workers
        self.tasks = [asyncio.create_task(w.run()) for w in workers]

    async def stop(self) -> None:
        for w in self.workers:
            w.stop.set()
        await asyncio.wait_for(asyncio.gather(*self.tasks), 30)


class SdkWorkers:
    """``crew-aio worker tests.faults.sdk_worker:FaultWorker`` processes (real SDK)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.log = root / "sdk-exec.jsonl"
        self.procs: list[asyncio.subprocess.Process] = []

    async def start(self, url: str, channel: str, *, poll: bool, concurrency: int = 4,
                    lease: float = 5.0, work: float = 0.0, worker_class: str = "FaultWorker",
                    ) -> asyncio.subprocess.Process:  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CREW_")}
        env |= {"FAULT_CHANNEL": channel, "FAULT_LOG": str(self.log),
                "FAULT_CONCURRENCY": str(concurrency), "FAULT_LEASE": str(lease),
                "FAULT_WORK": str(work)}  # fmt: skip
        out = await asyncio.to_thread((self.root / f"sdk-{len(self.procs)}.log").open, "wb")
        with out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "crew_aio", "worker",
                f"tests.faults.sdk_worker:{worker_class}", "--url", url,
                "--app-dir", str(ROOT), "--shutdown-timeout", "5", "--log-level", "warning",
                *(["--poll"] if poll else []),
                cwd=ROOT, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=out,
            )  # fmt: skip
        self.procs.append(track(proc))
        return proc

    async def stop(self, limit: float = 30.0) -> list[str]:
        """SIGTERM each process; one still running after ``limit`` s is killed and named."""
        for proc in self.procs:
            if proc.returncode is None:
                proc.terminate()
        stuck = []
        for n, proc in enumerate(self.procs):
            try:
                await asyncio.wait_for(proc.wait(), limit)
            except TimeoutError:
                stuck.append(f"SDK worker sdk-{n} (pid {proc.pid}) still running {limit:g} s "
                              "after SIGTERM")  # fmt: skip
                proc.kill()
                await proc.wait()
        return stuck


async def eventually(check: Callable[[], Any], limit: float, step: float = 0.05) -> Any:
    """Poll the coroutine function ``check`` until it returns something truthy (bounded); a
    network error (the server is down or restarting) counts as not yet."""
    return await wait.eventually(check, limit, step, ignore=NETWORK)
