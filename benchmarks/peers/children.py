"""Child processes that talk JSON lines on stdout, and the board their reports are kept on.

A worker or driver process writes one JSON object a line on stdout, with an ``"ev"`` key:

* ``ready``: connected, tasks can reach it;
* ``reply``: a driver's answer to the command last written to its stdin (one JSON line);
* ``progress``: a worker's counters (``counts`` per task kind, and the W1 figures ``first``,
  ``last``, ``cpu_first``, ``cpu_last``), the whole state each time;
* ``pickup`` (``i``, ``t``), ``join`` (``run``, ``t``, ``gc``), ``warm`` (``i``): one task ran;
* ``failed``: a task raised (fails the workload).

stderr goes to a log file in the workload's temp dir; its tail is shown when a process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from benchmarks.peers.redis_server import die_with_parent

Event = dict[str, Any]


class PeerError(RuntimeError):
    """A workload could not be measured (a process died, a task failed, counts are off)."""


class PeerTimeout(PeerError):
    """A bounded wait ran out; the message says what was missing."""


class Board:
    """What the worker processes of one workload have reported."""

    def __init__(self) -> None:
        self.progress: dict[int, Event] = {}  # pid -> its latest progress report
        self.pickups: dict[int, float] = {}  # index -> execute start
        self.joins: dict[int, Event] = {}  # run -> the join's report
        self.warm: set[int] = set()
        self.failures: list[str] = []
        self._changed = asyncio.Event()

    def post(self, source: LineProc, event: Event) -> None:
        kind = event.get("ev")
        if kind == "progress":
            self.progress[source.pid] = event
        elif kind == "pickup":
            self.pickups.setdefault(int(event["i"]), float(event["t"]))
        elif kind == "join":
            if int(event["run"]) in self.joins:
                self.fail(f"{source.label}: a second join for run {event['run']}")
            self.joins.setdefault(int(event["run"]), event)
        elif kind == "warm":
            self.warm.add(int(event["i"]))
        elif kind == "failed":
            self.fail(f"{source.label}: a task failed: {event}")
        self._changed.set()

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self._changed.set()

    def counts(self) -> dict[str, int]:
        """Tasks run so far per kind, summed over the worker processes' latest reports."""
        total: dict[str, int] = {}
        for report in self.progress.values():
            for kind, n in report.get("counts", {}).items():
                total[kind] = total.get(kind, 0) + int(n)
        return total

    async def wait_for(
        self, done: Callable[[], bool], limit: float, missing: Callable[[], str]
    ) -> None:
        """Until ``done()``; raises :class:`PeerTimeout` (with ``missing()``) after ``limit``
        seconds, or :class:`PeerError` as soon as a failure is posted."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            self._changed.clear()
            if self.failures:
                raise PeerError("; ".join(self.failures))
            if done():
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise PeerTimeout(f"nothing more within {limit:.0f} s: {missing()}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)


class LineProc:
    """One child process: JSON lines from its stdout go to ``board`` (``ready`` and ``reply``
    are kept here); JSON commands go to its stdin with :meth:`request`."""

    def __init__(
        self, label: str, argv: list[str], cwd: Path, env: dict[str, str], log: Path, board: Board
    ) -> None:
        self.label, self.argv, self.cwd, self.env, self.log = label, argv, cwd, env, log
        self.board = board
        self.proc: asyncio.subprocess.Process | None = None
        self.ready = asyncio.Event()
        self.exited = asyncio.Event()
        self.replies: asyncio.Queue[Event] = asyncio.Queue()
        self.stopping = False
        self._log_file: IO[bytes] | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self) -> None:
        self._log_file = self.log.open("wb")
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=self._log_file,
            preexec_fn=die_with_parent,
            limit=1 << 20,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            try:
                event = json.loads(line)
            except ValueError:
                continue  # not ours (a library's stray print)
            if not isinstance(event, dict):
                continue
            if event.get("ev") == "ready":
                self.ready.set()
            elif event.get("ev") == "reply":
                self.replies.put_nowait(event)
            else:
                self.board.post(self, event)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), 5)
        self.exited.set()
        if not self.stopping:
            self.board.fail(
                f"{self.label} (pid {self.pid}) exited unexpectedly with "
                f"{self.proc.returncode}; its stderr ends: {self.log_tail()}"
            )

    async def wait_ready(self, limit: float) -> None:
        await self._until(self.ready, limit, "to report ready")

    async def request(self, command: Event, limit: float) -> Event:
        """Write one command line, return the driver's reply to it."""
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        getter = asyncio.ensure_future(self.replies.get())
        try:
            await self._until(getter, limit, f"to answer {command}")
        finally:
            getter.cancel()
        return getter.result()

    async def _until(
        self, what: asyncio.Event | asyncio.Future[Any], limit: float, doing: str
    ) -> None:
        """Wait for an event or future, failing early if this process exits."""
        target = asyncio.ensure_future(what.wait()) if isinstance(what, asyncio.Event) else what
        died = asyncio.ensure_future(self.exited.wait())
        try:
            await asyncio.wait({target, died}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        finally:
            died.cancel()
            if target is not what:
                target.cancel()
        if isinstance(what, asyncio.Event) and what.is_set():
            return
        if isinstance(what, asyncio.Future) and what.done():
            return
        if self.exited.is_set():
            raise PeerError(
                f"{self.label} exited ({self.proc.returncode if self.proc else '?'}) "
                f"instead of {doing}; its stderr ends: {self.log_tail()}"
            )
        raise PeerTimeout(f"{self.label} did not manage {doing} within {limit:.0f} s")

    async def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``grace`` seconds; always reaps it and its reader."""
        self.stopping = True
        try:
            if self.proc is not None and self.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    self.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.proc.wait(), grace)
                except TimeoutError:
                    with contextlib.suppress(ProcessLookupError):
                        self.proc.kill()
                    await self.proc.wait()
            if self._reader is not None:
                try:
                    await asyncio.wait_for(self._reader, 5)
                except TimeoutError:
                    self._reader.cancel()
        finally:
            if self._log_file is not None:
                self._log_file.close()

    def log_tail(self, lines: int = 8) -> str:
        with contextlib.suppress(OSError):
            text = self.log.read_text(errors="replace").strip()
            return " | ".join(text.splitlines()[-lines:]) or "(empty)"
        return "(no log)"
