"""The ``crew-aio`` command line: ``crew-aio serve`` now, client commands later.

Every ``serve`` option is generated from :data:`crew_aio.config.SPECS`, so a new setting gets
its flag, its environment names and its default in ``--help`` without touching this module.
Options take strings and ``config.load_settings`` parses them, so a bad flag and a bad variable
fail the same way: one line on stderr and exit :attr:`ExitCode.CONFIG` (78).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, TypeVar

import click
from click.core import ParameterSource

from crew_aio import log
from crew_aio.config import (
    SPECS,
    ConfigError,
    ExitCode,
    Settings,
    Spec,
    journal_stream,
    load_settings,
)

__all__ = ["main", "serve", "worker"]

F = TypeVar("F", bound=Callable[..., Any])
PROG: Final = "crew-aio"
_METAVARS: Final[dict[object, str]] = {int: "INTEGER", float: "NUMBER", Path: "DIR"}


def version() -> str:
    """The installed distribution's version, or pyproject's when run from a checkout."""
    try:
        return importlib.metadata.version(PROG)
    except importlib.metadata.PackageNotFoundError:
        pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text("utf-8"))["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _shown_default(spec: Spec) -> str:
    if spec.is_flag:
        return "yes" if spec.default else "no"
    if isinstance(spec.default, float):
        return f"{spec.default:g}"
    return "none" if spec.default is None else str(spec.default)


def _help(spec: Spec) -> str:
    default = _shown_default(spec)
    return f"{spec.doc} [env: {', '.join(spec.env)}; default: {default}]"


def _option(spec: Spec) -> Callable[[F], F]:
    """One ``serve`` option. It has no click default: only flags given end up in ``cli``."""
    if spec.is_flag:
        switch = spec.flag.removeprefix("--")
        decls = [f"{spec.flag}/--no-{switch}", spec.name]
        return click.option(*decls, default=None, help=_help(spec))
    metavar = "TOKEN" if spec.secret else _METAVARS.get(spec.kind, "TEXT")
    return click.option(spec.flag, spec.name, metavar=metavar, default=None, help=_help(spec))


def settings_options(command: F) -> F:
    """Apply one option per Settings field, in table order."""
    for spec in reversed(SPECS):
        command = _option(spec)(command)
    return command


def given_flags(ctx: click.Context, values: dict[str, object]) -> dict[str, object]:
    """The options typed on the command line (not click defaults)."""
    return {
        name: value
        for name, value in values.items()
        if ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    }


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(version(), "-V", "--version", prog_name=PROG)
def main() -> None:
    """crew-aio: a durable DAG task server, wire-compatible with Crew v1."""


def _run_server() -> Callable[[Settings], int]:
    """``crew_aio.app.run_server``, imported only when serving: the CLI imports without it."""
    run_server: Callable[[Settings], int] = importlib.import_module("crew_aio.app").run_server
    return run_server


def _load(cli_values: dict[str, object]) -> Settings:
    try:
        return load_settings(cli_values, os.environ)
    except ConfigError as exc:
        click.echo(f"{PROG}: configuration error: {exc}", err=True)
        raise click.exceptions.Exit(ExitCode.CONFIG) from None


@main.command()
@settings_options
@click.pass_context
def serve(ctx: click.Context, /, **values: object) -> None:
    """Run the server until SIGTERM or SIGINT.

    Every option also reads its CREW_* environment variable (Crew's own names are accepted
    too); a flag given here wins over the environment. Pass tokens through the environment:
    command lines are visible to every user in `ps`.
    """
    settings = _load(given_flags(ctx, values))
    log.configure(
        settings.log_level,
        settings.log_json,
        journal_stream=journal_stream(os.environ),
        secrets=settings.secrets,
    )
    log.get_logger("cli").debug(
        "settings loaded", extra={"event": "cli.settings", **settings.redacted()}
    )
    ctx.exit(int(_run_server()(settings)))


def _load_worker(target: str) -> object:
    """``module:Class`` (or ``module:instance``) → a worker instance."""
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise click.BadParameter(f"{target!r} is not MODULE:CLASS", param_hint="WORKERS")
    try:
        found = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise click.BadParameter(f"cannot load {target!r}: {exc}", param_hint="WORKERS") from exc
    return found() if isinstance(found, type) else found


@main.command()
@click.argument("workers", nargs=-1, required=True, metavar="MODULE:CLASS...")
@click.option(
    "--url",
    envvar=["CREW_URL", "CREW_API_BASE_URL"],
    show_envvar=True,
    default="http://127.0.0.1:3000",
    show_default=True,
    help="The server's address.",
)
@click.option(
    "--token",
    envvar="CREW_TOKEN",
    show_envvar=True,
    metavar="TOKEN",
    default=None,
    help="Worker or API token (prefer the environment: argv shows in `ps`).",
)
@click.option("--poll", is_flag=True, help="Long-poll REST only (no WebSocket push).")
@click.option(
    "--shutdown-timeout",
    type=float,
    default=30.0,
    show_default=True,
    help="Seconds running tasks get to finish after SIGTERM/SIGINT.",
)
@click.option("--log-level", default="info", show_default=True, help="debug, info, warning...")
@click.option(
    "--app-dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Directory put first on sys.path to import MODULE from.",
)
def worker(workers: tuple[str, ...], url: str, token: str | None, poll: bool,
           shutdown_timeout: float, log_level: str, app_dir: str) -> None:  # fmt: skip
    """Run Python workers (Worker subclasses named MODULE:CLASS) until SIGTERM or SIGINT.

    Tasks are pushed over the WebSocket by default (long-poll while it is down); --poll uses
    long-poll REST only. A second SIGTERM/SIGINT cancels the tasks still running.
    """
    import sys

    sys.path.insert(0, str(Path(app_dir).resolve()))
    loaded = [_load_worker(target) for target in workers]
    log.configure(log_level, False, journal_stream=journal_stream(os.environ),
                  secrets=(token,) if token else ())  # fmt: skip
    sdk = importlib.import_module("crew_aio.worker")
    sdk.run(
        sdk.run_workers(loaded, url=url, token=token, poll=poll, shutdown_timeout=shutdown_timeout)
    )
