"""An async REST client for crew_aio (and Crew v1): submit work, watch it, drive leases.

>>> async with Client("http://127.0.0.1:3000") as crew:
...     group = await crew.create_group("campaign")
...     await crew.add_tasks(group["_id"], {"name": "a", "channel": "fetch"})
...     await crew.wait(group["_id"])

Every non-2xx answer raises one :class:`CrewClientError` carrying the server's ``status``,
``code``, ``message`` and ``field``. Network failures surface as ``aiohttp.ClientError`` (or
``TimeoutError``) so callers can tell "the server said no" from "no answer": the worker SDK
retries the latter. This module imports no server code.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson

__all__ = ["DONE_STATUSES", "Client", "CrewClientError", "Json", "error_from", "is_group_done"]

Json = dict[str, Any]
API: Final = "/api/v1"
# statuses of a task that can still run without anyone's help
ACTIVE_STATUSES: Final = ("ready", "delayed", "leased", "paused")
DONE_STATUSES: Final = ("completed", "failed", "cancelled")


class CrewClientError(Exception):
    """The server answered with an error status (4xx/5xx)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(f"{status} {code}: {message}" + (f" (field {field})" if field else ""))
        self.status = status
        self.code = code
        self.message = message
        self.field = field


def is_group_done(counts: Mapping[str, int]) -> bool:
    """Nothing in the group can run any more: every task completed or failed, or waiting
    behind a failed (or cancelled) ancestor. Paused tasks count as not done: a resume runs them.
    """
    if any(counts.get(status, 0) for status in ACTIVE_STATUSES):
        return False
    blocked = counts.get("failed", 0) + counts.get("cancelled", 0)
    return counts.get("waiting", 0) == 0 or blocked > 0


def error_from(status: int, body: Any) -> CrewClientError:
    """The error an answer body (REST error JSON, or a WebSocket ``error`` frame) describes."""
    if not isinstance(body, dict):
        return CrewClientError(status, "http_error", f"HTTP {status}")
    field = body.get("field")
    return CrewClientError(
        int(body.get("status") or status),
        str(body.get("code", "error")),
        str(body.get("message", "")),
        str(field) if field is not None else None,
    )


def _error_of(status: int, raw: bytes) -> CrewClientError:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        text = raw.decode("utf-8", "replace")[:200]
        return CrewClientError(status, "http_error", text or f"HTTP {status}")
    return error_from(status, body)


