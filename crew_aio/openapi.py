"""The OpenAPI 3.1 document, generated from the route table and the protocol Structs.

It reads routes through :class:`Documented` (what :class:`crew_aio.routes.Route` has), so this
module imports no transport and no route table: ``routes`` imports it, never the other way."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import msgspec

from crew_aio import __version__
from crew_aio import protocol as p

__all__ = ["Documented", "document"]


class Documented(Protocol):
    """What the document needs of a route."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def summary(self) -> str: ...
    @property
    def body(self) -> Any: ...
    @property
    def response(self) -> Any: ...
    @property
    def scope(self) -> str: ...
    @property
    def query(self) -> tuple[str, ...]: ...
    @property
    def idempotent(self) -> bool: ...


_REF = "#/components/schemas/{name}"
_STATUSES = {400: "invalid body or query (names the field)", 401: "no or wrong token",
             403: "token lacks rights", 404: "unknown id", 409: "stale lease or state conflict",
             413: "body too large", 503: "store not writable"}  # fmt: skip
_DESCRIPTION = (
    "crew_aio: durable DAG task server, wire-compatible with Crew v1. Times are ISO-8601 UTC "
    "strings; time inputs also accept epoch milliseconds. Every 2xx is sent only after the "
    "change it reports is committed. Unknown body fields are ignored (Crew clients send extras). "
    "Auth: `Authorization: Bearer <token>` once CREW_API_TOKEN is set; worker tokens may only "
    "acquire, extend and release. Limits (a 4xx naming the field, nothing written): a body nests "
    f"at most {p.MAX_DEPTH} levels of arrays/objects; string lengths, list sizes and numbers as "
    "in the schemas; the body size, tasks per request, children per release and parents per task "
    "as configured (CREW_MAX_*)."
)


def document(routes: Sequence[Documented]) -> dict[str, Any]:
    return _build(tuple(routes))


@cache
def _build(routes: tuple[Documented, ...]) -> dict[str, Any]:
    types = [r.body for r in routes if r.body is not None]
    for r in routes:
        types += r.response if isinstance(r.response, tuple) else [r.response]
    types = [t for t in types if t is not None] + [p.ErrorOut]
    refs, components = msgspec.json.schema_components(types, ref_template=_REF)
    schema_of: dict[int, Any] = dict(zip(map(id, types), refs, strict=True))
    for r in routes:  # a tuple of responses is one of several shapes
        if isinstance(r.response, tuple):
            schema_of[id(r.response)] = {"oneOf": [schema_of[id(t)] for t in r.response]}
    paths: dict[str, dict[str, Any]] = {}
    for r in routes:
        op: dict[str, Any] = {
            "summary": r.summary,
            "operationId": f"{r.method.lower()}_{re.sub(r'[^a-z0-9]+', '_', r.path.lower())}",
            "responses": _responses(r, schema_of),
        }
        params = [_param("id", "path")] if "{id}" in r.path else []
        params += [_param(q, "query", integer=True) for q in r.query]
        if r.idempotent:
            params.append(_IDEMPOTENCY)
        if params:
            op["parameters"] = params
        if r.body is not None:
            op["requestBody"] = {
                "required": r.body is not p.RetryBody,
                "content": {"application/json": {"schema": schema_of[id(r.body)]}},
            }
        if r.scope != "public":
            op["security"] = [{"bearer": []}, {}]
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "crew_aio", "version": __version__, "description": _DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def _responses(r: Documented, schema_of: dict[int, Any]) -> dict[str, Any]:
    ok: dict[str, Any] = {"description": "OK"}
    if r.response is not None:
        ok["content"] = {"application/json": {"schema": schema_of[id(r.response)]}}
    out: dict[str, Any] = {"200": ok}
    error = {"application/json": {"schema": schema_of[id(p.ErrorOut)]}}
    codes = [400, 413, 503] if r.scope == "public" else list(_STATUSES)
    for code in codes:
        out[str(code)] = {"description": _STATUSES[code], "content": error}
    return out


_PAGE = {"type": "integer", "minimum": -p.MAX_PAGE, "maximum": p.MAX_PAGE}
_IDEMPOTENCY = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "A retry with the same key gets what the first try created (kept 24 h); "
    "the key reused for another request is a 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}


def _param(name: str, where: str, *, integer: bool = False) -> dict[str, Any]:
    low = {"limit": -p.MAX_PAGE, "skip": 0}.get(name, 1)  # a limit of 0 or below: all
    schema: dict[str, Any] = {**_PAGE, "minimum": low} if integer else {"type": "string"}
    return {"name": name, "in": where, "required": where == "path", "schema": schema}
