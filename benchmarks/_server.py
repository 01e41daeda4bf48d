"""``crew-aio serve`` as a subprocess on a free port, for benchmarks: the tests' launcher
(:class:`tests.support.server.Server`) at the log level the figures were measured at, with a
benchmark's patience (2 minutes to start, 1 to stop)."""

from __future__ import annotations

from pathlib import Path

from tests.support.server import Server


class ServerProcess(Server):
    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir, env={"CREW_LOG_LEVEL": "info"})

    def start(self, timeout: float = 120.0) -> str:
        """The URL; ``ready_seconds`` then holds the seconds from spawn to "listening"."""
        return super().start(timeout)

    def terminate(self, timeout: float = 60.0) -> int:
        return super().terminate(timeout)
