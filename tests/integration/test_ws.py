"""The WebSocket: pushed tasks, capacity, fairness, acks, dropped sockets, watchers, auth."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from crew_aio import ws_hub
from crew_aio.app import create_app
from crew_aio.config import Settings
from crew_aio.store import MemoryStore
from tests.integration.conftest import Api, ApiFactory, until_healthy

V1 = "/api/v1"
WS = f"{V1}/ws"


async def frame(ws: aiohttp.ClientWebSocketResponse, wait: float = 3.0) -> Any:
    msg = await asyncio.wait_for(ws.receive(), wait)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.json()


async def nothing(ws: aiohttp.ClientWebSocketResponse, wait: float = 0.15) -> None:
    try:
        msg = await asyncio.wait_for(ws.receive(), wait)
    except TimeoutError:
        return
    raise AssertionError(f"unexpected frame {msg.data}")


async def subscribe(api: Api, worker: str = "w1", capacity: int = 1, **kw: Any) -> Any:
    ws = await api.client.ws_connect(WS)
    await ws.send_json({"type": "subscribe", "workerId": worker, "channels": ["c"],
                        "capacity": capacity, "ref": "s", **kw})  # fmt: skip
    assert (await frame(ws))["type"] == "subscribed"
    return ws


async def add(api: Api, gid: str, *names: str) -> list[Any]:
    body = [{"name": n, "channel": "c"} for n in names]
    return list(await api.post(f"{V1}/task_group/{gid}/tasks", body))


async def test_push_release_ack(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api)
    await add(api, gid, "t")
    pushed = await frame(ws)
    assert pushed["type"] == "task" and pushed["task"]["name"] == "t"
    task = pushed["task"]
    assert task["assignedTo"] == "w1" and task["leaseId"] and pushed["parents"] == []
    await ws.send_json({"type": "release", "ref": 7, "taskId": task["_id"],
                        "leaseId": task["leaseId"], "output": {"ok": 1}})  # fmt: skip
    ack = await frame(ws)
    assert ack == {"type": "ack", "ref": 7, "task": ack["task"]}
    assert ack["task"]["status"] == "completed"
    again = {"type": "release", "ref": 8, "taskId": task["_id"], "output": "dup"}
    await ws.send_json(again)
    dup = await frame(ws)
    assert dup["type"] == "ack" and dup["task"]["output"] == {"ok": 1}
    await ws.close()


async def test_unsubscribe_stops_pushes(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api, capacity=5)
    await ws.send_json({"type": "unsubscribe", "ref": "u"})
    assert await frame(ws) == {"type": "unsubscribed", "ref": "u"}
    await add(api, gid, "a")
    await nothing(ws)
    assert (await api.acquire("c", worker="other"))["task"]["name"] == "a"
    await ws.close()


async def test_capacity_limits_pushes(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api, capacity=2)
    await add(api, gid, *[f"t{i}" for i in range(5)])
    first = [await frame(ws), await frame(ws)]
    await nothing(ws)
    tid = first[0]["task"]["_id"]
    await ws.send_json({"type": "release", "ref": "r", "taskId": tid, "output": 1})
    after = {f["type"]: f for f in [await frame(ws), await frame(ws)]}
    assert after["ack"]["ref"] == "r"
    assert after["task"]["task"]["name"] == "t2"
    await nothing(ws)
    await ws.close()


async def test_capacity_frame_changes_capacity_in_place(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api, capacity=1)
    await add(api, gid, *[f"t{i}" for i in range(5)])
    assert (await frame(ws))["task"]["name"] == "t0"
    await nothing(ws)
    # grown: the held lease still counts, so 2 more come at once
    await ws.send_json({"type": "capacity", "capacity": 3, "ref": "c"})
    got = [await frame(ws) for _ in range(3)]
    assert got[0] == {"type": "ack", "ref": "c", "capacity": 3}
    assert [f["task"]["name"] for f in got[1:]] == ["t1", "t2"]
    await nothing(ws)
    # shrunk below what is held: nothing more is pushed until the holdings drop under it
    await ws.send_json({"type": "capacity", "capacity": 1, "ref": "d"})
    assert await frame(ws) == {"type": "ack", "ref": "d", "capacity": 1}
    for f in got[1:]:
        await ws.send_json({"type": "release", "taskId": f["task"]["_id"], "output": 1})
        assert (await frame(ws))["type"] == "ack"
    await nothing(ws)
    await ws.close()


@pytest.mark.parametrize(
    ("sent", "field"),
    [({"capacity": 0}, "capacity"), ({"capacity": "9"}, "capacity"), ({}, "capacity")],
)
async def test_capacity_frame_is_checked(api: Api, sent: dict[str, Any], field: str) -> None:
    ws = await subscribe(api)
    await ws.send_json({"type": "capacity", "ref": 1, **sent})
    error = await frame(ws)
    assert error["type"] == "error" and error["status"] == 400 and field in error["field"]
    await ws.close()


async def test_capacity_frame_needs_a_subscription(api: Api) -> None:
    ws = await api.client.ws_connect(WS)
    await ws.send_json({"type": "capacity", "capacity": 4, "ref": 1})
    error = await frame(ws)
    assert error["type"] == "error" and error["status"] == 400
    assert "subscribe first" in error["message"]
    await ws.close()


async def test_fair_hand_out_between_sockets_and_long_polls(api: Api) -> None:
    gid = await api.group()
    ws1 = await subscribe(api, "w1", capacity=5)
    poll = asyncio.create_task(api.acquire("c", worker="poller", waitSeconds=5))
    await asyncio.sleep(0.05)
    ws2 = await subscribe(api, "w2", capacity=5)
    await add(api, gid, "a", "b", "c", "d")
    polled = await poll
    got1 = [(await frame(ws1))["task"]["name"] for _ in range(2)]
    got2 = [(await frame(ws2))["task"]["name"]]
    assert polled["task"]["name"] == "b"
    assert got1 == ["a", "d"] and got2 == ["c"]
    await ws1.close()
    await ws2.close()


async def test_rest_release_frees_capacity(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api)
    await add(api, gid, "a", "b")
    task = (await frame(ws))["task"]
    await nothing(ws)
    await api.release(task["_id"], leaseId=task["leaseId"], output=1)
    assert (await frame(ws))["task"]["name"] == "b"
    await ws.close()


async def test_a_brief_release_is_acked_without_the_task(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api)
    await add(api, gid, "a")
    task = (await frame(ws))["task"]
    await ws.send_json({"type": "release", "ref": "r", "taskId": task["_id"], "output": 7,
                        "brief": True})  # fmt: skip
    assert await frame(ws) == {"type": "ack", "ref": "r"}
    assert (await api.get(f"{V1}/task/{task['_id']}"))["output"] == 7  # done all the same
    await ws.send_json({"type": "release", "ref": "e", "taskId": "0" * 24, "brief": True})
    error = await frame(ws)  # an error is still an error frame
    assert error["type"] == "error" and error["status"] == 404
    await ws.close()


async def test_return_hands_an_unstarted_lease_back_to_the_channel(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api, capacity=2)
    await add(api, gid, "a", "b")
    first, second = [(await frame(ws))["task"] for _ in range(2)]
    # shrink first, then return: the socket is not pushed the task straight back
    await ws.send_json({"type": "capacity", "capacity": 1, "ref": "c"})
    await ws.send_json({"type": "return", "taskId": second["_id"], "leaseId": second["leaseId"],
                        "ref": "r"})  # fmt: skip
    assert (await frame(ws))["ref"] == "c"
    ack = await frame(ws)
    assert ack["type"] == "ack" and ack["ref"] == "r"
    await nothing(ws)
    task = await api.get(f"{V1}/task/{second['_id']}")
    assert task["status"] == "ready" and task["assignedTo"] is None
    assert task["remainingAttempts"] == second["remainingAttempts"]  # no attempt counted
    assert task["errors"] == []
    other = await api.acquire("c", worker="other")
    assert other["task"]["_id"] == second["_id"]
    # a return of a lease no longer held (here: now another worker's) is refused, changing nothing
    await ws.send_json({"type": "return", "taskId": second["_id"], "ref": "again"})
    error = await frame(ws)
    assert error["type"] == "error" and error["status"] == 409 and error["ref"] == "again"
    assert (await api.get(f"{V1}/task/{second['_id']}"))["assignedTo"] == "other"
    await ws.send_json({"type": "release", "taskId": first["_id"], "output": 1, "ref": "x"})
    assert (await frame(ws))["type"] == "ack"
    await ws.close()


async def test_dropped_socket_keeps_its_lease(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api)
    await add(api, gid, "a")
    task = (await frame(ws))["task"]
    await ws.close()
    await asyncio.sleep(0.05)
    held = await api.get(f"{V1}/task/{task['_id']}")
    assert held["status"] == "leased" and held["leaseId"] == task["leaseId"]
    done = await api.release(task["_id"], leaseId=task["leaseId"], output="late but fine")
    assert done["status"] == "completed"


async def test_lease_expiry_frees_capacity_and_repushes(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api, leaseSeconds=5)
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c",
                                                    "errorDelayInSeconds": 0})  # fmt: skip
    first = (await frame(ws))["task"]
    api.clock.advance(6)
    await api.get(f"{V1}/task/{first['_id']}")  # any request; the timer runs too
    app = api.client.app
    assert app is not None
    await app[__import__("crew_aio.app").app.TIMERS].service.tick()
    again = (await frame(ws))["task"]
    assert again["_id"] == first["_id"] and again["leaseId"] != first["leaseId"]
    assert again["errors"][0]["message"] == "lease expired"
    await ws.close()


async def test_malformed_frames_get_errors(api: Api) -> None:
    ws = await api.client.ws_connect(WS)
    await ws.send_str("{not json")
    assert (await frame(ws))["status"] == 400
    await ws.send_json({"type": "nope", "ref": 1})
    err = await frame(ws)
    assert err["ref"] == 1 and err["code"] == "invalid"
    await ws.send_json({"type": "release", "ref": 2, "taskId": "x", "workerId": "w"})
    assert (await frame(ws))["status"] == 404
    await ws.send_json({"type": "release", "ref": 3, "taskId": "x"})
    assert (await frame(ws))["field"] == "workerId"
    bad_child = {"type": "release", "ref": 4, "taskId": "x", "workerId": "w",
                 "children": [{"name": {}, "channel": "c"}]}  # fmt: skip
    await ws.send_json(bad_child)
    err = await frame(ws)
    assert err["ref"] == 4 and err["field"] == "children[0].name"
    await ws.send_bytes(b"\x00")
    assert (await frame(ws))["code"] == "invalid"
    await ws.send_json([1, 2])
    assert (await frame(ws))["code"] == "invalid"
    await ws.close()


async def test_watchers_see_committed_events(api: Api) -> None:
    ws = await api.client.ws_connect(WS)
    await ws.send_json({"type": "watch", "all": True, "ref": "w"})
    assert await frame(ws) == {"type": "ack", "ref": "w"}
    gid = await api.group()
    assert (await frame(ws))["event"] == "group:update"
    task = (await add(api, gid, "a"))[0]
    event = await frame(ws)
    assert event["event"] == "task:create" and event["data"]["_id"] == task["_id"]
    await api.delete(f"{V1}/task/{task['_id']}")
    gone = await frame(ws)
    assert gone["event"] == "task:delete" and gone["data"]["taskGroupId"] == gid
    await ws.close()


async def test_ws_auth(make_api: ApiFactory) -> None:
    api = await make_api(api_token="admin-secret", worker_token="worker-secret")
    resp = await api.client.get(WS)
    assert resp.status == 401
    ws = await api.client.ws_connect(f"{WS}?token=worker-secret")
    await ws.send_json({"type": "watch", "all": True, "ref": 1})
    assert (await frame(ws))["status"] == 403
    await ws.send_json({"type": "subscribe", "workerId": "w", "channels": ["c"]})
    assert (await frame(ws))["type"] == "subscribed"
    await ws.close()
    admin = await api.client.ws_connect(WS, headers={"Authorization": "Bearer admin-secret"})
    await admin.send_json({"type": "watch", "all": True, "ref": 1})
    assert (await frame(admin))["type"] == "ack"
    await admin.close()


async def test_dead_peer_is_dropped_and_its_turn_goes_to_others(make_api: ApiFactory) -> None:
    api = await make_api(ws_heartbeat=0.2)
    app = api.client.app
    assert app is not None
    from crew_aio.ws_hub import HUB

    ws = await api.client.ws_connect(WS, autoping=False)  # never answers pings
    await ws.send_json({"type": "subscribe", "workerId": "dead", "channels": ["c"]})
    assert (await frame(ws))["type"] == "subscribed"
    for _ in range(50):  # heartbeat 0.2 s: the server gives up after a missed pong
        await asyncio.sleep(0.05)
        if not app[HUB].peers:
            break
    assert not app[HUB].peers
    gid = await api.group()
    await add(api, gid, "a")
    assert (await api.acquire("c", worker="alive"))["task"]["name"] == "a"


@pytest.fixture
async def on_memory(tmp_path: Any, clock: Any) -> AsyncIterator[tuple[Api, MemoryStore]]:
    """A real app on a MemoryStore whose commits a test can make fail."""
    store = MemoryStore()
    app = create_app(Settings(data_dir=tmp_path / "unused"), store=store, clock=clock)
    client = TestClient(TestServer(app))
    await client.start_server()
    try:
        yield Api(client, clock), store
    finally:
        await client.close()


async def test_a_failed_commit_announces_nothing_and_closes_the_sockets(
    on_memory: tuple[Api, MemoryStore],
) -> None:
    """What a failed commit would have announced is never pushed: the sockets close with 1013
    (try again later), the 503'd task never exists, and pushes resume after the reload."""
    api, store = on_memory
    gid = await api.group()
    ws = await subscribe(api)
    store.fail_commits(OSError("disk full"))
    err = await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"}, 503)
    assert err["code"] == "store_unavailable"
    closing = await ws.receive(timeout=3)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1013
    store.fail_commits(None)
    await until_healthy(api)
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []  # 503 meant not done
    ws = await subscribe(api)
    await nothing(ws, 0.2)
    await add(api, gid, "u")
    pushed = await frame(ws)
    assert pushed["task"]["name"] == "u"
    assert f"t:{pushed['task']['_id']}" in store.data  # durable before it was pushed
    await ws.close()


