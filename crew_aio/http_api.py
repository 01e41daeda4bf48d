"""The REST transport: parse and validate (wire) → one service call → JSON.

Holds no rules of the graph and touches neither the store nor the engine: each service call
returns once its answer is durable (or returns a :class:`~crew_aio.service.Staged` answer,
awaited here). Its routes are listed in :mod:`crew_aio.routes`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from crew_aio import protocol as p
from crew_aio.errors import Conflict, CrewError, Invalid, NotFound
from crew_aio.service import Listing, Service, Staged, Turns
from crew_aio.wire import (
    SCOPE,
    convert,
    convert_entries,
    idempotency,
    json_response,
    not_held,
    page,
    parse,
    read_json,
    status_of,
    validate,
)

__all__ = ["CLEAN", "HEALTH", "SERVICE"]

log = logging.getLogger("crew_aio.http")
Json = dict[str, Any]
B = TypeVar("B")

SERVICE = web.AppKey("service", Service)
HEALTH = web.AppKey[Callable[[], Awaitable[bool]]]("health")


def svc(request: web.Request) -> Service:
    return request.app[SERVICE]


# handlers ------------------------------------------------------------------------------------
async def healthz(request: web.Request) -> web.Response:
    from crew_aio.loopmon import LOOP_MONITOR

    healthy = await request.app[HEALTH]()
    body: dict[str, Any] = {"healthy": healthy}
    monitor = request.app.get(LOOP_MONITOR)
    if monitor is not None:
        body["loopLag"] = monitor.snapshot()
    return json_response(body, 200 if healthy else 503)


async def list_groups(request: web.Request) -> web.Response:
    return json_response(await svc(request).list_groups(*page(request, 50)))


async def count_groups(request: web.Request) -> web.Response:
    return json_response(await svc(request).count_groups())


async def create_group(request: web.Request) -> web.Response:
    body = await parse(request, p.CreateGroupBody)
    return json_response(await svc(request).create_group(body, await idempotency(request)))


async def get_group(request: web.Request) -> web.Response:
    return json_response(await svc(request).get_group(request.match_info["id"]))


async def update_group(request: web.Request) -> web.Response:
    body = await parse(request, p.UpdateGroupBody)
    return json_response(await svc(request).update_group(request.match_info["id"], body))


async def delete_group(request: web.Request) -> web.Response:
    return json_response(await svc(request).delete_group(request.match_info["id"]))


async def group_tasks(request: web.Request) -> web.StreamResponse:
    gid = request.match_info["id"]
    return await listing_response(
        request, await svc(request).group_tasks(gid, *page(request, None))
    )


async def listing_response(request: web.Request, listing: Listing) -> web.StreamResponse:
    """A JSON array of tasks; a big one is streamed a chunk at a time, yielding to the loop (and
    waiting for the socket) between chunks, so a listing of 100,000 tasks stalls nobody."""
    if len(listing) <= listing.CHUNK:
        return json_response([task for chunk in listing.chunks() for task in chunk])
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    await response.prepare(request)
    opening = b"["
    for chunk in listing.chunks():
        await response.write(opening + orjson.dumps(chunk)[1:-1])
        opening = b","
        await asyncio.sleep(0)
    await response.write(b"]")
    await response.write_eof()
    return response


async def create_tasks(request: web.Request) -> web.StreamResponse:
    data = await read_json(request)
    gid = request.match_info["id"]
    key = await idempotency(request)
    if isinstance(data, list):
        svc(request).check_batch(len(data))  # before checking (and building) every entry
        bodies = await convert_entries(data, p.TaskChildBody)
        listing = await svc(request).create_listing(gid, bodies, key)
        return await listing_response(request, listing)
    body = convert(data, p.TaskChildBody)
    return json_response((await svc(request).create_tasks(gid, [body], key))[0])


async def pause_group(request: web.Request) -> web.Response:
    return json_response(await svc(request).pause_group(request.match_info["id"], True))


async def resume_group(request: web.Request) -> web.Response:
    return json_response(await svc(request).pause_group(request.match_info["id"], False))


async def retry_group(request: web.Request) -> web.Response:
    body = await parse(request, p.AttemptsBody, optional=True)
    return json_response(await svc(request).retry_group(request.match_info["id"], body))


async def reset_group(request: web.Request) -> web.Response:
    body = await parse(request, p.AttemptsBody, optional=True)
    return json_response(await svc(request).reset_group(request.match_info["id"], body))


async def get_task(request: web.Request) -> web.Response:
    return json_response(await svc(request).get_task(request.match_info["id"]))


async def update_task(request: web.Request) -> web.Response:
    body = await parse(request, p.UpdateTaskBody)
    return json_response(await svc(request).update_task(request.match_info["id"], body))


async def delete_task(request: web.Request) -> web.Response:
    return json_response(await svc(request).delete_task(request.match_info["id"]))


async def reset_task(request: web.Request) -> web.Response:
    body = await parse(request, p.AttemptsBody, optional=True)
    return json_response(await svc(request).reset_task(request.match_info["id"], body))


async def retry_task(request: web.Request) -> web.Response:
    body = await parse(request, p.AttemptsBody, optional=True)
    return json_response(await svc(request).retry_task(request.match_info["id"], body))


async def pluck(request: web.Request) -> web.Response:
    return json_response(await svc(request).pluck(request.match_info["id"]))


async def list_operators(request: web.Request) -> web.Response:
    return json_response(await svc(request).list_operators(*page(request, 50)))


async def count_operators(request: web.Request) -> web.Response:
    return json_response(await svc(request).count_operators())


async def create_operator(request: web.Request) -> web.Response:
    body = await parse(request, p.CreateOperatorBody)
    return json_response(await svc(request).create_operator(body))


async def get_operator(request: web.Request) -> web.Response:
    return json_response(await svc(request).get_operator(request.match_info["id"]))


async def update_operator(request: web.Request) -> web.Response:
    body = await parse(request, p.UpdateOperatorBody)
    return json_response(await svc(request).update_operator(request.match_info["id"], body))


async def delete_operator(request: web.Request) -> web.Response:
    return json_response(await svc(request).delete_operator(request.match_info["id"]))


async def channels(request: web.Request) -> web.Response:
    return json_response(await svc(request).channels())


async def channel_tasks(request: web.Request) -> web.StreamResponse:
    name = request.match_info["id"]
    return await listing_response(
        request, await svc(request).channel_tasks(name, *page(request, 50))
    )


async def acquire(request: web.Request) -> web.Response:
    body = await parse(request, p.AcquireBody)
    leases = await svc(request).acquire(request.match_info["id"], body)
    if body.count > 1:
        return json_response({"tasks": leases})
    return json_response(leases[0] if leases else {"task": None, "parents": []})


async def release(request: web.Request) -> web.Response:
    data = await read_json(request)
    if isinstance(data, dict) and isinstance(data.get("children"), list):
        svc(request).check_children(len(data["children"]))  # before checking every child
    body = convert(data, p.ReleaseBody)
    task_id = request.match_info["id"]
    return await as_holder(request, task_id, lambda: svc(request).release(task_id, body))


async def exchange(request: web.Request) -> web.Response:
    """Releases, hand-backs and an acquire in one request and one commit (the SDK's REST mode):
    each release and hand-back is answered on its own, as on the WebSocket; the acquire is as
    ``/acquire`` with ``count`` (0: none)."""
    body = await parse(request, p.ExchangeBody)
    service, worker = svc(request), body.worker_id
    service.check_created(body.releases, "releases")
    release = functools.partial(service.release, brief=body.brief)
    released: list[Staged[Json] | CrewError] = []
    turns = Turns()
    for k, raw in enumerate(body.releases):
        if turns.due():  # releases with thousands of children: let other requests run
            await asyncio.sleep(0)
        try:
            if type(raw) is not dict:
                raise Invalid("a release is an object with a taskId", field=f"releases[{k}]")
            ref = validate(raw, p.TaskRef, prefix=f"releases[{k}]")
            fields = validate({"workerId": worker, **raw}, p.ReleaseBody, prefix=f"releases[{k}]")
            released.append(_as_holder(request, ref.task_id, release, fields))
        except CrewError as exc:
            released.append(exc)
    returned: list[Staged[Json] | CrewError] = []
    for ref in body.returns:
        back = p.ExtendBody(worker_id=worker, lease_id=ref.lease_id)
        try:
            returned.append(_as_holder(request, ref.task_id, service.hand_back, back))
        except CrewError as exc:
            returned.append(exc)
    leases: list[Json] = []
    if body.count:
        acquire = p.AcquireBody(worker_id=worker, lease_seconds=body.lease_seconds,
                                wait_seconds=body.wait_seconds, count=body.count)  # fmt: skip
        leases = await service.acquire(request.match_info["id"], acquire)
    return json_response({"released": [await _answer(x) for x in released],
                          "returned": [await _answer(x) for x in returned],
                          "tasks": leases})  # fmt: skip


def _as_holder(
    request: web.Request, task_id: str, call: Callable[[str, B], Staged[Json]], body: B
) -> Staged[Json]:
    """``call``'s staged answer; a worker token hears not_held for a task it does not hold."""
    try:
        return call(task_id, body)
    except (NotFound, Conflict):
        if request[SCOPE] == "worker":
            raise not_held(task_id) from None
        raise


async def _answer(entry: Staged[Json] | CrewError) -> Json:
    """An entry's answer once durable (the acquire's commit covers it), or its error."""
    if isinstance(entry, CrewError):
        return {"error": {"status": status_of(entry)} | entry.to_dict()}
    answer = await entry
    return {"task": answer} if answer else {}


async def extend(request: web.Request) -> web.Response:
    body = await parse(request, p.ExtendBody)
    task_id = request.match_info["id"]
    return await as_holder(request, task_id, lambda: svc(request).extend(task_id, body))


async def as_holder(
    request: web.Request, task_id: str, call: Callable[[], Awaitable[Any]]
) -> web.Response:
    """The answer to a lease holder's call, once durable; a worker token hears
    :func:`~crew_aio.wire.not_held` for any task it does not hold."""
    try:
        return json_response(await call())
    except (NotFound, Conflict):
        if request[SCOPE] == "worker":
            raise not_held(task_id) from None
        raise


CLEAN = web.AppKey("clean", tuple)  # (expired-group cleanup on?, age in seconds, batch size)


def _batch(request: web.Request, default: int) -> int:
    text = request.query.get("batch") or ""
    if not text:
        return default
    if not text.isdigit() or not 0 < int(text) <= p.MAX_PAGE:
        raise Invalid(f"batch must be a whole number from 1 to {p.MAX_PAGE}", field="batch")
    return int(text)


async def clean(request: web.Request) -> web.Response:
    """Crew's cron endpoint: delete up to ``batch`` expired groups (when cleanup is on)."""
    enabled, age, batch = request.app[CLEAN]
    limit = _batch(request, batch)
    if enabled:
        await svc(request).clean_expired_groups(age, limit)
    return json_response({"success": True})


async def bootstrap(request: web.Request) -> web.Response:
    """Crew's cron endpoint that re-announces ready tasks to its messengers: crew_aio hands a
    task out the moment it is ready, so there is nothing to catch up; answered as Crew does."""
    _batch(request, 100)
    return json_response({"success": True})


async def sync(request: web.Request) -> web.Response:
    """Crew's cron endpoint that repairs stale ``parentsComplete`` flags: crew_aio updates a
    child in the same commit as its last parent, so there is nothing to repair."""
    _batch(request, 100)
    return json_response({"success": True})
