"""R10: the auth matrix, generated from the route table, and the WebSocket handshake.

Every route of ``ROUTES`` is called with no token, a wrong token, the worker token and the admin
token, against real ids and with a valid body, so that a call let through would do its work.
The refusals (401 / 403) must come before any work: the state is unchanged after all of them.
"""

from __future__ import annotations

import copy
from typing import Any

import aiohttp
import pytest

from crew_aio import keys
from crew_aio import protocol as p
from crew_aio.http_api import SERVICE
from crew_aio.routes import ROUTES, WS_PATH, Route
from tests.integration.conftest import Api, ApiFactory

V1 = "/api/v1"
ADMIN, WORKER = "admin-secret-1", "worker-secret-2"
BODIES: dict[object, Any] = {
    p.CreateGroupBody: {"name": "new"},
    p.UpdateGroupBody: {"name": "renamed", "isPaused": True},
    p.TaskChildBody | list[p.TaskChildBody]: [{"name": "n", "channel": "c"}],
    p.AttemptsBody: {"remainingAttempts": 3},
    p.UpdateTaskBody: {"name": "renamed"},
    p.AcquireBody: {"workerId": "w1"},
    p.ReleaseBody: {"workerId": "w1", "output": 1, "children": [{"name": "k", "channel": "c"}]},
    p.ExtendBody: {"workerId": "w1"},
    p.ExchangeBody: {"workerId": "w1", "count": 1},
    p.CreateOperatorBody: {
        "channel": "ops",
        "url": "http://127.0.0.1:9/execute/ops",
        "isPaused": True,
    },
    p.UpdateOperatorBody: {"isPaused": True},
}
NEEDS = {"public": 0, "worker": 1, "admin": 2}
WORKER_ROUTES = 4  # acquire, exchange, release, extend
PUBLIC = {"/", "/api-docs", "/healthz", f"{V1}/openapi.json"}
GRANTS = {None: -1, "wrong": -1, WORKER: 1, ADMIN: 2}


def bearer(token: str | None) -> dict[str, str]:
    if token is None:
        return {}
    return {"Authorization": f"Bearer {'not-' + ADMIN if token == 'wrong' else token}"}


def test_every_body_type_has_a_sample() -> None:
    assert {r.body for r in ROUTES if r.body is not None} <= set(BODIES)
    assert {r.scope for r in ROUTES} == set(NEEDS)


async def world(api: Api) -> tuple[str, str]:
    """A group with a leased task (w1) and a ready one, and a paused operator: every {id}
    route has work to do (the operator's id is kept in OPERATOR_IDS[api])."""
    headers = bearer(ADMIN)
    gid = (await api.call("POST", f"{V1}/task_groups", {"name": "g"}, headers=headers))["_id"]
    body = [{"name": "a", "channel": "c"}, {"name": "b", "channel": "c"}]
    await api.call("POST", f"{V1}/task_group/{gid}/tasks", body, headers=headers)
    lease = await api.call("POST", f"{V1}/channel/c/acquire", {"workerId": "w1"}, headers=headers)
    op = {"channel": "ops", "url": "http://127.0.0.1:9/execute/ops", "isPaused": True}
    OPERATOR_IDS[id(api)] = (await api.call("POST", f"{V1}/operators", op, headers=headers))["_id"]
    return gid, lease["task"]["_id"]


OPERATOR_IDS: dict[int, str] = {}


def target(route: Route, gid: str, tid: str, oid: str = "") -> str:
    ident = gid if "/task_group/" in route.path else "c" if "/channel/" in route.path else tid
    ident = oid if "/operator/" in route.path else ident
    return route.path.replace("{id}", ident)


def state(api: Api) -> list[Any]:
    app = api.client.app
    assert app is not None
    engine = app[SERVICE].engine
    return [*copy.deepcopy(sorted(keys.records_of(engine), key=lambda r: r[0])), engine.last_id]


async def call(api: Api, route: Route, path: str, token: str | None) -> aiohttp.ClientResponse:
    body = BODIES.get(route.body)
    resp = await api.client.request(route.method, path, json=body, headers=bearer(token))
    await resp.read()
    return resp


@pytest.mark.parametrize("token", [None, "wrong", WORKER])
async def test_refusals_come_before_any_work(make_api: ApiFactory, token: str | None) -> None:
    """Every route this token may not call answers 401 (no/wrong token) or 403 (worker token on
    an admin route), and none of those calls changed anything."""
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    gid, tid = await world(api)
    before = state(api)
    refused = [r for r in ROUTES if NEEDS[r.scope] > max(GRANTS[token], 0)]
    assert len(refused) == len(ROUTES) - len(PUBLIC) - (WORKER_ROUTES if token == WORKER else 0)
    for route in refused:
        resp = await call(api, route, target(route, gid, tid, OPERATOR_IDS[id(api)]), token)
        status, code = (401, "unauthorized") if GRANTS[token] < 0 else (403, "forbidden")
        assert resp.status == status, (route.method, route.path, resp.status)
        assert (await resp.json())["code"] == code
    assert state(api) == before  # nothing created, changed or deleted by a refused call


