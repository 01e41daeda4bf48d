"""Request middlewares: every failure becomes the JSON error shape; bearer-token auth."""

from __future__ import annotations

import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Middleware

from crew_aio.errors import CrewError, Forbidden, Unauthorized
from crew_aio.http_api import SERVICE
from crew_aio.routes import ROUTES, WS_PATH
from crew_aio.sio import PATH as SIO_PATH
from crew_aio.wire import SCOPE, STATUS, Handler, crew_error_response, error_response

__all__ = ["SCOPE", "auth_middleware", "error_middleware", "token_scope"]

log = logging.getLogger("crew_aio.http")

# aiohttp's own HTTP errors (unknown route, body over the limit, ...) get the code of STATUS
_CODES = {status: code for code, status in reversed(STATUS.items())} | {405: "method_not_allowed"}
_SCOPES = {(r.method, r.path): r.scope for r in ROUTES} | {("GET", WS_PATH): "worker"}
# socket.io authenticates its own handshake (crew_aio.sio): a browser's socket.io client sends
# its token in the handshake's auth, which no middleware sees
_SCOPES |= {(method, SIO_PATH.rstrip("/")): "public" for method in ("GET", "POST")}


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CrewError as exc:
        return crew_error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = _CODES.get(exc.status, "error")
        # a 413's text names the limit ("Maximum request body size N exceeded, ...")
        message = exc.text if exc.status == 413 and exc.text else exc.reason
        return error_response(exc.status, code, message or code)
    except Exception:
        log.exception("unhandled error", extra={"event": "http.error", "path": request.path})
        return error_response(500, "internal", "internal server error")


def token_scope(header: str | None, admin: str | None, worker: str | None) -> str | None:
    """The scope a bearer token grants: "admin", "worker", or None; constant-time compares."""
    if header is None or not header.startswith("Bearer "):
        return None
    # a header's raw bytes come back as they were: a non-UTF-8 byte is just a wrong token
    given = header[7:].strip().encode("utf-8", "surrogateescape")
    if admin is not None and hmac.compare_digest(given, admin.encode()):
        return "admin"
    if worker is not None and hmac.compare_digest(given, worker.encode()):
        return "worker"
    return None


def route_scope(request: web.Request) -> str:
    """What the matched route needs: "public", "worker" or "admin" (unknown: admin). HEAD is
    GET's; a trailing "/" is the route's own; Swagger UI's assets are public."""
    route = request.match_info.route
    path = route.resource.canonical if route.resource is not None else request.path
    if path.endswith("/") and path != "/":  # every route is served with a trailing "/" too
        path = path[:-1]
    if path.startswith("/api-docs"):
        return "public"
    method = "GET" if request.method == "HEAD" else request.method
    return _SCOPES.get((method, path), "admin")


def auth_middleware(admin: str | None, worker: str | None) -> Middleware:
    """Open when no token is configured; else admin tokens do all, worker tokens their routes.
    Either way, all but the public routes answer 503 while the server reloads after a failed
    commit."""

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        need = route_scope(request)
        if admin is None and worker is None:
            request[SCOPE] = "admin"
            if need != "public":
                request.app[SERVICE].check_available()
            return await handler(request)
        if need == "public":
            return await handler(request)
        request.app[SERVICE].check_available()  # 503 while reloading after a failed commit
        header = request.headers.get("Authorization")
        if header is None and request.path == WS_PATH and "token" in request.query:
            # browsers cannot set a header on a WebSocket: the handshake may carry ?token=;
            # REST clients send the header (a URL's token ends up in proxies' logs)
            header = f"Bearer {request.query['token']}"
        scope = token_scope(header, admin, worker)
        if scope is None:
            raise Unauthorized("a valid bearer token is required")
        if scope == "worker" and need != "worker":
            raise Forbidden("a worker token may only acquire, extend and release")
        request[SCOPE] = scope
        return await handler(request)

    return auth
