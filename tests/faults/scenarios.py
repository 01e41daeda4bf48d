"""The fault scenarios R1-R7 of docs/RELIABILITY.md, each a coroutine returning an :class:`Outcome`.

Each takes a scratch directory and its sizes; ``test_faults.py`` runs them at the quick sizes,
``python -m tests.faults --full`` at the large ones (see ``__main__.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.harness import (
    NETWORK,
    TICK,
    V1,
    Api,
    Checker,
    Crew,
    Json,
    Report,
    RestWorker,
    SdkWorkers,
    Workers,
    WsWorker,
    epoch,
    eventually,
)


@dataclass
class Outcome:
    scenario: str
    runs: int
    report: Report
    notes: list[str] = field(default_factory=list)
    lag_p99: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.report.ok

    def describe(self) -> str:
        lines = [f"{self.scenario}: {'PASS' if self.ok else 'FAIL'} {'; '.join(self.notes)}"]
        lines += [f"  - {p}" for p in self.report.problems]
        return "\n".join(lines)


# R1 ------------------------------------------------------------------------------------------

R1_CHANNELS = ("r1-rest", "r1-ws", "r1-sdk-poll", "r1-sdk-ws")


def r1_dag(n: int, chunk: int, rng: random.Random) -> list[list[Json]]:
    """``n`` tasks in create requests of ``chunk``: each has 0-2 parents among the 40 before
    it (pseudo-ids inside its request, real ids across requests: resolved by the creator), one
    in ten asks its worker for two continuation children."""
    chunks: list[list[Json]] = []
    for start in range(0, n, chunk):
        entries = []
        for k in range(start, min(n, start + chunk)):
            name = f"t{k}"
            parents = sorted(rng.sample(range(max(0, k - 40), k), min(k, rng.randint(0, 2))))
            entries.append({"_child_id": name, "name": name, "channel": R1_CHANNELS[k % 4],
                            "errorDelayInSeconds": 0.5,  # a lease lost in a crash: retry soon
                            "input": {"i": k, "name": name, "spawn": 2 * (k % 10 == 3)},
                            "parents": [f"t{p}" for p in parents]})  # fmt: skip
        chunks.append(entries)
    return chunks


class Creator:
    """Creates a DAG chunk by chunk through kills: a create that got no answer is looked up
    (a create is atomic: all of its tasks exist, or none) before it is sent again."""

    def __init__(self, api: Api, gid: str, checker: Checker) -> None:
        self.api, self.gid, self.checker = api, gid, checker
        self.ids: dict[str, str] = {}
        self.answered = 0

    def body(self, entries: list[Json]) -> list[Json]:
        out = []
        for e in entries:
            inside = [p for p in e["parents"] if p not in self.ids]
            entry = {k: v for k, v in e.items() if k != "parents"}
            entry["parentIds"] = [self.ids[p] for p in e["parents"] if p in self.ids]
            if inside:
                entry["_parent_ids"] = inside
            out.append(entry)
        return out

    async def create(self, entries: list[Json]) -> None:
        body = self.body(entries)
        while True:
            try:
                status, got = await self.api.call("POST", f"{V1}/task_group/{self.gid}/tasks", body)
                if status == 200:
                    self.checker.tasks_created(got)
                    self.ids.update((t["name"], t["_id"]) for t in got)
                    self.answered += 1
                    return
            except NETWORK:
                pass
            await asyncio.sleep(0.05)
            if await self._exists(entries[0]["name"]):
                return

    async def _exists(self, name: str) -> bool:
        tasks = await self.api.retry("GET", f"{V1}/task_group/{self.gid}/tasks")
        found = {t["name"]: t["_id"] for t in tasks}
        if name not in found:
            return False
        self.ids.update(found)
        return True


async def _killer(crew: Crew, kills: int, rng: random.Random, gap: tuple[float, float]) -> None:
    for _ in range(kills):
        await asyncio.sleep(rng.uniform(*gap))
        await crew.note_lag()
        await crew.restart(down=rng.uniform(0.0, 0.2))


async def _group_done(api: Api, gid: str, total: int) -> bool:
    counts = (await api.call("GET", f"{V1}/task_group/{gid}"))[1]["counts"]
    done = counts.get("completed", 0)
    return bool(done >= total and sum(counts.values()) == done)  # extras: the checker sees them


async def r1_server_kills(root: Path, tasks: int = 300, kills: int = 3, seed: int = 1,
                          chunk: int = 50, gap: tuple[float, float] = (0.4, 1.2),
                          ) -> Outcome:  # fmt: skip
    """R1: kill -9 the server at random points during a DAG run, REST + WS + SDK workers."""
    rng = random.Random(seed)
    crew, checker, sdk = Crew(root), Checker(), SdkWorkers(root)
    url = await crew.start()
    chunks = r1_dag(tasks, chunk, rng)
    total = tasks + 2 * sum(1 for c in chunks for e in c if e["input"]["spawn"])
    workers = Workers(
        [RestWorker(url, "r1-rest", checker, f"rest-{n}") for n in range(2)]
        + [WsWorker(url, "r1-ws", checker, f"ws-{n}") for n in range(2)]
    )
    await sdk.start(url, "r1-sdk-poll", poll=True)
    await sdk.start(url, "r1-sdk-ws", poll=False)
    async with Api(url) as api:
        group = await api.ok("POST", f"{V1}/task_groups", {"name": "r1"})
        checker.group_created(group)
        creator = Creator(api, group["_id"], checker)
        killer = asyncio.create_task(_killer(crew, kills, rng, gap))
        for entries in chunks:
            await creator.create(entries)
            await asyncio.sleep(rng.uniform(0, 0.05))
        await killer
        await eventually(lambda: _group_done(api, group["_id"], total), 60 + tasks / 50)
        await crew.note_lag()
        await workers.stop()
        stuck = await sdk.stop()
        final = await api.ok("GET", f"{V1}/task_group/{group['_id']}/tasks")
        groups = [g["_id"] for g in await api.ok("GET", f"{V1}/task_groups?limit=1000")]
    checker.load_sdk_log(sdk.log)
    report = checker.verify(final, groups=groups)
    for text in stuck:
        report.problem(text)
    code = await crew.stop()
    if code != 0:
        report.problem(f"SIGTERM exit code {code}")
    by_kind: dict[str, int] = {}
    for ex in checker.executions:
        kind = ex.worker.split("-")[0]
        by_kind[kind] = by_kind.get(kind, 0) + 1
    notes = [f"{tasks} tasks + {total - tasks} continuations, {crew.kills} kills",
             f"{creator.answered}/{len(chunks)} creates answered",
             "executions " + " ".join(f"{k}={v}" for k, v in sorted(by_kind.items())),
             f"re-runs after expiry/error={sum(len(t['errors']) for t in final)}"]  # fmt: skip
    return Outcome("R1 server kill -9 during DAG run", crew.kills, report, notes, crew.lags)


# R2 ------------------------------------------------------------------------------------------


async def _leased_parent(api: Api, channel: str) -> Json:
    group = await api.ok("POST", f"{V1}/task_groups", {"name": channel})
    await api.ok("POST", f"{V1}/task_group/{group['_id']}/tasks", {"name": "p", "channel": channel})
    got = await api.ok("POST", f"{V1}/channel/{channel}/acquire",
                       {"workerId": "r2", "leaseSeconds": 600})  # fmt: skip
    task: Json = got["task"]
    return task


def _release_body(task: Json, children: int) -> Json:
    kids = [{"name": f"c{j}", "channel": "r2-child", "input": {"j": j, "pad": "x" * 64}}
            for j in range(children)]  # fmt: skip
    return {"workerId": "r2", "leaseId": task["leaseId"], "output": {"n": children},
            "children": kids}  # fmt: skip


async def r2_kill_during_release(root: Path, runs: int = 3, children: int = 2000,
                                 seed: int = 2) -> Outcome:  # fmt: skip
    """R2: kill -9 while a release that adds many children is in flight."""
    rng, crew, report = random.Random(seed), Crew(root), Report()
    url = await crew.start()
    kinds = {"acknowledged": 0, "all, unacknowledged": 0, "none": 0}
    async with Api(url, timeout=60) as api:
        probe = await _leased_parent(api, "r2-probe")
        started = time.monotonic()
        await api.ok("POST", f"{V1}/task/{probe['_id']}/release", _release_body(probe, children))
        took = time.monotonic() - started
        for run in range(runs):
            task = await _leased_parent(api, f"r2-{run}")
            body = _release_body(task, children)
            send = asyncio.create_task(api.call("POST", f"{V1}/task/{task['_id']}/release", body))
            await asyncio.sleep(rng.uniform(0.0, 1.3 * took))
            await crew.kill()
            try:
                status, _ = await send
            except NETWORK:
                status = 0
            await crew.start()
            kind = await _r2_check(api, task, children, status == 200, report)
            kinds[kind] += 1
    await crew.stop()
    notes = [f"{children} children per release (a release takes ~{took * 1000:.0f} ms)"]
    notes.append(", ".join(f"{k}: {v}" for k, v in kinds.items()))
    return Outcome("R2 kill -9 during a release adding children", runs, report, notes, crew.lags)


async def _r2_check(api: Api, task: Json, n: int, acked: bool, report: Report) -> str:
    tasks = await api.ok("GET", f"{V1}/task_group/{task['taskGroupId']}/tasks")
    parent = next(t for t in tasks if t["_id"] == task["_id"])
    kids = [t for t in tasks if task["_id"] in t["parentIds"]]
    names = {t["name"] for t in kids}
    complete = parent["status"] == "completed"
    if acked:
        report.acked += 1 + n
    if complete and len(kids) == n == len(names) and parent["output"] == {"n": n}:
        return "acknowledged" if acked else "all, unacknowledged"
    if not complete and not kids and not acked:
        return "none"
    report.lost += (1 + n - len(kids)) if acked else 0
    report.problem(f"release of {task['_id']}: acked={acked} completed={complete} "
                   f"children={len(kids)}/{n} distinct={len(names)}")  # fmt: skip
    return "none"


# R3 ------------------------------------------------------------------------------------------

R3_LEASE = 1.5


async def _one_task(api: Api, channel: str, attempts: int = 5) -> Json:
    group = await api.ok("POST", f"{V1}/task_groups", {"name": channel})
    entry = {"name": channel, "channel": channel, "remainingAttempts": attempts,
             "errorDelayInSeconds": 0, "input": {"i": channel, "name": channel}}  # fmt: skip
    task: Json = await api.ok("POST", f"{V1}/task_group/{group['_id']}/tasks", entry)
    return task


Reoffer = tuple[str, float | None]


async def _reoffer(api: Api, task: Json, died: float, report: Report, what: str) -> Reoffer:
    """After the holder died at ``died``: the task must be offered again no earlier than its
    lease's end and within lease + tick of the death, with the expiry counted as an attempt."""
    await asyncio.sleep(0.2)  # a heartbeat already on the wire when the holder died lands now
    held = await api.ok("GET", f"{V1}/task/{task['_id']}")
    deadline = epoch(held["leaseExpiresAt"])
    got = await api.ok("POST", f"{V1}/channel/{task['channel']}/acquire",
                       {"workerId": "r3-b", "waitSeconds": 10})  # fmt: skip
    offered = time.time()
    report.acked += 1
    after = await api.ok("GET", f"{V1}/task/{task['_id']}")
    if got["task"] is None or got["task"]["_id"] != task["_id"]:
        report.lost += 1
        report.problem(f"{what}: the task was not offered again within 10 s")
        return what, None
    late = offered - died
    if offered < deadline - 0.01 or late > R3_LEASE + TICK + 0.3:
        report.problem(f"{what}: offered {late:.2f} s after the death (lease ends "
                       f"{deadline - died:.2f} s after it; allowed <= lease + tick)")  # fmt: skip
    errors = after["errors"]
    if len(errors) != 1 or errors[0].get("message") != "lease expired":
        report.problem(f"{what}: attempt not counted: errors={errors}")
    if after["remainingAttempts"] != task["remainingAttempts"] - 1:
        report.problem(f"{what}: remainingAttempts {after['remainingAttempts']}")
    return what, late


