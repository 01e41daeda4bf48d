"""crew_aio raced against BullMQ and Huey in one run, on this machine, same workloads and shape.

    python -m benchmarks.race [--tasks 20000] [--pickups 300] [--procs 2] [--concurrency 2]
                              [--scale] [--scale-tasks 1000000] [--json OUT] [--readme README.md]

Runs ``benchmarks.peers`` (BullMQ 6.7 and Huey 3.5 on a private Redis with AOF fsync every
second, and SqliteHuey) and ``crew-aio bench``'s workloads (crew_aio durable on every
acknowledgement: SQLite WAL, synchronous=FULL) back to back, then prints one table and each
target of the performance issue as a ratio of this run's figures, with PASS or MISS. A figure
is a ratio measured in one run: this machine drifts, so figures of different runs are not
compared. ``--readme`` rewrites the README's Sizing table (between its ``sizing`` markers)
from this run, with the machine it ran on.

Setup: ``pip install -e '.[race]'`` (huey, redis), Debian's ``redis-server``, and
``npm ci --prefix benchmarks/peers/bullmq`` (BullMQ).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from benchmarks.peers.harness import run_peers_async
from crew_aio.bench import Options, run_bench, table

Json = dict[str, Any]
START, END = "<!-- sizing:start -->", "<!-- sizing:end -->"

COLUMNS = (
    ("w1_rate", "W1: 20,000 no-op tasks, processed/s", "{:,.0f}"),
    ("w1_enqueue_rate", "W1: batch enqueue, tasks/s", "{:,.0f}"),
    ("w2_wall_s", "W2: 1,102-task DAG, wall s", "{:.3f}"),
    ("w2_join_lag_ms", "W2: join lag, ms", "{:.2f}"),
    ("w3_p50_ms", "W3: pickup p50, ms", "{:.2f}"),
    ("w3_p99_ms", "W3: pickup p99, ms", "{:.2f}"),
    ("cpu_ms_per_task", "server (broker) CPU per task, ms", "{:.3f}"),
    ("long_makespan_s", "long and short tasks in turn, s (lower bound below)", "{:.3f}"),
    ("long_ideal_s", "the same, lower bound s", "{:.3f}"),
)


def columns(peers: list[Json], crew: Json) -> list[tuple[str, Json]]:
    out = []
    for row in peers:
        out.append((row["name"], {**row, "cpu_ms_per_task": row.get("broker_cpu_ms_per_task")}))
    for row in crew["rows"]:
        figures = {**row, "cpu_ms_per_task": row.get("server_cpu_ms_per_task")}
        out.append((f"crew_aio: {row['label']}", figures))
    return out


def combined(peers: list[Json], crew: Json) -> str:
    cols = columns(peers, crew)
    lines = ["| workload | " + " | ".join(name for name, _ in cols) + " |"]
    lines.append("|---|" + "---|" * len(cols))
    for key, name, fmt in COLUMNS:
        cells = [fmt.format(f[key]) if f.get(key) is not None else "-" for _, f in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def targets(peers: list[Json], crew: Json) -> list[tuple[str, str, bool]]:
    """(target, this run's figure, met) for each target of the performance issue."""
    peer = {row["key"]: row for row in peers}
    shape = {row["shape"]: row for row in crew["rows"]}
    out: list[tuple[str, str, bool]] = []

    def ratio(name: str, a: float | None, b: float | None, ok: Any, unit: str = "x") -> None:
        if a is None or b is None or not b:
            out.append((name, "not measured", False))
            return
        r = a / b
        out.append((name, f"{r:.2f}{unit} ({a:,.3g} / {b:,.3g})", bool(ok(r))))

    bull, rhuey = peer.get("bullmq", {}), peer.get("redis-huey", {})
    ws, poll, crewp = shape.get("ws", {}), shape.get("poll", {}), shape.get("crew", {})
    ratio("1. W1, WebSocket with SDK defaults >= 1.25x BullMQ",
          ws.get("w1_rate"), bull.get("w1_rate"), lambda r: r >= 1.25)  # fmt: skip
    ratio("1. W2 wall, SDK defaults <= 0.75x BullMQ",
          ws.get("w2_wall_s"), bull.get("w2_wall_s"), lambda r: r <= 0.75)  # fmt: skip
    ratio("2. W1, Crew's REST protocol >= 0.75x RedisHuey",
          crewp.get("w1_rate"), rhuey.get("w1_rate"), lambda r: r >= 0.75)  # fmt: skip
    cpu = crewp.get("server_cpu_ms_per_task")
    per_request = None if cpu is None else cpu / 2 * 1000  # acquire + release
    out.append(("2. server CPU per REST request <= 80 us",
                "not measured" if per_request is None else f"{per_request:.0f} us",
                per_request is not None and per_request <= 80))  # fmt: skip
    ratio("3. W1, SDK --poll >= 1x RedisHuey",
          poll.get("w1_rate"), rhuey.get("w1_rate"), lambda r: r >= 1.0)  # fmt: skip
    for key, limit, name in (("w3_p50_ms", 1.0, "4. pickup p50 <= 1 ms"),
                             ("w3_p99_ms", 3.0, "4. pickup p99 <= 3 ms"),
                             ("w2_join_lag_ms", 1.0, "4. W2 join lag <= 1 ms")):  # fmt: skip
        value = ws.get(key)
        out.append((name, "not measured" if value is None else f"{value:.2f} ms",
                    value is not None and value <= limit))  # fmt: skip
    scale = crew.get("scale")
    if scale:
        ratio("5. W1 with 1M resident within 20 % of W1",
              scale.get("w1_rate"), ws.get("w1_rate"), lambda r: r >= 0.8)  # fmt: skip
        rss, restart = scale.get("rss_mib"), scale.get("restart_s")
        out.append(("5. RSS with 1M tasks <= 1 GiB", f"{rss:,} MiB" if rss else "not measured",
                    rss is not None and rss <= 1024))  # fmt: skip
        out.append(("5. restart to listening <= 3 s",
                    f"{restart:.2f} s" if restart else "not measured",
                    restart is not None and restart <= 3.0))  # fmt: skip
    return out


def sizing(peers: list[Json], crew: Json, started: str) -> str:
    """The README's Sizing section body."""
    m = crew["machine"]
    return "\n".join([
        f"Measured {started} by `python -m benchmarks.race --readme README.md` on "
        f"{m['cpus']} CPUs ({m['cpu']}), {m['system']}, Python {m['python']}; one SQLite "
        f"commit (WAL, synchronous=FULL) took {m['commit_ms']:.2f} ms there. "
        f"{crew['options']['procs']} worker processes x concurrency "
        f"{crew['options']['concurrency']}, no-op tasks, everything on the one machine. "
        "crew_aio commits every acknowledgement before it leaves; the Redis peers fsync their "
        "append-only file once a second. Run `crew-aio bench` for your own machine.",
        "",
        combined(peers, crew),
        "",
        *(line for line in table(crew).splitlines() if line.startswith("Scale:")),
    ])  # fmt: skip


def write_readme(path: Path, body: str) -> None:
    text = path.read_text()
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.S)
    if not pattern.search(text):
        raise SystemExit(f"{path} has no {START} ... {END} section")
    path.write_text(pattern.sub(lambda _: f"{START}\n{body}\n{END}", text))


