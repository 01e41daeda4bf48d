"""The SDK's pure parts, and the ``crew-aio worker`` command line (no server needed)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest
from click.testing import CliRunner

from crew_aio.cli import main
from crew_aio.client import Client, is_group_done
from crew_aio.worker import RateLimited, Result, Worker
from crew_aio.worker.api import outcome
from crew_aio.worker.backoff import Backoff
from crew_aio.worker.lease import seconds_left
from crew_aio.worker.push import PushSession


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    backoff = Backoff(initial=0.1, cap=2.0, rng=random.Random(7))
    delays = [backoff.next() for _ in range(10)]
    assert 0.05 <= delays[0] <= 0.1
    assert all(1.0 <= d <= 2.0 for d in delays[5:])
    assert len(set(delays)) == len(delays)  # jittered
    backoff.reset()
    assert backoff.next() <= 0.1


@pytest.mark.parametrize(
    ("counts", "done"),
    [
        ({"completed": 3}, True),
        ({"completed": 1, "failed": 1}, True),
        ({"failed": 1, "waiting": 2}, True),  # waiting behind a failed parent
        ({"completed": 1, "waiting": 1, "leased": 1}, False),
        ({"ready": 1}, False),
        ({"delayed": 1, "failed": 1}, False),
        ({"paused": 1}, False),  # a resume runs it
        ({"waiting": 1}, False),
    ],
)
def test_is_group_done(counts: dict[str, int], done: bool) -> None:
    assert is_group_done(counts) is done


def test_client_accepts_crews_api_base_url() -> None:
    assert Client("http://h:3000/api/v1/").url == "http://h:3000"
    assert Client("http://h:3000").url == "http://h:3000"


def test_seconds_left_reads_lease_expiry() -> None:
    assert seconds_left({"leaseExpiresAt": "2026-01-01T00:01:00.000Z"}, 1767225600.0) == 60.0
    assert seconds_left({"leaseExpiresAt": None}, 0.0) is None
    assert seconds_left({"leaseExpiresAt": "soon"}, 0.0) is None


class Echo(Worker):
    channel = "echo"

    def __init__(self, behaviour: Any) -> None:
        self.behaviour = behaviour

    async def execute(self, input: Any, parents: list[dict[str, Any]]) -> Any:
        if isinstance(self.behaviour, BaseException):
            raise self.behaviour
        return self.behaviour


@pytest.mark.parametrize(
    ("behaviour", "body", "word"),
    [
        ({"a": 1}, {"output": {"a": 1}}, "ok"),
        (None, {"output": None}, "ok"),
        (Result(output=2, children=[{"name": "c", "channel": "k"}], children_delay=3),
         {"output": 2, "children": [{"name": "c", "channel": "k"}],
          "childrenDelayInSeconds": 3}, "ok"),
        (RateLimited(5), {"error": {"type": "RateLimited", "message": "rate limited for 5 s"},
                          "workgroupDelayInSeconds": 5.0}, "rate_limited"),
        (KeyError("k"), {"error": {"type": "KeyError", "message": "'k'"}}, "error"),
    ],
)  # fmt: skip
async def test_outcome_builds_the_release_body(
    behaviour: Any, body: dict[str, Any], word: str
) -> None:
    assert await outcome(Echo(behaviour), None, []) == (body, word)


def test_worker_command_help_names_its_environment() -> None:
    result = CliRunner().invoke(main, ["worker", "--help"])
    assert result.exit_code == 0
    for name in ("CREW_URL", "CREW_API_BASE_URL", "CREW_TOKEN", "--poll", "MODULE:CLASS"):
        assert name in result.output


@pytest.mark.parametrize("target", ["nocolon", "tests.sdk.sample:Missing", "no_such_mod:X"])
def test_worker_command_rejects_bad_targets(target: str) -> None:
    result = CliRunner().invoke(main, ["worker", target])
    assert result.exit_code == 2
    assert "WORKERS" in result.output


class _Socket:
    """What PushSession needs of a client WebSocket: the messages it was sent."""

    closed = False

    def __init__(self) -> None:
        self.sent: list[Any] = []

    async def send_frame(self, payload: bytes, opcode: Any) -> None:
        self.sent.append(orjson.loads(payload))


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_frames_wait_while_a_message_is_unanswered_then_go_together() -> None:
    stop, hard, give_up = asyncio.Event(), asyncio.Event(), asyncio.Event()
    session = PushSession(Worker(), Client("http://127.0.0.1:9"), "w", stop, hard, give_up)
    ws = _Socket()
    session.ws = ws  # type: ignore[assignment]
    first = asyncio.create_task(session.release("a", {"output": 1}))
    await _settle()
    assert [m["taskId"] for m in ws.sent] == ["a"]  # nothing in flight: it goes at once
    later = [asyncio.create_task(session.release(t, {"output": 2})) for t in ("b", "c")]
    await _settle()
    assert len(ws.sent) == 1  # "a" is unanswered: "b" and "c" wait
    session._on_frame({"type": "ack", "ref": ws.sent[0]["ref"], "task": {"_id": "a"}})
    assert await first == {"_id": "a"}
    await _settle()
    assert [[f["taskId"] for f in m] for m in ws.sent[1:]] == [["b", "c"]]  # one batch
    for frame in ws.sent[1]:
        session._on_frame({"type": "ack", "ref": frame["ref"], "task": {"_id": frame["taskId"]}})
    assert [await t for t in later] == [{"_id": "b"}, {"_id": "c"}]
    await session.client.close()
