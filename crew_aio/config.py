"""Settings: one frozen object, read once at startup.

The :class:`Settings` class body *is* the defaults table: each field carries its default, its
environment names (ours first, then Crew's aliases), help text and range check; :data:`SPECS`,
the CLI options and ``--help`` are derived from it. Precedence per field: CLI flag, first
environment name, alias names, default. Empty environment values count as unset. This is the
only module that reads the environment, and only the mapping it is handed.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar, get_type_hints

from crew_aio.config_values import (
    LOG_LEVELS,
    PARSERS,
    Check,
    Parser,
    at_least,
    base_url,
    between,
    cors_origins,
    host,
    host_list,
    known_level,
    parse_level,
    positive,
)

__all__ = [
    "LOG_LEVELS",
    "SPECS",
    "ConfigError",
    "ExitCode",
    "Settings",
    "Spec",
    "is_loopback",
    "journal_stream",
    "load_settings",
]

T = TypeVar("T")


class ExitCode(enum.IntEnum):
    """Process exit codes (sysexits.h names), shared by ``cli`` and ``app``."""

    OK = 0
    STORE_CORRUPT = 65  # EX_DATAERR: the database file cannot be read; never recreated
    BAD_HOST = 68  # EX_NOHOST: --host is not a name or address of this machine
    CANNOT_LISTEN = 69  # EX_UNAVAILABLE: the port is taken (perhaps only for now: restart)
    STORE_STUCK = 70  # EX_SOFTWARE: a commit hung past its deadline; restart clean
    DATA_DIR = 73  # EX_CANTCREAT: the data directory cannot be created, written or opened
    STORE_LOCKED = 75  # EX_TEMPFAIL: another server holds the data directory
    NO_PERMISSION = 77  # EX_NOPERM: the port needs privileges this process lacks
    CONFIG = 78  # EX_CONFIG: a setting is invalid; restarting will not help


class ConfigError(ValueError):
    """A setting is malformed or out of range; the message is one line for a human."""

    def __init__(self, message: str, *, name: str | None = None) -> None:
        super().__init__(message)
        self.name = name  # the Settings field, when one is to blame


def _setting(
    default: T,
    *env: str,
    doc: str,
    check: Check | None = None,
    parse: Parser | None = None,
    secret: bool = False,
) -> T:
    """One row of the defaults table (a dataclass field with its metadata)."""
    meta = {"env": env, "doc": doc, "check": check, "parse": parse, "secret": secret}
    return field(default=default, repr=not secret, metadata=meta)


# -- the table --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything the server is configured with. Build it with :func:`load_settings`."""

    host: str = _setting(
        "127.0.0.1",
        "CREW_HOST",
        check=host,
        doc="Address to listen on. A non-loopback address needs an API token.",
    )
    port: int = _setting(
        3000, "CREW_PORT", check=between(0, 65535), doc="TCP port (0 picks a free one)."
    )
    data_dir: Path = _setting(  # noqa: RUF009 (a Path is immutable; _setting returns a field)
        Path("crew-data"),
        "CREW_DATA_DIR",
        doc="Directory of the database (crew.sqlite) and its lock file.",
    )
    api_token: str | None = _setting(
        None, "CREW_API_TOKEN", secret=True, doc="Admin token: every endpoint."
    )
    worker_token: str | None = _setting(
        None, "CREW_WORKER_TOKEN", secret=True, doc="Worker token: acquire/extend/release only."
    )
    insecure: bool = _setting(
        False, "CREW_INSECURE", doc="Allow a non-loopback host without an API token."
    )
    lease_seconds: float = _setting(
        60.0,
        "CREW_LEASE_SECONDS",
        "CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS",
        check=at_least(1),
        doc="Lease length in seconds when a worker asks for none.",
    )
    max_lease_seconds: float = _setting(
        3600.0,
        "CREW_MAX_LEASE_SECONDS",
        check=at_least(1),
        doc="Longest lease a worker may ask for, in seconds.",
    )
    max_wait_seconds: float = _setting(
        60.0,
        "CREW_MAX_WAIT_SECONDS",
        check=positive,
        doc="Longest acquire long-poll (waitSeconds), in seconds.",
    )
    clean_expired_groups: bool = _setting(
        False,
        "CREW_CLEAN_EXPIRED_GROUPS",
        doc="Delete task groups that expired (see the next option).",
    )
    expired_group_interval_days: float = _setting(
        30.0,
        "CREW_EXPIRED_GROUP_INTERVAL_IN_DAYS",
        check=positive,
        doc="Idle days after which a group counts as expired.",
    )
    clean_batch_size: int = _setting(
        20,
        "CREW_CLEAN_BATCH_SIZE",
        check=positive,
        doc="Most groups one POST /api/v1/clean deletes (its ?batch= overrides it).",
    )
    max_body_bytes: int = _setting(
        16 * 1024 * 1024,
        "CREW_MAX_BODY_BYTES",
        check=positive,
        doc="Largest request body or WebSocket message, in bytes.",
    )
    max_tasks_per_request: int = _setting(
        100_000,
        "CREW_MAX_TASKS_PER_REQUEST",
        check=positive,
        doc="Most tasks one request creates.",
    )
    max_parents_per_task: int = _setting(
        10_000, "CREW_MAX_PARENTS_PER_TASK", check=positive, doc="Most parents of one task."
    )
    max_children_per_release: int = _setting(
        10_000,
        "CREW_MAX_CHILDREN_PER_RELEASE",
        check=between(1, 100_000),  # the protocol's own ceiling (protocol.MAX_CHILDREN)
        doc="Most children one release creates (413 above; at most 100000).",
    )
    commit_timeout: float = _setting(
        10.0,
        "CREW_COMMIT_TIMEOUT",
        check=positive,
        doc="Seconds a store commit may take before the server stops (exit 70).",
    )
    shutdown_timeout: float = _setting(
        20.0,
        "CREW_SHUTDOWN_TIMEOUT",
        check=positive,
        doc="Seconds in-flight requests get to finish after SIGTERM.",
    )
    operator_concurrency: int = _setting(
        16,
        "CREW_OPERATOR_CONCURRENCY",
        check=between(1, 10_000),
        doc="Requests one operator has in flight at once (Crew has no limit).",
    )
    operator_hosts: str = _setting(
        "*",
        "CREW_OPERATOR_HOSTS",
        check=host_list,
        doc="Hosts operators may POST tasks to: * (any) or a comma-separated list. An "
        "operator's URL is chosen by an admin; redirects are never followed.",
    )
    virtual_operator_base_url: str | None = _setting(
        None,
        "CREW_VIRTUAL_OPERATOR_BASE_URL",
        check=base_url,
        doc="Crew's virtual operators: every channel's tasks are POSTed to this URL + the "
        "channel's name (e.g. http://workers:8080/execute/).",
    )
    virtual_operator_auth_token: str | None = _setting(
        None,
        "CREW_VIRTUAL_OPERATOR_AUTH_TOKEN",
        secret=True,
        doc="Bearer token virtual operators send to the workers.",
    )
    cors_origins: str = _setting(
        "*",
        "CREW_CORS_ORIGINS",
        check=cors_origins,
        doc="Browser origins allowed to call the API (CORS): * (any, as Crew), none, or a "
        "comma-separated list such as https://ui.example.com,http://localhost:8080.",
    )
    ws_heartbeat: float = _setting(
        15.0,
        "CREW_WS_HEARTBEAT",
        check=positive,
        doc="Seconds between WebSocket pings; a peer silent for one interval is dropped.",
    )
    head_timeout: float = _setting(
        10.0,
        "CREW_HEAD_TIMEOUT",
        check=positive,
        doc="Seconds a new connection gets to send its first request head (slowloris).",
    )
    body_timeout: float = _setting(
        30.0,
        "CREW_BODY_TIMEOUT",
        check=positive,
        doc="Seconds a request body may take to arrive (408 after).",
    )
    idle_timeout: float = _setting(
        60.0,
        "CREW_IDLE_TIMEOUT",
        check=positive,
        doc="Seconds a kept-alive HTTP connection may sit idle (or half-send a head).",
    )
    log_level: str = _setting(
        "info", "CREW_LOG_LEVEL", check=known_level, parse=parse_level, doc="Log level."
    )
    log_json: bool = _setting(False, "CREW_LOG_JSON", doc="Log JSON lines instead of plain text.")

    @property
    def db_path(self) -> Path:
        return self.data_dir / "crew.sqlite"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The configured tokens, for log redaction."""
        return tuple(t for t in (self.api_token, self.worker_token) if t)

    def redacted(self) -> dict[str, object]:
        """Every field, tokens replaced by ``"<set>"``: safe to log."""
        out: dict[str, object] = {}
        for spec in SPECS:
            value = getattr(self, spec.name)
            out[spec.name] = "<set>" if spec.secret and value is not None else value
        return out

    def validate(self, sources: Mapping[str, str] | None = None) -> None:
        """Raise :class:`ConfigError` for the first bad field.

        ``sources`` maps field names to where the value came from (``--port``, ``CREW_PORT``);
        the message names that source, or the field when it is not given.
        """
        label = dict(sources or {})
        for spec in SPECS:
            value = getattr(self, spec.name)
            reason = spec.check(value) if spec.check else None
            if reason:
                raise spec.error(label.get(spec.name, spec.name), value, reason)
        if self.lease_seconds > self.max_lease_seconds:
            spec = SPEC_BY_NAME["lease_seconds"]
            source = label.get(spec.name, spec.name)
            reason = f"must not exceed max_lease_seconds ({self.max_lease_seconds:g})"
            raise spec.error(source, self.lease_seconds, reason)
        if not (self.insecure or self.api_token or is_loopback(self.host)):
            raise ConfigError(
                f"refusing to listen on {self.host} without CREW_API_TOKEN; "
                "pass --insecure to override",
                name="host",
            )


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of the table, as the CLI and the loader see it."""

    name: str
    default: object
    env: tuple[str, ...]
    doc: str
    kind: object  # the annotation: str, int, float, bool, Path or str | None
    parse: Parser
    check: Check | None
    secret: bool

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def is_flag(self) -> bool:
        return self.kind is bool

    def error(self, source: str, value: object, reason: str) -> ConfigError:
        shown = "<redacted>" if self.secret else repr(value) if isinstance(value, str) else value
        return ConfigError(f"{source}={shown}: {reason}", name=self.name)


