"""The processes ``crew-aio bench`` drives and reads: ``crew-aio serve`` on a data dir of its
own, worker processes of one shape, and what ``/proc`` tells of them; the machine's facts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import orjson

__all__ = ["ServerProc", "Shape", "Workers", "cpu_seconds", "machine", "pct", "rss_bytes",
           "sqlite_commit_ms"]  # fmt: skip

Json = dict[str, Any]
TICK: Final = os.sysconf("SC_CLK_TCK")
PAGE: Final = os.sysconf("SC_PAGE_SIZE")
LISTENING: Final = re.compile(r"listening on (http://[^\s\"]+)")


@dataclass(frozen=True)
class Shape:
    key: str
    label: str
    mode: str  # ws, poll or crew (crew_aio.bench.worker --mode)
    prefetch: str = "auto"


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def rss_bytes(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class ServerProc:
    """``crew-aio serve`` on a data dir of its own, as a user starts it."""

    def __init__(self, data_dir: Path, env: Mapping[str, str], cwd: Path | None = None) -> None:
        self.data_dir = data_dir
        self.cwd = cwd
        self.env = {k: v for k, v in env.items() if not k.startswith("CREW_")}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.port = 0
        self.ready_seconds = 0.0
        self.log = data_dir.parent / "server.log"

    def start(self, timeout: float = 120.0) -> str:
        cmd = [sys.executable, "-m", "crew_aio", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--data-dir", str(self.data_dir)]  # fmt: skip
        began = time.perf_counter()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(
                cmd, stderr=out, stdout=subprocess.DEVNULL, env=self.env, cwd=self.cwd
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = LISTENING.search(self.log.read_text())
            if m:
                self.ready_seconds = time.perf_counter() - began
                self.url = m.group(1)
                self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
                return self.url
            if self.proc.poll() is not None:
                break
            time.sleep(0.005)
        self.kill()
        raise RuntimeError(f"the server did not say 'listening on':\n{self.log.read_text()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


class Workers:
    """``n`` worker processes of one shape; SIGTERM stops them and their stats are read."""

    def __init__(self, tmp: Path, url: str, token: str | None, channel: str, shape: Shape,
                 n: int, concurrency: int, env: Mapping[str, str],
                 cwd: Path | None = None) -> None:  # fmt: skip
        self.tmp, self.url, self.token, self.channel = tmp, url, token, channel
        self.env = dict(env)
        self.cwd = cwd
        self.shape, self.n, self.concurrency = shape, n, concurrency
        self.procs: list[asyncio.subprocess.Process] = []
        self.paths: list[Path] = []

    async def start(self, limit: float = 30.0) -> None:
        for k in range(self.n):
            path = self.tmp / f"{self.channel}-{k}.json"
            cmd = [sys.executable, "-m", "crew_aio.bench.worker", self.url, self.channel,
                   str(path), "--concurrency", str(self.concurrency), "--mode", self.shape.mode,
                   "--prefetch", self.shape.prefetch]  # fmt: skip
            if self.token:  # in a file of its own: a command line shows in `ps`
                secret = self.tmp / "token"
                secret.touch(0o600)
                secret.write_text(self.token)
                cmd += ["--token-file", str(secret)]
            proc = await asyncio.create_subprocess_exec(
                *cmd, stdout=asyncio.subprocess.PIPE, env=self.env, cwd=self.cwd
            )
            self.procs.append(proc)
            self.paths.append(path)
        for proc in self.procs:
            assert proc.stdout is not None
            line = await asyncio.wait_for(proc.stdout.readline(), limit)
            if line.strip() != b"READY":
                raise RuntimeError(f"worker process {proc.pid} did not start: {line!r}")

    def cpu(self) -> float:
        return sum(cpu_seconds(p.pid) for p in self.procs if p.returncode is None)

    async def stop(self) -> list[Json]:
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
        for path in self.paths:
            with contextlib.suppress(OSError, ValueError):
                stats.append(orjson.loads(path.read_bytes()))
        self.procs, self.paths = [], []
        return stats


# helpers ------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def machine() -> Json:
    return {
        "cpus": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}",
        "commit_ms": round(sqlite_commit_ms(), 3),
    }


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.machine()


def sqlite_commit_ms(commits: int = 200) -> float:
    """Mean ms of one single-row SQLite commit (WAL, synchronous=FULL) on the temp dir's disk:
    the floor under every acknowledgement."""
    with tempfile.TemporaryDirectory() as tmp:
        db = sqlite3.connect(Path(tmp) / "probe.sqlite", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE kv (key TEXT PRIMARY KEY, value BLOB)")
        began = time.perf_counter()
        for i in range(commits):
            db.execute("BEGIN")
            db.execute("INSERT OR REPLACE INTO kv VALUES (?, ?)", (str(i % 10), b"x" * 300))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - began
        db.close()
    return elapsed / commits * 1000
