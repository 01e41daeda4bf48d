"""REST routes: parse and validate → one service call → JSON. Holds no rules of the graph.

The route table below is the single source for the router, the auth scopes and the OpenAPI
document; the error table is the one place where error codes become HTTP statuses.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crew_aio import protocol as p
from crew_aio.errors import (
    Conflict,
    CrewError,
    Invalid,
    NotFound,
    StaleLease,
    TimedOut,
    TooLarge,
)
from crew_aio.service import Listing, Service

__all__ = [
    "ROUTES",
    "SERVICE",
    "STATUS",
    "Route",
    "error_response",
    "json_response",
    "setup_routes",
]

log = logging.getLogger("crew_aio.http")

SERVICE = web.AppKey("service", Service)
BODY_TIMEOUT = web.AppKey("body_timeout", float)  # seconds a request body may take to arrive
SCOPE = web.RequestKey("scope", str)  # "admin" or "worker": what the caller may do (auth sets it)
HEALTH = web.AppKey[Callable[[], Awaitable[bool]]]("health")

# the ONE error → status table
STATUS = {
    "invalid": 400,
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "stale_lease": 409,
    "timeout": 408,
    "too_large": 413,
    "store_unavailable": 503,
    "internal": 500,
}

B = TypeVar("B")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "status": status, "code": code}
    if field is not None:
        body["field"] = field
    return json_response(body, status)


def crew_error_response(exc: CrewError) -> web.Response:
    response = error_response(STATUS.get(exc.code, 400), exc.code, exc.message, exc.field)
    if exc.close_connection:
        response.force_close()
    return response


_NAMED = re.compile(r"^`(\w+)` ")
_AT = re.compile(r" - at `\$(.*)`$")


async def parse(request: web.Request, kind: type[B], *, optional: bool = False) -> B:
    """Body → validated ``kind``; a 400 names the field that is wrong."""
    return convert(await read_json(request, optional=optional), kind)


async def read_json(request: web.Request, *, optional: bool = False) -> Any:
    """Body → parsed JSON, not yet checked (``convert`` checks its nesting and shape)."""
    declared = request.content_length
    if declared is not None and declared > request.client_max_size:
        too_large = TooLarge(f"the body may hold at most {request.client_max_size} bytes")
        too_large.close_connection = True
        raise too_large  # at once: not after reading (or waiting for) a body it will refuse
    try:
        async with asyncio.timeout(request.app.get(BODY_TIMEOUT, 30.0)):
            raw = await request.read()
    except TimeoutError:
        raise TimedOut("the request body did not arrive in time") from None
    except (web.RequestPayloadError, HttpProcessingError) as exc:
        # e.g. Content-Encoding: gzip over a body that is not: a client's mistake
        cause = exc.__cause__ or exc
        text = str(cause).strip() or type(cause).__name__
        error = Invalid(f"the body could not be read: {text}")
        error.close_connection = True
        raise error from None
    if not raw.strip() and optional:
        raw = b"{}"
    return loads(raw, "body")


def loads(raw: str | bytes, what: str) -> Any:
    """JSON text → parsed JSON, or Invalid naming ``what`` (a body, a frame) and the problem."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "depth" in str(exc):  # orjson's own limit (1024) is far above ours
            raise Invalid(f"{what} nests deeper than {p.MAX_DEPTH} levels") from None
        raise Invalid(f"{what} is not valid JSON: {exc}") from None


def convert(data: Any, kind: type[B], prefix: str = "") -> B:
    """Parsed JSON → validated ``kind`` (REST bodies and WS frames): nesting, then the shape."""
    path = p.nesting_path(data)
    if path is not None:
        raise Invalid(
            f"JSON nests deeper than {p.MAX_DEPTH} levels", field=_deep_field(path, prefix)
        )
    return validate(data, kind, prefix)


def validate(data: Any, kind: type[B], prefix: str = "") -> B:
    """Parsed JSON whose nesting is already checked → validated ``kind``."""
    try:
        return msgspec.convert(data, kind)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = _AT.search(text)
        field = (prefix + m.group(1)).lstrip(".") if m else (prefix or None)
        named = _NAMED.match(text)  # a check of a whole Struct names its field: `runAfter` ...
        if named:
            field = f"{field}.{named.group(1)}" if field else named.group(1)
        raise Invalid(
            _AT.sub("", text).replace("`", "", 2 if named else 0), field=field or None
        ) from None


ENTRIES_CHUNK = 2000  # entries of a list body checked between two yields to the loop
_INDEX = re.compile(r"^\[(\d+)\]")


async def convert_entries(data: list[Any], kind: type[B]) -> list[B]:
    """A list body → validated entries, ENTRIES_CHUNK at a time, yielding between (100,000
    entries held the loop ~0.2 s); a 400 names the entry by its index in the whole list."""
    out: list[B] = []
    for start in range(0, len(data), ENTRIES_CHUNK):
        if start:
            await asyncio.sleep(0)
        try:
            out += convert(data[start : start + ENTRIES_CHUNK], list[kind])  # type: ignore[valid-type]
        except Invalid as exc:
            m = _INDEX.match(exc.field or "")
            if m is not None and start:
                exc.field = f"[{int(m.group(1)) + start}]{(exc.field or '')[m.end() :]}"
            raise
    return out


