"""Hostile input (docs/RELIABILITY.md promise 5, R11): every limit is a 4xx naming what is wrong,
nothing is half-written, and the server answers the next request."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import aiohttp
import orjson
import pytest

from crew_aio.protocol import MAX_CHILDREN, MAX_DEPTH
from tests.integration.conftest import Api, ApiFactory

V1 = "/api/v1"
WS = f"{V1}/ws"
JSON = {"Content-Type": "application/json"}


def nested(depth: int) -> Any:
    """``depth`` levels of arrays, built without recursion: ``[[[...]]]``."""
    value: list[Any] = []
    for _ in range(depth - 1):
        value = [value]
    return value


async def frame(ws: aiohttp.ClientWebSocketResponse) -> Any:
    msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type == aiohttp.WSMsgType.TEXT, msg
    return msg.json()


async def post_raw(api: Api, path: str, body: bytes) -> tuple[int, Any]:
    resp = await api.client.post(path, data=io.BytesIO(body), headers=JSON)
    return resp.status, await resp.json()


async def lease(api: Api, count: int) -> list[Any]:
    got = await api.post(f"{V1}/channel/c/exchange", {"workerId": "w1", "count": count})
    return [x["task"] for x in got["tasks"]]


async def leased_task(api: Api) -> tuple[str, Any]:
    gid = await api.group()
    await api.post(f"{V1}/task_group/{gid}/tasks", {"name": "t", "channel": "c"})
    return gid, (await api.acquire("c"))["task"]


async def test_10000_deep_bodies_are_400_and_name_the_problem(api: Api) -> None:
    gid = await api.group()
    deep = b"[" * 10_000 + b"]" * 10_000
    for body in (deep, b'{"name": "t", "channel": "c", "input": ' + deep + b"}"):
        status, err = await post_raw(api, f"{V1}/task_group/{gid}/tasks", body)
        assert status == 400 and err["code"] == "invalid"
        assert f"deeper than {MAX_DEPTH} levels" in err["message"]
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 300, 1000])
async def test_payload_over_the_depth_limit_is_400_naming_the_field(api: Api, depth: int) -> None:
    # between our limit and orjson's own (1024): orjson parses it but cannot encode it back
    gid = await api.group()
    path = f"{V1}/task_group/{gid}/tasks"
    # written by hand: too deep for the JSON encoders of the test client
    one = b'{"name": "t", "channel": "c", "input": ' + b"[" * depth + b"]" * depth + b"}"
    status, err = await post_raw(api, path, one)
    assert status == 400 and err["field"] == "input" and str(MAX_DEPTH) in err["message"]
    status, err = await post_raw(api, path, b'[{"name": "a", "channel": "c"}, ' + one + b"]")
    assert status == 400 and err["field"] == "[1].input"
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []  # nothing half-written
    assert await api.get(f"{V1}/task_groups/count") == {"count": 1}


async def test_deep_release_output_is_refused_and_the_lease_kept(api: Api) -> None:
    _, task = await leased_task(api)
    err = await api.release(task["_id"], output=nested(MAX_DEPTH), status=400)
    assert err["field"] == "output"
    child = {"name": "k", "channel": "c", "input": {"a": nested(MAX_DEPTH)}}
    err = await api.release(task["_id"], children=[child], status=400)
    assert err["field"] == "children[0].input"
    assert (await api.get(f"{V1}/task/{task['_id']}"))["status"] == "leased"


async def test_deepest_allowed_payload_round_trips_through_every_wrapper(api: Api) -> None:
    """A body of exactly MAX_DEPTH levels is stored, and every response wrapping it encodes."""
    gid, task = await leased_task(api)
    output = nested(MAX_DEPTH - 1)  # the body {"output": ...} is one level more
    child = {"name": "k", "channel": "d"}
    await api.release(task["_id"], output=output, children=[child])
    got = await api.acquire("d", count=2)  # {"tasks": [{"parents": [{"output": ...}]}]}
    assert got["tasks"][0]["parents"][0]["output"] == output
    listed = await api.get(f"{V1}/task_group/{gid}/tasks")
    assert next(t for t in listed if t["_id"] == task["_id"])["output"] == output


async def test_ws_deep_frames_get_an_error_frame_and_change_nothing(api: Api) -> None:
    _, task = await leased_task(api)
    ws = await api.client.ws_connect(WS)
    await ws.send_str('{"type": "watch", "all": true, "x": ' + "[" * 10_000 + "]" * 10_000 + "}")
    err = await frame(ws)
    assert (
        err["type"] == "error"
        and err["status"] == 400
        and "nests deeper than 100 levels" in err["message"]
    )
    release = {"type": "release", "ref": 7, "taskId": task["_id"], "workerId": "w1"}
    await ws.send_json({**release, "output": nested(300)})
    err = await frame(ws)
    assert err["ref"] == 7 and err["status"] == 400 and err["field"] == "output"
    await ws.send_json({**release, "output": {"ok": True}})
    assert (await frame(ws))["task"]["status"] == "completed"  # the socket still works
    await ws.close()


async def test_ws_message_over_the_size_limit_closes_with_1009(make_api: ApiFactory) -> None:
    api = await make_api(max_body_bytes=1024)
    ws = await api.client.ws_connect(WS)
    await ws.send_str('{"type": "watch", "all": true, "pad": "' + "x" * 4096 + '"}')
    msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type == aiohttp.WSMsgType.CLOSE
    assert ws.close_code == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert (await api.get("/healthz"))["healthy"] is True
    small = await api.client.ws_connect(WS)
    await small.send_json({"type": "watch", "all": True, "ref": 1})
    assert (await frame(small))["type"] == "ack"
    await small.close()


async def test_body_over_the_size_limit_names_the_limit(make_api: ApiFactory) -> None:
    api = await make_api(max_body_bytes=1024)
    err = await api.post(f"{V1}/task_groups", {"name": "x" * 900, "pad": "y" * 900}, status=413)
    assert err["code"] == "too_large" and "1024" in err["message"]
    assert await api.get(f"{V1}/task_groups/count") == {"count": 0}


async def test_children_per_release_limit(make_api: ApiFactory) -> None:
    api = await make_api(max_children_per_release=3)
    gid, task = await leased_task(api)
    four = [{"name": f"k{i}", "channel": "c"} for i in range(4)]
    err = await api.release(task["_id"], children=four, status=413)
    assert err["field"] == "children" and "3 children" in err["message"]
    assert (await api.get(f"{V1}/task/{task['_id']}"))["status"] == "leased"
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 1
    ws = await api.client.ws_connect(WS)
    await ws.send_json({"type": "release", "ref": 1, "taskId": task["_id"], "workerId": "w1",
                        "children": four})  # fmt: skip
    err = await frame(ws)
    assert err["status"] == 413 and err["field"] == "children"
    await ws.close()
    done = await api.release(task["_id"], children=four[:3])
    assert done["status"] == "completed"
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 4


async def test_release_with_a_million_children_is_413(api: Api) -> None:
    """With the default limits: refused on its size before it is parsed."""
    _, task = await leased_task(api)
    children = b",".join([b'{"name": "a", "channel": "c"}'] * 1_000_000)
    body = b'{"workerId": "w1", "children": [' + children + b"]}"
    status, err = await post_raw(api, f"{V1}/task/{task['_id']}/release", body)
    assert status == 413 and err["code"] == "too_large"
    assert (await api.get(f"{V1}/task/{task['_id']}"))["status"] == "leased"


async def test_a_long_children_list_is_refused_before_it_is_built(api: Api) -> None:
    """Within the body limit, but far over the children limit: REST counts the raw list, the WS
    frame hits the protocol's ceiling (MAX_CHILDREN) before msgspec builds any child."""
    _, task = await leased_task(api)
    many = b",".join([b'{"name": "a", "channel": "c"}'] * (MAX_CHILDREN + 1))
    body = b'{"workerId": "w1", "children": [' + many + b"]}"
    status, err = await post_raw(api, f"{V1}/task/{task['_id']}/release", body)
    assert status == 413 and err["field"] == "children" and "10000 children" in err["message"]
    ws = await api.client.ws_connect(WS)
    frame_head = b'{"type": "release", "ref": 1, "taskId": "' + task["_id"].encode() + b'", '
    await ws.send_bytes(frame_head + body[1:])
    err = await frame(ws)
    assert err["status"] == 400 and err["field"] == "children" and "100000" in err["message"]
    await ws.close()
    assert (await api.get(f"{V1}/task/{task['_id']}"))["status"] == "leased"


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "n" * 1025, "channel": "c"}, "name"),
        ({"name": "t", "channel": "c" * 257}, "channel"),
        ({"name": "t", "channel": "c", "key": "k" * 1025}, "key"),
        ({"name": "t", "channel": "c", "workgroup": "w" * 1025}, "workgroup"),
        ({"name": "t", "channel": "c", "_child_id": "x" * 1025}, "_child_id"),
        ({"name": "t", "channel": "c", "parentIds": ["p" * 65]}, "parentIds[0]"),
        ({"name": "", "channel": "c"}, "name"),
    ],
)
async def test_string_lengths_are_400_naming_the_field(
    api: Api, entry: dict[str, Any], field: str
) -> None:
    gid = await api.group()
    path = f"{V1}/task_group/{gid}/tasks"
    err = await api.post(path, entry, status=400)
    assert err["field"] == field and "length" in err["message"]
    err = await api.post(path, [{"name": "ok", "channel": "c"}, entry], status=400)
    assert err["field"] == f"[1].{field}"
    assert await api.get(f"{V1}/task_group/{gid}/tasks") == []


