"""The fault run: every scenario of docs/RELIABILITY.md R1-R8 against real servers, one table.

    .venv/bin/python -m tests.faults --quick     # the sizes the default test suite runs (~1 min)
    .venv/bin/python -m tests.faults --full      # R1: 10,000 tasks, 20 kills; all larger (~6 min)
    .venv/bin/python -m tests.faults --full --only R1,R7

Prints one row per scenario (runs, acknowledged writes checked, lost, duplicates beyond lease
semantics, verdict) and the event-loop lag p99 read from ``/healthz`` before each kill and at the
end; exits 1 if any verdict fails. R8 (corrupt file, crash WAL, second instance) and R9 (the
Hypothesis state machine) are the existing tests named in their rows, run here with pytest,
and the row BUGS runs tests/faults/test_found_bugs.py (targeted tests of bugs these scenarios
found, fixed since; also in the default suite).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from tests.faults import scenarios as s
from tests.faults.harness import ROOT, Report, cleanup
from tests.faults.storage import can_mount

Plan = list[tuple[str, Callable[[Path], Awaitable[s.Outcome]]]]

R8_TESTS = [
    "tests/store/test_sqlite.py::test_corrupt_file_is_refused_and_left_untouched",
    "tests/store/test_sqlite.py::test_corrupt_file_with_a_crash_wal_is_left_untouched",
    "tests/store/test_sqlite.py::test_wal_left_by_a_crash_is_recovered",
    "tests/store/test_sqlite.py::test_second_process_is_refused",
    "tests/e2e/test_process.py::test_second_instance_is_refused",
]
R9_TESTS = ["tests/unit/test_engine_properties.py"]
# slow and silent clients (slowloris, a silent connection, an idle kept-alive one, an endless
# body) against a server with 1 s head/body and 1.5 s idle limits: each closed within 3 s
SLOW_TESTS = ["tests/e2e/test_slow_clients.py", "tests/integration/test_hostile.py"]


def plan(full: bool, mount: bool) -> Plan:
    """(row id, scenario) pairs at quick or full sizes."""
    n = 5 if full else 1
    tasks, hold = (2000, 4.0) if full else (300, 2.0)
    steps: Plan = [
        ("R1", lambda d: s.r1_server_kills(
            d, tasks=10_000 if full else 300, kills=20 if full else 3, chunk=500 if full else 50,
            gap=(0.5, 2.0) if full else (0.4, 1.2))),
        ("R2", lambda d: s.r2_kill_during_release(
            d, runs=20 if full else 3, children=10_000 if full else 2000)),
        ("R3", lambda d: s.r3_worker_dies(d, repeat=n)),
        ("R4", lambda d: s.r4_stale_holder(d, repeat=n)),
        ("R5", lambda d: s.r5_duplicates(d, tasks=1000 if full else 120, runs=3 if full else 1)),
        ("R6", lambda d: s.r6_extend_across_restarts(
            d, restarts=10 if full else 2, lease=4.0 if full else 3.0)),
    ]  # fmt: skip
    faults = [("lock", False), ("lock", True), ("fsize", False), ("fsize", True)]
    faults += [("tmpfs", False), ("tmpfs", True)] if mount else []
    for kind, kill in faults:
        steps.append(("R7", lambda d, k=kind, m=kill: s.r7_storage_fault(  # type: ignore[misc]
            d, k, tasks=tasks, hold=hold, kill_mid=m)))  # fmt: skip
    steps.append(("R7", lambda d: s.r7_stuck_exit(d)))
    return steps


def pytest_row(name: str, tests: list[str]) -> s.Outcome:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    report = Report()
    if done.returncode != 0:
        report.problem(done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "failed")
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return s.Outcome(name, len(tests), report, [f"pytest: {summary}"])


async def run(steps: Plan, scratch: Path) -> list[tuple[s.Outcome, float]]:
    rows = []
    for k, (rid, step) in enumerate(steps):
        started = time.monotonic()
        try:
            outcome = await step(scratch / f"s{k}")
        except Exception as exc:  # a scenario that crashed is a failed row, not a lost table
            report = Report()
            report.problem(f"scenario crashed: {exc!r}")
            outcome = s.Outcome(f"{rid} scenario {k} CRASHED", 0, report)
        finally:
            cleanup()
        took = time.monotonic() - started
        rows.append((outcome, took))
        print(outcome.describe(), f"({took:.1f} s)", flush=True)
    return rows


def table(rows: list[tuple[str, s.Outcome, float]]) -> str:
    head = ("#", "scenario", "runs", "acked checked", "lost", "dups>lease", "loop p99 ms",
            "s", "verdict")  # fmt: skip
    lines = [head]
    for rid, o, took in rows:
        lag = f"{max(o.lag_p99):.0f}" if o.lag_p99 else "-"
        lines.append((rid, o.scenario, str(o.runs), str(o.report.acked), str(o.report.lost),
                      str(o.report.duplicates), lag, f"{took:.0f}",
                      "PASS" if o.ok else "FAIL"))  # fmt: skip
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    out = [" | ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    size = ap.add_mutually_exclusive_group(required=True)
    size.add_argument("--quick", action="store_true", help="the default suite's sizes")
    size.add_argument("--full", action="store_true", help="R1 10,000 tasks / 20 kills, ...")
    ap.add_argument("--only", default="", help="comma-separated rows, e.g. R1,R7")
    ap.add_argument("--keep", action="store_true", help="keep the scratch dir (logs, data)")
    args = ap.parse_args(argv)
    only = {x.strip().upper() for x in args.only.split(",") if x.strip()}
    scratch = Path(tempfile.mkdtemp(prefix="crew-faults-"))
    started = time.monotonic()
    steps = [(rid, f) for rid, f in plan(args.full, can_mount(scratch)) if not only or rid in only]
    outcomes = asyncio.run(run(steps, scratch))
    rows = [(rid, o, t) for (rid, _), (o, t) in zip(steps, outcomes, strict=True)]
    extra = [("R8", R8_TESTS), ("R9", R9_TESTS), ("SLOW", SLOW_TESTS),
             ("BUGS", ["tests/faults/test_found_bugs.py"])]  # fmt: skip
    for rid, tests in extra:
        if not only or rid in only:
            t0 = time.monotonic()
            label = "found-bug tests" if rid == "BUGS" else "existing tests"
            outcome = pytest_row(f"{rid} {label} ({len(tests)} targets)", tests)
            print(outcome.describe(), flush=True)
            rows.append((rid, outcome, time.monotonic() - t0))
    lags = [lag for _, o, _ in rows for lag in o.lag_p99]
    print()
    print(table(rows))
    if lags:
        print(f"\nevent-loop lag p99 from /healthz ({len(lags)} reads before kills and at the "
              f"end): max {max(lags):.1f} ms, median {sorted(lags)[len(lags) // 2]:.1f} ms "
              f"(target < 100 ms)")  # fmt: skip
    print(f"total {time.monotonic() - started:.0f} s; scratch {scratch}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0 if all(o.ok for _, o, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
