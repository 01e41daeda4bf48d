"""The floor under a REST request here: a bare aiohttp server, with the client shape of
``crew-aio bench``'s Crew-protocol workers.

    python -m benchmarks.aiohttp_floor [--requests 20000] [--procs 2] [--loops 2]

The server is aiohttp on uvloop (as ``crew-aio serve`` runs), with one route that reads a small
JSON body with orjson and answers a small JSON object: no middleware, no validation, no store.
``--procs`` client processes run ``--loops`` aiohttp loops each, one request at a time, as the
Crew-protocol workers do. Prints requests/s and the server's CPU per request (all threads,
from ``/proc``): what aiohttp itself costs on this machine, before any work of crew_aio's.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time

import aiohttp
import orjson
from aiohttp import web

from crew_aio.bench.procs import cpu_seconds

BODY = orjson.dumps({"workerId": "crew-0", "output": None})


def serve(port: int) -> None:
    import uvloop

    async def answer(request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        out = {"task": {"_id": "0" * 24, "input": None, "workerId": body.get("workerId")}}
        return web.Response(body=orjson.dumps(out), content_type="application/json")

    app = web.Application()
    app.router.add_post("/api/v1/channel/{channel}/acquire", answer)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                loop=uvloop.new_event_loop())  # fmt: skip


async def clients(port: int, loops: int, each: int) -> None:
    url = f"http://127.0.0.1:{port}/api/v1/channel/floor/acquire"
    headers = {"Content-Type": "application/json"}

    async def loop(session: aiohttp.ClientSession) -> None:
        for _ in range(each):
            async with session.post(url, data=BODY, headers=headers) as resp:
                await resp.read()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(loop(session) for _ in range(loops)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--role", choices=("server", "client"), help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.role == "server":
        serve(args.port)
        return
    each = args.requests // (args.procs * args.loops)
    if args.role == "client":
        asyncio.run(clients(args.port, args.loops, each))
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    me = [sys.executable, "-m", "benchmarks.aiohttp_floor", "--port", str(port)]
    server = subprocess.Popen([*me, "--role", "server"])
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        cpu0, began = cpu_seconds(server.pid), time.perf_counter()
        procs = [subprocess.Popen([*me, "--role", "client", "--loops", str(args.loops),
                                   "--requests", str(args.requests), "--procs", str(args.procs)])
                 for _ in range(args.procs)]  # fmt: skip
        for proc in procs:
            proc.wait(300)
        elapsed, cpu = time.perf_counter() - began, cpu_seconds(server.pid) - cpu0
        n = each * args.procs * args.loops
        print(f"bare aiohttp + uvloop, {args.procs} client processes x {args.loops} loops: "
              f"{n:,} requests in {elapsed:.2f} s = {n / elapsed:,.0f} requests/s; server CPU "
              f"{cpu / n * 1e6:.0f} us per request")  # fmt: skip
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
