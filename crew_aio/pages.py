"""The server's own pages: a home page and Swagger UI over the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

__all__ = ["api_docs", "api_docs_asset", "home"]

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