def _deep_field(path: list[str | int], prefix: str) -> str | None:
    """The too-deep value's field: its path up to the last object key of its first 3 steps
    (``input``, ``children[0].input``, ``[3].output``), not all 100 steps."""
    head = path[:3]
    keys = [i for i, step in enumerate(head) if isinstance(step, str)]
    steps = head[: keys[-1] + 1] if keys else head[:1]
    text = "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps)
    return (prefix + text).lstrip(".") or None


def page(request: web.Request, default_limit: int | None) -> tuple[int | None, int]:
    """``limit`` and ``skip`` as Crew reads them: a ``limit`` of 0 (MongoDB: no limit) or
    below (Crew: "all") means every item; ``None`` is returned for "no limit"."""

    def number(name: str, default: int | None, low: int) -> int | None:
        text = request.query.get(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise Invalid(f"{name} must be a whole number", field=name) from None
        if not low <= value <= p.MAX_PAGE:
            raise Invalid(f"{name} must be between {low} and {p.MAX_PAGE}", field=name)
        return value

    limit = number("limit", default_limit, -p.MAX_PAGE)
    return (None if limit is not None and limit <= 0 else limit), number("skip", 0, 0) or 0


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


async def idempotency(request: web.Request) -> tuple[str, str] | None:
    """The ``Idempotency-Key`` of a create and a fingerprint of the request: a retry with the
    same key gets what the first try created (for 24 h); the key reused for another request
    is a 409."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= 255 or not key.isprintable():
        raise Invalid("Idempotency-Key must be 1 to 255 printable characters", field="key")
    digest = hashlib.sha256(request.path.rstrip("/").encode() + b"\0" + await request.read())
    return key, digest.hexdigest()[:32]


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


def not_held(task_id: str) -> StaleLease:
    """What a worker token hears of a task it holds no lease on, whether the task exists, is
    leased by another, was completed by another or never was: a worker learns only about the
    leases it holds (ids are predictable)."""
    return StaleLease(f"task {task_id!r} is not leased by this worker")


async def release(request: web.Request) -> web.Response:
    data = await read_json(request)
    if isinstance(data, dict) and isinstance(data.get("children"), list):
        svc(request).check_children(len(data["children"]))  # before checking every child
    body = convert(data, p.ReleaseBody)
    task_id = request.match_info["id"]
    return await as_holder(request, task_id, svc(request).release(task_id, body))


async def extend(request: web.Request) -> web.Response:
    body = await parse(request, p.ExtendBody)
    task_id = request.match_info["id"]
    return await as_holder(request, task_id, svc(request).extend(task_id, body))


async def as_holder(request: web.Request, task_id: str, call: Awaitable[Any]) -> web.Response:
    """The answer to a lease holder's call; a worker token hears :func:`not_held` for any task
    it does not hold."""
    try:
        return json_response(await call)
    except (NotFound, Conflict):
        if request[SCOPE] == "worker":
            raise not_held(task_id) from None
        raise


async def openapi(request: web.Request) -> web.Response:
    from crew_aio.openapi import document

    return json_response(document(ROUTES))


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


_HOME = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>crew_aio</title></head>
<body><p>Hi! I'm crew_aio, a Crew v1 compatible task server. Use my
<a href="./api-docs/">API</a> (<a href="./api/v1/openapi.json">OpenAPI document</a>),
a Crew UI, or <code>crew-aio</code> on the command line to see what is going on.</p></body></html>
"""

_API_DOCS = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>crew_aio API</title>
<link rel="stylesheet" href="static/swagger-ui.css"></head>
<body><div id="swagger-ui"></div>
<script src="static/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({url: "../api/v1/openapi.json", dom_id: "#swagger-ui"});
</script>
</body></html>
"""


async def home(request: web.Request) -> web.Response:
    return web.Response(body=_HOME, content_type="text/html")


async def api_docs(request: web.Request) -> web.Response:
    """Swagger UI over our OpenAPI document; its assets are served from the installed
    ``swagger-ui-bundle`` package, never a CDN."""
    if not request.path.endswith("/"):
        raise web.HTTPFound(request.path + "/")
    return web.Response(body=_API_DOCS, content_type="text/html")


_ASSETS = ("swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png", "favicon-16x16.png")


async def api_docs_asset(request: web.Request) -> web.StreamResponse:
    """One of the few Swagger UI files the page loads (no directory is served)."""
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    name = request.match_info["name"]
    if name not in _ASSETS:
        raise web.HTTPNotFound()
    return web.FileResponse(swagger_ui_path / name)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    summary: str
    body: Any = None
    response: Any = None
    scope: str = "admin"  # "public" | "worker" | "admin"
    query: tuple[str, ...] = ()
    any_method: bool = False  # served for every method, as Crew's router.all (listed as POST)
    idempotent: bool = False  # takes an Idempotency-Key header


V1 = "/api/v1"
WS_PATH = f"{V1}/ws"  # served by ws_hub; listed here for the auth scopes
GROUP = f"{V1}/task_group/{{id}}"
TASK = f"{V1}/task/{{id}}"
PAGE = ("limit", "skip")

ROUTES: tuple[Route, ...] = (
    Route("GET", "/", home, "a page pointing to the API documents", None, None, "public"),
    Route("GET", "/api-docs", api_docs, "Swagger UI over this document", None, None, "public"),
    Route("GET", "/healthz", healthz, "store writable", None, p.HealthOut, "public"),
    Route("GET", f"{V1}/openapi.json", openapi, "this document", None, None, "public"),
    Route("GET", f"{V1}/task_groups", list_groups, "groups, newest first", None,
          list[p.TaskGroupOut], query=PAGE),
    Route("GET", f"{V1}/task_groups/count", count_groups, "number of groups", None, p.CountOut),
    Route("POST", f"{V1}/task_groups", create_group, "create a group", p.CreateGroupBody,
          p.TaskGroupOut, idempotent=True),
    Route("GET", GROUP, get_group, "read a group", None, p.TaskGroupOut),
    Route("PUT", GROUP, update_group, "rename or pause a group", p.UpdateGroupBody,
          p.TaskGroupOut),
    Route("DELETE", GROUP, delete_group, "delete a group and its tasks", None, p.DeletedOut),
    Route("GET", f"{GROUP}/tasks", group_tasks, "tasks of a group", None, list[p.TaskOut],
          query=PAGE),
    Route("POST", f"{GROUP}/tasks", create_tasks,
          "create one task (object) or a whole DAG atomically (list of TaskChild)",
          p.TaskChildBody | list[p.TaskChildBody], p.TaskOut | list[p.TaskOut], idempotent=True),
    Route("POST", f"{GROUP}/pause", pause_group, "pause a group", None, p.TaskGroupOut),
    Route("POST", f"{GROUP}/resume", resume_group, "resume a group", None, p.TaskGroupOut),
    Route("POST", f"{GROUP}/retry", retry_group,
          "failed tasks get attempts again (remainingAttempts, default 2)", p.AttemptsBody,
          p.TaskGroupOut),
    Route("POST", f"{GROUP}/reset", reset_group,
          "make the group look never run (remainingAttempts, default 5)", p.AttemptsBody,
          p.TaskGroupOut),
    Route("GET", TASK, get_task, "read a task", None, p.TaskOut),
    Route("PUT", TASK, update_task, "edit a task's editable fields", p.UpdateTaskBody, p.TaskOut),
    Route("DELETE", TASK, delete_task, "delete a task and its descendants", None, p.DeletedOut),
    Route("POST", f"{TASK}/reset", reset_task,
          "make a task look never run (remainingAttempts, default 2)", p.AttemptsBody, p.TaskOut),
    Route("POST", f"{TASK}/retry", retry_task, "set a task's attempts (default 2)",
          p.AttemptsBody, p.TaskOut),
    Route("POST", f"{TASK}/pluck", pluck, "copy a task into a new paused group; the copy", None,
          p.TaskOut),
    Route("GET", f"{V1}/channels", channels, "per-channel counters", None, list[p.ChannelOut]),
    Route("GET", f"{V1}/channel/{{id}}/tasks", channel_tasks, "tasks of a channel", None,
          list[p.TaskOut], query=PAGE),
    Route("POST", f"{V1}/channel/{{id}}/acquire", acquire, "lease tasks of a channel",
          p.AcquireBody, (p.LeaseOut, p.LeaseListOut), "worker"),
    Route("POST", f"{TASK}/release", release, "complete or fail a leased task", p.ReleaseBody,
          p.TaskOut, "worker"),
    Route("POST", f"{TASK}/extend", extend, "renew a lease (heartbeat)", p.ExtendBody, p.TaskOut,
          "worker"),
    Route("POST", f"{V1}/clean", clean, "delete expired groups (Crew's cron; any method)", None,
          p.SuccessOut, query=("batch",), any_method=True),
    Route("POST", f"{V1}/bootstrap", bootstrap, "Crew's cron: nothing to do here (any method)",
          None, p.SuccessOut, query=("batch",), any_method=True),
    Route("POST", f"{V1}/sync", sync, "Crew's cron: nothing to do here (any method)", None,
          p.SuccessOut, query=("batch",), any_method=True),
)  # fmt: skip


def setup_routes(app: web.Application) -> None:
    """Every route, with and without a trailing slash (Express, Crew's router, takes both)."""
    for route in ROUTES:
        method = "*" if route.any_method else route.method
        paths = [route.path] if route.path == "/" else [route.path, route.path + "/"]
        for path in paths:
            app.router.add_route(method, path, route.handler)
            if method == "GET":  # HEAD wherever GET works (HTTP's rule)
                app.router.add_route("HEAD", path, route.handler)
    app.router.add_get("/api-docs/static/{name}", api_docs_asset)