async def _r3_sdk(crew: Crew, api: Api, sdk: SdkWorkers, poll: bool, report: Report,
                  rep: int) -> Reoffer:  # fmt: skip
    what = f"SDK {'poll' if poll else 'push'} worker kill -9"
    task = await _one_task(api, f"r3-sdk-{'poll' if poll else 'push'}-{rep}")
    proc = await sdk.start(crew.url, task["channel"], poll=poll, lease=R3_LEASE,
                           worker_class="Sleeper")  # fmt: skip

    async def leased() -> bool:
        t = await api.ok("GET", f"{V1}/task/{task['_id']}")
        return bool(t["status"] == "leased")

    await eventually(leased, 20)
    await asyncio.sleep(R3_LEASE)  # a few heartbeats: the holder was alive past its first lease
    proc.kill()
    await proc.wait()
    return await _reoffer(api, task, time.time(), report, what)


async def _r3_socket_drop(crew: Crew, api: Api, report: Report, rep: int) -> Reoffer:
    """A push worker whose socket vanishes without a close frame (RST: SO_LINGER 0, abort)."""
    import socket
    import struct

    import aiohttp

    task = await _one_task(api, f"r3-ws-drop-{rep}")
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(crew.url + f"{V1}/ws")
        await ws.send_json({"type": "subscribe", "workerId": "r3-a", "channels": [task["channel"]],
                            "capacity": 1, "leaseSeconds": R3_LEASE})  # fmt: skip
        while (frame := await ws.receive_json(timeout=10))["type"] != "task":
            pass
        sock = ws.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn = ws._response.connection  # aiohttp exposes the transport only through it
        assert conn is not None and conn.transport is not None
        died = time.time()
        conn.transport.abort()  # no close frame, no FIN: a reset
        assert frame["task"]["_id"] == task["_id"]
        with contextlib.suppress(Exception):
            await ws.close()
    return await _reoffer(api, task, died, report, "WS socket dropped without close")


