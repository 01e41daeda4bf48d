"""``python -m examples.campaign``: the reference story, end to end, in one command.

A campaign, then its ad sets (continuations of the campaign), then their ads (continuations of
each ad set), then one QA task that joins on every ad, then a notification, against a simulated
Marketing API that fails at random and rate-limits each access token. Each token is a
workgroup: a ``429`` cools off that token's tasks while the other tokens go on.

It starts the crew_aio server (a subprocess on a free port), the simulated API (in process),
the Python workers (campaign, ad set, join, QA; in process) and the JavaScript workers (ad,
notify; ``node examples/js/workers.mjs``), submits the campaign, shows a live progress line and
exits 0 once notify completed. It stops everything it started on exit, Ctrl-C included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO

import aiohttp

from crew_aio.client import Client, is_group_done
from crew_aio.worker import run_workers
from examples.campaign_workers import (
    RETRY,
    CreateAdSet,
    CreateCampaign,
    JoinAds,
    MarketingClient,
    QualityCheck,
)
from examples.marketing_api import MarketingApi

__all__ = ["main", "make_plan", "parse_args"]

Json = dict[str, Any]
HERE: Final = Path(__file__).resolve().parent
JS_WORKERS: Final = HERE / "js" / "workers.mjs"
JS_DEPENDENCY: Final = HERE.parent / "clients" / "js" / "node_modules" / "ws"
LISTENING: Final = re.compile(r"crew-aio listening on (http://\S+)")
POLL: Final = 0.2


class Failed(Exception):
    """The run cannot succeed; the message says why (exit 1)."""


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m examples.campaign", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--adsets", type=int, default=5, help="ad sets in the campaign (5)")
    p.add_argument("--ads", type=int, default=4, help="ads per ad set (4)")
    p.add_argument("--tokens", type=int, default=3, help="access tokens = workgroups (3)")
    p.add_argument("--seed", type=int, default=1, help="seed of the API's failures (1)")
    p.add_argument("--rate", type=int, default=4, help="API calls per second per token (4)")
    p.add_argument("--failure-rate", type=float, default=0.1, help="transient API errors (0.1)")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds before giving up (120)")
    p.add_argument("--data-dir", type=Path, help="crew_aio data directory (default: temporary)")
    args = p.parse_args(argv)
    if min(args.adsets, args.ads, args.tokens, args.rate) < 1:
        p.error("--adsets, --ads, --tokens and --rate must be at least 1")
    return args


def make_plan(adsets: int, ads: int, tokens: int) -> Json:
    """The campaign task's input: ad sets spread over the tokens, each with its ads."""
    names = [f"token-{k}" for k in range(tokens)]
    return {
        "name": "black-friday",
        "token": names[0],
        "adsets": [
            {
                "name": f"bf-{i}",
                "token": names[i % tokens],
                "ads": [f"bf-{i}-{j}" for j in range(ads)],
            }
            for i in range(adsets)
        ],
    }


# child processes ---------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log: Path

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


async def spawn(name: str, cmd: Sequence[str], log: Path, env: dict[str, str]) -> Child:
    """Start ``cmd`` in its own session (a terminal's Ctrl-C reaches only us: we stop it in
    order), its stdout and stderr going to ``log``."""
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True,
        )  # fmt: skip
    return Child(name, proc, log)


