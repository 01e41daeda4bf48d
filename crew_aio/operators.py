"""Crew's Operators: the server leases ready tasks itself and POSTs each to a worker's URL.

For every unpaused operator, ready tasks of its channel are leased to ``operator_<id>`` through
the dispatcher's fair queues (like any waiting worker) and POSTed to its ``url`` with its
``requestConfig`` headers, as ``{input, parents, taskId}`` (what Crew's ``HttpWorker`` reads).
The answer's body (``output``, ``children``, ``error``, ``workgroupDelayInSeconds``,
``childrenDelayInSeconds``) is the release, in one atomic step. A timeout, a connection error
or a non-2xx answer is an error release (the task's error delay applies) carrying the worker's
``error`` or ``message`` when it sent one, else what went wrong; a 429 with ``Retry-After``
also cools the task's workgroup for that long.

Beyond Crew:

* at most ``--operator-concurrency`` requests per operator in flight (Crew fires one per task);
* the lease covers the request (its timeout plus a margin): a server that dies mid-call leaves
  a lease that expires, and the task is retried then;
* operators POST only to ``--operator-hosts`` (any by default), and never follow a redirect;
* Crew's virtual operators (``CREW_VIRTUAL_OPERATOR_BASE_URL``): every channel is served at that
  URL plus the channel's name, with ``CREW_VIRTUAL_OPERATOR_AUTH_TOKEN`` as a bearer token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import msgspec

from crew_aio import protocol as p
from crew_aio.errors import CrewError
from crew_aio.model import Change, Operator
from crew_aio.service import Service
from crew_aio.wire import convert

__all__ = ["OperatorRunner"]

log = logging.getLogger("crew_aio.operators")
Json = dict[str, Any]
MARGIN = 5.0  # seconds a lease outlives its request's timeout
MAX_ANSWER = 16 * 1024 * 1024  # bytes of a worker's answer read at most
# what of a worker's answer is its release (Crew's TaskResponse)
RELEASE_FIELDS = ("output", "error", "children", "workgroupDelayInSeconds",
                  "childrenDelayInSeconds")  # fmt: skip


class _Waiter:
    """One operator in the dispatcher's queue of its channel."""

    def __init__(self, runner: OperatorRunner, op: Operator, virtual: bool = False) -> None:
        self.runner = runner
        self.op = op
        self.channel = op.channel  # the queue it stands in (an edit of the channel: a new waiter)
        self.virtual = virtual
        self.worker_id = f"operator_{op.id}"
        self.timeout = runner.timeout_of(op)
        self.lease_seconds = self.timeout + MARGIN
        self.running = 0
        self.closed = False

    def wants(self) -> int:
        if self.closed or self.op.is_paused or self.runner.service.draining:
            return 0
        return max(0, self.runner.concurrency - self.running)

    def deliver(self, leases: list[Json]) -> None:
        for lease in leases:
            self.running += 1
            self.runner.spawn(self, lease)

    def flush(self) -> None:
        """Requests are under way already."""

    def offer(self) -> None:
        dispatcher = self.runner.service.dispatcher
        dispatcher.enqueue(self.channel, self)
        dispatcher.run([self.channel])


