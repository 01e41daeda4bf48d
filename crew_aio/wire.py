"""The wire layer every transport shares: JSON in, validated Structs, errors out.

Reading and checking a body or a frame (nesting, shape, the field a 400 names), the ONE table
that turns an error code into an HTTP status (REST answers, WebSocket error frames), and the
error bodies. Transports (REST, WebSocket, the ones to come) sit side by side on top of this
module and of the service; none imports another.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import orjson
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from crew_aio import protocol as p
from crew_aio.errors import CrewError, Invalid, StaleLease, TimedOut, TooLarge

__all__ = [
    "BODY_TIMEOUT",
    "SCOPE",
    "STATUS",
    "Handler",
    "convert",
    "convert_entries",
    "crew_error_response",
    "error_frame",
    "error_response",
    "idempotency",
    "json_response",
    "loads",
    "not_held",
    "page",
    "parse",
    "read_json",
    "status_of",
    "validate",
]

B = TypeVar("B")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
BODY_TIMEOUT = web.AppKey("body_timeout", float)  # seconds a request body may take to arrive
SCOPE = web.RequestKey("scope", str)  # "admin" or "worker": what the caller may do (auth sets it)

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


def status_of(exc: CrewError) -> int:
    """The HTTP status of an error (REST's status line, a WebSocket error frame's ``status``)."""
    return STATUS[exc.code]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    body: dict[str, Any] = {"message": message, "status": status, "code": code}
    if field is not None:
        body["field"] = field
    return json_response(body, status)


def crew_error_response(exc: CrewError) -> web.Response:
    response = error_response(status_of(exc), exc.code, exc.message, exc.field)
    if exc.close_connection:
        response.force_close()
    return response


_NAMED = re.compile(r"^`(\w+)` ")
_MISSING = re.compile(r"^Object missing required field `(\w+)`")
_AT = re.compile(r" - at `\$(.*)`$")


def error_frame(ref: object, exc: CrewError) -> dict[str, Any]:
    """A WebSocket ``error`` frame: the REST error body with the ``ref`` it answers."""
    return {"type": "error", "ref": ref, "status": status_of(exc)} | exc.to_dict()


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
        if request.content.is_eof():  # the usual case: the whole body came with the head
            raw = await request.read()
        else:
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
        missing = _MISSING.match(text)  # a missing field is named too, where it is missing
        if missing:
            field = f"{field}.{missing.group(1)}" if field else missing.group(1)
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


def not_held(task_id: str) -> StaleLease:
    """What a worker token hears of a task it holds no lease on, whether the task exists, is
    leased by another, was completed by another or never was: a worker learns only about the
    leases it holds (ids are predictable)."""
    return StaleLease(f"task {task_id!r} is not leased by this worker")
