"""WebSocket ``GET /api/v1/ws``: pushed tasks for subscribed workers, events for watchers.

Every frame a peer receives waits in its outbox with the commit barrier of what it announces
(the service's: an ``ack`` carries its call's, a pushed task or an event everything staged
before it), and is written only once that barrier is passed: a pushed task, an ``ack`` or an
event never announces something a crash could undo. The transport touches neither the store
nor the engine.
A worker subscription is one more waiter in the dispatcher's fair per-channel queues; it takes
tasks while it holds fewer leases than its capacity and its socket keeps up (backpressure).
A dropped socket keeps its leases: they run to expiry, or are released over REST or a new socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Iterable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from crew_aio import protocol as p
from crew_aio.commit import Barrier
from crew_aio.errors import (
    Conflict,
    CrewError,
    Forbidden,
    Internal,
    Invalid,
    NotFound,
    StoreUnavailable,
)
from crew_aio.model import Change
from crew_aio.service import Service, Staged, Turns
from crew_aio.tcp import SILENT_EVERY, tcp_stalled
from crew_aio.wire import SCOPE, convert, error_frame, loads, not_held, validate

__all__ = ["HUB", "Hub", "ws_handler"]

log = logging.getLogger("crew_aio.ws")
Json = dict[str, Any]

HIGH_WATER = 256 * 1024  # bytes queued in the kernel/transport before a socket counts as slow
REOFFER_EVERY = 1.0  # seconds: an idle subscription with room stands in its queues again
MAX_OUTBOX = 1024  # frames waiting for a commit or the socket before its reading pauses
MAX_OUTBOX_BYTES = 4 * 1024 * 1024  # ... or bytes (one bigger frame still goes through)
FLUSH_BYTES = HIGH_WATER  # most bytes one flush hands the transport (then it waits to drain)
CLOSE_WAIT = 0.5  # seconds a peer gets to answer the server's close frame at shutdown


_FRAME: Any = p.Frame  # a union of Structs: convert() is typed for one class
_LEASE_FRAMES = (p.ReleaseFrame, p.ExtendFrame, p.ReturnFrame)  # they name a held task


class Peer:
    """One socket: an outbox flushed the moment its commit lands (a callback on the commit),
    or by its own sender task when that cannot be done at once (slow peer, failed commit)."""

    def __init__(self, hub: Hub, ws: web.WebSocketResponse, request: web.Request) -> None:
        self.hub = hub
        self.ws = ws
        self.transport = request.transport
        self.scope: str = request.get(SCOPE, "admin")
        self.outbox: deque[tuple[bytes, Barrier]] = deque()  # frame, what it waits for
        self.outbox_bytes = 0
        self.wake = asyncio.Event()
        self.sub: Subscription | None = None
        self.watch_all = False
        self.watch_groups: set[str] = set()
        self.closed = False
        self.flushed = asyncio.Event()  # set whenever frames left the outbox
        self._silent = False
        self._silent_at = -math.inf
        self._barrier = hub.service.barrier  # of everything staged so far
        self._hooked: object = None  # the commit whose landing writes the outbox

    def send(self, frame: Json, barrier: Barrier | None = None) -> None:
        """Queue ``frame``, to be written once ``barrier`` is passed (by default, the barrier
        of everything staged so far)."""
        if not self.closed:
            data = orjson.dumps(frame)
            barrier = self._barrier() if barrier is None else barrier
            self.outbox.append((data, barrier))
            self.outbox_bytes += len(data)
            commit = barrier.future
            if commit is None or commit.done():
                self.wake.set()  # written at the sender's next turn, with its neighbours
            elif commit is not self._hooked:
                # written as soon as the commit lands, before the HTTP answer that caused it
                # and with no task switch: a pickup is one commit and one write away
                self._hooked = commit
                commit.add_done_callback(self._committed)

    def answer(self, frame: Json, staged: Staged[Json], key: str = "task") -> None:
        """An ``ack`` carrying a staged answer, written once that answer is durable."""
        frame[key] = staged.answer
        self.send(frame, staged.barrier)

    def full(self) -> bool:
        """Answers pile up (the store is down, or the peer does not read): stop reading."""
        return len(self.outbox) > MAX_OUTBOX or self.outbox_bytes > MAX_OUTBOX_BYTES

    def error(self, ref: object, exc: CrewError) -> None:
        self.send(error_frame(ref, exc))

    async def drained(self) -> None:
        """Wait (reading nothing more: TCP backpressure) until the outbox is under its bounds."""
        while self.full() and not self.closed:
            self.flushed.clear()
            await self.flushed.wait()

    def slow(self) -> bool:
        transport = self.transport
        return transport is None or transport.get_write_buffer_size() > HIGH_WATER

    def silent(self) -> bool:
        """The peer stopped acknowledging what it is sent: its machine vanished or its network
        dropped (no FIN, no RST), which the heartbeat would only notice after seconds. Read
        from the kernel: a segment retransmitted twice unanswered (~0.6 s), or unanswered
        zero-window probes. Such a socket is pushed nothing until it answers again."""
        now = time.monotonic()
        if now - self._silent_at < SILENT_EVERY:
            return self._silent
        self._silent_at = now
        self._silent = tcp_stalled(self.transport)
        return self._silent

    def _committed(self, _: object) -> None:
        """A commit this peer's frames wait for landed: write what it let through; the sender
        task handles the rest (a slow peer, a failed commit, frames of later commits)."""
        if self.closed:
            return
        self._write_passed()
        if self.outbox and not self.closed:
            self.wake.set()

    def _write_passed(self) -> bool:
        """Write the leading frames whose commit landed (barriers are ordered), unless the
        peer does not read; False when the socket is gone."""
        outbox = self.outbox
        while outbox and not self.slow():
            batch: list[bytes] = []
            size = 0
            while outbox and size < FLUSH_BYTES:
                barrier = outbox[0][1]
                commit = barrier.future
                if barrier.failed() or (commit is not None and not commit.done()):
                    break
                data = outbox.popleft()[0]
                batch.append(data)
                size += len(data)
            if not batch:
                break
            self.outbox_bytes -= size
            self.flushed.set()
            transport = self.transport
            if self.ws.closed or transport is None or transport.is_closing():
                self.closed = True  # the reader loop sees the close and cleans up
                return False
            # one write for the whole flush: an ack and the next push wake the worker once
            transport.write(b"".join(map(text_frame, batch)))
        return True

    async def run_sender(self) -> None:
        while not self.closed:
            await self.wake.wait()
            self.wake.clear()
            while self.outbox and not self.closed:
                # a peer that does not read gets nothing more into the transport's buffer: the
                # frames wait here, where the reader's pause (full()) bounds them
                while self.slow() and not self.closed:  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                try:
                    await self.outbox[-1][1]  # what the frames announce is durable
                except StoreUnavailable:
                    # the commit failed: they announce what was never done; the socket closes
                    # (1013) and its worker reconnects once the server has reloaded
                    self.hub.drop(self)
                    return
                if not self._write_passed():
                    return
            # not reading: push nothing more until it drains (aiohttp has no drain event)
            while self.slow() and not self.closed:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
            if self.sub is not None:
                self.sub.offer()


def _ref(value: object) -> object:
    """The ``ref`` to echo: a string or integer as the protocol allows, else none (a 300-deep
    ``ref`` must not make the error frame that answers it unencodable)."""
    if type(value) is str and len(value) <= 256:
        return value
    if type(value) is int and -(2**63) <= value < 2**63:
        return value
    return None


def text_frame(payload: bytes) -> bytes:
    """One unmasked, uncompressed, final text frame (RFC 6455 5.2), as a server sends it."""
    size = len(payload)
    if size < 126:
        header = bytes((0x81, size))
    elif size < 1 << 16:
        header = bytes((0x81, 126)) + size.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + size.to_bytes(8, "big")
    return header + payload


class Subscription:
    """A worker's subscription: a dispatcher waiter with a capacity."""

    def __init__(self, peer: Peer, frame: p.SubscribeFrame, lease_seconds: float) -> None:
        self.peer = peer
        self.worker_id = frame.worker_id
        self.channels = list(dict.fromkeys(frame.channels))
        self.capacity = frame.capacity
        self.lease_seconds = lease_seconds
        self.held: dict[str, str] = {}  # task id → lease id

    def offer(self) -> None:
        """Stand in every channel's queue again (after capacity or the socket freed up), in
        arrival order, and take what is ready; a channel with nothing ready costs a lookup."""
        dispatcher = self.peer.hub.service.dispatcher
        for channel in self.channels:
            dispatcher.enqueue(channel, self)
        dispatcher.run(self.channels)

    def wants(self) -> int:
        peer = self.peer
        if peer.closed or peer.sub is not self or peer.hub.service.draining or peer.slow():
            return 0
        if peer.silent():
            return 0
        return max(0, self.capacity - len(self.held))

    def deliver(self, leases: list[Json]) -> None:
        for lease in leases:
            task = lease["task"]
            self.held[task["_id"]] = task["leaseId"]
            self.peer.hub.held_by[task["_id"]] = self
            self.peer.send({"type": "task", **lease})

    def flush(self) -> None:
        """Pushed frames are already in the outbox."""


