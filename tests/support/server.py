"""``crew-aio serve`` as a user runs it: a subprocess with its own data dir, on a free port.

:class:`Server` starts it (``python -m crew_aio serve``, no ``CREW_*`` variable of this
environment leaks in), waits for its "listening on" log line, and stops it with ``kill -9`` or
SIGTERM. Each start logs to its own file beside the data dir (``server-0.log``, ...), so a test
can read what a run said. ``port=free_port()`` keeps one address across restarts.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from tests.support.wait import wait_until

__all__ = ["LISTENING", "Server", "free_port"]

LISTENING = re.compile(r"listening on (http://[^\s\"]+)")  # plain or JSON log lines


def free_port() -> int:
    """A TCP port of 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """One ``crew-aio serve`` on ``data_dir``; ``extra`` are more CLI flags, ``env`` more
    environment variables. :meth:`start` may be called again after a stop (a restart)."""

    def __init__(
        self, data_dir: Path, *extra: str, port: int = 0, env: Mapping[str, str] | None = None
    ) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.port = port
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0
        self.log = data_dir.parent / "server.log"  # the log of the latest start
        self.ready_seconds = 0.0  # from spawn to the "listening" line, at the latest start

    def start(self, timeout: float = 20.0) -> str:
        """Start the server and return its URL once it listens; its stderr goes to a log file
        read for the "listening" line. A server that exits or stays silent is killed, and the
        AssertionError shows its log."""
        cmd = [sys.executable, "-m", "crew_aio", "serve", "--port", str(self.port),
               "--data-dir", str(self.data_dir), *self.extra]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CREW_")} | self.env
        self.log = self.data_dir.parent / f"server-{self.starts}.log"
        self.starts += 1
        started = time.perf_counter()
        with self.log.open("w") as out:
            proc = self.proc = subprocess.Popen(cmd, stderr=out, stdout=subprocess.DEVNULL, env=env)
        try:
            found = wait_until(lambda: self._listening() or proc.poll() is not None, timeout, 0.01)
        except AssertionError:
            found = None
        if not isinstance(found, str):
            self.kill()
            raise AssertionError("server did not start:\n" + self.log.read_text())
        self.ready_seconds = time.perf_counter() - started
        self.url = found
        return self.url

    def _listening(self) -> str | None:
        m = LISTENING.search(self.log.read_text())
        return m.group(1) if m else None

    def kill(self) -> None:
        """``kill -9``, as a crash does it (nothing when it is not running)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        """SIGTERM, as systemd stops it; the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def rss_mib(self) -> float:
        """The process's resident memory now, in MiB (NaN when /proc does not say)."""
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")
