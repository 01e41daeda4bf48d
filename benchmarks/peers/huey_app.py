"""The Huey app of the peer benchmark: one Huey instance and its tasks.

Loaded by the consumers (``python -m huey.bin.huey_consumer benchmarks.peers.huey_app.huey -w N
-k thread``) and by ``benchmarks.peers.huey_driver``, both started by the harness with:

* ``PEERS_HUEY=redis`` and ``PEERS_REDIS_PORT``: a ``RedisHuey`` on 127.0.0.1 (defaults:
  blocking dequeue with BRPOP, read timeout 1 s);
* ``PEERS_HUEY=sqlite`` and ``PEERS_SQLITE_PATH``: a ``SqliteHuey`` on that file (defaults).

In a consumer process the tasks report on stdout as JSON lines (see
``benchmarks.peers.children``): ``ready`` from the first worker thread's start-up hook, then
``progress`` every 50 ms while the counters change, and one line per pickup / join / warm-up
task.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

from huey import RedisHuey, SqliteHuey, signals

QUEUE_NAME = "peers"
CHILDREN = 100
GRANDCHILDREN = 10  # per child
PROGRESS_EVERY = 0.05  # seconds


def make_huey() -> Any:
    kind = os.environ.get("PEERS_HUEY")
    if kind == "redis":
        return RedisHuey(QUEUE_NAME, host="127.0.0.1", port=int(os.environ["PEERS_REDIS_PORT"]))
    if kind == "sqlite":
        return SqliteHuey(QUEUE_NAME, filename=os.environ["PEERS_SQLITE_PATH"])
    raise RuntimeError("benchmarks.peers.huey_app needs PEERS_HUEY=redis or sqlite")


huey = make_huey()


class Reporter:
    """This process's counters, and its JSON lines on stdout (one writer at a time)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}
        self.noops = 0
        self.first = self.last = self.cpu_first = self.cpu_last = 0.0
        self.version = 0
        self.started = False

    def emit(self, **event: Any) -> None:
        line = json.dumps(event) + "\n"
        with self.lock:
            sys.stdout.write(line)
            sys.stdout.flush()

    def count(self, kind: str) -> None:
        with self.lock:
            self.counts[kind] = self.counts.get(kind, 0) + 1
            self.version += 1

    def noop(self, start: float) -> None:
        """A W1 no-op ran from ``start`` to now."""
        with self.lock:
            if not self.noops:
                self.first, self.cpu_first = start, time.process_time()
            self.first = min(self.first, start)
            self.noops += 1
            self.counts["noop"] = self.noops
            self.last, self.cpu_last = time.time(), time.process_time()
            self.version += 1

    def start(self) -> None:
        """From the consumer's start-up hook (once per worker thread): ready, and the progress
        thread, once per process."""
        with self.lock:
            if self.started:
                return
            self.started = True
        self.emit(ev="ready")
        threading.Thread(target=self._progress, name="peers-progress", daemon=True).start()

    def _progress(self) -> None:
        sent = 0
        while True:
            time.sleep(PROGRESS_EVERY)
            with self.lock:
                if self.version == sent:
                    continue
                sent = self.version
                report = {"ev": "progress", "counts": dict(self.counts), "first": self.first,
                          "last": self.last, "cpu_first": self.cpu_first,
                          "cpu_last": self.cpu_last}  # fmt: skip
            self.emit(**report)


REPORTER = Reporter()


@huey.on_startup()  # type: ignore[untyped-decorator]
def _ready() -> None:
    REPORTER.start()


@huey.signal(signals.SIGNAL_ERROR)  # type: ignore[untyped-decorator]
def _failed(signal: str, task: Any, exc: BaseException | None = None) -> None:
    REPORTER.emit(ev="failed", task=str(task), error=repr(exc))


@huey.task()  # type: ignore[untyped-decorator]
def noop() -> None:
    REPORTER.noop(time.time())


@huey.task()  # type: ignore[untyped-decorator]
def warm(i: int) -> None:
    REPORTER.emit(ev="warm", i=i)


@huey.task()  # type: ignore[untyped-decorator]
def pickup(i: int) -> None:
    started = time.time()
    REPORTER.emit(ev="pickup", i=i, t=started)
    REPORTER.count("pickup")


@huey.task()  # type: ignore[untyped-decorator]
def root(run: int) -> None:
    REPORTER.count("root")
    for _ in range(CHILDREN):
        child(run)


@huey.task()  # type: ignore[untyped-decorator]
def child(run: int) -> None:
    REPORTER.count("child")
    for _ in range(GRANDCHILDREN):
        grandchild(run)


@huey.task()  # type: ignore[untyped-decorator]
def grandchild(run: int) -> None:
    REPORTER.count("grandchild")
    if huey.storage.incr(f"w2-{run}") == CHILDREN * GRANDCHILDREN:
        join(run, time.time())


@huey.task()  # type: ignore[untyped-decorator]
def join(run: int, last_grandchild: float) -> None:
    started = time.time()
    REPORTER.emit(ev="join", run=run, t=started, gc=last_grandchild)
    REPORTER.count("join")
