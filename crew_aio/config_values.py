"""Parsers and range checks of setting values (the cells of :mod:`crew_aio.config`'s table).

A parser turns a CLI or environment value into its type or raises ValueError with the reason; a
check returns None when the value is fine, else the reason.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

__all__ = [
    "LOG_LEVELS",
    "PARSERS",
    "Check",
    "Parser",
    "at_least",
    "base_url",
    "between",
    "host",
    "host_list",
    "known_level",
    "parse_level",
    "positive",
]

Check = Callable[[Any], str | None]
Parser = Callable[[object], object]
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")


def between(low: float, high: float) -> Check:
    def check(value: float) -> str | None:
        return None if low <= value <= high else f"must be between {low:g} and {high:g}"

    return check


def at_least(low: float) -> Check:
    def check(value: float) -> str | None:
        return None if value >= low else f"must be at least {low:g}"

    return check


def positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def host(value: str) -> str | None:
    bad = not value or any(char.isspace() for char in value)
    return "must be an address or a host name" if bad else None


def cors_origins(value: str) -> str | None:
    """``*``, ``none``, or origins (``scheme://host[:port]``) separated by commas."""
    if value in ("*", "none"):
        return None
    for origin in value.split(","):
        origin = origin.strip()
        scheme, sep, rest = origin.partition("://")
        if not sep or scheme not in ("http", "https") or not rest or "/" in rest:
            return (
                f"must be *, none, or origins like https://ui.example.com separated by commas "
                f"(not {origin!r})"
            )
    return None


def host_list(value: str) -> str | None:
    """``*`` or host names separated by commas (no scheme, no path)."""
    if value == "*":
        return None
    for name in value.split(","):
        name = name.strip()
        if not name or any(c in name for c in "/: \t@"):
            return f"must be * or host names separated by commas (not {name!r})"
    return None


def base_url(value: str | None) -> str | None:
    if value is None or value.startswith(("http://", "https://")):
        return None
    return "must be an http:// or https:// URL"


def known_level(value: str) -> str | None:
    return None if value in LOG_LEVELS else f"must be one of {', '.join(LOG_LEVELS)}"


def parse_str(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError("expected a string")
    return raw


def parse_int(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    try:
        return int(parse_str(raw).strip(), 10)
    except ValueError:
        raise ValueError("expected an integer") from None


def parse_float(raw: object) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        number = float(raw)
    else:
        try:
            number = float(parse_str(raw).strip())
        except ValueError:
            raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


BOOLS: Final = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}


def parse_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    try:
        return BOOLS[parse_str(raw).strip().lower()]
    except KeyError:
        raise ValueError("expected true/false, yes/no or 1/0") from None


def parse_path(raw: object) -> Path:
    if isinstance(raw, Path):
        return raw
    text = parse_str(raw)
    if not text:
        raise ValueError("must not be empty")
    return Path(text)


def parse_token(raw: object) -> str | None:
    text = parse_str(raw)
    if any(char.isspace() or not char.isprintable() for char in text):
        raise ValueError("must not contain whitespace or control characters")
    return text or None


def parse_level(raw: object) -> str:
    return parse_str(raw).strip().lower()


PARSERS: Final[Mapping[object, Parser]] = {
    str: parse_str,
    int: parse_int,
    float: parse_float,
    bool: parse_bool,
    Path: parse_path,
    str | None: parse_token,
}
