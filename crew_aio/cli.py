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

__all__ = ["bench", "main", "serve", "worker"]

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


def _csv(choices: tuple[str, ...]) -> Callable[[click.Context, click.Parameter, str], list[str]]:
    def parse(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
        items = [v.strip() for v in value.split(",") if v.strip()]
        wrong = [v for v in items if v not in choices]
        if wrong or not items:
            raise click.BadParameter(
                f"{','.join(wrong) or 'nothing'}: pick from {','.join(choices)}"
            )
        return items

    return parse


@main.command()
@click.option("--url", default=None, help="Measure this server instead of starting one "
              "(server CPU, RSS and restart are then not measured).")  # fmt: skip
@click.option("--token", envvar="CREW_TOKEN", default=None, metavar="TOKEN",
              help="Admin token of --url's server.")  # fmt: skip
@click.option("--workloads", default="w3,w2,w1,long,scale", show_default=True,
              callback=_csv(("w1", "w2", "w3", "long", "scale")),
              help="Which workloads to run.")  # fmt: skip
@click.option("--shapes", default="ws,ws64,poll,crew", show_default=True,
              callback=_csv(("ws", "ws64", "poll", "crew")),
              help="Worker shapes: ws (SDK defaults), ws64 (prefetch 64), poll (SDK --poll), "
              "crew (Crew's protocol).")  # fmt: skip
@click.option("--tasks", type=click.IntRange(1_000), default=20_000, show_default=True,
              help="W1: no-op tasks.")  # fmt: skip
@click.option("--procs", type=click.IntRange(1, 64), default=2, show_default=True,
              help="Worker processes.")  # fmt: skip
@click.option("--concurrency", type=click.IntRange(1, 1000), default=2, show_default=True,
              help="Concurrency of each worker process.")  # fmt: skip
@click.option("--pickups", type=click.IntRange(10), default=300, show_default=True,
              help="W3: tasks created one at a time.")  # fmt: skip
@click.option("--scale-tasks", type=click.IntRange(1_000), default=1_000_000, show_default=True,
              help="Scale: tasks resident beside W1.")  # fmt: skip
@click.option("--long-tasks", type=click.IntRange(1, 10_000), default=40, show_default=True,
              help="Long tasks: how many.")  # fmt: skip
@click.option("--long-ms", type=click.FloatRange(1, 60_000), default=50.0, show_default=True,
              help="Long tasks: milliseconds each.")  # fmt: skip
@click.option("--json", "json_out", type=click.File("wb"), default=None,
              help="Also write the figures as JSON to this file (- for stdout).")  # fmt: skip
@click.option("--progress/--no-progress", default=None,
              help="Show a progress bar (default: when stderr is a terminal).")  # fmt: skip
def bench(url: str | None, token: str | None, workloads: list[str], shapes: list[str],
          tasks: int, procs: int, concurrency: int, pickups: int, scale_tasks: int,
          long_tasks: int, long_ms: float, json_out: Any,
          progress: bool | None) -> None:  # fmt: skip
    """Measure this machine: W1 throughput, W2 DAG, W3 pickup, long tasks and the scale run.

    Starts a server on a temporary data dir (a fresh one per worker shape) unless --url is
    given, and real worker processes; prints a Markdown table.
    """
    import asyncio
    import sys

    import orjson

    from crew_aio.bench import Options, run_bench, steps_of, table

    options = Options(url=url, token=token, shapes=shapes, workloads=workloads, tasks=tasks,
                      procs=procs, concurrency=concurrency, pickups=pickups,
                      scale_tasks=scale_tasks, long_tasks=long_tasks, long_ms=long_ms,
                      env=os.environ)  # fmt: skip
    shown = sys.stderr.isatty() if progress is None else progress
    with click.progressbar(length=steps_of(options), label="crew-aio bench", file=sys.stderr,
                           show_pos=True, item_show_func=lambda s: s) as bar:  # fmt: skip

        def step(label: str) -> None:
            if shown:
                bar.update(1, label)
            else:
                click.echo(f"bench: {label}", err=True)

        result = asyncio.run(run_bench(options, step))
    click.echo(table(result))
    if json_out is not None:
        json_out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2) + b"\n")
