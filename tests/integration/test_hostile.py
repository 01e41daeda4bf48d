"""Round 2 of the outside attacks (hostile or unlucky clients): each test failed before its fix.

D4 a non-UTF-8 token, D5 a body that lies about its encoding, D6 a deep ``ref``, D10 a worker
token probing tasks it does not hold, D13 a WebSocket message of exactly the largest size.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import os
import socket
import zlib
from typing import Any

import aiohttp
import pytest

from crew_aio.http_api import SERVICE
from crew_aio.ws_hub import FLUSH_BYTES, HIGH_WATER, HUB, MAX_OUTBOX_BYTES
from tests.integration.conftest import Api, ApiFactory
from tests.integration.test_limits import WS, frame, leased_task, nested

V1 = "/api/v1"
ADMIN, WORKER = "admin-secret-1", "worker-secret-2"


async def raw_request(api: Api, method: str, path: str, headers: dict[str, str],
                      body: bytes = b"") -> tuple[int, bytes]:  # fmt: skip
    """A request written byte by byte (aiohttp's client refuses a non-UTF-8 header)."""
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
    data = head.encode() + b"".join(
        k.encode() + b": " + v.encode("latin-1") + b"\r\n" for k, v in headers.items()
    )
    data += f"Content-Length: {len(body)}\r\n\r\n".encode() + body
    writer.write(data)
    answer = await reader.read()
    writer.close()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.split(b"\r\n\r\n", 1)[1]


@pytest.mark.parametrize("path", [f"{V1}/task_groups", WS])
async def test_d4_a_non_utf8_token_is_a_401(make_api: ApiFactory, path: str) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    headers = {"Authorization": "Bearer \xff\xfe"}
    if path == WS:
        headers |= {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
                    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    status, body = await raw_request(api, "GET", path, headers)
    assert status == 401, body
    assert b'"unauthorized"' in body


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        ("gzip", b"not gzip at all"),
        ("deflate", b"{not deflate}"),
        ("gzip", gzip.compress(b"{")[:8]),
    ],
)
async def test_d5_a_body_that_lies_about_its_encoding_is_a_400(
    api: Api, encoding: str, body: bytes
) -> None:
    resp = await api.client.post(f"{V1}/task_groups", data=body,
                                 headers={"Content-Encoding": encoding,
                                          "Content-Type": "application/json"})  # fmt: skip
    # a 400: ours in JSON, or aiohttp's own where its parser fails before any handler runs
    assert resp.status == 400, await resp.text()
    if resp.content_type == "application/json":
        message = (await resp.json())["message"]
        assert "could not be read" in message or "not valid JSON" in message
        if "could not be read" in message:  # the stream is spoilt: the connection closes
            assert resp.headers.get("Connection", "").lower() == "close"
    assert await api.get(f"{V1}/task_groups") == []  # nothing written
    good = zlib.compress(b'{"name": "z"}')  # a truthful one still works
    resp = await api.client.post(f"{V1}/task_groups", data=good,
                                 headers={"Content-Encoding": "deflate",
                                          "Content-Type": "application/json"})  # fmt: skip
    assert resp.status == 200 and (await resp.json())["name"] == "z"


async def test_d6_a_deep_ref_gets_an_error_frame_and_the_socket_lives(api: Api) -> None:
    _, task = await leased_task(api)
    ws = await api.client.ws_connect(WS)
    for ref in (nested(300), {"a": nested(99)}, "r" * 10_000, 2**70, True):
        await ws.send_json({"type": "release", "ref": ref, "taskId": task["_id"],
                            "workerId": "w1", "output": {"ok": 1}})  # fmt: skip
        err = await frame(ws)
        assert err["type"] == "error" and err["ref"] is None and err["status"] == 400, err
    await ws.send_json({"type": "release", "ref": 5, "taskId": task["_id"], "workerId": "w1"})
    ack = await frame(ws)
    assert ack["type"] == "ack" and ack["ref"] == 5 and ack["task"]["status"] == "completed"
    await ws.close()


async def _worker_calls(api: Api, token: str, task_id: str) -> list[tuple[int, Any]]:
    """What a worker token hears of ``task_id``: release and extend, over REST and WS."""
    headers = {"Authorization": f"Bearer {token}"}
    out: list[tuple[int, Any]] = []
    for path, body in ((f"{V1}/task/{task_id}/release", {"workerId": "w9", "output": 1}),
                       (f"{V1}/task/{task_id}/extend", {"workerId": "w9"})):  # fmt: skip
        resp = await api.client.post(path, json=body, headers=headers)
        out.append((resp.status, await resp.json()))
    ws = await api.client.ws_connect(WS, headers=headers)
    for kind in ("release", "extend"):
        await ws.send_json({"type": kind, "ref": 1, "taskId": task_id, "workerId": "w9"})
        err = await frame(ws)
        out.append((err["status"], {k: err[k] for k in ("message", "status", "code")}))
    await ws.close()
    return out


