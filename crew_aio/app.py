"""Wiring: ``create_app`` builds the aiohttp application; ``run_server`` runs it until SIGTERM."""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import signal
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from crew_aio import keys
from crew_aio.clock import Clock, SystemClock
from crew_aio.commit import Store
from crew_aio.config import ExitCode, Settings
from crew_aio.connections import Reaper, raise_file_limit
from crew_aio.cors import Cors
from crew_aio.engine import Engine
from crew_aio.http_api import CLEAN, HEALTH, SERVICE
from crew_aio.loopmon import LOOP_MONITOR, LoopMonitor
from crew_aio.middleware import auth_middleware, error_middleware
from crew_aio.operators import OperatorRunner
from crew_aio.routes import WS_PATH, setup_routes
from crew_aio.service import Limits, Service
from crew_aio.sio import SIO, SocketIO
from crew_aio.store import SqliteStore, StoreCorrupt, StoreLocked, StoreUnusable
from crew_aio.timers import Timers
from crew_aio.wire import BODY_TIMEOUT
from crew_aio.ws_hub import HUB, Hub, ws_handler

__all__ = ["STORE", "TIMERS", "create_app", "run_server"]

log = logging.getLogger("crew_aio.app")


STORE = web.AppKey("store", Store)
TIMERS = web.AppKey("timers", Timers)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        lease_seconds=settings.lease_seconds,
        max_lease_seconds=settings.max_lease_seconds,
        max_wait_seconds=settings.max_wait_seconds,
        max_tasks_per_request=settings.max_tasks_per_request,
        max_parents_per_task=settings.max_parents_per_task,
        max_children_per_release=settings.max_children_per_release,
    )


def create_app(
    settings: Settings, *, store: Store | None = None, clock: Clock | None = None
) -> web.Application:
    """The application; the store is opened (unless given) and loaded at startup."""
    reaper = Reaper(settings.head_timeout)
    cors = Cors(settings.cors_origins)
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            reaper.middleware,
            *cors.middlewares(),  # a preflight is answered before auth (it carries no token)
            error_middleware,
            auth_middleware(settings.api_token, settings.worker_token),
        ],
    )
    app[REAPER], app[BODY_TIMEOUT] = reaper, settings.body_timeout
    cors.install(app)
    sio = app[SIO] = SocketIO(admin_token=settings.api_token)
    sio.attach(app)
    setup_routes(app)
    app.router.add_get(WS_PATH, ws_handler)
    age = settings.expired_group_interval_days * 86400
    app[CLEAN] = (settings.clean_expired_groups, age, settings.clean_batch_size)
    app.cleanup_ctx.append(_lifecycle(settings, store, clock or SystemClock()))
    app.cleanup_ctx.append(_loop_monitor)  # after the load at boot: it measures serving
    return app


REAPER = web.AppKey("reaper", Reaper)


async def _loop_monitor(app: web.Application) -> AsyncIterator[None]:
    """Event-loop lag for ``GET /healthz`` and a WARNING on each stall (crew_aio.loopmon)."""
    monitor = app[LOOP_MONITOR] = LoopMonitor()
    monitor.start()
    yield
    await monitor.stop()


