"""Engine alone, in process: acquire+release cycles per second over N tasks.

python -m benchmarks.engine [--tasks 100000]
"""

from __future__ import annotations

import argparse
import gc
import time

from crew_aio.engine import Engine, TaskSpec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--tasks", type=int, default=100_000)
    args = ap.parse_args()
    n = args.tasks
    engine = Engine()
    now = 1_800_000_000.0
    group, _ = engine.create_group("bench", now)
    t0 = time.perf_counter()
    specs = [TaskSpec(name=f"t{i}", channel="c", input={"i": i}) for i in range(n)]
    engine.create_tasks(group.id, specs, now)
    created = time.perf_counter() - t0
    gc.freeze()
    t0 = time.perf_counter()
    done = 0
    while True:
        now += 0.0001
        got, _ = engine.acquire("c", "w", now, 60.0)
        if not got:
            break
        engine.release(got[0].id, "w", now, lease_id=got[0].lease_id, output={"ok": True})
        done += 1
    cycles = time.perf_counter() - t0
    assert done == n, done
    print(f"engine: created {n:,} tasks in {created:.3f} s ({n / created:,.0f} tasks/s)")
    print(f"engine: {done:,} acquire+release cycles in {cycles:.3f} s "
          f"({done / cycles:,.0f} cycles/s; target >= 50,000/s)")  # fmt: skip


if __name__ == "__main__":
    main()