async def test_d10_a_worker_token_learns_nothing_of_tasks_it_does_not_hold(
    make_api: ApiFactory,
) -> None:
    """Completed, leased by another, waiting, or missing: one answer, no input or output."""
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    admin = {"Authorization": f"Bearer {ADMIN}"}
    gid = (await api.call("POST", f"{V1}/task_groups", {"name": "g"}, headers=admin))["_id"]
    secret = {"name": "t", "channel": "c", "input": {"card": "4111"}}
    tasks = await api.call("POST", f"{V1}/task_group/{gid}/tasks", [secret] * 3, headers=admin)
    done, leased, waiting = (t["_id"] for t in tasks)
    for tid in (done, leased):
        got = await api.call("POST", f"{V1}/channel/c/acquire", {"workerId": "w1"},
                             headers=admin)  # fmt: skip
        assert got["task"]["_id"] == tid
    await api.call("POST", f"{V1}/task/{done}/release", {"workerId": "w1", "output": "secret"},
                   headers=admin)  # fmt: skip
    answers = {tid: await _worker_calls(api, WORKER, tid) for tid in (done, leased, waiting)}
    answers["missing"] = await _worker_calls(api, WORKER, "0" * 24)
    for tid, got in answers.items():
        ident = "0" * 24 if tid == "missing" else tid
        expected = {"message": f"task {ident!r} is not leased by this worker", "status": 409,
                    "code": "stale_lease"}  # fmt: skip
        assert all(status == 409 for status, _ in got), (tid, got)
        assert all(body == expected for _, body in got), (tid, got)
    # the admin still gets the details
    resp = await api.client.post(f"{V1}/task/{'0' * 24}/release", json={"workerId": "w"},
                                 headers=admin)  # fmt: skip
    assert resp.status == 404


async def test_d13_a_websocket_message_of_exactly_the_largest_size_is_handled(
    make_api: ApiFactory,
) -> None:
    api = await make_api(max_body_bytes=4096)
    _, task = await leased_task(api)
    ws = await api.client.ws_connect(WS)
    head = {"type": "release", "ref": 1, "taskId": task["_id"], "workerId": "w1", "pad": ""}
    size = len(json.dumps(head))
    exact = json.dumps({**head, "pad": "x" * (4096 - size)})
    assert len(exact) == 4096
    await ws.send_str(exact)
    ack = await frame(ws)
    assert ack["type"] == "ack" and ack["task"]["status"] == "completed"
    await ws.send_str(json.dumps({**head, "pad": "x" * (4097 - size)}))  # one byte over
    msg = await ws.receive()
    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009


def masked_text_frame(payload: bytes) -> bytes:
    """A client's text frame (RFC 6455: clients mask)."""
    mask = os.urandom(4)
    size = len(payload)
    if size < 126:
        head = bytes((0x81, 0x80 | size))
    elif size < 1 << 16:
        head = bytes((0x81, 0x80 | 126)) + size.to_bytes(2, "big")
    else:
        head = bytes((0x81, 0x80 | 127)) + size.to_bytes(8, "big")
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + mask + body


async def test_d1_a_peer_that_never_reads_costs_a_bounded_outbox(make_api: ApiFactory) -> None:
    """D1: 1,000 repeated releases of a task with a 1 MiB output in one message, from a
    socket that never reads: the answers wait in a bounded outbox (not ~3 GB), the transport
    holds no more than its high-water mark, and the server stays responsive."""
    api = await make_api()
    _, task = await leased_task(api)
    big = "x" * (1024 * 1024)
    body = io.BytesIO(json.dumps({"workerId": "w1", "output": {"blob": big}}).encode())
    resp = await api.client.post(f"{V1}/task/{task['_id']}/release", data=body,
                                 headers={"Content-Type": "application/json"})  # fmt: skip
    assert resp.status == 200
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and never read from it
    writer.write(b"GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")  # fmt: skip
    await reader.readuntil(b"\r\n\r\n")  # the 101; nothing is read after this
    release = {"type": "release", "taskId": task["_id"], "workerId": "w1"}
    writer.write(masked_text_frame(json.dumps([release] * 1000).encode()))
    await writer.drain()
    assert api.client.app is not None
    hub = api.client.app[HUB]
    await asyncio.sleep(1.0)
    [peer] = [p for p in hub.peers]
    buffered = peer.transport.get_write_buffer_size() if peer.transport else 0
    assert peer.outbox_bytes <= MAX_OUTBOX_BYTES + 2 * len(big), peer.outbox_bytes
    assert buffered <= HIGH_WATER + FLUSH_BYTES + 2 * len(big), buffered
    started = asyncio.get_running_loop().time()
    assert (await api.get("/healthz"))["healthy"] is True
    assert asyncio.get_running_loop().time() - started < 0.5
    writer.close()