class OperatorRunner:
    def __init__(
        self,
        *,
        concurrency: int,
        default_timeout: float,
        hosts: str = "*",
        virtual_base_url: str | None = None,
        virtual_token: str | None = None,
    ) -> None:
        self.concurrency = concurrency
        self.default_timeout = default_timeout
        self.hosts = (
            None if hosts == "*" else frozenset(h.strip().lower() for h in hosts.split(","))
        )
        self.virtual_base_url = virtual_base_url
        self.virtual_token = virtual_token
        self.waiters: dict[str, _Waiter] = {}  # operator id → its waiter
        self.virtual: dict[str, _Waiter] = {}  # channel → its virtual operator
        self.calls: set[asyncio.Task[None]] = set()
        self.session: aiohttp.ClientSession | None = None

    # lifecycle ---------------------------------------------------------------------------
    def start(self, service: Service) -> None:
        self.service = service
        self.session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None), raise_for_status=False
        )
        self.sync()

    async def close(self) -> None:
        """Shutdown: requests under way are abandoned; their leases expire and the tasks are
        retried then (as when the server dies mid-call)."""
        for waiter in [*self.waiters.values(), *self.virtual.values()]:
            waiter.closed = True
        for call in list(self.calls):
            call.cancel()
        await asyncio.gather(*self.calls, return_exceptions=True)
        if self.session is not None:
            await self.session.close()

    # changes -----------------------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        """A listener of the service: operators added, edited or deleted; channels that may
        have turned ready get their operators queued (the service runs the dispatcher next)."""
        if change.operators:
            self.sync()
        if not change.ready_channels:
            return
        dispatcher = self.service.dispatcher
        for channel in change.ready_channels:
            for waiter in self._waiters_of(channel):
                if waiter.wants() > 0:
                    dispatcher.enqueue(channel, waiter)

    def _waiters_of(self, channel: str) -> list[_Waiter]:
        found = [w for w in self.waiters.values() if w.channel == channel]
        if self.virtual_base_url is not None and not found:
            waiter = self.virtual.get(channel)
            if waiter is None:
                waiter = self.virtual[channel] = _Waiter(self, self._virtual(channel), True)
            found.append(waiter)
        return found

    def _virtual(self, channel: str) -> Operator:
        assert self.virtual_base_url is not None
        headers = {"Authorization": f"Bearer {self.virtual_token}"} if self.virtual_token else {}
        config = {"headers": headers} if headers else None
        return Operator(f"virtual_{channel}", channel, self.virtual_base_url + channel, config)

    def sync(self) -> None:
        """Match the waiters to the operators as they are now, and offer the unpaused ones."""
        current = {op.id: op for op in self.service.operators()}
        for oid in list(self.waiters):
            waiter = self.waiters[oid]
            op = current.get(oid)
            if op is None or op.channel != waiter.channel or op is not waiter.op:
                waiter.closed = True  # its calls under way finish; it takes no more
                self.service.dispatcher.remove(waiter.channel, waiter)
                del self.waiters[oid]
        for oid, op in current.items():
            if oid not in self.waiters:
                self.waiters[oid] = _Waiter(self, op)
        for waiter in self.waiters.values():
            waiter.timeout = self.timeout_of(waiter.op)
            waiter.lease_seconds = waiter.timeout + MARGIN
            if waiter.wants() > 0:
                waiter.offer()

    def timeout_of(self, op: Operator) -> float:
        config = op.request_config or {}
        timeout = config.get("timeout")
        if isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout > 0:
            return float(timeout) / 1000.0
        return self.default_timeout

    # calls -------------------------------------------------------------------------------
    def spawn(self, waiter: _Waiter, lease: Json) -> None:
        call = asyncio.get_running_loop().create_task(self._call(waiter, lease))
        self.calls.add(call)
        call.add_done_callback(self.calls.discard)

    async def _call(self, waiter: _Waiter, lease: Json) -> None:
        task = lease["task"]
        try:
            try:
                await self.service.barrier()  # the lease is durable before anyone works on it
            except CrewError:  # its commit failed: there is no lease to work on
                return
            fields = await self._post(waiter, task, lease["parents"])
            await self._release(waiter, task, fields)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug here must not lose the runner: the lease will expire
            log.exception("operator call failed", extra={"event": "operator.bug"})
        finally:
            waiter.running -= 1
            if waiter.wants() > 0:
                waiter.offer()

    async def _post(self, waiter: _Waiter, task: Json, parents: list[Json]) -> Json:
        """The release fields the worker's answer (or its failure) makes."""
        op = waiter.op
        host = (urlsplit(op.url).hostname or "").lower()
        if self.hosts is not None and host not in self.hosts:
            return {"error": f"operator host {host!r} is not in --operator-hosts"}
        headers = dict((op.request_config or {}).get("headers") or {})
        body = {"input": task["input"], "parents": parents, "taskId": task["_id"]}
        assert self.session is not None
        try:
            async with self.session.post(
                op.url,
                json=body,
                headers=headers,
                allow_redirects=False,  # a redirect never leads a task to another host
                timeout=aiohttp.ClientTimeout(total=waiter.timeout),
            ) as resp:
                raw = await resp.content.read(MAX_ANSWER)
                answer = _json(raw)
                if 200 <= resp.status < 300:
                    return answer if isinstance(answer, dict) else {"output": answer}
                return _failure(resp.status, resp.reason, resp.headers, answer)
        except TimeoutError:
            return {"error": f"timeout of {waiter.timeout * 1000:.0f}ms exceeded"}
        except aiohttp.ClientError as exc:
            return {"error": str(exc) or type(exc).__name__}

    async def _release(self, waiter: _Waiter, task: Json, fields: Json) -> None:
        data: Json = {key: fields[key] for key in RELEASE_FIELDS if key in fields}
        data |= {"workerId": waiter.worker_id, "leaseId": task["leaseId"]}
        try:
            body = convert(data, p.ReleaseBody)
        except CrewError as exc:  # the worker answered what cannot be a release
            error = {"type": "InvalidRelease", "message": exc.message, "field": exc.field}
            body = p.ReleaseBody(worker_id=waiter.worker_id, lease_id=task["leaseId"], error=error)
        try:
            await self.service.release(task["_id"], body)
        except CrewError as exc:  # the lease is gone (expired and taken, task deleted...)
            log.warning("operator release of %s refused: %s", task["_id"], exc.message,
                        extra={"event": "operator.release_refused"})  # fmt: skip


def _json(raw: bytes) -> Any:
    try:
        return msgspec.json.decode(raw) if raw else None
    except msgspec.DecodeError:
        return raw.decode("utf-8", "replace")[:1000] or None


def _failure(status: int, reason: str | None, headers: Any, answer: Any) -> Json:
    """A non-2xx answer as Crew takes it: an error release with the worker's ``error`` or
    ``message``; a 429 with ``Retry-After`` cools the workgroup for that long."""
    error: Any = f"Request failed with status code {status}"  # axios's words, as Crew reports
    if isinstance(answer, dict):
        error = answer.get("error") or answer.get("message") or error
    fields: Json = {"error": error}
    if isinstance(answer, dict) and answer.get("workgroupDelayInSeconds"):
        fields["workgroupDelayInSeconds"] = answer["workgroupDelayInSeconds"]
    if status == 429:
        with contextlib.suppress(TypeError, ValueError):
            delay = float(headers.get("Retry-After", ""))
            if math.isfinite(delay) and delay > 0:
                fields["workgroupDelayInSeconds"] = min(delay, 86400.0)
    return fields
