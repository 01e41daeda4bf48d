"""The event-loop lag monitor (crew_aio.loopmon): a deliberately blocked loop shows up."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from crew_aio.loopmon import LoopMonitor


async def test_a_blocked_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "crew_aio.loop")
    monitor = LoopMonitor(interval=0.01, window=1000, warn_ms=100.0)
    monitor.start()
    for _ in range(500):  # bounded wait for the first quiet samples
        if len(monitor.samples) >= 3:
            break
        await asyncio.sleep(0.01)
    time.sleep(0.3)  # noqa: ASYNC251 (blocks the loop on purpose: no wake-up for 300 ms)
    for _ in range(500):
        if monitor.stalls:
            break
        await asyncio.sleep(0.01)
    await monitor.stop()
    snap = monitor.snapshot()
    assert snap["maxMs"] >= 250.0, snap  # woke at least ~300 ms - 10 ms late
    assert snap["stalls"] == 1 and snap["samples"] >= 4
    assert snap["p50Ms"] < snap["maxMs"]
    stalls = [r for r in caplog.records if getattr(r, "event", None) == "loop.stall"]
    assert len(stalls) == 1 and stalls[0].levelno == logging.WARNING
    assert "event loop stalled for" in stalls[0].getMessage()


async def test_a_free_loop_logs_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "crew_aio.loop")
    monitor = LoopMonitor(interval=0.005, window=50, warn_ms=1000.0)
    monitor.start()
    monitor.start()  # idempotent
    for _ in range(1000):
        if len(monitor.samples) >= 10:
            break
        await asyncio.sleep(0.005)
    await monitor.stop()
    await monitor.stop()
    snap = monitor.snapshot()
    assert snap["samples"] >= 10 and snap["stalls"] == 0
    assert snap["maxMs"] < 1000.0
    assert not [r for r in caplog.records if getattr(r, "event", None) == "loop.stall"]


def test_snapshot_percentiles_over_the_window() -> None:
    monitor = LoopMonitor(interval=0.05, window=100, warn_ms=1e9)
    assert monitor.snapshot() == {"p50Ms": 0.0, "p99Ms": 0.0, "maxMs": 0.0, "samples": 0,
                                  "windowSeconds": 0.0, "stalls": 0}  # fmt: skip
    for lag in range(1, 201):  # only the last 100 (101..200) stay in the window
        monitor.record(float(lag))
    snap = monitor.snapshot()
    assert snap["samples"] == 100 and snap["windowSeconds"] == 5.0
    assert snap["p50Ms"] == 150.0 and snap["p99Ms"] == 199.0 and snap["maxMs"] == 200.0
    monitor.record(-3.0)  # an early wake-up counts as no lag
    assert min(monitor.samples) == 0.0


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        LoopMonitor(interval=0)
    with pytest.raises(ValueError, match="window"):
        LoopMonitor(window=0)