async def r3_worker_dies(root: Path, repeat: int = 1) -> Outcome:
    """R3: the worker holding a task dies mid-task."""
    crew, report, sdk, seen = Crew(root), Report(), SdkWorkers(root), list[Reoffer]()
    url = await crew.start()
    async with Api(url) as api:
        for rep in range(repeat):
            seen.append(await _r3_sdk(crew, api, sdk, True, report, rep))
            seen.append(await _r3_sdk(crew, api, sdk, False, report, rep))
            seen.append(await _r3_socket_drop(crew, api, report, rep))
    await sdk.stop()
    await crew.stop()
    notes = [f"lease {R3_LEASE:g} s + tick {TICK:g} s"]
    for what in dict.fromkeys(w for w, _ in seen):
        lates = [x for w, x in seen if w == what and x is not None]
        worst = f"{max(lates):.2f} s" if lates else "never"
        notes.append(f"{what}: re-offered {len(lates)}/{repeat}, latest {worst} after the death")
    return Outcome("R3 worker dies mid-task", 3 * repeat, report, notes)


# R4 ------------------------------------------------------------------------------------------

R4_LEASE = 1.0


async def _r4_finish(api: Api, task: Json, b: Json, stale: int, report: Report,
                     what: str) -> str:  # fmt: skip
    """B got the task after A's lease ran out; A's release was answered ``stale``; now B
    releases (twice: a retry), and the task must hold B's output and B's children, once."""
    body = {"workerId": "b", "leaseId": b["leaseId"], "output": {"by": "b"},
            "children": [{"name": "b-kid", "channel": "r4-kids"}]}  # fmt: skip
    first = await api.ok("POST", f"{V1}/task/{task['_id']}/release", body)
    again = await api.ok("POST", f"{V1}/task/{task['_id']}/release", body)
    report.acked += 2
    tasks = await api.ok("GET", f"{V1}/task_group/{task['taskGroupId']}/tasks")
    final = next(t for t in tasks if t["_id"] == task["_id"])
    kids = sorted(t["name"] for t in tasks if task["_id"] in t["parentIds"])
    if stale != 409:
        report.problem(f"{what}: A's stale release got {stale}, not 409")
    if final["output"] != {"by": "b"} or first["completedAt"] != again["completedAt"]:
        report.lost += 1
        report.problem(f"{what}: B's release did not count: {final['output']}")
    if kids != ["b-kid"]:
        report.duplicates += max(0, len(kids) - 1)
        report.problem(f"{what}: children {kids}, want ['b-kid'] once")
    return f"{what}: A got {stale}"


async def _r4_take_b(api: Api, task: Json) -> Json:
    """B long-polls the channel: it gets the task once A's lease has expired."""
    got = await api.ok("POST", f"{V1}/channel/{task['channel']}/acquire",
                       {"workerId": "b", "waitSeconds": 10})  # fmt: skip
    b: Json = got["task"]
    assert b is not None and b["_id"] == task["_id"], got
    return b


