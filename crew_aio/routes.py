"""The route table: the single source for the router, the auth scopes and the OpenAPI document.

Every REST route is one :class:`Route` here (method, path, handler, scope, body and answer
types); the WebSocket's path is listed for its scope. A route added here is served, guarded and
documented; nothing else lists routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from crew_aio import protocol as p
from crew_aio.http_api import (
    acquire,
    bootstrap,
    channel_tasks,
    channels,
    clean,
    count_groups,
    count_operators,
    create_group,
    create_operator,
    create_tasks,
    delete_group,
    delete_operator,
    delete_task,
    exchange,
    extend,
    get_group,
    get_operator,
    get_task,
    group_tasks,
    healthz,
    list_groups,
    list_operators,
    pause_group,
    pluck,
    release,
    reset_group,
    reset_task,
    resume_group,
    retry_group,
    retry_task,
    sync,
    update_group,
    update_operator,
    update_task,
)
from crew_aio.openapi import document
from crew_aio.pages import api_docs, api_docs_asset, home
from crew_aio.wire import Handler, json_response

__all__ = ["ROUTES", "WS_PATH", "Route", "setup_routes"]


async def openapi(request: web.Request) -> web.Response:
    return json_response(document(ROUTES))


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
OPERATOR = f"{V1}/operator/{{id}}"
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
    Route("PUT", GROUP, update_group, "rename a group (pause and resume have routes)",
          p.UpdateGroupBody, p.TaskGroupOut),
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
    Route("POST", f"{V1}/channel/{{id}}/exchange", exchange,
          "releases, hand-backs and an acquire of this channel in one request and one commit",
          p.ExchangeBody, p.ExchangeOut, "worker"),
    Route("POST", f"{TASK}/extend", extend, "renew a lease (heartbeat)", p.ExtendBody, p.TaskOut,
          "worker"),
    Route("GET", f"{V1}/operators", list_operators, "operators, newest first", None,
          list[p.OperatorOut], query=PAGE),
    Route("GET", f"{V1}/operators/count", count_operators, "number of operators", None,
          p.CountOut),
    Route("POST", f"{V1}/operators", create_operator,
          "create an operator: the server POSTs its channel's tasks to url",
          p.CreateOperatorBody, p.OperatorOut),
    Route("GET", OPERATOR, get_operator, "read an operator", None, p.OperatorOut),
    Route("PUT", OPERATOR, update_operator, "edit or pause an operator",
          p.UpdateOperatorBody, p.OperatorOut),
    Route("DELETE", OPERATOR, delete_operator, "delete an operator", None, p.DeletedOut),
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