async def stop_child(child: Child, grace: float = 15.0) -> None:
    """SIGTERM (a graceful stop), then SIGKILL after ``grace`` s."""
    if child.proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            child.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(child.proc.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                child.proc.kill()
            await child.proc.wait()


async def start_server(data_dir: Path, log: Path, env: dict[str, str]) -> tuple[Child, str]:
    cmd = [sys.executable, "-m", "crew_aio", "serve", "--port", "0", "--data-dir", str(data_dir)]
    server = await spawn("crew-aio server", cmd, log, env)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and server.proc.returncode is None:
        url = listening_url(log)
        if url:
            return server, url
        await asyncio.sleep(0.05)
    await stop_child(server, 5)
    raise Failed(f"the crew_aio server did not start:\n{server.tail()}")


def listening_url(log: Path) -> str | None:
    found = LISTENING.search(log.read_text(errors="replace"))
    return found.group(1) if found else None


def child_env() -> dict[str, str]:
    """Our environment without ``CREW_*`` settings: the run owns its server and its URL."""
    return {k: v for k, v in os.environ.items() if not k.startswith("CREW_")}


def preflight() -> None:
    if shutil.which("node") is None:
        raise Failed("node (>= 20) is not on PATH: the ad and notify workers are JavaScript")
    if not JS_DEPENDENCY.exists():
        raise Failed("the JavaScript SDK's dependencies are missing: (cd clients/js && npm ci)")


# workers -----------------------------------------------------------------------------------


def log_to(path: Path) -> None:
    """The in-process SDK's per-task lines go to a file, not over the progress line."""
    logger = logging.getLogger("crew_aio")
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False


@contextlib.asynccontextmanager
async def python_workers(crew_url: str, api_url: str) -> AsyncIterator[asyncio.Task[None]]:
    """Run the Python stages in this process until the block ends, then stop them."""
    stop = asyncio.Event()
    async with aiohttp.ClientSession() as session, Client(crew_url) as crew:
        api = MarketingClient(session, api_url)
        workers = [CreateCampaign(api), CreateAdSet(api), JoinAds(crew), QualityCheck(api)]
        running = asyncio.create_task(
            run_workers(workers, url=crew_url, stop=stop, handle_signals=False,
                        shutdown_timeout=5.0)
        )  # fmt: skip
        try:
            yield running
        finally:
            stop.set()
            await asyncio.gather(running, return_exceptions=True)


# the run -----------------------------------------------------------------------------------


class Progress:
    """One terminal line, rewritten with ``\\r``: elapsed time, progress, counts per status."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.width = 0
        self.last = ""
        self.tty = out.isatty()

    def show(self, group: Json, elapsed: float) -> None:
        """Rewrite the line; not on a terminal, only when the counts changed (a log stays short)."""
        counts = group.get("counts") or {}
        statuses = " ".join(f"{status}={n}" for status, n in counts.items() if n)
        state = f"{float(group.get('progress') or 0) * 100:5.1f}% | {statuses}"
        if state == self.last and not self.tty:
            return
        self.last = state
        line = f"{elapsed:5.1f}s {state}"
        self.out.write("\r" + line.ljust(self.width))
        self.out.flush()
        self.width = len(line)

    def end(self) -> None:
        if self.width:
            self.out.write("\n")
            self.out.flush()
            self.width = 0


def check_alive(workers: asyncio.Task[None], js: Child) -> None:
    if workers.done():
        error = None if workers.cancelled() else workers.exception()
        raise Failed(f"the Python workers stopped: {error!r}")
    if js.proc.returncode is not None:
        raise Failed(f"the JavaScript workers exited ({js.proc.returncode}):\n{js.tail()}")


async def watch(crew: Client, group_id: str, limit: float, alive: Callable[[], None]) -> None:
    """Show progress until nothing in the group can run any more."""
    progress = Progress(sys.stdout)
    started = time.monotonic()
    try:
        while True:
            group = await crew.get_group(group_id)
            elapsed = time.monotonic() - started
            progress.show(group, elapsed)
            if is_group_done(group.get("counts") or {}):
                return
            alive()
            if elapsed > limit:
                raise Failed(f"timed out after {limit:g} s: {group.get('counts')}")
            await asyncio.sleep(POLL)
    finally:
        progress.end()


def report(tasks: list[Json], api: MarketingApi, seconds: float) -> None:
    """Print the outcome and the summary line; :class:`Failed` unless notify completed."""
    errors = [e for t in tasks for e in t.get("errors") or [] if isinstance(e, dict)]
    limited = sum(1 for e in errors if e.get("type") == "RateLimited")
    per_token = " ".join(f"{token}={n}" for token, n in sorted(api.limited.items()))
    s = api.stats
    print(f"api: calls={s['calls']} ok={s['ok']} transient_errors={s['failed']} "
          f"rate_limited={s['rate_limited']} ({per_token or 'none'})")  # fmt: skip
    for task in tasks:
        if task["status"] == "failed":
            print(f"failed: {task['name']}: {(task.get('errors') or ['?'])[-1]}")
    notify = next((t for t in tasks if t["channel"] == "notify"), None)
    if notify is None or notify["status"] != "completed":
        state = "was never created" if notify is None else f"is {notify['status']}"
        raise Failed(f"notify {state}")
    print(f"notify completed: {notify['output']['message']}")
    print(f"done: tasks={len(tasks)} retries={len(errors) - limited} rate_limited={limited} "
          f"seconds={seconds:.2f}")  # fmt: skip


async def campaign(args: argparse.Namespace, run_dir: Path) -> None:
    preflight()
    env = child_env()
    log_to(run_dir / "python-workers.log")
    async with contextlib.AsyncExitStack() as stack:
        data_dir = args.data_dir or run_dir / "data"
        server, crew_url = await start_server(data_dir, run_dir / "server.log", env)
        stack.push_async_callback(stop_child, server)
        api = MarketingApi(args.seed, failure_rate=args.failure_rate, rate=args.rate)
        api_url = await api.start()
        stack.push_async_callback(api.stop)
        workers = await stack.enter_async_context(python_workers(crew_url, api_url))
        js_env = {**env, "CREW_URL": crew_url, "MARKETING_API_URL": api_url}
        js = await spawn(
            "JS workers", ["node", str(JS_WORKERS)], run_dir / "js-workers.log", js_env
        )
        stack.push_async_callback(stop_child, js)
        crew = await stack.enter_async_context(Client(crew_url))
        print(f"crew_aio {crew_url} · Marketing API {api_url} · {args.adsets} ad sets x "
              f"{args.ads} ads on {args.tokens} tokens, {args.rate} calls/s per token, "
              f"{args.failure_rate:.0%} failures, seed {args.seed}")  # fmt: skip
        group = await crew.create_group("campaign black-friday")
        plan = make_plan(args.adsets, args.ads, args.tokens)
        started = time.monotonic()
        await crew.add_tasks(group["_id"], {
            **RETRY, "name": "campaign black-friday", "channel": "create_campaign",
            "workgroup": plan["token"], "input": plan,
        })  # fmt: skip
        await watch(crew, group["_id"], args.timeout, lambda: check_alive(workers, js))
        seconds = time.monotonic() - started
        report(await crew.list_tasks(group["_id"]), api, seconds)


async def run(args: argparse.Namespace) -> int:
    """The exit status: 0 notify completed, 1 failed or timed out, 130 interrupted."""
    loop = asyncio.get_running_loop()
    me = asyncio.current_task()
    interrupted: list[int] = []

    def on_signal(sig: signal.Signals) -> None:
        if not interrupted and me is not None:
            interrupted.append(sig)
            me.cancel()  # unwinds campaign(): every process it started is stopped

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    run_dir = Path(tempfile.mkdtemp(prefix="crew-campaign-"))
    status = 1
    try:
        await campaign(args, run_dir)
        status = 0
    except Failed as exc:
        print(f"error: {exc}", file=sys.stderr)
    except asyncio.CancelledError:
        if not interrupted:
            raise
        print(f"\ninterrupted ({signal.Signals(interrupted[0]).name}): stopped", file=sys.stderr)
        status = 130
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    if status == 0:
        shutil.rmtree(run_dir, ignore_errors=True)
    else:
        print(f"logs: {run_dir}", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
