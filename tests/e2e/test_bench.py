"""``crew-aio bench`` as a user runs it: its own server and worker processes, a table, JSON.

Figures are not checked against targets here (a loaded CI machine proves nothing either way);
what is checked is that every workload ran to the end and reported what it names.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]


def bench(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "crew_aio", "bench", "--no-progress", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def test_bench_runs_every_workload_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = bench("--shapes", "ws,crew", "--tasks", "1000", "--pickups", "10",
                 "--scale-tasks", "2000", "--json", str(out))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "| W1 tasks/s |" in done.stdout and "| pickup p99 ms |" in done.stdout
    assert "Scale: 2,000 tasks resident" in done.stdout and "restart to listening" in done.stdout
    result = json.loads(out.read_text())
    ws, crew = result["rows"]
    assert ws["shape"] == "ws" and crew["shape"] == "crew"
    for key in ("w1_rate", "w1_enqueue_rate", "w2_wall_s", "w2_continuation_wall_s",
                "w2_join_lag_ms", "w3_p50_ms", "w3_p99_ms", "server_cpu_ms_per_task"):  # fmt: skip
        assert ws[key] > 0, key
    assert crew["w1_rate"] > 0 and "w3_p50_ms" not in crew  # Crew's workers poll on a timer
    scale = result["scale"]
    assert scale["tasks"] == 2000 and scale["w1_rate"] > 0 and scale["restart_s"] > 0
    assert scale["rss_mib"] > 0 and result["machine"]["commit_ms"] > 0


async def test_bench_against_a_running_server_leaves_it_as_it_was(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", "--api-token", "adm1n-token-of-the-bench-test")
    url = server.start()
    try:
        done = bench("--url", url, "--token", "adm1n-token-of-the-bench-test",
                     "--workloads", "w1,w2", "--shapes", "poll", "--tasks", "1000")  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "| W2 wall s |" in done.stdout and "server CPU" not in done.stdout
        headers = {"Authorization": "Bearer adm1n-token-of-the-bench-test"}
        async with (
            aiohttp.ClientSession(headers=headers) as http,
            http.get(url + "/api/v1/task_groups") as resp,
        ):
            assert await resp.json() == []  # its groups are gone again
    finally:
        server.terminate()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--shapes", "ws,nope"], "nope: pick from"),
        (["--tasks", "5"], "--tasks"),
        (["--workloads", ""], "nothing: pick from"),
    ],
)
def test_bench_refuses_bad_options(args: list[str], says: str) -> None:
    done = bench(*args, timeout=30)
    assert done.returncode == 2 and says in done.stderr
