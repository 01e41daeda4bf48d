"""Run ``crew-aio serve`` as a user does: a subprocess on a free port with its own data dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

LISTENING = re.compile(r"listening on (http://[^\s\"]+)")  # plain or JSON log lines


class Server:
    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.data_dir = data_dir
        self.extra = extra
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.starts = 0
        self.log = data_dir.parent / "server.log"

    def start(self, timeout: float = 20.0) -> str:
        """Start the server; its stderr goes to a log file read for the "listening" line."""
        cmd = [sys.executable, "-m", "crew_aio", "serve", "--port", "0",
               "--data-dir", str(self.data_dir), *self.extra]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CREW_")}
        self.log = self.data_dir.parent / f"server-{self.starts}.log"
        self.starts += 1
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stderr=out, stdout=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            m = LISTENING.search(self.log.read_text())
            if m:
                self.url = m.group(1)
                return self.url
            time.sleep(0.02)
        self.kill()
        raise AssertionError("server did not start:\n" + self.log.read_text())

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 20.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    yield srv
    srv.kill()