async def race(args: argparse.Namespace) -> tuple[list[Json], Json]:
    peers = await run_peers_async(args.tasks, args.procs, args.concurrency, args.pickups)
    workloads = ["w3", "w2", "w1", "long"] + (["scale"] if args.scale else [])
    options = Options(tasks=args.tasks, procs=args.procs, concurrency=args.concurrency,
                      pickups=args.pickups, workloads=workloads, scale_tasks=args.scale_tasks,
                      env=os.environ)  # fmt: skip
    crew = await run_bench(options, lambda s: print(f"crew_aio: {s}", file=sys.stderr))
    if args.before is not None:  # the same workloads on another tree's server and SDK
        crew["before"] = await run_bench(
            replace(
                options,
                cwd=prepared(args.before),
                env={**os.environ, "PYTHONPATH": str(args.before)},
            ),
            lambda s: print(f"crew_aio before: {s}", file=sys.stderr),
        )
    return peers, crew


def prepared(tree: Path) -> Path:
    """``tree`` (a checkout's root, holding ``crew_aio/``) with this bench's worker module in
    it, so that its server and SDK run this run's workloads."""
    bench = tree / "crew_aio" / "bench"
    if not (tree / "crew_aio").is_dir():
        raise SystemExit(f"{tree} has no crew_aio/")
    if not bench.exists():
        shutil.copytree(Path(__file__).resolve().parent.parent / "crew_aio" / "bench", bench)
    return tree


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--tasks", type=int, default=20_000)
    ap.add_argument("--pickups", type=int, default=300)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=2)
    ap.add_argument("--scale", action="store_true", help="also the 1M-task scale run")
    ap.add_argument("--scale-tasks", type=int, default=1_000_000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--before", type=Path,
                    help="also run crew_aio's workloads on this tree (e.g. `git worktree` of "
                    "an older commit): its figures are printed beside this tree's")  # fmt: skip
    ap.add_argument("--readme", type=Path, help="rewrite this README's Sizing table")
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d")
    began = time.perf_counter()
    peers, crew = asyncio.run(race(args))
    before = crew.get("before")
    print(combined(peers, crew))
    print()
    print(table(crew).split("\n\n", 1)[1] if "\n\n" in table(crew) else "")
    if before is not None:
        print(f"\nbefore ({args.before}):\n")
        print(table(before))
    print()
    olds = targets(peers, before) if before is not None else None
    print("| target | " + ("before | " if olds else "") + "this run | |")
    print("|---|---|" + ("---|" if olds else "") + "---|")
    for k, (name, figure, ok) in enumerate(targets(peers, crew)):
        old = f"{olds[k][1]} | " if olds and k < len(olds) else ""
        print(f"| {name} | {old}{figure} | {'PASS' if ok else 'MISS'} |")
    print(f"\ndone in {time.perf_counter() - began:.0f} s")
    if args.json is not None:
        args.json.write_text(json.dumps({"peers": peers, "crew_aio": crew}, indent=2) + "\n")
    if args.readme is not None:
        write_readme(args.readme, sizing(peers, crew, started))


if __name__ == "__main__":
    main()