async def _r4_rest(api: Api, report: Report, rep: int) -> str:
    task = await _one_task(api, f"r4-rest-{rep}")
    a = (await api.ok("POST", f"{V1}/channel/{task['channel']}/acquire",
                      {"workerId": "a", "leaseSeconds": R4_LEASE}))["task"]  # fmt: skip
    b = await _r4_take_b(api, task)
    stale, _ = await api.call("POST", f"{V1}/task/{task['_id']}/release",
                              {"workerId": "a", "leaseId": a["leaseId"], "output": {"by": "a"},
                               "children": [{"name": "a-kid", "channel": "r4-kids"}]})  # fmt: skip
    return await _r4_finish(api, task, b, stale, report, "REST")


async def _r4_ws(crew: Crew, api: Api, report: Report, rep: int) -> str:
    import aiohttp

    task = await _one_task(api, f"r4-ws-{rep}")
    async with aiohttp.ClientSession() as session, session.ws_connect(crew.url + f"{V1}/ws") as ws:
        await ws.send_json({"type": "subscribe", "workerId": "a", "channels": [task["channel"]],
                            "capacity": 1, "leaseSeconds": R4_LEASE})  # fmt: skip
        while (frame := await ws.receive_json(timeout=10))["type"] != "task":
            pass
        await ws.send_json({"type": "unsubscribe"})
        b = await _r4_take_b(api, task)
        await ws.send_json({"type": "release", "ref": "stale", "taskId": task["_id"],
                            "workerId": "a",
                            "leaseId": frame["task"]["leaseId"], "output": {"by": "a"},
                            "children": [{"name": "a-kid", "channel": "r4-kids"}]})  # fmt: skip
        while (answer := await ws.receive_json(timeout=10)).get("ref") != "stale":
            pass
    stale = 200 if answer["type"] == "ack" else int(answer["status"])
    return await _r4_finish(api, task, b, stale, report, "WS")


async def _r4_sdk(crew: Crew, api: Api, sdk: SdkWorkers, report: Report, rep: int) -> str:
    """A real SDK worker process, paused with SIGSTOP past its lease, resumed after B got it."""
    task = await _one_task(api, f"r4-sdk-{rep}")
    work = 1.6
    proc = await sdk.start(crew.url, task["channel"], poll=True, lease=R4_LEASE, work=work,
                           concurrency=1, worker_class="Sleeper")  # fmt: skip

    async def leased() -> bool:
        t = await api.ok("GET", f"{V1}/task/{task['_id']}")
        return bool(t["status"] == "leased")

    await eventually(leased, 20, 0.02)
    started = time.monotonic()
    proc.send_signal(signal.SIGSTOP)
    try:
        b = await _r4_take_b(api, task)
        await asyncio.sleep(max(0.0, work + 0.3 - (time.monotonic() - started)))
    finally:
        proc.send_signal(signal.SIGCONT)

    async def verdict() -> str | None:
        for line in sdk.log.read_text().splitlines() if sdk.log.exists() else []:
            if f'"task": "{task["_id"]}", "verdict"' in line:
                return line.rsplit('"verdict": ', 1)[1].strip('"}')
        return None

    said = await eventually(verdict, 15)
    proc.terminate()  # done with A: it must not take the next repetition's task
    await proc.wait()
    stale = 409 if said == "lost" else 200
    return await _r4_finish(api, task, b, stale, report, f"SDK process SIGSTOP ({said})")


async def r4_stale_holder(root: Path, repeat: int = 1) -> Outcome:
    """R4: A paused past its lease, B gets the task, A releases first."""
    crew, report, sdk, notes = Crew(root), Report(), SdkWorkers(root), []
    url = await crew.start()
    async with Api(url) as api:
        for rep in range(repeat):
            notes.append(await _r4_rest(api, report, rep))
            notes.append(await _r4_ws(crew, api, report, rep))
            notes.append(await _r4_sdk(crew, api, sdk, report, rep))
    await sdk.stop()
    await crew.stop()
    counted = Counter(notes)
    summary = [f"{text} x{n}" for text, n in counted.items()]
    return Outcome("R4 stale lease holder releases first", 3 * repeat, report, summary)


# R5 ------------------------------------------------------------------------------------------


def r5_dag(n: int, rng: random.Random) -> list[Json]:
    """One create request: ``n`` tasks, 0-2 parents each, one in eight spawns 2 children."""
    out = []
    for k in range(n):
        name = f"t{k}"
        parents = sorted(rng.sample(range(max(0, k - 20), k), min(k, rng.randint(0, 2))))
        entry = {"_child_id": name, "name": name, "input": {"i": k, "name": name,
                 "spawn": 2 * (k % 8 == 5)}}  # fmt: skip
        if parents:
            entry["_parent_ids"] = [f"t{p}" for p in parents]
        out.append(entry)
    return out


