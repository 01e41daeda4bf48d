"""D9: slow and silent clients against ``crew-aio serve`` with short limits: a half-sent head
(slowloris), a connection that sends nothing, an idle kept-alive one and a body that never ends
are each closed after their limit, while a normal client is served throughout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.support.server import Server

pytestmark = pytest.mark.e2e
LIMITS = ("--head-timeout", "1", "--body-timeout", "1", "--idle-timeout", "1.5")


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection, and what it said first."""
    started = time.monotonic()
    data = await asyncio.wait_for(reader.read(), limit)  # read() returns at EOF
    return time.monotonic() - started, data


async def test_slow_and_silent_clients_are_closed_after_their_limits(server: Server) -> None:
    server.extra = LIMITS
    url = server.start()
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 0

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(host, port)

    silent = await connect()  # connects and says nothing
    loris = await connect()  # a head, a byte at a time, never finished
    loris[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    body = await connect()  # a chunked body that never ends
    body[1].write(b"POST /api/v1/task_groups HTTP/1.1\r\nHost: x\r\n"
                  b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                  b"1\r\n{\r\n")  # fmt: skip
    idle = await connect()  # one request, then kept alive and idle
    idle[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    drip = asyncio.create_task(_drip(loris[1]))
    results = await asyncio.gather(
        closed_after(silent[0], 5), closed_after(loris[0], 5), closed_after(body[0], 5),
    )  # fmt: skip
    drip.cancel()
    (t_silent, said_silent), (t_loris, said_loris), (t_body, said_body) = results
    assert t_silent < 3 and said_silent == b""
    assert t_loris < 3 and said_loris == b""
    assert t_body < 3 and b" 408 " in said_body.split(b"\r\n", 1)[0], said_body[:200]
    head = await asyncio.wait_for(idle[0].readuntil(b"\r\n\r\n"), 5)
    assert b" 200 " in head.split(b"\r\n", 1)[0]
    t_idle, _ = await closed_after(idle[0], 5)
    assert t_idle < 3
    async with aiohttp.ClientSession() as session, session.get(f"{url}/healthz") as resp:
        assert resp.status == 200  # served all along
    for _, writer in (silent, loris, body, idle):
        writer.close()
        with contextlib.suppress(OSError):  # the server closed them first
            await writer.wait_closed()
    assert server.terminate() == 0


async def _drip(writer: asyncio.StreamWriter) -> None:
    while True:
        await asyncio.sleep(0.2)
        writer.write(b"X")
