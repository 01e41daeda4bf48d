"""What idle WebSocket subscribers cost the server: its CPU and event-loop lag while many
sockets, each subscribed to many channels, wait with nothing to do::

    python -m benchmarks.idle [--sockets 200] [--channels 1000] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp

from benchmarks._server import ServerProcess
from crew_aio.bench.procs import cpu_seconds


async def main(sockets: int, channels: int, seconds: float) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = ServerProcess(Path(tmp) / "data")
        url = server.start()
        assert server.proc is not None
        names = [f"ch{i}" for i in range(channels)]
        connector = aiohttp.TCPConnector(limit=0)  # one connection per socket, no pool cap
        async with aiohttp.ClientSession(connector=connector) as session:
            peers = []
            for n in range(sockets):
                ws = await session.ws_connect(f"{url}/api/v1/ws")
                await ws.send_json({"type": "subscribe", "workerId": f"w{n}", "channels": names})
                await ws.receive_json(timeout=30)
                peers.append(ws)
            await asyncio.sleep(1.5)  # past the first re-offer round
            cpu0, t0 = cpu_seconds(server.proc.pid), time.monotonic()
            await asyncio.sleep(seconds)
            cpu1, t1 = cpu_seconds(server.proc.pid), time.monotonic()
            async with session.get(f"{url}/healthz") as resp:
                lag = (await resp.json())["loopLag"]
            for ws in peers:
                await ws.close()
        server.terminate()
    share = 100 * (cpu1 - cpu0) / (t1 - t0)
    print(f"{sockets} idle sockets x {channels} channels: server CPU {share:.1f} % of a core, "
          f"event-loop lag p99 {lag['p99Ms']} ms, max {lag['maxMs']} ms")  # fmt: skip


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sockets", type=int, default=200)
    ap.add_argument("--channels", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    asyncio.run(main(args.sockets, args.channels, args.seconds))
