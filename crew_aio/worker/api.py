"""What a user writes: a :class:`Worker` subclass returning a :class:`Result` (or a dict), and
:class:`RateLimited` to cool a whole workgroup off. ``outcome`` turns either into a release body.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["RateLimited", "Result", "Worker", "outcome"]

Json = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Result:
    """A success: ``output`` for the task, ``children`` (TaskChild dicts) created as its
    descendants in the same atomic step, each runnable no sooner than ``children_delay`` s."""

    output: Any = None
    children: Sequence[Mapping[str, Any]] | None = None
    children_delay: float = 0.0


class RateLimited(Exception):
    """Raise from ``execute``: an error release that also delays every incomplete task of the
    same workgroup by ``seconds`` (``workgroupDelayInSeconds``)."""

    def __init__(self, seconds: float, message: str | None = None) -> None:
        super().__init__(message or f"rate limited for {seconds:g} s")
        self.seconds = float(seconds)


class Worker:
    """Subclass, set ``channel`` (and ``concurrency``), implement ``execute``.

    ``execute(input, parents)`` may be ``async def`` or a plain ``def`` (run in a thread with
    ``asyncio.to_thread``). ``parents`` is the list of ``{_id, channel, input, output}`` of the
    task's parents. Return a :class:`Result`, or anything else as the output with no children.
    """

    channel: str = ""  # class attributes; an instance may set its own
    concurrency: int = 1  # tasks in flight in this process
    lease_seconds: float | None = None  # None: the server's default lease
    # tasks leased ahead over the WebSocket, waiting here (heartbeats keep their leases) until
    # one of the ``concurrency`` slots frees. None (the default) adapts: up to 1,000 while recent
    # executes are short, none once they take 20 ms or more (see crew_aio.worker.prefetch);
    # a number pins it (0: each task goes to whichever process is free first)
    prefetch: int | None = None

    def execute(self, input: Any, parents: list[Json]) -> Any:
        raise NotImplementedError(f"{type(self).__name__}.execute")


def error_of(exc: BaseException) -> Json:
    return {"type": type(exc).__name__, "message": str(exc)}


async def call_execute(worker: Worker, input: Any, parents: list[Json]) -> Any:
    """Run ``execute``: awaited when it is a coroutine function, else in a worker thread."""
    if inspect.iscoroutinefunction(worker.execute):
        return await worker.execute(input, parents)
    result = await asyncio.to_thread(worker.execute, input, parents)
    if inspect.isawaitable(result):  # a plain def that returned a coroutine
        return await result
    return result


async def outcome(worker: Worker, input: Any, parents: list[Json]) -> tuple[Json, str]:
    """Execute and build the release body fields (without workerId/leaseId); the outcome word
    for the log: ``ok``, ``error`` or ``rate_limited``. Cancellation propagates."""
    try:
        result = await call_execute(worker, input, parents)
    except RateLimited as exc:
        body = {"error": error_of(exc), "workgroupDelayInSeconds": exc.seconds}
        return body, "rate_limited"
    except Exception as exc:
        return {"error": error_of(exc)}, "error"
    if not isinstance(result, Result):
        return {"output": result}, "ok"
    body = {"output": result.output}
    if result.children:
        body["children"] = [dict(child) for child in result.children]
    if result.children_delay:
        body["childrenDelayInSeconds"] = result.children_delay
    return body, "ok"
