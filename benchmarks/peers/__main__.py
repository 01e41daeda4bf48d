"""``python -m benchmarks.peers``: run the peers, print a table, optionally write JSON rows.

See the package docstring (``benchmarks/peers/__init__.py``) for how each figure is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path

import benchmarks.peers
from benchmarks.peers.harness import Row, run_peers_async
from benchmarks.peers.peers import PEERS

COLUMNS = [  # (heading, key, format)
    ("W1 tasks/s", "w1_rate", "{:,.0f}"),
    ("W1 enqueue/s", "w1_enqueue_rate", "{:,.0f}"),
    ("W2 wall s", "w2_wall_s", "{:.3f}"),
    ("W2 join lag ms", "w2_join_lag_ms", "{:.2f}"),
    ("W3 p50 ms", "w3_p50_ms", "{:.2f}"),
    ("W3 p99 ms", "w3_p99_ms", "{:.2f}"),
    ("broker CPU ms/task", "broker_cpu_ms_per_task", "{:.3f}"),
    ("workers CPU ms/task", "workers_cpu_ms_per_task", "{:.3f}"),
]


def table(rows: list[Row]) -> str:
    cells = [["peer"] + [heading for heading, _, _ in COLUMNS]]
    for row in rows:
        line = [str(row["name"])]
        for _, key, fmt in COLUMNS:
            value = row.get(key)
            line.append("-" if value is None else fmt.format(value))
        cells.append(line)
    widths = [max(len(r[c]) for r in cells) for c in range(len(cells[0]))]
    out = []
    for r in cells:
        first = r[0].ljust(widths[0])
        out.append(
            "  ".join([first] + [v.rjust(w) for v, w in zip(r[1:], widths[1:], strict=True)])
        )
    for row in rows:
        out.extend(f"  {row['key']}: FAILED {error}" for error in row["errors"])
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks.peers",
        description=benchmarks.peers.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--tasks", type=int, default=20_000, help="W1 no-op tasks")
    ap.add_argument("--procs", type=int, default=2, help="worker processes")
    ap.add_argument("--concurrency", type=int, default=2, help="concurrency per process")
    ap.add_argument("--pickups", type=int, default=300, help="W3 timed tasks")
    ap.add_argument("--only", default=",".join(PEERS), help="comma-separated peer keys")
    ap.add_argument("--json", type=Path, help="write the rows to this file")
    args = ap.parse_args()
    only = [k.strip() for k in args.only.split(",") if k.strip()]
    unknown = [k for k in only if k not in PEERS]
    if unknown:
        ap.error(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    started = time.perf_counter()
    print(
        f"peers on {os.cpu_count()} cores (load average {os.getloadavg()[0]:.2f}): "
        f"{args.procs} worker processes x concurrency {args.concurrency}; "
        f"W1 {args.tasks:,} tasks, W2 1,102-task DAG best of 3, W3 {args.pickups} pickups",
        flush=True,
    )
    rows = asyncio.run(
        run_peers_async(args.tasks, args.procs, args.concurrency, args.pickups, only)
    )
    print(table(rows))
    print(
        f"done in {time.perf_counter() - started:.0f} s; load average now {os.getloadavg()[0]:.2f}"
    )
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if any(row["errors"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
