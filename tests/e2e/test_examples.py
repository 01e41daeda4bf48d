"""The reference example, end to end: ``python -m examples.campaign`` as a user runs it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(r"^done: tasks=(\d+) retries=(\d+) rate_limited=(\d+) seconds=([\d.]+)$", re.M)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("node") is None, reason="needs node >= 20"),
    pytest.mark.skipif(
        not (ROOT / "clients" / "js" / "node_modules" / "ws").exists(),
        reason="needs the JavaScript SDK's dependencies: (cd clients/js && npm ci)",
    ),
]


def test_campaign_story_completes_through_retries_and_cool_offs() -> None:
    # 3 ad sets x 3 ads on 2 tokens at 3 calls/s per token: bursts of ads are rate limited;
    # a 20% failure rate (seeded) makes transient errors certain
    cmd = [sys.executable, "-m", "examples.campaign", "--adsets", "3", "--ads", "3",
           "--tokens", "2", "--rate", "3", "--failure-rate", "0.2", "--seed", "1",
           "--timeout", "25"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=45)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "notify completed: campaign black-friday" in proc.stdout, out
    assert "9 ads passed QA" in proc.stdout, out
    found = SUMMARY.search(proc.stdout)
    assert found, out
    tasks, retries, rate_limited, seconds = found.groups()
    # campaign + 3 ad sets + join + 9 ads + qa + notify
    assert int(tasks) == 16, out
    assert int(retries) >= 1, out
    assert int(rate_limited) >= 1, out
    assert float(seconds) < 25, out
