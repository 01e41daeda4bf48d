"""Enqueues Huey tasks for the peer benchmark, as a Huey user does (calling the task function).

    PEERS_HUEY=redis|sqlite ... python -m benchmarks.peers.huey_driver

Reads one JSON command a line on stdin and answers each with one ``{"ev": "reply", ...}`` line
on stdout (after a first ``{"ev": "ready"}``):

* ``{"cmd": "noops", "n": N, "batch": B}`` -> ``seconds`` spent enqueueing N no-op tasks (Huey
  has no bulk enqueue, so one call per task; ``batch`` is accepted and ignored);
* ``{"cmd": "root", "run": R}`` -> ``t0``, ``time.time()`` just before the root's enqueue call;
* ``{"cmd": "pickup", "i": I}`` -> ``t0``, likewise for one pickup task;
* ``{"cmd": "warm", "i": I}`` -> an untimed warm-up task.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from benchmarks.peers import huey_app


def reply(**fields: Any) -> None:
    sys.stdout.write(json.dumps({"ev": "reply", **fields}) + "\n")
    sys.stdout.flush()


def handle(command: dict[str, Any]) -> None:
    name = command["cmd"]
    if name == "noops":
        n = int(command["n"])
        start = time.perf_counter()
        for _ in range(n):
            huey_app.noop()
        reply(seconds=time.perf_counter() - start)
    elif name == "root":
        t0 = time.time()
        huey_app.root(int(command["run"]))
        reply(t0=t0)
    elif name == "pickup":
        t0 = time.time()
        huey_app.pickup(int(command["i"]))
        reply(t0=t0)
    elif name == "warm":
        huey_app.warm(int(command["i"]))
        reply()
    else:
        reply(error=f"unknown command {name!r}")


def main() -> None:
    conn = huey_app.huey.storage.conn  # SqliteHuey opens its connection here
    if hasattr(conn, "ping"):  # RedisHuey's client connects on its first command
        conn.ping()
    sys.stdout.write(json.dumps({"ev": "ready"}) + "\n")
    sys.stdout.flush()
    for line in sys.stdin:
        if line.strip():
            handle(json.loads(line))


if __name__ == "__main__":
    main()
