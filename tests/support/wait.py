"""Poll until something holds: bounded loops, so a test fails with a message and never hangs.

:func:`wait_until` (blocking, for threads and subprocess babysitting) and :func:`eventually`
(async: the event loop runs between tries) call ``check`` every ``step`` seconds until it
returns something truthy, and return that. After ``limit`` seconds they raise
:class:`AssertionError` naming ``what`` (or the check's source) and its last result, or the last
error of a kind the caller chose to ``ignore`` (e.g. network errors while a server restarts).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable
from typing import Any

__all__ = ["eventually", "wait_until"]

Errors = tuple[type[BaseException], ...]


def wait_until(
    check: Callable[[], Any],
    limit: float = 10.0,
    step: float = 0.02,
    *,
    what: str | None = None,
    ignore: Errors = (),
) -> Any:
    """Call ``check()`` until it is truthy (its value is returned), at most ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        try:
            last: Any = check()
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(_failure(check, limit, what, last))
        time.sleep(step)


async def eventually(
    check: Callable[[], Any],
    limit: float = 10.0,
    step: float = 0.02,
    *,
    what: str | None = None,
    ignore: Errors = (),
) -> Any:
    """Await ``check()`` (a coroutine function, or a plain function) until it is truthy (its
    value is returned), at most ``limit`` s; ``step=0`` retries at each turn of the loop."""
    deadline = time.monotonic() + limit
    while True:
        try:
            last: Any = check()
            if inspect.isawaitable(last):
                last = await last
        except ignore as exc:
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            raise AssertionError(_failure(check, limit, what, last))
        await asyncio.sleep(step)


def _failure(check: Callable[[], Any], limit: float, what: str | None, last: Any) -> str:
    shown = repr(last)
    shown = shown if len(shown) <= 300 else shown[:300] + "..."
    return f"not true within {limit:g} s: {what or _source(check)} (last: {shown})"


def _source(check: Callable[[], Any]) -> str:
    """A lambda's line of source, or a function's name."""
    name = getattr(check, "__qualname__", repr(check))
    if name.endswith("<lambda>"):
        try:
            return inspect.getsource(check).strip()
        except (OSError, TypeError):
            pass
    return name
