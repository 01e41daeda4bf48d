"""WebSocket push mode: one subscription per :class:`Worker` (channels ``[worker.channel]``,
capacity ``worker.concurrency``) on ``GET /api/v1/ws``.

While the socket is up the server pushes leased tasks and the worker's long-poll slots are
parked; releases and heartbeats travel over the socket. When the socket drops, the slots take
over (long-poll REST), releases and heartbeats go over REST (leases outlive the socket), and the
socket is reconnected with exponential backoff + jitter. A server without the WebSocket route
(404/405, e.g. Crew itself) means long-poll for good.

Graceful stop: the socket sends ``unsubscribe``; every task pushed before the server's
``unsubscribed`` still runs, then the socket closes once the running tasks are released.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

import aiohttp
import orjson

from crew_aio.client import API, Client, error_from
from crew_aio.worker.api import Worker
from crew_aio.worker.backoff import Backoff, sleep_unless
from crew_aio.worker.lease import NETWORK_ERRORS, Lease, LeaseRunner, log
from crew_aio.worker.poll import PollSlot, guarded
from crew_aio.worker.prefetch import Prefetch

__all__ = ["PushSession"]

Json = dict[str, Any]
ACK_TIMEOUT: Final = 30.0
SUBSCRIBE_TIMEOUT: Final = 10.0
HEARTBEAT: Final = 20.0
NO_WEBSOCKET: Final = frozenset({404, 405, 501})
BATCH_FRAMES: Final = 500  # frames per message (the server takes up to 1,000)
BATCH_BYTES: Final = 256 * 1024  # bytes per batched message (the server's default: 16 MiB)


class PushSession:
    """A Worker's socket; also the :class:`~crew_aio.worker.lease.Transport` of its leases."""

    def __init__(self, worker: Worker, client: Client, worker_id: str, stop: asyncio.Event,
                 hard_stop: asyncio.Event, give_up: asyncio.Event) -> None:  # fmt: skip
        self.worker = worker
        self.client = client
        self.worker_id = worker_id
        self.stop = stop
        self.runner = LeaseRunner(worker, self, hard_stop, give_up)
        self.prefetch = Prefetch(worker.concurrency, worker.prefetch)
        self.runner.on_executed = self._executed
        self.slots: Sequence[PollSlot] = ()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pending: dict[str, asyncio.Future[Json]] = {}
        self.running: set[asyncio.Task[None]] = set()
        self.backoff = Backoff(initial=0.2, cap=10.0)
        self._refs = itertools.count(1)
        self._drained = asyncio.Event()
        self._outgoing: list[tuple[bytes, asyncio.Future[Json]]] = []  # frames not yet sent
        self._flush_scheduled = False
        self._unanswered = 0  # frames sent whose answer (or failure) has not come

    # Transport: over the socket while it is up, else REST ----------------------------------

    async def release(self, task_id: str, body: Mapping[str, Any]) -> Json:
        ws = self.ws
        if ws is None or ws.closed:
            return await self.client.release(task_id, body)
        return await self._call({"type": "release", "taskId": task_id, "brief": True, **body})

    async def extend(
        self, task_id: str, worker_id: str, lease_id: str | None, lease_seconds: float | None
    ) -> Json:
        ws = self.ws
        if ws is None or ws.closed:
            return await self.client.extend(task_id, worker_id, lease_id, lease_seconds)
        frame: Json = {"type": "extend", "taskId": task_id, "workerId": worker_id}
        frame |= {"leaseId": lease_id} if lease_id is not None else {}
        frame |= {"leaseSeconds": lease_seconds} if lease_seconds is not None else {}
        return await self._call(frame)

    def _executed(self, seconds: float) -> None:
        """Adaptive prefetch: tell the server the new capacity when it changed enough (a
        socket that is down learns it at its next subscribe); when it shrank below the leases
        waiting here for a slot, give the newest back, so that a process with a free slot
        runs them instead of this one, busy with long tasks."""
        ws = self.ws
        if not self.prefetch.executed(seconds) or ws is None or ws.closed:
            return
        self._tell({"type": "capacity", "capacity": self.prefetch.capacity})
        for lease in self.runner.hand_back(self.prefetch.value):
            frame = {"type": "return", "taskId": lease.task_id, "workerId": lease.worker_id}
            frame |= {"leaseId": lease.lease_id} if lease.lease_id else {}
            sent = asyncio.ensure_future(self._call(frame))
            sent.add_done_callback(functools.partial(self._returned, lease))

    def _tell(self, frame: Json) -> None:
        """Send a frame whose answer nobody waits for (a lost one changes nothing)."""
        sent = asyncio.ensure_future(self._call(frame))
        sent.add_done_callback(_ignore_failure)

    def _returned(self, lease: Lease, sent: asyncio.Future[Json]) -> None:
        """A return the server did not confirm (the socket went, or it refused): the lease may
        still be ours, and an expiry would cost the task an attempt, so it runs here after
        all (if it was returned, its release here is refused: a 409, and nothing is lost)."""
        error = None if sent.cancelled() else sent.exception()
        if sent.cancelled() or error is not None:
            log.info(f"return of {lease.task_id} not confirmed ({error!r}): running it here",
                     extra={"event": "worker.return_failed", "task_id": lease.task_id})  # fmt: skip
            self._start(lease)

    async def _call(self, frame: Json) -> Json:
        """Queue ``frame`` for the socket (see :meth:`_schedule_flush`); its ack's task."""
        ref = f"r{next(self._refs)}"
        data = orjson.dumps({**frame, "ref": ref})  # here, so the caller sees a JSON error
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Json] = loop.create_future()
        self.pending[ref] = future
        timer = loop.call_later(ACK_TIMEOUT, _time_out, future)  # cheaper than wait_for
        self._outgoing.append((data, future))
        self._schedule_flush(loop)
        try:
            answer = await future
        finally:
            timer.cancel()
            self.pending.pop(ref, None)
        if answer.get("type") == "error":
            raise error_from(400, answer)
        task: Json = answer.get("task") or {}
        return task

    def _schedule_flush(self, loop: asyncio.AbstractEventLoop) -> None:
        """Send what is queued at the end of this loop turn, unless an earlier message is still
        unanswered: then at its last answer (Nagle's rule, clocked by the server's answers).
        One task at a time goes out at once; many short ones go out as few messages."""
        if self._outgoing and not self._flush_scheduled and not self._unanswered:
            self._flush_scheduled = True
            loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Send the queued frames as one message: alone, or as a JSON array (a batch: the
        server answers each frame as if sent alone)."""
        self._flush_scheduled = False
        queued = [item for item in self._outgoing if not item[1].done()]
        self._outgoing = []
        ws = self.ws
        if ws is None or ws.closed:  # the socket went: the callers retry over REST
            for _, future in queued:
                future.set_exception(ConnectionResetError("socket closed"))
            return
        for batch in _batches(queued):
            frames = [frame for frame, _ in batch]
            payload = frames[0] if len(frames) == 1 else b"[" + b",".join(frames) + b"]"
            sending = asyncio.ensure_future(ws.send_frame(payload, aiohttp.WSMsgType.TEXT))
            sending.add_done_callback(functools.partial(_fail_unsent, batch=batch))
            self._unanswered += len(batch)
            for _, future in batch:
                future.add_done_callback(self._answered)

    def _answered(self, _: asyncio.Future[Json]) -> None:
        self._unanswered -= 1
        if not self._unanswered:
            self._schedule_flush(asyncio.get_running_loop())

    # the socket's life -------------------------------------------------------------------

    async def run(self) -> None:
        """Connect, serve, reconnect until stopped; then wait for the tasks still running."""
        try:
            while not self.stop.is_set():
                if not await self._connection():
                    break  # the server has no WebSocket: long-poll only
                self.use_poll(True)
                if not self.stop.is_set():
                    delay = self.backoff.next()
                    channel = self.worker.channel
                    log.info(f"{channel}: socket down, long-poll; reconnect in {delay:.2f}s",
                             extra={"event": "worker.ws_down", "channel": channel})  # fmt: skip
                    await sleep_unless(delay, self.stop)
        finally:
            self.use_poll(True)  # whatever happens, the long-poll slots carry on
            await asyncio.gather(*self.running, return_exceptions=True)

    async def _connection(self) -> bool:
        """One socket from connect to close; False when the server has no WebSocket."""
        url = self.client.url + API + "/ws"
        try:
            async with self.client.session.ws_connect(url, heartbeat=HEARTBEAT) as ws:
                if await self._subscribe(ws, [self.worker.channel], "s"):
                    self.ws = ws
                    self.use_poll(False)
                    self.backoff.reset()
                    await self._serve(ws)
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in NO_WEBSOCKET:
                log.warning(f"no WebSocket at {url} ({exc.status}): long-poll only",
                            extra={"event": "worker.ws_unsupported"})  # fmt: skip
                return False
            log.warning(f"socket refused: {exc}", extra={"event": "worker.ws_refused"})
        except NETWORK_ERRORS as exc:
            log.warning(f"socket failed: {exc!r}", extra={"event": "worker.ws_failed"})
        except Exception:  # a frame we cannot read, or an SDK bug: reconnect, never die
            log.exception("socket failed", extra={"event": "worker.ws_failed"})
        finally:
            self.ws = None
            self._fail_pending()
        return True

    async def _subscribe(
        self, ws: aiohttp.ClientWebSocketResponse, channels: list[str], ref: str
    ) -> bool:
        frame: Json = {"type": "subscribe", "ref": ref, "workerId": self.worker_id,
                       "channels": channels,
                       "capacity": self.prefetch.capacity}  # fmt: skip
        if self.worker.lease_seconds is not None:
            frame["leaseSeconds"] = self.worker.lease_seconds
        await ws.send_str(orjson.dumps(frame).decode())
        async with asyncio.timeout(SUBSCRIBE_TIMEOUT):
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    return False
                answer = orjson.loads(msg.data)
                if answer.get("type") in ("subscribed", "error") and answer.get("ref") == ref:
                    break
        if answer["type"] == "error":
            log.error(f"subscribe refused: {answer.get('message')}",
                      extra={"event": "worker.ws_refused"})  # fmt: skip
            return False
        return True

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        log.info(f"{self.worker.channel}: socket up, tasks are pushed",
                 extra={"event": "worker.ws_up", "channel": self.worker.channel})  # fmt: skip
        stopper = asyncio.create_task(self._drain_on_stop(ws), name="crew_aio.ws.drain")
        try:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT:
                    self._on_frame(orjson.loads(msg.data))
        finally:
            stopper.cancel()
            await asyncio.gather(stopper, return_exceptions=True)

    async def _drain_on_stop(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        """On stop: take no more tasks, run those pushed so far, release them, close."""
        await self.stop.wait()
        self._drained.clear()
        # pushes stop once the server answers; tasks pushed before that still run and release
        await ws.send_str(orjson.dumps({"type": "unsubscribe", "ref": "drain"}).decode())
        with contextlib.suppress(TimeoutError):  # no answer: close anyway, as without a drain
            await asyncio.wait_for(self._drained.wait(), SUBSCRIBE_TIMEOUT)
        await asyncio.gather(*self.running, return_exceptions=True)
        await ws.close()

    def _on_frame(self, frame: Any) -> None:
        if not isinstance(frame, dict):
            return
        kind = frame.get("type")
        if kind == "task" and isinstance(frame.get("task"), dict):
            self._start(Lease(frame["task"], list(frame.get("parents") or []), self.worker_id))
        elif kind in ("ack", "error"):
            future = self.pending.get(str(frame.get("ref")))
            if future is not None and not future.done():
                future.set_result(frame)
        elif kind == "unsubscribed" and frame.get("ref") == "drain":
            self._drained.set()

    def _start(self, lease: Lease) -> None:
        job = asyncio.create_task(guarded(self.runner, lease), name="crew_aio.ws.task")
        self.running.add(job)
        job.add_done_callback(self.running.discard)

    def _fail_pending(self) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ConnectionResetError("socket closed"))
        self.pending.clear()

    def use_poll(self, on: bool) -> None:
        for slot in self.slots:
            (slot.active.set if on else slot.active.clear)()


def _ignore_failure(future: asyncio.Future[Json]) -> None:
    """A capacity frame the socket lost: the next subscribe carries the capacity anyway; a
    lost return: the lease runs out, or is released by the process that ends up holding it."""
    if not future.cancelled():
        future.exception()


def _time_out(future: asyncio.Future[Json]) -> None:
    if not future.done():
        future.set_exception(TimeoutError("no answer over the socket"))


def _batches(
    outgoing: list[tuple[bytes, asyncio.Future[Json]]],
) -> Iterator[list[tuple[bytes, asyncio.Future[Json]]]]:
    """Consecutive runs of at most BATCH_FRAMES frames and BATCH_BYTES bytes (a bigger frame
    goes alone): well inside the server's limits on frames and bytes per message."""
    batch: list[tuple[bytes, asyncio.Future[Json]]] = []
    size = 0
    for item in outgoing:
        if batch and (len(batch) == BATCH_FRAMES or size + len(item[0]) > BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += len(item[0]) + 1
    if batch:
        yield batch


def _fail_unsent(
    sending: asyncio.Future[None], batch: list[tuple[bytes, asyncio.Future[Json]]]
) -> None:
    """A batch the socket could not take: its callers hear of it now (and retry over REST)."""
    error = None if sending.cancelled() else sending.exception()
    if error is None and not sending.cancelled():
        return
    for _, future in batch:
        if not future.done():
            future.set_exception(error or ConnectionResetError("socket closed"))