async def test_a_release_whose_commit_failed_can_be_sent_again(
    on_memory: tuple[Api, MemoryStore],
) -> None:
    """A release applied while the store fails gets no ack (its socket closes, 1013); after
    the reload the task is leased as it was, and the worker's retry completes it, durably."""
    api, store = on_memory
    gid = await api.group()
    ws = await subscribe(api)
    await add(api, gid, "t")
    task = (await frame(ws))["task"]
    store.fail_commits(OSError("disk full"))
    lease = {"taskId": task["_id"], "leaseId": task["leaseId"]}
    await ws.send_json({"type": "release", "ref": "done", "output": 1, **lease})
    closing = await ws.receive(timeout=3)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1013
    store.fail_commits(None)
    await until_healthy(api)
    again = await api.get(f"{V1}/task/{task['_id']}")
    assert again["status"] == "leased" and again["leaseId"] == task["leaseId"]
    ws = await api.client.ws_connect(WS)
    await ws.send_json({"type": "release", "ref": "retry", "workerId": "w1", "output": 1, **lease})
    ack = await frame(ws)
    assert ack["ref"] == "retry" and ack["task"]["status"] == "completed"
    assert orjson.loads(store.data[f"t:{task['_id']}"])["output"] == 1  # durable
    await ws.close()


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70_000])
def test_text_frame_header_follows_rfc6455(size: int) -> None:
    frame = ws_hub.text_frame(b"x" * size)
    assert frame[0] == 0x81  # FIN, text; no RSV bits (not compressed)
    if size < 126:
        assert frame[1] == size and len(frame) == 2 + size
    elif size < 65536:
        assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == size
    else:
        assert frame[1] == 127 and int.from_bytes(frame[2:10], "big") == size
    assert frame.endswith(b"x" * size)


