"""Start ``crew-aio serve`` as a subprocess on a free port (benchmarks only)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

LISTENING = re.compile(r"listening on (http://[^\s\"]+)")  # plain or JSON log lines


class ServerProcess:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.log = data_dir.parent / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> tuple[str, float]:
        """Returns the URL and the seconds from spawn to the "listening" line."""
        cmd = [sys.executable, "-m", "crew_aio", "serve", "--port", "0",
               "--data-dir", str(self.data_dir)]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith("CREW_")}
        env["CREW_LOG_LEVEL"] = "info"
        started = time.perf_counter()
        with self.log.open("w") as out:
            self.proc = subprocess.Popen(cmd, stderr=out, stdout=subprocess.DEVNULL, env=env)
        while self.proc.poll() is None and time.perf_counter() - started < timeout:
            m = LISTENING.search(self.log.read_text())
            if m:
                return m.group(1), time.perf_counter() - started
            time.sleep(0.01)
        self.proc.kill()
        self.proc.wait()
        raise RuntimeError("server did not start:\n" + self.log.read_text())

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(60)