async def test_public_routes_need_no_token(make_api: ApiFactory) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    public = [r for r in ROUTES if r.scope == "public"]
    assert {r.path for r in public} == PUBLIC
    for route in public:
        assert (await call(api, route, route.path, None)).status == 200
    css = await api.client.get("/api-docs/static/swagger-ui.css")  # Swagger UI's own assets
    assert css.status == 200 and css.content_type == "text/css"


@pytest.mark.parametrize("token", [WORKER, ADMIN])
async def test_the_right_token_gets_through_every_route(make_api: ApiFactory, token: str) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    allowed = [r for r in ROUTES if NEEDS[r.scope] <= GRANTS[token]]
    assert len(allowed) == (len(ROUTES) if token == ADMIN else len(PUBLIC) + WORKER_ROUTES)
    for route in allowed:
        gid, tid = await world(api)  # fresh ids: an earlier DELETE must not turn this into a 404
        resp = await call(api, route, target(route, gid, tid, OPERATOR_IDS[id(api)]), token)
        assert resp.status == 200, (route.method, route.path, resp.status, await resp.text())


async def test_query_token_is_for_the_websocket_handshake_only(make_api: ApiFactory) -> None:
    """Browsers cannot set a header on a WebSocket, so its handshake takes ?token=; a REST
    route does not (a token in a URL ends up in proxies' and browsers' logs)."""
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    assert (await api.client.get(f"{V1}/task_groups?token={ADMIN}")).status == 401
    ws = await api.client.ws_connect(f"{WS_PATH}?token={WORKER}")
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.client.ws_connect(f"{WS_PATH}?token=nope")
    assert refused.value.status == 401


async def test_without_tokens_configured_everything_is_open(api: Api) -> None:
    gid, tid = await world(api)
    for route in ROUTES:
        resp = await call(api, route, target(route, gid, tid, OPERATOR_IDS[id(api)]), None)
        assert resp.status not in (401, 403), route.path


async def test_ws_handshake_needs_a_token(make_api: ApiFactory) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    for query, headers in (("", {}), ("?token=nope", {}), ("", bearer("wrong"))):
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await api.client.ws_connect(WS_PATH + query, headers=headers)
        assert info.value.status == 401  # refused before the upgrade: no 101
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}  # fmt: skip
    plain = await api.client.get(WS_PATH, headers=upgrade)
    assert plain.status == 401 and (await plain.json())["code"] == "unauthorized"
    for query in (f"?token={WORKER}", f"?token={ADMIN}"):
        ws = await api.client.ws_connect(WS_PATH + query)
        await ws.send_json({"type": "subscribe", "workerId": "w", "channels": ["c"], "ref": 1})
        assert (await ws.receive_json(timeout=3))["type"] == "subscribed"
        await ws.send_json({"type": "watch", "all": True, "ref": 2})
        answer = await ws.receive_json(timeout=3)
        assert answer["type"] == ("error" if query.endswith(WORKER) else "ack")
        if answer["type"] == "error":
            assert answer["status"] == 403 and answer["code"] == "forbidden"
        await ws.close()


async def test_the_route_table_covers_every_registered_route(api: Api) -> None:
    """The matrix above is complete only if nothing is routed outside ROUTES (and the WS)."""
    app = api.client.app
    assert app is not None
    routed = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource}
    ws = {("GET", WS_PATH), ("HEAD", WS_PATH)}  # HEAD falls back to the admin scope
    assets = {("GET", "/api-docs/static/{name}"), ("HEAD", "/api-docs/static/{name}")}
    table = {("*" if r.any_method else r.method, r.path) for r in ROUTES}
    slashed = {(m, path + "/") for m, path in table if path != "/"}  # as Express takes them
    heads = {("HEAD", path) for m, path in table | slashed if m == "GET"}  # HEAD where GET is
    # socket.io's engine authenticates its own handshake (tests/integration/test_sio.py)
    sio = {(method, "/socket.io/") for method in ("GET", "HEAD", "OPTIONS", "POST")}
    assert routed == table | slashed | heads | ws | assets | sio


async def test_a_trailing_slash_keeps_the_route_s_scope(make_api: ApiFactory) -> None:
    api = await make_api(api_token=ADMIN, worker_token=WORKER)
    gid, _ = await world(api)
    acquire = await api.client.post(f"{V1}/channel/c/acquire/", json={"workerId": "w2"},
                                    headers=bearer(WORKER))  # fmt: skip
    assert acquire.status == 200 and (await acquire.json())["task"]["name"] == "b"
    listing = await api.client.get(f"{V1}/task_group/{gid}/tasks/", headers=bearer(WORKER))
    assert listing.status == 403
    assert (await api.client.get("/api-docs/", headers={})).status == 200
