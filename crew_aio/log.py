"""Named loggers and the one place logging is configured.

Every call site names what happened in ``extra={"event": "...", ...}``; the formatters print the
event and every extra field::

    2026-11-28T04:15:03.123Z INFO crew_aio.app server.ready listening url=http://127.0.0.1:3000

Under journald (stderr is the stream named by ``JOURNAL_STREAM``) the timestamp is left out,
journald adds its own, and each line starts with a ``<N>`` syslog priority so ``journalctl -p``
filters by level. ``json=True`` writes one orjson object per line instead.

Tokens never reach the output: every formatted line passes through a redactor that masks the
configured tokens (raw, JSON-escaped and repr-escaped), ``Bearer ...`` credentials and
``?token=`` / ``&token=`` query parameters.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final, Literal, TextIO

import orjson

__all__ = [
    "ROOT",
    "JsonFormatter",
    "PlainFormatter",
    "Redactor",
    "configure",
    "extra_fields",
    "get_logger",
    "is_journal",
]

ROOT: Final = "crew_aio"
Component = Literal["app", "http", "ws", "store", "engine", "service", "timers", "cli"]
MASK: Final = "***"

# Attributes every LogRecord has; anything else on a record came in through ``extra``.
_STANDARD: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "event",
}
# syslog priorities (sd-daemon.h) for journald's "<N>" line prefix, highest level first.
_PRIORITY: Final = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_QUOTE_IF: Final = re.compile(r'[\s"=]')


def get_logger(component: Component) -> logging.Logger:
    """The logger of one component: ``crew_aio.<component>``."""
    return logging.getLogger(f"{ROOT}.{component}")


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The fields a call site passed in ``extra`` (except ``event``), in the order given."""
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD and not key.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    when = datetime.fromtimestamp(record.created, UTC)
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _priority(levelno: int) -> int:
    return next((prio for level, prio in _PRIORITY if levelno >= level), 7)


def _logfmt(value: object) -> str:
    text = str(value)
    if text and not _QUOTE_IF.search(text):
        return text
    return orjson.dumps(text).decode()


class Redactor:
    """Masks configured tokens and anything that looks like a credential in a line of text."""

    _GENERIC: Final = (r"(?<=(?i:bearer) )[^\s\"',;]+", r"(?<=[?&]token=)[^&\s\"',;]+")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        variants: set[str] = set()
        for secret in secrets:
            if secret:
                variants |= {secret, orjson.dumps(secret).decode()[1:-1], repr(secret)[1:-1]}
        literal = [re.escape(v) for v in sorted(variants, key=len, reverse=True)]
        self._pattern = re.compile("|".join([*literal, *self._GENERIC]))

    def __call__(self, text: str) -> str:
        return self._pattern.sub(MASK, text)


class PlainFormatter(logging.Formatter):
    """``[<N>][timestamp ]LEVEL logger event message key=value ...``, one line per record."""

    def __init__(
        self,
        *,
        timestamps: bool = True,
        syslog_prefix: bool = False,
        redact: Redactor | None = None,
    ) -> None:
        super().__init__()
        self.timestamps = timestamps
        self.syslog_prefix = syslog_prefix
        self.redact = redact or Redactor()

    def format(self, record: logging.LogRecord) -> str:
        parts = [_timestamp(record)] if self.timestamps else []
        parts += [record.levelname, record.name, str(getattr(record, "event", "-"))]
        message = record.getMessage()
        if message:
            parts.append(message)
        parts += [f"{key}={_logfmt(value)}" for key, value in extra_fields(record).items()]
        text = " ".join(parts)
        trace = self._trace(record)
        if trace:
            text = f"{text}\n{trace}"
        text = self.redact(text)
        if self.syslog_prefix:
            prefix = f"<{_priority(record.levelno)}>"
            text = "\n".join(prefix + line for line in text.splitlines())
        return text

    def _trace(self, record: logging.LogRecord) -> str:
        lines = []
        if record.exc_info:
            lines.append(self.formatException(record.exc_info))
        if record.stack_info:
            lines.append(self.formatStack(record.stack_info))
        return "\n".join(lines)


class JsonFormatter(PlainFormatter):
    """One JSON object per line: ``ts, level, logger, event, msg``, the extra fields, ``exc``."""

    def __init__(self, *, redact: Redactor | None = None) -> None:
        super().__init__(redact=redact)

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None),
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            payload.setdefault(key, value)
        trace = self._trace(record)
        if trace:
            payload["exc"] = trace
        return self.redact(orjson.dumps(payload, default=str).decode())


class _CrewHandler(logging.StreamHandler[TextIO]):
    """Marks the handler :func:`configure` installed, so a second call replaces it."""


def is_journal(stream: TextIO, journal_stream: str | None) -> bool:
    """True when ``stream`` is the journald stream named by ``JOURNAL_STREAM`` (``dev:inode``)."""
    if not journal_stream:
        return False
    try:
        device, inode = (int(part) for part in journal_stream.split(":"))
        stat = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def configure(
    level: str,
    json: bool,
    *,
    journal_stream: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send every log record at ``level`` or above to stderr (or ``stream``), one line each.

    ``level`` is a name (``debug`` .. ``critical``); ``journal_stream`` is the value of
    ``JOURNAL_STREAM`` (see :func:`crew_aio.config.journal_stream`); ``secrets`` are masked.
    Calling it again replaces the handler installed before. Returns the handler.
    """
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr
    redact = Redactor(secrets)
    handler = _CrewHandler(out)
    if json:
        handler.setFormatter(JsonFormatter(redact=redact))
    else:
        journald = is_journal(out, journal_stream)
        formatter = PlainFormatter(timestamps=not journald, syslog_prefix=journald, redact=redact)
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CrewHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    logging.getLogger(ROOT).setLevel(numeric)
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, ClientMistakes) for f in server.filters):
        server.addFilter(ClientMistakes())
    return handler


class ClientMistakes(logging.Filter):
    """aiohttp logs a client's malformed request (a 5,000-header head, a bad chunk size, a body
    that is not the gzip it claims) at ERROR with a traceback, though it answers it with a 400:
    those become one DEBUG line, so a client cannot flood the log with tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, _CLIENT_ERRORS):
                record.levelno, record.levelname = logging.DEBUG, "DEBUG"
                record.msg, record.args = f"bad request: {exc!r}"[:300], None
                record.exc_info = record.exc_text = None
                return logging.getLogger("aiohttp.server").isEnabledFor(logging.DEBUG)
            exc = exc.__cause__ or exc.__context__
        return True


def _client_errors() -> tuple[type[BaseException], ...]:
    from aiohttp.http_exceptions import HttpProcessingError
    from aiohttp.web_protocol import RequestPayloadError

    return (HttpProcessingError, RequestPayloadError)


_CLIENT_ERRORS = _client_errors()
