"""A benchmark worker process (``benchmarks.workers`` starts these; not a benchmark itself).

    python -m benchmarks._bench_worker URL CHANNEL STATS_PATH [--concurrency 2] [--prefetch 0]
                                       [--poll]

Runs one no-op :class:`~crew_aio.worker.Worker` with the SDK's ``run_workers`` until SIGTERM.
Prints ``READY`` on stdout once tasks can reach it (the socket is subscribed, or the long-poll
loops started with ``--poll``), then writes its counters as JSON to STATS_PATH on exit:
``count``, ``first``/``last`` (``time.time()`` at the first/last ``execute`` start) and
``starts`` (``[i, time]`` for tasks whose input carries an ``"i"``), ``links`` (``[k, start,
end]`` of ``execute`` for tasks whose input carries a ``"link"``), ``released`` and
``released_last`` (successful releases, and ``time.time()`` when the last one was answered).
A task whose input carries ``"dag": CHANNEL`` returns the 1,101 tasks under the root of the
benchmark's DAG as its continuations (:func:`dag_specs`), built here as a real worker would.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from crew_aio.worker import Result, Worker, run, run_workers
from crew_aio.worker.lease import Lease, LeaseRunner

RELEASED = {"count": 0, "last": 0.0}


def count_releases() -> None:
    """Wrap ``LeaseRunner.run`` (this process only) to note when each release was answered."""
    run = LeaseRunner.run

    async def timed(self: LeaseRunner, lease: Lease) -> str:
        result = await run(self, lease)
        if result == "ok":
            RELEASED["count"] += 1
            RELEASED["last"] = time.time()
        return result

    LeaseRunner.run = timed  # type: ignore[method-assign]


def dag_specs(channel: str, continuation: bool) -> list[dict[str, Any]]:
    """Root, 100 children, 1,000 grandchildren, the join, the probe (channel ``probe``).
    With ``continuation`` the list has no root: the root's release creates it."""
    specs: list[dict[str, Any]] = []
    if not continuation:
        specs.append({"_child_id": "r", "name": "root", "channel": channel})
    up = {} if continuation else {"_parent_ids": ["r"]}
    grand = []
    for c in range(100):
        specs.append({"_child_id": f"c{c}", "name": f"c{c}", "channel": channel, **up})
        for g in range(10):
            grand.append(f"g{c}.{g}")
            specs.append({"_child_id": grand[-1], "name": grand[-1], "channel": channel,
                          "_parent_ids": [f"c{c}"]})  # fmt: skip
    specs.append({"_child_id": "j", "name": "join", "channel": channel, "_parent_ids": grand})
    specs.append({"name": "probe", "channel": "probe", "_parent_ids": ["j"]})
    return specs


class Noop(Worker):
    def __init__(self, channel: str, concurrency: int, prefetch: int) -> None:
        self.channel = channel
        self.concurrency = concurrency
        self.prefetch = prefetch
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.starts: list[tuple[Any, float]] = []
        self.links: list[tuple[Any, float, float]] = []

    async def execute(self, input: Any, parents: list[dict[str, Any]]) -> Any:
        now = time.time()
        if not self.count:
            self.first = now
        self.count += 1
        self.last = now
        if isinstance(input, dict):
            if "i" in input:
                self.starts.append((input["i"], now))
            if "link" in input:  # a chain: when this link started and when its execute ended
                self.links.append((input["link"], now, time.time()))
            if "dag" in input:
                return Result(output=None, children=dag_specs(input["dag"], continuation=True))
        return None


class ReadyHandler(logging.Handler):
    """Prints READY at the SDK's "socket up" (or "started" with --poll) log line, once, then
    lowers the SDK's logger back to WARNING so per-task INFO lines cost nothing more."""

    def __init__(self, event: str) -> None:
        super().__init__(logging.INFO)
        self.event = event

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "event", None) == self.event:
            print("READY", flush=True)
            logging.getLogger("crew_aio.worker").setLevel(logging.WARNING)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("url")
    ap.add_argument("channel")
    ap.add_argument("stats")
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--prefetch", type=int, default=0)
    ap.add_argument("--poll", action="store_true")
    args = ap.parse_args()
    logger = logging.getLogger("crew_aio.worker")
    logger.setLevel(logging.INFO)
    logger.addHandler(ReadyHandler("worker.started" if args.poll else "worker.ws_up"))
    warn = logging.StreamHandler(sys.stderr)
    warn.setLevel(logging.WARNING)
    logger.addHandler(warn)
    count_releases()
    worker = Noop(args.channel, args.concurrency, args.prefetch)
    run(run_workers([worker], args.url, poll=args.poll, shutdown_timeout=10.0))
    with open(args.stats, "w") as out:
        stats = {"count": worker.count, "first": worker.first, "last": worker.last,
                 "starts": worker.starts, "links": worker.links, "released": RELEASED["count"],
                 "released_last": RELEASED["last"]}  # fmt: skip
        json.dump(stats, out)


if __name__ == "__main__":
    main()
