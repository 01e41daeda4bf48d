"""A real server for the SDK: the app in-process on a free port (real clock, SQLite in tmp_path),
or ``crew-aio serve`` as a subprocess for restarts. Nothing is mocked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from blockbuster import blockbuster_ctx

from crew_aio.app import create_app
from crew_aio.client import Client
from crew_aio.clock import SystemClock
from crew_aio.config import Settings
from crew_aio.worker import Worker, run_workers
from tests.support.server import Server, free_port


@pytest.fixture
async def test_server(tmp_path: Path) -> AsyncIterator[TestServer]:
    server = TestServer(create_app(Settings(data_dir=tmp_path / "data"), clock=SystemClock()))
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def server_url(test_server: TestServer) -> str:
    return str(test_server.make_url("")).rstrip("/")


@pytest.fixture(params=["poll", "push"])
def mode(request: pytest.FixtureRequest) -> str:
    """Run a test with long-poll REST workers and with WebSocket push workers."""
    return str(request.param)


@pytest.fixture
async def client(server_url: str) -> AsyncIterator[Client]:
    async with Client(server_url) as crew:
        yield crew


class Running:
    """``run_workers`` in a background task of the test's loop, stopped on exit."""

    def __init__(self, workers: list[Worker], url: str, **kw: Any) -> None:
        self.stop = asyncio.Event()
        kw.setdefault("poll", True)
        kw.setdefault("wait_seconds", 1.0)
        self.task = asyncio.create_task(
            run_workers(workers, url=url, stop=self.stop, handle_signals=False, **kw)
        )

    async def __aenter__(self) -> Running:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 15)


@pytest.fixture
def subprocess_server(tmp_path: Path) -> Iterator[Server]:
    """``crew-aio serve`` on a fixed free port, so a restart comes back at the same address."""
    srv = Server(tmp_path / "data", port=free_port())
    yield srv
    srv.kill()


@pytest.fixture(autouse=True)
def no_blocking_calls() -> Iterator[None]:
    """Fail any blocking call the SDK makes on the event loop (no blocking call on the loop)."""
    with blockbuster_ctx("crew_aio") as bb:
        yield
    del bb
