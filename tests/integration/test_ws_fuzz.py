"""Hypothesis-generated WebSocket frames: each one gets its answer (ack or a 4xx error frame
with the same ``ref``), the socket stays open, and the server answers REST afterwards."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crew_aio.app import create_app
from crew_aio.clock import FakeClock
from crew_aio.config import Settings
from tests.integration.conftest import T0

V1 = "/api/v1"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=20,
)  # fmt: skip
ids = st.sampled_from(["TASK", "GROUP", "nope", ""]) | st.text(max_size=70)
children = st.lists(
    st.fixed_dictionaries({"name": st.text(max_size=5) | json_values, "channel": st.just("c")},
                          optional={"_child_id": st.text(max_size=3), "input": json_values,
                                    "_parent_ids": st.lists(st.text(max_size=3), max_size=3),
                                    "runAfter": json_values}),
    max_size=3,
)  # fmt: skip
fields = {
    "workerId": st.sampled_from(["w1", "w2"]) | json_values,
    "taskId": ids,
    "taskGroupId": ids,
    "leaseId": ids | st.none(),
    "channels": st.lists(st.sampled_from(["c", "d"]), max_size=3) | json_values,
    "capacity": st.integers(-2, 20_000) | json_values,
    "leaseSeconds": st.floats(-1, 1e6) | json_values,
    "all": st.booleans() | json_values,
    "output": json_values,
    "error": json_values,
    "children": children | json_values,
    "workgroupDelayInSeconds": st.floats(-1, 1e9) | json_values,
}
types = st.sampled_from(["subscribe", "unsubscribe", "release", "extend", "watch", "unwatch", "x"])
frames = st.fixed_dictionaries({"type": types | json_values},
                               optional={k: v for k, v in fields.items()})  # fmt: skip
ANSWERS = {"ack", "error", "subscribed", "unsubscribed"}


async def scenario(data_dir: Path, sent: list[dict[str, Any]]) -> list[str]:
    """Send each frame with a unique ref; return what went wrong (nothing, hopefully)."""
    app = create_app(Settings(data_dir=data_dir), clock=FakeClock(T0))
    client = TestClient(TestServer(app))
    await client.start_server()
    problems: list[str] = []
    try:
        gid = (await (await client.post(f"{V1}/task_groups", json={"name": "g"})).json())["_id"]
        body = [{"name": "a", "channel": "c"}, {"name": "b", "channel": "d"}]
        await client.post(f"{V1}/task_group/{gid}/tasks", json=body)
        task = await (await client.post(f"{V1}/channel/c/acquire", json={"workerId": "w1"})).json()
        real = {"TASK": task["task"]["_id"], "GROUP": gid}
        ws = await client.ws_connect(f"{V1}/ws")
        for ref, frame in enumerate(sent):
            frame = {k: real.get(v, v) if isinstance(v, str) else v for k, v in frame.items()}
            await ws.send_json({**frame, "ref": ref})
            problems += await answer_to(ws, ref, frame)
        await ws.close()
        health = await client.get("/healthz")
        if health.status != 200:
            problems.append(f"healthz {health.status} after the frames")
    finally:
        await client.close()
    return problems


async def answer_to(ws: aiohttp.ClientWebSocketResponse, ref: int, frame: Any) -> list[str]:
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), 10)  # generous: a loaded CI machine
        except TimeoutError:
            return [f"no answer to {frame}"]
        if msg.type != aiohttp.WSMsgType.TEXT:
            return [f"{msg.type} after {frame}"]
        got = msg.json()
        if got.get("ref") == ref and got["type"] in ANSWERS:
            bad = got["type"] == "error" and not 400 <= got["status"] < 500
            return [f"{got} for {frame}"] if bad else []


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sent=st.lists(frames, min_size=1, max_size=12))
def test_every_generated_frame_gets_its_answer(sent: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        assert asyncio.run(scenario(Path(tmp) / "data", sent)) == []