async def test_d8_idle_subscriptions_cost_no_lease_attempts(api: Api) -> None:
    """D8: re-offering idle subscriptions used to try a lease per socket x channel every
    second (200 x 1,000: 36 % of a core). Channels with nothing ready now cost a lookup."""
    assert api.client.app is not None
    hub = api.client.app[HUB]
    dispatcher = hub.service.dispatcher
    channels = [f"ch{i}" for i in range(200)]
    sockets = []
    for n in range(10):
        ws = await api.client.ws_connect(WS)
        await ws.send_json({"type": "subscribe", "workerId": f"w{n}", "channels": channels})
        assert (await frame(ws))["type"] == "subscribed"
        sockets.append(ws)
    attempts = 0
    lease = dispatcher._lease

    def counting(*args: Any) -> Any:
        nonlocal attempts
        attempts += 1
        return lease(*args)

    dispatcher._lease = counting
    for _ in range(5):
        hub._reoffer_all()
        for peer in hub.peers:  # and their own offers (after each flush)
            peer.sub.offer()
    assert attempts == 0
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "ch7"})
    pushed = [await frame(ws) for ws in sockets[:1]]  # the first in line gets it
    assert pushed[0]["type"] == "task" and attempts == 1
    for ws in sockets:
        await ws.close()


async def silent_subscriber(api: Api, worker: str) -> asyncio.StreamWriter:
    """A worker's socket that subscribes, then never reads again (tiny receive buffer)."""
    server = api.client.server
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)  # before connecting: the window
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (server.host, server.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    writer.write(b"GET /api/v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                 b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")  # fmt: skip
    await reader.readuntil(b"\r\n\r\n")
    sub = {"type": "subscribe", "workerId": worker, "channels": ["c"], "capacity": 1}
    writer.write(masked_text_frame(json.dumps(sub).encode()))
    await writer.drain()
    return writer


async def test_d14_tasks_of_vanished_workers_go_to_a_socket_that_reads(api: Api) -> None:
    """D14: three workers' sockets stop reading, each holding a pushed task. When their leases
    expire, each task goes to the worker that reads, never to another silent socket (which
    used to burn a second attempt per task)."""
    silent = [await silent_subscriber(api, f"gone{i}") for i in range(3)]
    await asyncio.sleep(0.1)
    gid = await api.group()
    pad = "p" * 300_000  # one pushed task fills a silent socket's window
    for i in range(3):
        await api.post(f"{V1}/task_group/{gid}/tasks",
                       {"name": f"t{i}", "channel": "c", "input": {"pad": pad},
                        "errorDelayInSeconds": 0})  # fmt: skip
    assert api.client.app is not None
    hub = api.client.app[HUB]
    held = {p.sub.worker_id: list(p.sub.held) for p in hub.peers if p.sub is not None}
    assert all(len(tasks) == 1 for tasks in held.values()), held
    good = await api.client.ws_connect(WS)
    await good.send_json({"type": "subscribe", "workerId": "alive", "channels": ["c"],
                          "capacity": 10})  # fmt: skip
    assert (await frame(good))["type"] == "subscribed"
    await asyncio.sleep(1.3)  # the silent sockets' queued bytes could not leave for > 1 s
    api.clock.advance(61)  # their leases expire
    await api.client.app[SERVICE].tick()
    got = [(await frame(good))["task"] for _ in range(3)]
    assert sorted(t["name"] for t in got) == ["t0", "t1", "t2"]
    assert all(len(t["errors"]) == 1 for t in got)  # one expired lease each, no second one
    await good.close()
    for writer in silent:
        writer.close()


async def test_head_works_where_get_does_and_keeps_its_scope(make_api: ApiFactory) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    for path in ("/", "/healthz", f"{V1}/openapi.json", "/api-docs/"):
        resp = await api.client.head(path)
        assert resp.status == 200, path
    assert (await api.client.head(f"{V1}/task_groups")).status == 401
    admin = {"Authorization": f"Bearer {ADMIN}"}
    assert (await api.client.head(f"{V1}/task_groups", headers=admin)).status == 200


async def test_a_body_declared_too_large_is_refused_before_it_is_sent(
    make_api: ApiFactory,
) -> None:
    """F5 of the outside pass: a Content-Length over the limit is a 413 at once, not a 408
    after the body timeout (the client never sends the body)."""
    api = await make_api(max_body_bytes=1024)
    server = api.client.server
    reader, writer = await asyncio.open_connection(server.host, server.port)
    head = b"POST /api/v1/task_groups HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    writer.write(head + b"Content-Length: 99999999999\r\n\r\n")
    answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 3)
    assert b" 413 " in answer.split(b"\r\n", 1)[0]
    writer.close()