class Hub:
    def __init__(self, service: Service, *, heartbeat: float, max_msg_size: int) -> None:
        self.service = service
        self.heartbeat = heartbeat
        self.max_msg_size = max_msg_size
        self.peers: set[Peer] = set()
        self.held_by: dict[str, Subscription] = {}
        self.watching: set[Peer] = set()  # peers watching a group or all (events go to these)
        self.by_channel: dict[str, dict[Subscription, None]] = {}  # channel → its subscribers
        self._closing: set[asyncio.Future[None]] = set()
        self._reoffer = asyncio.get_running_loop().call_later(REOFFER_EVERY, self._reoffer_all)

    def _reoffer_all(self) -> None:
        """Self-healing: on each channel that may have a ready task, every subscriber with room
        stands in the queue again, so a missed wake-up costs at most REOFFER_EVERY. The cost is
        a lookup per subscribed channel, not sockets x channels."""
        self._reoffer = asyncio.get_running_loop().call_later(REOFFER_EVERY, self._reoffer_all)
        try:
            self._queue_subscribers(self.by_channel)
        except Exception:  # a bug here must not end the self-healing
            log.exception("re-offering subscriptions failed")

    def _queue_subscribers(self, channels: Iterable[str]) -> None:
        """Queue the subscribers with room on those of ``channels`` that may have a ready
        task, then hand out what is ready there."""
        service = self.service
        may_have_ready, dispatcher = service.may_have_ready, service.dispatcher
        runs = []
        for channel in channels:
            subs = self.by_channel.get(channel)
            if subs and may_have_ready(channel):
                for sub in subs:
                    if sub.wants() > 0:
                        dispatcher.enqueue(channel, sub)
                runs.append(channel)
        if runs:
            dispatcher.run(runs)

    # changes -----------------------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        """Free capacity whose lease ended elsewhere (REST, expiry, delete); queue the
        subscribers of channels that turned ready (the service runs them next); publish."""
        if self.held_by:
            self._reconcile(change)
        if change.ready_channels and self.by_channel:
            dispatcher = self.service.dispatcher
            for channel in change.ready_channels:
                for sub in self.by_channel.get(channel, ()):
                    if sub.wants() > 0:
                        dispatcher.enqueue(channel, sub)
        if self.watching:
            self._publish(change)

    def _reconcile(self, change: Change) -> None:
        lease_of = self.service.lease_of
        freed: dict[Subscription, None] = {}
        for tid in change.tasks:
            sub = self.held_by.get(tid)
            if sub is None:
                continue
            if lease_of(tid) != sub.held.get(tid):
                del self.held_by[tid]
                sub.held.pop(tid, None)
                freed[sub] = None
        for sub in freed:
            if sub.peer.sub is sub:
                sub.offer()

    def _publish(self, change: Change) -> None:
        """The change's events to the watchers; only the watched groups' tasks are rendered
        (unless someone watches everything)."""
        watched: set[str] = set()
        everything = False
        for peer in self.watching:
            if peer.watch_all:
                everything = True
                break
            watched |= peer.watch_groups
        events = self.service.events(change, only=None if everything else watched)
        for peer in self.watching:
            for gid, event in events:
                if peer.watch_all or gid in peer.watch_groups:
                    peer.send({"type": "event", **event})

    # frames ------------------------------------------------------------------------------
    def handle(self, peer: Peer, data: str | bytes) -> list[Any] | None:
        """One message: a frame is handled at once; a JSON array of frames (a batch) is
        returned, to be handled in order by :meth:`handle_batch` as if sent one by one.
        Answers wait in the outbox for the commit."""
        try:
            raw = loads(data, "frame")
        except CrewError as exc:
            peer.error(None, exc)
            return None
        if type(raw) is not list:
            self._handle(peer, raw)
        elif not 0 < len(raw) <= p.MAX_FRAMES:
            peer.error(None, Invalid(f"a batch holds 1 to {p.MAX_FRAMES} frames"))
        else:
            releases = [f for f in raw if type(f) is dict and f.get("type") == "release"]
            try:
                self.service.check_created(releases, "children")
            except CrewError as exc:
                peer.error(None, exc)  # the whole batch, before any of it is handled
                return None
            return raw
        return None

    async def handle_batch(self, peer: Peer, frames: list[Any]) -> None:
        """A batch's frames in order, pausing while the peer's answers pile up (1,000 repeated
        releases of a task with a big output cost one outbox, not a gigabyte) and letting
        other requests run between frames once the batch has held the loop a while (releases
        with thousands of children each)."""
        turns = Turns()
        for item in frames:
            self._handle(peer, item)
            if peer.full():
                await peer.drained()
            elif turns.due():
                await asyncio.sleep(0)

    def _handle(self, peer: Peer, raw: Any) -> None:
        ref: object = None
        try:
            kind: Any = _FRAME
            if type(raw) is dict:
                ref = _ref(raw.get("ref"))
                tag = raw.get("type")
                kind = p.FRAME_TYPES.get(tag, _FRAME) if type(tag) is str else _FRAME
            frame: p.Frame = convert(raw, kind)
            self.service.check_available()
            try:
                self._dispatch(peer, frame, raw)
            except (NotFound, Conflict):
                if peer.scope == "worker" and isinstance(frame, _LEASE_FRAMES):
                    raise not_held(frame.task_id) from None
                raise
        except CrewError as exc:
            peer.error(ref, exc)
        except Exception:  # a bug: answer it and keep the socket (and its worker) going
            log.exception("handling a frame failed", extra={"event": "ws.frame_failed"})
            peer.error(ref, Internal("the server failed to handle this frame"))

    def _dispatch(self, peer: Peer, frame: p.Frame, raw: dict[str, Any]) -> None:
        match frame:
            case p.SubscribeFrame():
                self._subscribe(peer, frame)
            case p.CapacityFrame():
                self._capacity(peer, frame)
            case p.UnsubscribeFrame():
                self._unsubscribe(peer)
                peer.send({"type": "unsubscribed", "ref": frame.ref})
            case p.ReleaseFrame():
                self._release(peer, frame, raw)
            case p.ExtendFrame():
                body = p.ExtendBody(
                    worker_id=self._worker(peer, frame.worker_id),
                    lease_id=frame.lease_id,
                    lease_seconds=frame.lease_seconds,
                )
                peer.answer(
                    {"type": "ack", "ref": frame.ref}, self.service.extend(frame.task_id, body)
                )
            case p.ReturnFrame():
                body = p.ExtendBody(
                    worker_id=self._worker(peer, frame.worker_id), lease_id=frame.lease_id
                )
                peer.answer(
                    {"type": "ack", "ref": frame.ref}, self.service.hand_back(frame.task_id, body)
                )
            case p.WatchFrame() | p.UnwatchFrame():
                self._watch(peer, frame)

    def _worker(self, peer: Peer, worker_id: str | None) -> str:
        if worker_id is not None:
            return worker_id
        if peer.sub is None:
            raise Invalid("workerId is required before subscribe", field="workerId")
        return peer.sub.worker_id

    def _subscribe(self, peer: Peer, frame: p.SubscribeFrame) -> None:
        self._unsubscribe(peer)
        sub = Subscription(peer, frame, self.service.lease_seconds(frame.lease_seconds))
        peer.sub = sub
        for channel in sub.channels:
            self.by_channel.setdefault(channel, {})[sub] = None
        answer = {"type": "subscribed", "ref": frame.ref, "workerId": sub.worker_id}
        peer.send(answer | {"channels": sub.channels, "capacity": sub.capacity})
        sub.offer()

    def _capacity(self, peer: Peer, frame: p.CapacityFrame) -> None:
        sub = peer.sub
        if sub is None:
            raise Invalid("capacity needs a subscription: subscribe first")
        grew = frame.capacity > sub.capacity
        sub.capacity = frame.capacity
        peer.send({"type": "ack", "ref": frame.ref, "capacity": sub.capacity})
        if grew:
            sub.offer()

    def _unsubscribe(self, peer: Peer) -> None:
        sub, peer.sub = peer.sub, None
        if sub is None:
            return
        for channel in sub.channels:
            self.service.dispatcher.remove(channel, sub)
            subs = self.by_channel.get(channel)
            if subs is not None:
                subs.pop(sub, None)
                if not subs:
                    del self.by_channel[channel]
        for tid in sub.held:
            self.held_by.pop(tid, None)

    def _release(self, peer: Peer, frame: p.ReleaseFrame, raw: dict[str, Any]) -> None:
        fields = {**raw, "workerId": self._worker(peer, frame.worker_id)}
        body = validate(fields, p.ReleaseBody)  # one declaration for REST and WS; nesting checked
        staged = self.service.release(frame.task_id, body, brief=frame.brief)
        if frame.brief:
            peer.send({"type": "ack", "ref": frame.ref}, staged.barrier)
        else:
            peer.answer({"type": "ack", "ref": frame.ref}, staged)

    def _watch(self, peer: Peer, frame: p.WatchFrame | p.UnwatchFrame) -> None:
        if peer.scope != "admin":
            raise Forbidden("a worker token may not watch")
        if not frame.all and frame.task_group_id is None:
            raise Invalid("watch needs taskGroupId or all", field="taskGroupId")
        on = isinstance(frame, p.WatchFrame)
        if frame.all:
            peer.watch_all = on
        elif on:
            peer.watch_groups.add(frame.task_group_id or "")
        else:
            peer.watch_groups.discard(frame.task_group_id or "")
        if peer.watch_all or peer.watch_groups:
            self.watching.add(peer)
        else:
            self.watching.discard(peer)
        peer.send({"type": "ack", "ref": frame.ref})

    # lifecycle ---------------------------------------------------------------------------
    def disconnect(self, peer: Peer) -> None:
        peer.closed = True
        peer.wake.set()
        peer.flushed.set()
        self._unsubscribe(peer)
        self.peers.discard(peer)
        self.watching.discard(peer)

    def reset(self) -> None:
        """A commit failed and the engine is to be rebuilt: what the outboxes announce may never
        have been committed, so nothing more is sent; every socket is closed with 1013 (try
        again later) and its worker reconnects once the server has reloaded."""
        for peer in list(self.peers):
            self.drop(peer)

    def drop(self, peer: Peer) -> None:
        """Close ``peer`` with 1013 (try again later), sending nothing more from its outbox."""
        peer.outbox.clear()
        peer.outbox_bytes = 0
        self.disconnect(peer)
        closing = asyncio.ensure_future(self._close(peer, 1013, b"reloading, try again"))
        self._closing.add(closing)
        closing.add_done_callback(self._closing.discard)

    async def close_all(self) -> None:
        """Shutdown: every socket gets a close frame (1001, going away) at once; a peer that
        has not answered it within CLOSE_WAIT is cut, so no worker holds up a restart (its
        SDK reconnects to the next process; its leases stay as they are)."""
        self._reoffer.cancel()
        peers = list(self.peers)
        closing = [asyncio.ensure_future(self._close(peer)) for peer in peers]
        if closing:
            await asyncio.wait(closing, timeout=CLOSE_WAIT)
        for peer, task in zip(peers, closing, strict=True):
            if not task.done():
                task.cancel()
                if peer.transport is not None:
                    peer.transport.abort()

    @staticmethod
    async def _close(
        peer: Peer, code: int = 1001, message: bytes = b"server shutting down"
    ) -> None:
        with contextlib.suppress(Exception):
            await peer.ws.close(code=code, message=message)


HUB = web.AppKey("ws_hub", Hub)


async def ws_handler(request: web.Request) -> web.StreamResponse:
    hub = request.app[HUB]
    # aiohttp refuses a message of max_msg_size bytes or more: +1 lets the documented largest in
    ws = web.WebSocketResponse(heartbeat=hub.heartbeat, max_msg_size=hub.max_msg_size + 1)
    await ws.prepare(request)
    peer = Peer(hub, ws, request)
    hub.peers.add(peer)
    sender = asyncio.create_task(peer.run_sender(), name="crew_aio.ws.sender")
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue  # close/error frames end the iteration; nothing else carries data
            batch = hub.handle(peer, msg.data)
            if batch is not None:
                await hub.handle_batch(peer, batch)
            if peer.full():
                await peer.drained()
    finally:
        hub.disconnect(peer)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender
    return ws
