"""Crew's JavaScript semantics for JSON values, so a Crew client sees Crew's behaviour.

Crew reads its request bodies with JavaScript: ``data.key || null``, ``parseInt(x || '2')``,
``new Date(runAfter)``. These helpers give a validated value the same meaning: truthiness,
``||`` defaults, numbers as JavaScript holds them, ``parseInt`` and times. Pure functions of
their arguments; nothing of the server is imported.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "MAX_TIME",
    "MIN_TIME",
    "crew_time",
    "js_number",
    "js_or",
    "js_truthy",
    "parse_int",
    "to_epoch",
    "whole",
]

# a time (runAfter) is an ISO-8601 string or epoch milliseconds, rendered back as ISO-8601, so it
# must fall in the years 0001 .. 9999 (UTC): see crew_time
MIN_TIME = -62_135_596_800.0  # 0001-01-01T00:00:00Z, epoch seconds
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z


# Crew reads its bodies with JavaScript: ``data.key || null``, ``parseInt(x || '2')``. These
# helpers give a validated value the same meaning, so a Crew client sees Crew's behaviour.


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness of a JSON value: ``{}`` and ``[]`` are true, ``0`` and ``""`` not."""
    if value is None or value is False:
        return False
    if isinstance(value, dict | list):
        return True
    return bool(value)


def js_or(value: Any, default: Any) -> Any:
    """``value || default``, a whole number as an integer (see :func:`js_number`)."""
    return js_number(value) if js_truthy(value) else default


def js_number(value: Any) -> Any:
    """A number as JavaScript holds it: ``2.0`` is ``2``, and an integer past 2**53 is rounded
    to a double as JavaScript rounds it (2**53 + 1 is 2**53); anything else unchanged."""
    if type(value) is int and abs(value) > 2**53:
        value = float(value)
    if type(value) is float and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def whole(name: str, value: float) -> int:
    """An integer field sent as ``2`` or ``2.0`` → 2; ``2.5`` is refused naming the field."""
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"`{name}` must be a whole number")
        return int(value)
    return value


_LEADING_INT = re.compile(r"\s*([+-]?\d+)")


def parse_int(name: str, value: Any) -> int | None:
    """Crew's ``parseInt(value || default)`` → the number, or None where Crew takes the default
    (a falsy value); what parseInt cannot read (NaN) or a negative count is refused."""
    if not js_truthy(value):
        return None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int | float):
        number = int(value) if math.isfinite(value) else None
    elif isinstance(value, str):
        m = _LEADING_INT.match(value)
        number = int(m.group(1)) if m and len(m.group(1)) <= 16 else None
    else:
        number = None
    if number is None or not 0 <= number <= 1_000_000:
        raise ValueError(f"`{name}` must be a whole number from 0 to 1000000")
    return number


def crew_time(name: str, value: Any) -> float | None:
    """A ``runAfter`` as Crew takes it: falsy → none; an ISO-8601 string; or (ours) epoch
    milliseconds. Returned as epoch seconds, within the years 0001..9999."""
    if not js_truthy(value):
        return None
    if isinstance(value, str):
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"`{name}` must be an ISO-8601 time or epoch milliseconds") from None
        seconds = to_epoch(when)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value) / 1000.0
    else:
        raise ValueError(f"`{name}` must be an ISO-8601 time or epoch milliseconds")
    if seconds is None or not MIN_TIME <= seconds <= MAX_TIME:
        raise ValueError(f"`{name}` must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    return seconds


def to_epoch(value: datetime | float | None) -> float | None:
    """API time input → epoch seconds: an aware/naive-UTC datetime, or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC).timestamp()
        return value.timestamp()
    return float(value) / 1000.0