def _lifecycle(
    settings: Settings, given: Store | None, clock: Clock
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        if given is None:
            opened = await loop.run_in_executor(
                None,
                lambda: SqliteStore.open(
                    settings.db_path,
                    commit_timeout=settings.commit_timeout,
                    check_while_loading=True,  # start() refuses a corrupt file: before a write
                ),
            )
            store: Store = opened
        else:
            store = given
        engine = await load_engine(store)
        if isinstance(clock, SystemClock):
            clock.keep_after(engine.clock_mark)  # a host clock stepped back while we were down
        await store.start()
        service = Service(
            engine, store, clock, limits_of(settings), reload=lambda: load_engine(store)
        )
        expire = (
            settings.expired_group_interval_days * 86400 if settings.clean_expired_groups else None
        )
        timers = Timers(service, clock, expire)
        app[STORE], app[SERVICE], app[TIMERS] = store, service, timers
        app[HEALTH] = service.healthy
        hub = app[HUB] = Hub(
            service, heartbeat=settings.ws_heartbeat, max_msg_size=settings.max_body_bytes
        )
        # what hears of each change as it is staged: the timers (an earlier deadline wakes
        # them), the hub (frees capacity, queues subscribers; the service then runs the
        # dispatcher, and the hub publishes to watchers)
        sio = app[SIO]
        operators = OperatorRunner(
            concurrency=settings.operator_concurrency,
            default_timeout=settings.lease_seconds,  # Crew's request timeout
            hosts=settings.operator_hosts,
            virtual_base_url=settings.virtual_operator_base_url,
            virtual_token=settings.virtual_operator_auth_token,
        )
        service.listeners += [timers.on_change, hub.on_change, sio.on_change, operators.on_change]
        service.on_reset += [hub.reset, sio.reset]  # a failed commit: sockets close (1013)
        sio.start(service)
        operators.start(service)
        timer_task = asyncio.create_task(timers.run(), name="crew_aio.timers")
        yield
        if service.rebuilding is not None:
            service.rebuilding.cancel()
        await hub.close_all()
        await sio.close()
        await operators.close()
        timer_task.cancel()
        await asyncio.gather(timer_task, return_exceptions=True)
        await store.close()

    return ctx


async def load_engine(store: Store) -> Engine:
    """Rebuild the engine from the store in a thread (the loop serves nothing yet)."""
    loop = asyncio.get_running_loop()
    engine = Engine()
    started = loop.time()
    gc.disable()  # a million new long-lived objects: collecting while loading only costs time
    try:
        # task records come in chunks as stored: msgspec decodes them straight into Tasks
        records = lambda: keys.load_into(  # noqa: E731
            engine, store.load(raw=keys.RAW), store.chunks(keys.RAW)
        )
        skipped = await loop.run_in_executor(None, records)
    finally:
        gc.freeze()  # keep the resident graph out of every later GC pass
        gc.enable()
    for key in skipped:
        log.warning("skipped unreadable record", extra={"event": "store.skipped", "key": key})
    seconds = round(loop.time() - started, 3)
    extra = {"event": "store.loaded", "tasks": len(engine.tasks), "seconds": seconds}
    log.info("loaded", extra=extra)
    return engine


async def serve(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Serve until ``stop`` is set (or SIGTERM/SIGINT); then drain, commit and return."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    app = create_app(settings)
    # handler_cancellation: a long poll whose client went away stops waiting (and hands back a
    # lease it was granted) instead of leasing a task to nobody
    # keepalive_timeout: a kept-alive connection idle (or half-sending a head) that long closes
    runner = web.AppRunner(
        app,
        shutdown_timeout=settings.shutdown_timeout,
        access_log=None,
        handler_cancellation=True,
        keepalive_timeout=settings.idle_timeout,
        # after an answer sent before its body was read (a 408, a 413), the rest of the body is
        # drained for at most this long, then the connection closes (aiohttp's default: 10 s)
        lingering_time=1.0,
    )
    raise_file_limit()  # each client is a socket: the soft limit (often 1,024) is raised
    # a full collection walks every tracked object (a task's lists and dicts): with hundreds of
    # thousands resident it stalls the loop ~100 ms; run it 10x less often than the default
    gc.set_threshold(10_000, 10, 100)
    await runner.setup()
    assert runner.server is not None
    reaping = asyncio.create_task(app[REAPER].run(runner.server), name="crew_aio.reaper")
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        for host, port in [a[:2] for a in runner.addresses]:
            log.info(f"crew-aio listening on http://{host}:{port}",
                     extra={"event": "http.listening", "host": host, "port": port})  # fmt: skip
        await stop.wait()
        log.info("stopping", extra={"event": "http.stopping"})
        app[SERVICE].drain()
        # WebSockets first: aiohttp would otherwise wait its whole shutdown timeout for them
        await app[HUB].close_all()
    finally:
        reaping.cancel()
        await runner.cleanup()
    log.info("stopped", extra={"event": "http.stopped"})


def _loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop where installed (a dependency on POSIX): ~4x faster WebSocket round trips."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run
    return uvloop.run


def run_server(settings: Settings) -> int:
    """Run the server in this process until SIGTERM/SIGINT; returns the exit code. A mistake
    at start-up (a taken port, an unknown host, an unusable data directory) is one log line
    and an exit code of its own, never a traceback."""
    try:
        _loop_runner()(serve(settings))
    except StoreLocked as exc:
        return _fatal(exc, "store.locked", ExitCode.STORE_LOCKED)
    except StoreCorrupt as exc:
        return _fatal(exc, "store.corrupt", ExitCode.STORE_CORRUPT)
    except StoreUnusable as exc:
        return _fatal(exc, "store.unusable", ExitCode.DATA_DIR)
    except OSError as exc:
        code, what = _listen_error(exc)
        where = f"{settings.host}:{settings.port}"
        return _fatal(f"cannot listen on {where}: {what}", "http.listen_failed", code)
    return ExitCode.OK


def _fatal(message: object, event: str, code: ExitCode) -> int:
    log.error(str(message), extra={"event": event, "exit_code": int(code)})
    return code


def _listen_error(exc: OSError) -> tuple[ExitCode, str]:
    """An error of binding the listening socket → its exit code and a few words."""
    if isinstance(exc, socket.gaierror):
        return ExitCode.BAD_HOST, f"unknown host ({exc.strerror})"
    if exc.errno == errno.EADDRNOTAVAIL:
        return ExitCode.BAD_HOST, "the address is not one of this machine's"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return ExitCode.NO_PERMISSION, "permission denied (ports below 1024 need privileges)"
    if exc.errno == errno.EADDRINUSE:
        return ExitCode.CANNOT_LISTEN, "the port is in use"
    return ExitCode.CANNOT_LISTEN, exc.strerror or str(exc)