async def test_worker_strings_lengths(api: Api) -> None:
    err = await api.post(f"{V1}/channel/c/acquire", {"workerId": "w" * 257}, status=400)
    assert err["field"] == "workerId"
    _, task = await leased_task(api)
    err = await api.release(task["_id"], leaseId="l" * 65, status=400)
    assert err["field"] == "leaseId"
    ws = await api.client.ws_connect(WS)
    await ws.send_json({"type": "subscribe", "workerId": "w", "channels": ["c" * 257]})
    assert (await frame(ws))["field"] == "channels[0]"
    await ws.send_json({"type": "extend", "ref": "r" * 257, "taskId": task["_id"]})
    assert (await frame(ws))["field"] == "ref"
    await ws.close()
    assert (await api.get(f"{V1}/task/{task['_id']}"))["status"] == "leased"


async def test_page_numbers_out_of_range_are_400(api: Api) -> None:
    for query in ("limit=99999999999999999999", "skip=-1", f"skip={2**31}"):
        err = await api.get(f"{V1}/task_groups?{query}", status=400)
        assert err["field"] == query.split("=")[0]
    assert await api.get(f"{V1}/task_groups?limit={2**31 - 1}&skip={2**31 - 1}") == []


async def test_long_chain_in_one_request_and_a_cycle_through_it(api: Api) -> None:
    """R11 through the whole stack: parse, nesting, validation, graph plan, commit (the 100,000
    chain runs against the engine in tests/unit/test_engine_scale.py; the store's commit of that
    many records would take this tier's budget)."""
    n = 20_000
    gid = await api.group()
    chain: list[dict[str, Any]] = [{"_child_id": "0", "name": "t", "channel": "c"}]
    chain += [{"_child_id": str(i), "_parent_ids": [str(i - 1)], "name": "t", "channel": "c"}
              for i in range(1, n)]  # fmt: skip
    path = f"{V1}/task_group/{gid}/tasks"
    ring = [{**chain[0], "_parent_ids": [str(n - 1)]}, *chain[1:]]
    status, err = await post_raw(api, path, orjson.dumps(ring))
    assert status == 400 and "cycle" in err["message"] and err["field"] == "[0]._parent_ids"
    assert await api.get(f"{path}?limit=1") == []
    status, created = await post_raw(api, path, orjson.dumps(chain))
    assert status == 200 and len(created) == n
    assert created[-1]["parentIds"] == [created[-2]["_id"]]
    assert (await api.get(f"{V1}/task_group/{gid}"))["counts"]["waiting"] == n - 1


