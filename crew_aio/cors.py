"""CORS, as Crew answers it: a browser app on another origin (crew-ui) may call the API.

Crew runs Express's ``cors()`` with its defaults, and crew_aio answers the same way:

* every response (errors, streamed listings and the WebSocket handshake included) carries
  ``Access-Control-Allow-Origin: *``;
* every ``OPTIONS`` request is a preflight, answered at once with 204 (no token needed: a
  browser sends none on a preflight), ``Access-Control-Allow-Methods:
  GET,HEAD,PUT,PATCH,POST,DELETE`` and the requested headers allowed (``Authorization``,
  ``Content-Type``...).

``--cors-origins`` (``CREW_CORS_ORIGINS``) narrows it: a comma-separated list of origins gets
its own origin back (with ``Vary: Origin``) and any other origin gets no CORS header (its
browser refuses the answer); ``none`` sends no CORS header at all. Credentials (cookies) are
never allowed: the API authenticates with a bearer token.

A short middleware and a response hook rather than aiohttp-cors: that library registers CORS
per route and answers only requests that carry an ``Origin``, while Crew's answer is the same
for every path, method and request; matching it takes these few lines.
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware

from crew_aio.wire import Handler

__all__ = ["ALLOWED_METHODS", "Cors"]

ALLOWED_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"  # Express cors()'s default list


class Cors:
    """``origins``: ``"*"``, ``"none"``, or comma-separated origins (checked by config)."""

    def __init__(self, origins: str) -> None:
        self.enabled = origins != "none"
        self.allowed: frozenset[str] | None = None
        if origins not in ("*", "none"):
            self.allowed = frozenset(o.strip().rstrip("/") for o in origins.split(","))

    def middlewares(self) -> list[Middleware]:
        """The preflight answer: to stand before auth and routing."""
        return [self.preflight()] if self.enabled else []

    def install(self, app: web.Application) -> None:
        """Mark every response the app sends."""
        if self.enabled:
            app.on_response_prepare.append(self.on_response_prepare)

    def allow_origin(self, request: web.BaseRequest) -> str | None:
        """The ``Access-Control-Allow-Origin`` value for this request, or None (no header)."""
        if self.allowed is None:
            return "*"
        origin = request.headers.get("Origin")
        return origin if origin in self.allowed else None

    def preflight(self) -> Middleware:
        @web.middleware
        async def cors_preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "OPTIONS":
                return await handler(request)
            headers = {"Access-Control-Allow-Methods": ALLOWED_METHODS}
            asked = request.headers.get("Access-Control-Request-Headers")
            if asked:
                headers["Access-Control-Allow-Headers"] = asked
                headers["Vary"] = "Access-Control-Request-Headers"
            return web.Response(status=204, headers=headers)

        return cors_preflight

    async def on_response_prepare(
        self, request: web.BaseRequest, response: web.StreamResponse
    ) -> None:
        origin = self.allow_origin(request)
        if self.allowed is not None:
            vary = response.headers.get("Vary")
            response.headers["Vary"] = f"{vary}, Origin" if vary else "Origin"
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