class Client:
    """One aiohttp session to one server. Use as ``async with`` or call :meth:`close`."""

    def __init__(self, url: str, token: str | None = None, *, timeout: float = 75.0) -> None:
        # Crew's CREW_API_BASE_URL names the API root: accept it with or without /api/v1
        self.url = url.rstrip("/").removesuffix(API)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers = headers
        self._timeout = aiohttp.ClientTimeout(total=timeout, connect=10.0)
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session, created on first use (so a Client can be built outside a loop)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=self._timeout,
                json_serialize=lambda obj: orjson.dumps(obj).decode(),
            )
        return self._session

    @property
    def headers(self) -> dict[str, str]:
        """The auth header this client sends (the worker's WebSocket reuses it)."""
        return dict(self._headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One JSON call; the decoded body, or :class:`CrewClientError` for a non-2xx."""
        data = None if body is None else orjson.dumps(body)
        headers = {"Content-Type": "application/json"} if data is not None else None
        async with self.session.request(
            method, self.url + path, data=data, headers=headers
        ) as resp:
            raw = await resp.read()
            if resp.status >= 400:
                raise _error_of(resp.status, raw)
            return orjson.loads(raw) if raw else None

    # groups -----------------------------------------------------------------------------------

    async def create_group(self, name: str, *, is_paused: bool = False) -> Json:
        body = {"name": name, "isPaused": is_paused}
        result: Json = await self.request("POST", f"{API}/task_groups", body)
        return result

    async def get_group(self, group_id: str) -> Json:
        """The group with (ext) ``counts`` per status and ``progress``."""
        result: Json = await self.request("GET", f"{API}/task_group/{group_id}")
        return result

    async def list_tasks(self, group_id: str) -> list[Json]:
        """Every task of the group, newest first (Crew's order)."""
        result: list[Json] = await self.request("GET", f"{API}/task_group/{group_id}/tasks")
        return result

    async def add_tasks(
        self, group_id: str, tasks: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> Any:
        """One task (a dict → the created Task) or a whole DAG (a list → created Tasks, in order;
        ``_child_id`` / ``_parent_ids`` pseudo-ids link entries of the list)."""
        body: Any = dict(tasks) if isinstance(tasks, Mapping) else [dict(t) for t in tasks]
        return await self.request("POST", f"{API}/task_group/{group_id}/tasks", body)

    async def pause(self, group_id: str) -> Json:
        return await self._group_action(group_id, "pause")

    async def resume(self, group_id: str) -> Json:
        return await self._group_action(group_id, "resume")

    async def retry(self, group_id: str, remaining_attempts: int = 2) -> Json:
        return await self._group_action(
            group_id, "retry", {"remainingAttempts": remaining_attempts}
        )

    async def reset(self, group_id: str) -> Json:
        return await self._group_action(group_id, "reset")

    async def _group_action(self, group_id: str, action: str, body: Any = None) -> Json:
        result: Json = await self.request(
            "POST", f"{API}/task_group/{group_id}/{action}", body if body is not None else {}
        )
        return result

    async def wait(self, group_id: str, poll: float = 0.5, limit: float | None = None) -> Json:
        """Poll the group until nothing in it can run (see :func:`is_group_done`); the group.

        Raises ``TimeoutError`` after ``limit`` seconds, if given.
        """
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            group = await self.get_group(group_id)
            if is_group_done(group.get("counts") or {}):
                return group
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"group {group_id} still running after {limit} s")
            await asyncio.sleep(poll)

    # tasks and leases -------------------------------------------------------------------------

    async def get_task(self, task_id: str) -> Json:
        result: Json = await self.request("GET", f"{API}/task/{task_id}")
        return result

    async def acquire(
        self,
        channel: str,
        worker_id: str,
        *,
        wait_seconds: float = 0.0,
        lease_seconds: float | None = None,
    ) -> Json:
        """``{"task": Task | None, "parents": [...]}``; lease fields are inside the task."""
        body: Json = {"workerId": worker_id, "waitSeconds": wait_seconds}
        if lease_seconds is not None:
            body["leaseSeconds"] = lease_seconds
        result: Json = await self.request("POST", f"{API}/channel/{channel}/acquire", body)
        return result

    async def exchange(
        self,
        channel: str,
        worker_id: str,
        *,
        releases: Sequence[Mapping[str, Any]] = (),
        returns: Sequence[Mapping[str, Any]] = (),
        count: int = 0,
        wait_seconds: float = 0.0,
        lease_seconds: float | None = None,
        brief: bool = False,
    ) -> Json:
        """(ext) Releases (each a release body plus ``taskId``), hand-backs (``taskId``,
        ``leaseId``) and an acquire of ``count`` tasks in one request and one commit:
        ``{"released": [{"task"} | {"error"}], "returned": [...], "tasks": [lease, ...]}``."""
        body: Json = {"workerId": worker_id, "count": count, "waitSeconds": wait_seconds}
        if brief:
            body["brief"] = True  # a successful release's entry is {}, not the task
        if releases:
            body["releases"] = list(releases)
        if returns:
            body["returns"] = list(returns)
        if lease_seconds is not None:
            body["leaseSeconds"] = lease_seconds
        result: Json = await self.request("POST", f"{API}/channel/{channel}/exchange", body)
        return result

    async def release(self, task_id: str, body: Mapping[str, Any]) -> Json:
        """Release a lease: ``body`` holds workerId, leaseId, output|error, children, delays."""
        result: Json = await self.request("POST", f"{API}/task/{task_id}/release", dict(body))
        return result

    async def extend(
        self, task_id: str, worker_id: str, lease_id: str | None, lease_seconds: float | None
    ) -> Json:
        body: Json = {"workerId": worker_id}
        if lease_id is not None:
            body["leaseId"] = lease_id
        if lease_seconds is not None:
            body["leaseSeconds"] = lease_seconds
        result: Json = await self.request("POST", f"{API}/task/{task_id}/extend", body)
        return result