def _specs() -> tuple[Spec, ...]:
    hints = get_type_hints(Settings)
    rows = []
    for f in dataclasses.fields(Settings):
        kind, meta = hints[f.name], dict(f.metadata)
        parse = meta.pop("parse") or PARSERS[kind]
        rows.append(Spec(name=f.name, default=f.default, kind=kind, parse=parse, **meta))
    return tuple(rows)


SPECS: Final = _specs()
SPEC_BY_NAME: Final = {spec.name: spec for spec in SPECS}


# -- loading ----------------------------------------------------------------------------------


def _lookup(
    spec: Spec, cli: Mapping[str, object], environ: Mapping[str, str]
) -> tuple[str, object] | None:
    """Where this field's value comes from, and the raw value; ``None`` for the default."""
    if cli.get(spec.name) is not None:
        return spec.flag, cli[spec.name]
    for name in spec.env:
        if environ.get(name):
            return name, environ[name]
    return None


def load_settings(cli: Mapping[str, object], environ: Mapping[str, str]) -> Settings:
    """Build and validate Settings from explicitly given CLI values and an environment.

    ``cli`` holds only the flags the user gave, keyed by field name (``None`` means not given);
    values may be strings (parsed like environment values) or already of the field's type.
    """
    unknown = sorted(set(cli) - SPEC_BY_NAME.keys())
    if unknown:
        raise ConfigError(f"unknown setting(s): {', '.join(unknown)}")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for spec in SPECS:
        found = _lookup(spec, cli, environ)
        if found is None:
            continue
        source, raw = found
        try:
            values[spec.name] = spec.parse(raw)
        except ValueError as exc:
            raise spec.error(source, raw, str(exc)) from None
        sources[spec.name] = source
    settings = Settings(**values)
    settings.validate(sources)
    return settings


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP literals; any other name counts as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def journal_stream(environ: Mapping[str, str]) -> str | None:
    """``JOURNAL_STREAM`` (``device:inode`` of stderr when systemd connects it to journald)."""
    return environ.get("JOURNAL_STREAM") or None