@pytest.mark.parametrize(
    "run_after",
    [1e15, 253_402_300_800_000, "9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"],
)
async def test_times_that_cannot_be_rendered_are_400(api: Api, run_after: object) -> None:
    """Past year 9999 (or before year 1) a time cannot be written back as ISO-8601: it was a
    500 on create and on every later listing of the group."""
    gid = await api.group()
    path = f"{V1}/task_group/{gid}/tasks"
    err = await api.post(path, {"name": "t", "channel": "c", "runAfter": run_after}, status=400)
    assert err["field"] == "runAfter"
    entries = [{"name": "a", "channel": "c"}, {"name": "t", "channel": "c", "runAfter": run_after}]
    err = await api.post(path, entries, status=400)
    assert err["field"] == "[1].runAfter"
    task = await api.post(path, {"name": "t", "channel": "c", "runAfter": "9999-12-31T23:59:59Z"})
    err = await api.put(f"{V1}/task/{task['_id']}", {"runAfter": run_after}, status=400)
    assert err["field"] == "runAfter"
    listed = await api.get(path)
    assert [t["runAfter"] for t in listed] == ["9999-12-31T23:59:59.000Z"]


async def test_tasks_per_request_and_parents_per_task_limits(make_api: ApiFactory) -> None:
    api = await make_api(max_tasks_per_request=3, max_parents_per_task=2)
    gid = await api.group()
    path = f"{V1}/task_group/{gid}/tasks"
    err = await api.post(path, [{"name": f"t{i}", "channel": "c"} for i in range(4)], status=413)
    assert err["code"] == "too_large" and "3 tasks" in err["message"]
    roots = await api.post(path, [{"_child_id": str(i), "name": "r", "channel": "c"}
                                  for i in range(3)])  # fmt: skip
    ids = [t["_id"] for t in roots]
    err = await api.post(path, {"name": "j", "channel": "c", "parentIds": ids}, status=400)
    assert err["field"] == "[0].parentIds" and "2 parents" in err["message"]
    join = {"name": "j", "channel": "c", "_parent_ids": ["a", "b", "c"]}
    batch = [{"_child_id": x, "name": x, "channel": "c"} for x in "ab"] + [join]
    err = await api.post(path, batch, status=400)
    assert err["field"] == "[2]._parent_ids"  # the field the entry sent
    lease = await api.acquire("c")
    err = await api.release(lease["task"]["_id"], children=[join], status=400)
    assert "2 parents" in err["message"]
    assert len(await api.get(path)) == 3  # only the roots


