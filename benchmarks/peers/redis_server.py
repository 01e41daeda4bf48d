"""A private ``redis-server`` for one workload, and process helpers shared by the harness.

The server listens on a free port of 127.0.0.1 only, keeps its files in the given directory
and runs with an append-only file fsynced every second and no RDB snapshots::

    redis-server --port P --bind 127.0.0.1 --dir DIR --appendonly yes --appendfsync everysec
                 --save ""
"""

from __future__ import annotations

import contextlib
import ctypes
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from crew_aio.bench.procs import cpu_seconds
from tests.support.server import free_port

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn`` for children: SIGTERM them if the harness dies without cleaning up."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def redis_binary() -> str:
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(path).exists():
        raise RuntimeError("redis-server not found (apt-get install redis-server)")
    return path


def redis_major() -> str:
    """``"7"`` for Redis 7.x (from ``redis-server --version``)."""
    out = subprocess.run(
        [redis_binary(), "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout
    found = re.search(r"v=(\d+)\.", out)
    return found.group(1) if found else "?"


class RedisServer:
    """One ``redis-server`` process; :meth:`start` returns its port, :meth:`stop` kills it."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def start(self, timeout: float = 15.0) -> int:
        error = ""
        for _attempt in range(3):  # another process may take the free port before redis does
            self.port = free_port()
            self.proc = subprocess.Popen(
                [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                 "--dir", str(self.workdir), "--appendonly", "yes",
                 "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
                 "--logfile", str(self.workdir / "redis.log")],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )  # fmt: skip
            error = self._wait_ready(timeout)
            if not error:
                return self.port
            self.stop()
        raise RuntimeError(f"redis-server did not start: {error}")

    def _wait_ready(self, timeout: float) -> str:
        """'' once it answers PING with +PONG, else why not."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return f"exited with {self.proc.returncode}: {self.log_tail()}"
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith(b"+PONG"):
                    return ""
            time.sleep(0.02)
        return f"no PONG within {timeout:.0f} s: {self.log_tail()}"

    def log_tail(self, lines: int = 5) -> str:
        with contextlib.suppress(OSError):
            text = (self.workdir / "redis.log").read_text(errors="replace")
            return " | ".join(text.strip().splitlines()[-lines:])
        return "(no log)"

    def stop(self) -> None:
        """Kill it (its data is thrown away with the temp dir) and reap it."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):  # SIGKILL: only a hung kernel
            self.proc.wait(timeout=10)
        self.proc = None
