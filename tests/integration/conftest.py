"""The real app on a real port with a real SQLite file in tmp_path; only time is fake."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from blockbuster import blockbuster_ctx

from crew_aio.app import create_app
from crew_aio.clock import FakeClock
from crew_aio.config import Settings
from tests.support.wait import eventually

T0 = 1_800_000_000.0


class Api:
    """A thin JSON client over the test server, asserting the status it expects."""

    def __init__(self, client: TestClient[Any, Any], clock: FakeClock) -> None:
        self.client = client
        self.clock = clock

    async def call(self, method: str, path: str, body: Any = None, status: int = 200,
                   **kw: Any) -> Any:  # fmt: skip
        resp = await self.client.request(method, path, json=body, **kw)
        data = await resp.json()
        assert resp.status == status, (resp.status, data)
        return data

    async def get(self, path: str, status: int = 200) -> Any:
        return await self.call("GET", path, status=status)

    async def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        return await self.call("POST", path, body, status=status)

    async def put(self, path: str, body: Any = None, status: int = 200) -> Any:
        return await self.call("PUT", path, body, status=status)

    async def delete(self, path: str, status: int = 200) -> Any:
        return await self.call("DELETE", path, status=status)

    async def group(self, name: str = "g") -> str:
        return str((await self.post("/api/v1/task_groups", {"name": name}))["_id"])

    async def acquire(self, channel: str, worker: str = "w1", **kw: Any) -> Any:
        return await self.post(f"/api/v1/channel/{channel}/acquire", {"workerId": worker, **kw})

    async def release(self, task_id: str, worker: str = "w1", status: int = 200, **kw: Any) -> Any:
        body = {"workerId": worker, **kw}
        return await self.post(f"/api/v1/task/{task_id}/release", body, status=status)


ApiFactory = Callable[..., Awaitable[Api]]


async def until_healthy(api: Api) -> None:
    """Wait until ``GET /healthz`` answers 200 (after a failed commit: until the store commits
    again and the committed state is reloaded)."""

    async def healthy() -> bool:
        return (await api.client.get("/healthz")).status == 200

    await eventually(healthy, 10, 0.05, what="the server did not recover")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(T0)


@pytest.fixture
async def make_api(tmp_path: Path, clock: FakeClock) -> AsyncIterator[ApiFactory]:
    clients: list[TestClient[Any, Any]] = []

    async def make(data_dir: Path | None = None, **settings: Any) -> Api:
        conf = Settings(data_dir=data_dir or tmp_path / "data", **settings)
        client = TestClient(TestServer(create_app(conf, clock=clock)))
        await client.start_server()
        clients.append(client)
        return Api(client, clock)

    yield make
    for client in reversed(clients):
        await client.close()


@pytest.fixture
async def api(make_api: ApiFactory) -> Api:
    return await make_api()


@pytest.fixture(autouse=True)
def no_blocking_calls() -> Iterator[None]:
    """Fail any blocking call made on the event loop (no blocking call on the loop)."""
    with blockbuster_ctx("crew_aio") as bb:
        # Queueing a statement for sqlitedict's thread takes its queue's lock, held by that
        # thread only for a put or a get: never a wait on I/O (crew_aio/store.py, _Barrier).
        for name in ("threading.Lock.acquire", "threading.Lock.acquire_lock"):
            bb.functions[name].can_block_in("crew_aio/store.py", {"_commit", "put"})
        yield
