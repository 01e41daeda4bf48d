"""One benchmark worker process (``crew-aio bench`` starts these; not a command of its own).

    python -m crew_aio.bench.worker URL CHANNEL STATS_PATH [--concurrency 2]
                                    [--prefetch auto|N] [--mode ws|poll|crew] [--token-file F]

Modes:

- ``ws``: the Python SDK's ``run_workers`` with its defaults (tasks pushed over the WebSocket);
  ``--prefetch`` pins the SDK's prefetch (``auto``, the default, adapts);
- ``poll``: the SDK with ``poll=True`` (long-poll REST, as ``crew-aio worker --poll``);
- ``crew``: Crew's own protocol and nothing more, as Crew's npm ``Worker`` speaks it:
  ``--concurrency`` loops of ``POST /channel/:c/acquire {workerId}`` (one task, no long poll;
  20 ms pause on an empty answer) then ``POST /task/:id/release``.

Prints ``READY`` once tasks can reach it, then writes its counters as JSON to STATS_PATH when
SIGTERM ends it: ``count``, ``first`` and ``last_end`` (``time.time()`` at the first execute
start and at the last release's answer), ``starts`` (``[i, t]`` for inputs with ``"i"``) and
``marks`` (``[mark, run, start, end]`` for inputs with ``"mark"``: the DAG's grandchildren
and join; and for inputs with ``"sleep"``: long tasks, which sleep that many seconds). An
input with ``"dag"`` returns the DAG below the root as its continuations.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Any

import aiohttp
import orjson

from crew_aio.bench.dag import dag_specs
from crew_aio.worker import Result, Worker, run, run_workers
from crew_aio.worker.lease import Lease, LeaseRunner

Json = dict[str, Any]
STATS: Json = {"released": 0, "last_end": 0.0}


class Noop(Worker):
    """Returns at once; notes what the benchmark times."""

    def __init__(self, channel: str, concurrency: int, prefetch: int | None) -> None:
        self.channel = channel
        self.concurrency = concurrency
        if prefetch is not None:  # else the SDK's default
            self.prefetch = prefetch
        self.count = 0
        self.first = 0.0
        self.starts: list[tuple[Any, float]] = []
        self.marks: list[tuple[Any, Any, float, float]] = []

    async def execute(self, input: Any, parents: list[Json]) -> Any:
        if type(input) is dict and "sleep" in input:  # a long task: its start and end noted
            began = time.time()
            await asyncio.sleep(input["sleep"])
            self.marks.append(("long", input.get("run"), began, time.time()))
            return None
        return self.noted(input)

    def noted(self, input: Any) -> Any:
        now = time.time()
        if not self.count:
            self.first = now
        self.count += 1
        if type(input) is dict:
            if "i" in input:
                self.starts.append((input["i"], now))
            if "mark" in input:
                self.marks.append((input["mark"], input.get("run"), now, time.time()))
            if "dag" in input:
                specs = dag_specs(input["dag"], continuation=True, run_no=input.get("run", 0))
                return Result(output=None, children=specs)
        return None


def count_releases() -> None:
    """Wrap ``LeaseRunner.run`` (this process only) to note when each release was answered."""
    inner = LeaseRunner.run

    async def timed(self: LeaseRunner, lease: Lease) -> str:
        result = await inner(self, lease)
        if result == "ok":
            STATS["released"] += 1
            STATS["last_end"] = time.time()
        return result

    LeaseRunner.run = timed  # type: ignore[method-assign]


class ReadyHandler(logging.Handler):
    """Prints READY at the SDK's "socket up" (or "started") log line, once, then lowers the
    SDK's logger to WARNING so per-task INFO lines cost nothing."""

    def __init__(self, event: str) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.event:
            print("READY", flush=True)
            logging.getLogger("crew_aio.worker").setLevel(logging.WARNING)


async def crew_protocol(worker: Noop, url: str, token: str | None, stop: asyncio.Event) -> None:
    """Crew's Worker, reduced to its requests: acquire one task, release it, again."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    api = url.rstrip("/") + "/api/v1"

    async def loop(session: aiohttp.ClientSession, n: int) -> None:
        me = orjson.dumps({"workerId": f"crew-{n}"})
        while not stop.is_set():
            async with session.post(f"{api}/channel/{worker.channel}/acquire", data=me) as r:
                answer = orjson.loads(await r.read())
            task = answer.get("task") if r.status == 200 else None
            if task is None:
                await asyncio.sleep(0.02)
                continue
            output = await worker.execute(task.get("input"), answer.get("parents") or [])
            body = {"workerId": f"crew-{n}", "output": output}
            async with session.post(f"{api}/task/{task['_id']}/release",
                                    data=orjson.dumps(body)) as r:  # fmt: skip
                await r.read()
                if r.status == 200:
                    STATS["released"] += 1
                    STATS["last_end"] = time.time()

    async with aiohttp.ClientSession(headers=headers) as session:
        print("READY", flush=True)
        loops = [asyncio.create_task(loop(session, n)) for n in range(worker.concurrency)]
        await stop.wait()
        for task in loops:
            task.cancel()
        await asyncio.gather(*loops, return_exceptions=True)


async def crew_main(worker: Noop, url: str, token: str | None) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await crew_protocol(worker, url, token, stop)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("channel")
    ap.add_argument("stats")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--prefetch", default="auto", help="auto (the SDK default) or a number")
    ap.add_argument("--mode", choices=("ws", "poll", "crew"), default="ws")
    ap.add_argument("--token-file", default=None, help="a file holding the token")
    args = ap.parse_args()
    prefetch = None if args.prefetch == "auto" else int(args.prefetch)
    token = None
    if args.token_file:
        with open(args.token_file) as secret:
            token = secret.read().strip()
    worker = Noop(args.channel, args.concurrency, prefetch)
    if args.mode == "crew":
        run(crew_main(worker, args.url, token))
    else:
        logger = logging.getLogger("crew_aio.worker")
        logger.setLevel(logging.INFO)
        poll = args.mode == "poll"
        logger.addHandler(ReadyHandler("worker.started" if poll else "worker.ws_up"))
        warn = logging.StreamHandler(sys.stderr)
        warn.setLevel(logging.WARNING)
        logger.addHandler(warn)
        count_releases()
        run(run_workers([worker], args.url, token=token, poll=poll, shutdown_timeout=10.0))
    with open(args.stats, "wb") as out:
        stats = {"count": worker.count, "first": worker.first, "starts": worker.starts,
                 "marks": worker.marks, **STATS}  # fmt: skip
        out.write(orjson.dumps(stats))


if __name__ == "__main__":
    main()