async def test_pushes_of_every_size_reach_the_worker_intact(api: Api) -> None:
    """Frames written by the hub (one write per flush) read back whole, small to 8-byte length."""
    gid = await api.group()
    ws = await subscribe(api, capacity=3)
    sizes = [10, 1_000, 100_000]
    body = [{"name": f"t{n}", "channel": "c", "input": "y" * n} for n in sizes]
    await api.post(f"{V1}/task_group/{gid}/tasks", body)
    got = sorted([len((await frame(ws))["task"]["input"]) for _ in sizes])
    assert got == sizes
    await ws.close()


async def test_a_subscription_missing_from_its_queue_heals_itself(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Self-healing: were a wake-up ever missed, an idle subscription with room stands in its
    channel's queue again within REOFFER_EVERY."""
    assert api.client.app is not None
    hub = api.client.app[ws_hub.HUB]
    monkeypatch.setattr(ws_hub, "REOFFER_EVERY", 0.05)
    hub._reoffer.cancel()
    hub._reoffer_all()  # restart the timer at the patched period
    gid = await api.group()
    ws = await subscribe(api)
    (peer,) = hub.peers
    assert peer.sub is not None
    hub.service.dispatcher.remove("c", peer.sub)  # the lost wake-up
    await add(api, gid, "t")
    assert (await frame(ws, wait=2.0))["task"]["name"] == "t"
    await ws.close()


async def test_a_bug_while_handling_a_frame_is_answered_and_the_socket_lives(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert api.client.app is not None
    hub = api.client.app[ws_hub.HUB]
    ws = await subscribe(api)

    def broken(*args: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(hub, "_dispatch", broken)
    await ws.send_json({"type": "unsubscribe", "ref": "u"})
    answer = await frame(ws)
    assert answer["type"] == "error" and answer["ref"] == "u" and answer["status"] == 500
    assert answer["code"] == "internal" and "a bug" not in answer["message"]
    monkeypatch.undo()
    await ws.send_json({"type": "unsubscribe", "ref": "again"})
    assert (await frame(ws)) == {"type": "unsubscribed", "ref": "again"}
    await ws.close()


async def test_a_batch_of_frames_is_answered_frame_by_frame(api: Api) -> None:
    gid = await api.group()
    ws = await subscribe(api, capacity=3)
    await add(api, gid, "a", "b", "c")
    pushed = [(await frame(ws))["task"] for _ in range(3)]
    releases: list[Any] = [
        {"type": "release", "ref": i, "taskId": t["_id"], "leaseId": t["leaseId"], "output": [i]}
        for i, t in enumerate(pushed)
    ]
    releases.insert(1, {"type": "release", "ref": "bad", "taskId": "nope"})  # one fails alone
    await ws.send_json(releases)
    answers = {a["ref"]: a for a in [await frame(ws) for _ in range(4)]}
    assert answers["bad"]["type"] == "error" and answers["bad"]["status"] == 404
    for i, t in enumerate(pushed):
        assert answers[i]["type"] == "ack" and answers[i]["task"]["_id"] == t["_id"]
        assert answers[i]["task"]["status"] == "completed" and answers[i]["task"]["output"] == [i]
    await nothing(ws)


@pytest.mark.parametrize("size", [0, 1001])
async def test_a_batch_holds_1_to_1000_frames(api: Api, size: int) -> None:
    ws = await api.client.ws_connect(WS)
    await ws.send_json([{"type": "watch", "all": True, "ref": i} for i in range(size)])
    err = await frame(ws)
    assert err["type"] == "error" and err["ref"] is None and "1 to 1000 frames" in err["message"]
    await nothing(ws)
    await ws.close()