async def test_put_parent_ids_obeys_the_parents_limit(make_api: ApiFactory) -> None:
    api = await make_api(max_parents_per_task=3)
    gid = await api.group()
    tasks = await api.post(f"{V1}/task_group/{gid}/tasks",
                           [{"name": f"t{i}", "channel": "c"} for i in range(5)])  # fmt: skip
    ids = [t["_id"] for t in tasks]
    err = await api.put(f"{V1}/task/{ids[4]}", {"parentIds": ids[:4]}, status=400)
    assert err["field"] == "parentIds" and "at most 3" in err["message"]
    assert (await api.put(f"{V1}/task/{ids[4]}", {"parentIds": ids[:3]}))["parentIds"] == ids[:3]


async def test_children_of_one_message_are_held_to_the_create_limit(make_api: ApiFactory) -> None:
    """Each release within its own limit, but an exchange or a WebSocket batch whose releases
    would create more tasks than one create request may: refused whole, nothing written (a 16
    MiB message could otherwise create ~600,000 tasks in one go)."""
    api = await make_api(max_tasks_per_request=5, max_children_per_release=3)
    gid = await api.group()
    await api.post(
        f"{V1}/task_group/{gid}/tasks", [{"name": f"t{i}", "channel": "c"} for i in range(2)]
    )
    held = await lease(api, 2)
    three = [{"name": f"k{i}", "channel": "d"} for i in range(3)]
    releases = [{"taskId": t["_id"], "leaseId": t["leaseId"], "children": three} for t in held]
    body = {"workerId": "w1", "releases": releases}
    err = await api.post(f"{V1}/channel/c/exchange", body, status=413)
    assert err["field"] == "releases" and "at most 5 children" in err["message"]
    ws = await api.client.ws_connect(WS)
    await ws.send_json([{"type": "release", "ref": i, "workerId": "w1", **r}
                        for i, r in enumerate(releases)])  # fmt: skip
    err = await frame(ws)
    assert err["status"] == 413 and err["field"] == "children" and err.get("ref") is None
    await ws.close()
    tasks = await api.get(f"{V1}/task_group/{gid}/tasks")
    assert [t["status"] for t in tasks] == ["leased", "leased"]  # nothing released, no child
    releases[1]["children"] = three[:2]
    done = await api.post(f"{V1}/channel/c/exchange", {"workerId": "w1", "releases": releases})
    assert [r["task"]["status"] for r in done["released"]] == ["completed", "completed"]
    assert len(await api.get(f"{V1}/task_group/{gid}/tasks")) == 7


async def test_a_message_of_many_releases_lets_other_requests_run_between_them(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Releases with thousands of children each (~15 ms a thousand): an exchange or a batch
    yields to the loop between its releases once it has held it ``TURN`` (here: always)."""
    from crew_aio import bulk
    from crew_aio.http_api import SERVICE

    monkeypatch.setattr(bulk, "TURN", 0.0)
    gid = await api.group()
    await api.post(
        f"{V1}/task_group/{gid}/tasks", [{"name": f"t{i}", "channel": "c"} for i in range(6)]
    )
    held = await lease(api, 6)
    assert api.client.app is not None
    service = api.client.app[SERVICE]
    order: list[str] = []
    real = service.release

    def release(*args: Any, **kwargs: Any) -> Any:
        order.append("release")
        return real(*args, **kwargs)

    monkeypatch.setattr(service, "release", release)
    running = True

    async def others() -> None:  # another request's turn, whenever the loop is free
        while running:
            if order and order[-1] != "other":
                order.append("other")
            await asyncio.sleep(0)

    beside = asyncio.create_task(others())
    releases = [{"taskId": t["_id"], "leaseId": t["leaseId"], "output": 1} for t in held]
    await api.post(f"{V1}/channel/c/exchange", {"workerId": "w1", "releases": releases[:3]})
    ws = await api.client.ws_connect(WS)
    await ws.send_json([{"type": "release", "ref": i, "workerId": "w1", **r}
                        for i, r in enumerate(releases[3:])])  # fmt: skip
    assert [(await frame(ws))["type"] for _ in range(3)] == ["ack"] * 3
    await ws.close()
    running = False
    await beside
    assert order[:12] == ["release", "other"] * 6
