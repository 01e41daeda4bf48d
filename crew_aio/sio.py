"""socket.io at ``/socket.io/``: Crew's live updates, for crew-ui and Crew's clients.

A transport beside REST and the native WebSocket (python-socketio on the same aiohttp app). A
client emits ``watchTaskGroup`` / ``unwatchTaskGroup`` with ``{taskGroupId}`` to join or leave
the group's room, and hears, in the room of the group they belong to, Crew's events with Crew's
payloads:

* ``task:create``, ``task:update`` (the Task object), ``task:delete`` (``{_id, taskGroupId}``);
* ``task_group:update`` (the TaskGroup), ``group:delete``;
* ``group:syncPause`` (``{isPaused}``), ``group:retry``, ``group:reset`` (``null``),
  ``workgroup:delay`` (``{workgroup, update: {runAfter}}``), ``group:create``;
* ``task:acquire:key`` / ``task:release:key`` (``{channel, key, update}``: what happened to
  every task of a channel + key; each also gets its ``task:update``);
* ``operator:create|update|delete`` to the room ``operators``.

The events come from the service's one event feed (:meth:`~crew_aio.service.Service.events`,
which the native WebSocket's ``watch`` reads too), and each is emitted only once the commit
barrier of what it announces is passed, in order: a watcher never sees something a crash could
undo. With a token configured, a socket must present the admin token at its handshake
(``auth: {token}``, ``?token=`` or an ``Authorization: Bearer`` header), as a native watcher
must; otherwise it is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
from collections import deque
from typing import Any
from urllib.parse import parse_qs

import socketio
from aiohttp import web

from crew_aio.commit import Barrier
from crew_aio.errors import StoreUnavailable
from crew_aio.model import Change
from crew_aio.service import Service

__all__ = ["SIO", "SocketIO"]

log = logging.getLogger("crew_aio.sio")
Json = dict[str, Any]
PATH = "/socket.io/"

# our event names → Crew's (the native WebSocket's names are ours)
_CREW_NAMES = {"group:update": "task_group:update"}


class SocketIO:
    """Attached to the app when it is built; :meth:`start` binds it to the service."""

    service: Service

    def __init__(self, *, admin_token: str | None) -> None:
        self.admin_token = admin_token
        # CORS is the app's (crew_aio.cors): engine.io's own handling would add a second
        # Access-Control-Allow-Origin header, which browsers refuse
        self.server = socketio.AsyncServer(
            async_mode="aiohttp", cors_allowed_origins=[], logger=False, engineio_logger=False
        )
        self.watched: dict[str, set[str]] = {}  # group id → sids in its room
        self._queue: deque[tuple[Barrier, list[tuple[str, str, Any]]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.server.on("connect", self._connect)
        self.server.on("disconnect", self._disconnect)
        self.server.on("watchTaskGroup", self._watch)
        self.server.on("unwatchTaskGroup", self._unwatch)

    def attach(self, app: web.Application) -> None:
        self.server.attach(app, socketio_path=PATH.strip("/"))

    def start(self, service: Service) -> None:
        self.service = service
        self._task = asyncio.create_task(self._emitter(), name="crew_aio.sio.emitter")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for sid in {sid for sids in self.watched.values() for sid in sids}:
            with contextlib.suppress(Exception):
                await self.server.disconnect(sid)

    # sockets -----------------------------------------------------------------------------
    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        if self.admin_token is None:
            return
        if not self._token_ok(environ, auth):
            raise socketio.exceptions.ConnectionRefusedError("a valid admin token is required")

    def _token_ok(self, environ: dict[str, Any], auth: Any) -> bool:
        assert self.admin_token is not None
        given: list[str] = []
        if isinstance(auth, dict) and isinstance(auth.get("token"), str):
            given.append(auth["token"])
        given += parse_qs(environ.get("QUERY_STRING", "")).get("token", [])
        header = environ.get("HTTP_AUTHORIZATION", "")
        if header.startswith("Bearer "):
            given.append(header[7:].strip())
        want = self.admin_token.encode()
        return any(hmac.compare_digest(t.encode("utf-8", "surrogateescape"), want) for t in given)

    async def _disconnect(self, sid: str, *reason: Any) -> None:
        for gid in [g for g, sids in self.watched.items() if sid in sids]:
            self._leave(sid, gid)

    async def _watch(self, sid: str, msg: Any) -> None:
        gid = _group_id(msg)
        if gid is not None:
            await self.server.enter_room(sid, gid)
            self.watched.setdefault(gid, set()).add(sid)

    async def _unwatch(self, sid: str, msg: Any) -> None:
        gid = _group_id(msg)
        if gid is not None:
            await self.server.leave_room(sid, gid)
            self._leave(sid, gid)

    def _leave(self, sid: str, gid: str) -> None:
        sids = self.watched.get(gid)
        if sids is not None:
            sids.discard(sid)
            if not sids:
                del self.watched[gid]

    # events ------------------------------------------------------------------------------
    def on_change(self, change: Change) -> None:
        """A listener of the service: the change's events for watched groups, rendered now
        (what it announces as it is now), queued to be emitted once committed."""
        if not self.watched:
            return
        events: list[tuple[str, str, Any]] = []
        for gid, e in self.service.events(change, only=self.watched):
            name: str = e["event"]
            events.append((gid, _CREW_NAMES.get(name, name), e["data"]))
        events += [note for note in change.notes if note[0] in self.watched]
        if events:
            self._queue.append((self.service.barrier(), events))
            self._wake.set()

    def reset(self) -> None:
        """A commit failed: what is queued may announce writes that were dropped."""
        self._queue.clear()

    async def _emitter(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                entry = self._queue[0]
                barrier, events = entry
                with contextlib.suppress(StoreUnavailable):  # a failure: never announced
                    await barrier  # what they announce is durable
                if not self._queue or self._queue[0] is not entry:
                    continue  # reset meanwhile (a failed commit): the queue was dropped
                self._queue.popleft()
                if barrier.failed():
                    continue
                for gid, event, data in events:
                    try:
                        await self.server.emit(event, data, room=gid)
                    except Exception:  # one socket's trouble must not end the feed
                        log.exception("emitting %s failed", event)


def _group_id(msg: Any) -> str | None:
    if isinstance(msg, dict):
        gid = msg.get("taskGroupId")
        if isinstance(gid, str | int) and not isinstance(gid, bool) and len(str(gid)) <= 64:
            return str(gid)
    return None


SIO = web.AppKey("socket_io", SocketIO)