class ChaosRest(RestWorker):
    """Every message sent twice (acquires concurrently; releases and extends shuffled together,
    and the previous round's messages re-sent late)."""

    late: list[tuple[str, Json]]

    async def run(self) -> None:
        self.late = []
        async with Api(self.url, timeout=10) as api:
            while not self.stop.is_set():
                body = {"workerId": self.name, "leaseSeconds": 30, "count": 3, "waitSeconds": 0.3}
                path = f"{V1}/channel/{self.channel}/acquire"
                answers = await asyncio.gather(*(api.call("POST", path, body) for _ in range(2)))
                leases: list[Json] = []
                for status, got in answers:
                    self.checker.statuses[status] += 1
                    leases += got["tasks"] if status == 200 else []
                await self._round(api, leases)

    async def _round(self, api: Api, leases: list[Json]) -> None:
        msgs: list[tuple[str, Json]] = []
        for lease in leases:
            task = lease["task"]
            self.checker.executed(task, lease["parents"], self.name)
            ids = {"workerId": self.name, "leaseId": task["leaseId"]}
            release = ids | {"output": self.output(task, self.name),
                             "children": children_from(task)}  # fmt: skip
            path = f"{V1}/task/{task['_id']}"
            msgs += [(f"{path}/release", release), (f"{path}/extend", ids)] * 2
        random.shuffle(msgs)
        batch, self.late = msgs + self.late, msgs[: len(msgs) // 2]
        answers = await asyncio.gather(*(api.call("POST", p, b) for p, b in batch))
        for (path, body), (status, got) in zip(batch, answers, strict=True):
            self.checker.statuses[status] += 1
            if status == 200 and path.endswith("/release"):
                self.checker.released(got["_id"], body["output"], got, body["children"])


def children_from(task: Json) -> list[Json]:
    from tests.faults.harness import children_of

    return children_of(task)


class ChaosWs(WsWorker):
    """Subscribes twice; each pushed task's release and extend frames go twice, shuffled with
    the others of the moment, and half of them once more in the next round."""

    outbox: list[Json]

    async def on_open(self, ws: Any) -> None:
        self.outbox = []
        sub = {"type": "subscribe", "workerId": self.name, "channels": [self.channel],
               "capacity": 6, "leaseSeconds": 30}  # fmt: skip
        await ws.send_json(sub)
        await ws.send_json(sub)
        for frame, _, _ in list(self.pending.values()):
            self.outbox.append(frame)

    def helper(self, ws: Any) -> asyncio.Task[None] | None:
        return asyncio.create_task(self._flusher(ws))

    def _on_frame(self, frame: Json) -> None:
        kind = frame.get("type")
        if kind == "task":
            task = frame["task"]
            self.checker.executed(task, frame["parents"], self.name)
            self._refs += 1
            ref = f"{self.name}-{self._refs}"
            release = {"type": "release", "ref": ref, "taskId": task["_id"],
                       "leaseId": task["leaseId"], "output": self.output(task, self.name),
                       "children": children_from(task)}  # fmt: skip
            extend = {"type": "extend", "ref": f"x{ref}", "taskId": task["_id"],
                      "leaseId": task["leaseId"]}  # fmt: skip
            self.pending[ref] = (release, release["output"], release["children"])
            self.outbox += [release, extend, release, extend]
        elif kind == "ack" and frame.get("ref") in self.pending:
            sent, output, kids = self.pending[frame["ref"]]
            self.checker.statuses[200] += 1
            self.checker.released(sent["taskId"], output, frame["task"], kids)
        elif kind == "error":
            self.checker.statuses[int(frame["status"])] += 1

    async def _flusher(self, ws: Any) -> None:
        late: list[Json] = []
        while True:
            await asyncio.sleep(0.02)
            batch, self.outbox = self.outbox, []
            random.shuffle(batch)
            for frame in batch + late:
                await ws.send_json(frame)
            late = batch[: len(batch) // 2]


def _normal(tasks: list[Json]) -> dict[str, tuple[Any, ...]]:
    """A group's final state, by task name, free of ids and times."""
    names = {t["_id"]: t["name"] for t in tasks}
    return {
        t["name"]: (
            t["status"],
            canonical(t["output"]),
            tuple(sorted(names[p] for p in t["parentIds"])),
            t["remainingAttempts"],
            len(t["errors"]),
        )
        for t in tasks
    }


def canonical(value: Any) -> str:
    import json

    return json.dumps(value, sort_keys=True)


async def _r5_run(api: Api, url: str, mode: str, n: int, seed: int,
                  checker: Checker) -> list[Json]:  # fmt: skip
    from tests.faults.harness import plain_output

    group = await api.ok("POST", f"{V1}/task_groups", {"name": f"r5-{mode}"})
    dag = r5_dag(n, random.Random(seed))
    for k, entry in enumerate(dag):
        entry["channel"] = f"r5-{mode}-{'rest' if k % 2 else 'ws'}"
    created = await api.ok("POST", f"{V1}/task_group/{group['_id']}/tasks", dag)
    checker.tasks_created(created)
    total = n + 2 * sum(1 for e in dag if e["input"]["spawn"])
    rest_cls, ws_cls = (ChaosRest, ChaosWs) if mode == "chaos" else (RestWorker, WsWorker)
    workers = Workers([
        rest_cls(url, f"r5-{mode}-rest", checker, f"{mode}-rest", output=plain_output),
        ws_cls(url, f"r5-{mode}-ws", checker, f"{mode}-ws", output=plain_output),
    ])  # fmt: skip
    await eventually(lambda: _group_done(api, group["_id"], total), 60)
    await workers.stop()
    final: list[Json] = await api.ok("GET", f"{V1}/task_group/{group['_id']}/tasks")
    return final


async def r5_duplicates(root: Path, tasks: int = 120, runs: int = 1, seed: int = 5) -> Outcome:
    """R5: every worker message duplicated and reordered, over REST and WS, against a clean run
    of the same DAG."""
    crew, report, notes = Crew(root), Report(), []
    url = await crew.start()
    async with Api(url) as api:
        for run in range(runs):
            clean, chaos = Checker(), Checker()
            want = _normal(await _r5_run(api, url, "clean", tasks, seed + run, clean))
            final = await _r5_run(api, url, "chaos", tasks, seed + run, chaos)
            got = _normal(final)
            report.add(chaos.verify(final))
            if len(final) != len(want):
                report.duplicates += abs(len(final) - len(want))
                report.problem(f"{len(final)} tasks after the chaos run, {len(want)} after clean")
            if got != want:
                diff = [k for k in want if want[k] != got.get(k)] + sorted(set(got) - set(want))
                report.problem(f"final state differs from the clean run at {diff[:5]}")
            if set(chaos.statuses) - {200, 409}:  # 409: an extend after its release
                report.problem(f"answers other than 200/409: {dict(chaos.statuses)}")
            notes.append(
                "answers " + " ".join(f"{s}x{n}" for s, n in sorted(chaos.statuses.items()))
            )
    await crew.stop()
    notes.insert(0, f"{tasks} tasks + continuations per run, same final state as clean delivery")
    return Outcome("R5 duplicated + reordered worker messages", runs, report, notes[:3])


# R6 ------------------------------------------------------------------------------------------


class Extender:
    """Heartbeats one lease every ``lease / 4`` s over REST or WS, through server restarts;
    ``expires`` is the lease end of the last extension the server acknowledged."""

    def __init__(self, url: str, task: Json, holder: str, lease: float, ws: bool) -> None:
        self.url, self.task, self.holder, self.lease, self.use_ws = url, task, holder, lease, ws
        self.expires = epoch(task["leaseExpiresAt"])
        self.acks = 0
        self.stop = asyncio.Event()
        self.job = asyncio.create_task(self._ws() if ws else self._rest())

    def acked(self, task: Json) -> None:
        self.acks += 1
        self.expires = max(self.expires, epoch(task["leaseExpiresAt"]))

    async def _rest(self) -> None:
        body = {
            "workerId": self.holder,
            "leaseId": self.task["leaseId"],
            "leaseSeconds": self.lease,
        }
        async with Api(self.url, timeout=2) as api:
            while not self.stop.is_set():
                try:
                    status, got = await api.call(
                        "POST", f"{V1}/task/{self.task['_id']}/extend", body
                    )
                    if status == 200:
                        self.acked(got)
                        await asyncio.sleep(self.lease / 4)
                        continue
                except NETWORK:
                    pass
                await asyncio.sleep(0.05)

    async def _ws(self) -> None:
        import aiohttp

        frame = {"type": "extend", "workerId": self.holder, "taskId": self.task["_id"],
                 "leaseId": self.task["leaseId"], "leaseSeconds": self.lease}  # fmt: skip
        async with aiohttp.ClientSession() as session:
            while not self.stop.is_set():
                try:
                    async with session.ws_connect(self.url + f"{V1}/ws") as ws:
                        while not self.stop.is_set():
                            await ws.send_json(frame)
                            answer = await ws.receive_json(timeout=2)
                            if answer.get("type") == "ack":
                                self.acked(answer["task"])
                            await asyncio.sleep(self.lease / 4)
                except (*NETWORK, TypeError, ValueError):
                    pass
                await asyncio.sleep(0.05)


async def _r6_thief(url: str, channels: list[str], stop: asyncio.Event, stolen: list[str]) -> None:
    """Long-polls the extended tasks' channels: it must get nothing while they are extended."""
    async with Api(url, timeout=5) as api:
        while not stop.is_set():
            for channel in channels:
                try:
                    status, got = await api.call(
                        "POST",
                        f"{V1}/channel/{channel}/acquire",
                        {"workerId": "thief", "waitSeconds": 0.3},
                    )
                except NETWORK:
                    await asyncio.sleep(0.05)
                    continue
                if status == 200 and got["task"] is not None:
                    stolen.append(f"{channel} reclaimed while extended")


async def r6_extend_across_restarts(root: Path, restarts: int = 2, lease: float = 3.0,
                                    seed: int = 6) -> Outcome:  # fmt: skip
    """R6: a lease kept alive by heartbeats over REST and WS across kill -9 + restarts."""
    import aiohttp

    rng, crew, report = random.Random(seed), Crew(root), Report()
    url = await crew.start()
    async with Api(url) as api, aiohttp.ClientSession() as session:
        rest_task, ws_task = await _one_task(api, "r6-rest"), await _one_task(api, "r6-ws")
        got = await api.ok("POST", f"{V1}/channel/r6-rest/acquire",
                           {"workerId": "holder", "leaseSeconds": lease})  # fmt: skip
        ws = await session.ws_connect(url + f"{V1}/ws")
        await ws.send_json({"type": "subscribe", "workerId": "holder", "channels": ["r6-ws"],
                            "capacity": 1, "leaseSeconds": lease})  # fmt: skip
        while (frame := await ws.receive_json(timeout=10))["type"] != "task":
            pass
        extenders = [Extender(url, got["task"], "holder", lease, ws=False),
                     Extender(url, frame["task"], "holder", lease, ws=True)]  # fmt: skip
        stop_thief, stolen = asyncio.Event(), list[str]()
        thief = asyncio.create_task(_r6_thief(url, ["r6-rest", "r6-ws"], stop_thief, stolen))
        for _ in range(restarts):
            await asyncio.sleep(rng.uniform(0.5, 1.2))
            await crew.note_lag()
            await crew.restart(down=rng.uniform(0.1, 0.4))
        await ws.close()
        await asyncio.sleep(lease / 2)  # at least one extension after the last restart
        await crew.note_lag()
        stop_thief.set()
        await thief
        for task in (rest_task, ws_task):
            report.acked += 1
            t = await api.ok("GET", f"{V1}/task/{task['_id']}")
            if t["errors"] or t["status"] != "leased":
                report.lost += 1
                report.problem(f"{task['channel']} lease lost while extended: {t['errors']}")
        for e in extenders:
            e.stop.set()
        await asyncio.gather(*(e.job for e in extenders))
        notes = [f"{restarts} kill -9 restarts, lease {lease:g} s, "
                 f"{sum(e.acks for e in extenders)} extensions acknowledged"]  # fmt: skip
        pairs = zip((rest_task, ws_task), extenders, strict=True)
        notes += await asyncio.gather(*(_r6_reclaim(api, t, e.expires, report) for t, e in pairs))
    for text in stolen:
        report.duplicates += 1
        report.problem(text)
    await crew.stop()
    return Outcome("R6 lease extended across restarts", restarts, report, notes, crew.lags)


async def _r6_reclaim(api: Api, task: Json, expires: float, report: Report) -> str:
    got = await api.ok("POST", f"{V1}/channel/{task['channel']}/acquire",
                       {"workerId": "next", "waitSeconds": 15})  # fmt: skip
    offered = time.time()
    t = await api.ok("GET", f"{V1}/task/{task['_id']}")
    if got["task"] is None:
        report.problem(f"{task['channel']}: not reclaimed within 15 s of the last extension")
        return f"{task['channel']}: not reclaimed"
    late = offered - expires
    if late < -0.01 or late > TICK + 0.3:
        report.problem(f"{task['channel']}: reclaimed {late:+.2f} s from the lease end")
    if [e.get("message") for e in t["errors"]] != ["lease expired"]:
        report.problem(f"{task['channel']}: errors after reclaim {t['errors']}")
    return f"{task['channel'][3:]} reclaimed {late:+.2f} s after its lease end"


# R7 ------------------------------------------------------------------------------------------

R7_KIDS = 3


class Storm:
    """Releases every lease with ``R7_KIDS`` children from ``concurrency`` senders; a 503 puts
    the lease back to be released again. ``gate`` pauses the senders."""

    def __init__(self, api: Api, leases: list[Json], checker: Checker, concurrency: int,
                 pad: int = 2048) -> None:  # fmt: skip
        self.api, self.checker, self.pad = api, checker, pad
        self.queue: asyncio.Queue[Json] = asyncio.Queue()
        for lease in leases:
            self.queue.put_nowait(lease)
        self.left = len(leases)
        self.gate = asyncio.Event()
        self.gate.set()
        self.fault_window: tuple[float, float] = (0.0, -1.0)
        self.slow_503: list[float] = []
        self.latency_503: list[float] = []
        self.ok_in_fault = 0
        self.jobs = [asyncio.create_task(self._sender()) for _ in range(concurrency)]

    async def _sender(self) -> None:
        while self.left:
            lease = await self.queue.get()
            if not lease:
                break
            await self.gate.wait()
            pad = "x" * self.pad  # bytes per child: a full disk bites once its WAL is used up
            kids = [{"name": f"{lease['name']}/{j}", "channel": "r7-kids", "input": {"pad": pad}}
                    for j in range(R7_KIDS)]  # fmt: skip
            body = {"workerId": "storm", "leaseId": lease["leaseId"],
                    "output": {"i": lease["name"]}, "children": kids}  # fmt: skip
            started = time.monotonic()
            try:
                status, got = await self.api.call("POST", f"{V1}/task/{lease['_id']}/release", body)
            except NETWORK:
                status, got = 0, None
            took = time.monotonic() - started
            self.checker.statuses[status] += 1
            if status == 200:
                self.checker.released(lease["_id"], body["output"], got, kids)
                self.left -= 1
                self.ok_in_fault += self.fault_window[0] <= started <= self.fault_window[1]
                continue
            if status == 503:
                self.latency_503.append(took)
            elif status != 0:
                self.left -= 1
                raise AssertionError(f"release answered {status}: {got}")
            await asyncio.sleep(0.05)
            self.queue.put_nowait(lease)
        for _ in self.jobs:  # wake the other senders: nothing is left
            self.queue.put_nowait({})

    async def done(self, limit: float = 90) -> None:
        await asyncio.wait_for(asyncio.gather(*self.jobs), limit)

    async def progress(self, released: int, limit: float = 60) -> None:
        total = self.left

        async def enough() -> bool:
            return total - self.left >= released

        await eventually(enough, limit, 0.01)


async def _r7_prepare(api: Api, tasks: int, checker: Checker) -> tuple[str, list[Json]]:
    group = await api.ok("POST", f"{V1}/task_groups", {"name": "r7"})
    checker.group_created(group)
    entries = [{"name": f"r{k}", "channel": "r7"} for k in range(tasks)]
    checker.tasks_created(await api.ok("POST", f"{V1}/task_group/{group['_id']}/tasks", entries))
    leases: list[Json] = []
    while len(leases) < tasks:
        got = await api.ok(
            "POST",
            f"{V1}/channel/r7/acquire",
            {"workerId": "storm", "leaseSeconds": 600, "count": 1000},
        )
        leases += [g["task"] for g in got["tasks"]]
    return group["_id"], leases


async def _r7_whole(api: Api, gid: str, report: Report, when: str) -> None:
    """No partial state: a task is completed with all its children, or neither."""
    tasks = await api.retry("GET", f"{V1}/task_group/{gid}/tasks")
    kids: Counter[str] = Counter(p for t in tasks for p in t["parentIds"])
    for t in tasks:
        if t["channel"] != "r7":
            continue
        n = kids.get(t["_id"], 0)
        if (t["status"] == "completed") != (n == R7_KIDS) or n not in (0, R7_KIDS):
            report.problem(f"{when}: {t['name']} is {t['status']} with {n} children")


async def r7_storage_fault(root: Path, fault_kind: str, tasks: int = 300, hold: float = 2.0,
                           kill_mid: bool = False, bound: float = 2.0) -> Outcome:  # fmt: skip
    """R7: the store cannot commit (locked / disk full) during a release storm: each release
    is answered 503 within ``bound`` s (docs/RELIABILITY.md: 2 s), no partial release is ever on
    disk, writes resume without a restart, nothing acknowledged is lost (checked after a final
    kill -9). ``kill_mid`` also kills the server while the fault lasts."""
    from tests.faults.storage import Fault, FsizeFault, LockFault, TmpfsFault

    crew, checker, report, notes = Crew(root), Checker(), Report(), list[str]()
    tmpfs = TmpfsFault(root / "data") if fault_kind == "tmpfs" else None
    if tmpfs is not None:
        tmpfs.mount()
    try:
        url = await crew.start()
        pid = crew.pid
        fault: Fault = (
            tmpfs if tmpfs is not None else LockFault(crew.db) if fault_kind == "lock"
            else FsizeFault(pid)
        )  # fmt: skip
        async with Api(url, timeout=30) as api:
            gid, leases = await _r7_prepare(api, tasks, checker)
            # a full file system still takes writes into the WAL pages SQLite already holds:
            # big children use them up within the fault window
            pad = 32768 if tmpfs is not None else 2048
            storm = Storm(api, leases, checker, concurrency=16, pad=pad)
            await storm.progress(tasks // 4)
            await fault.on()
            started = time.monotonic()
            storm.fault_window = (started + 0.05, started + hold)
            health = await _timed_health(crew)
            await asyncio.sleep(max(0.0, hold - (time.monotonic() - started)))
            if kill_mid:
                storm.gate.clear()
                await crew.note_lag()
                await crew.kill()
                await fault.off()
                await crew.start()
                await _r7_whole(api, gid, report, "after kill -9 mid-fault")
                storm.gate.set()
            else:
                await fault.off()
            await storm.done()
            if not kill_mid and (crew.exit_code() is not None or crew.pid != pid):
                report.problem("the server restarted: writes did not resume by themselves")
            await crew.note_lag()
            await crew.restart()  # kill -9: nothing acknowledged may be lost
            final = await api.ok("GET", f"{V1}/task_group/{gid}/tasks")
            groups = [g["_id"] for g in await api.ok("GET", f"{V1}/task_groups")]
            report.add(checker.verify(final, groups=groups, all_complete=False))
            await _r7_whole(api, gid, report, "at the end")
        # a real full disk may still take a commit into WAL pages it already holds: there a
        # healthy answer is the truth, not a failure (RLIMIT_FSIZE=0 and a lock fail them all)
        _r7_judge(storm, health, report, notes, bound, fault_kind == "tmpfs")
        await crew.stop()
    finally:
        if tmpfs is not None:
            await crew.kill()
            tmpfs.umount()
    name = f"R7 {fault.name}" + (" + kill -9" if kill_mid else "")
    return Outcome(name, 1, report, notes, crew.lags)


async def _timed_health(crew: Crew) -> tuple[int, float]:
    await asyncio.sleep(0.1)
    started = time.monotonic()
    try:
        status, _ = await crew.health(limit=10)
    except NETWORK:
        status = 0
    return status, time.monotonic() - started


def _r7_judge(storm: Storm, health: tuple[int, float], report: Report, notes: list[str],
              bound: float, may_commit: bool) -> None:  # fmt: skip
    lat = sorted(storm.latency_503)
    if not lat:
        report.problem("no 503 during the fault: the fault did not bite")
    elif lat[-1] >= bound:
        report.problem(f"{sum(x >= bound for x in lat)} of {len(lat)} 503s took >= {bound:g} s "
                       f"(max {lat[-1]:.2f} s)")  # fmt: skip
    if health[0] not in ((503, 200) if may_commit else (503,)) or health[1] >= bound:
        report.problem(f"/healthz during the fault: {health[0]} after {health[1]:.2f} s")
    if lat:
        notes.append(f"{len(lat)} x 503 (max {lat[-1]:.2f} s), {storm.ok_in_fault} x 200 "
                     f"during the fault, /healthz {health[0]} in {health[1]:.2f} s")  # fmt: skip


async def r7_stuck_exit(root: Path, tasks: int = 200, seed: int = 8) -> Outcome:
    """R7, the other half of "fail closed": with ``--commit-timeout`` below SQLite's
    busy_timeout (1 s) a locked file makes a store call outlast its deadline, and the watchdog
    stops the process (exit 70) instead of hanging; restarted, it holds every acknowledged
    write and no partial release. (With the default 10 s deadline the lock gives 503s.)"""
    from tests.faults.storage import LockFault

    crew, checker, report = Crew(root, "--commit-timeout", "0.5"), Checker(), Report()
    url = await crew.start()
    fault = LockFault(crew.db)
    async with Api(url, timeout=30) as api:
        gid, leases = await _r7_prepare(api, tasks, checker)
        storm = Storm(api, leases, checker, concurrency=8)
        await storm.progress(tasks // 4)
        await fault.on()

        async def poke() -> None:  # a write for the watchdog to time, should the storm have
            while True:  # run out of work while the lock was being taken (a loaded machine)
                with contextlib.suppress(Exception):
                    await api.call("POST", f"{V1}/task_groups", {"name": "poke"})
                await asyncio.sleep(0.2)

        poker = asyncio.create_task(poke())
        started = time.monotonic()
        code = None
        while code is None and time.monotonic() - started < 10:
            await asyncio.sleep(0.02)
            code = crew.exit_code()
        took = time.monotonic() - started
        poker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await poker
        storm.gate.clear()
        await fault.off()
        if code != 70:
            report.problem(f"exit code {code} within 10 s of the lock, want 70")
            await crew.kill()
        await crew.start()
        await _r7_whole(api, gid, report, "after the watchdog exit")
        storm.gate.set()
        await storm.done()
        await crew.restart()
        final = await api.ok("GET", f"{V1}/task_group/{gid}/tasks")
        report.add(checker.verify(final, groups=[gid], all_complete=False))
        await _r7_whole(api, gid, report, "at the end")
    await crew.stop()
    notes = [f"lock with --commit-timeout 0.5: exit {code} after {took:.2f} s, restart clean"]
    return Outcome("R7 stuck store call -> exit 70", 1, report, notes)
