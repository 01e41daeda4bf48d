"""Crew's own ``HttpWorkerGroup`` and ``HttpWorker`` (npm @orchard-insights/crew 1.0.25) served
on a free port and registered as operators of a ``crew-aio serve`` process: crew_aio leases the
tasks and POSTs them to the workers' express server (``tests/e2e/crew_npm/http_scenario.js``).

One run covers a continuation (the root's answer creates a kid and a task after it), an error
release and its retry (a worker that throws once), and a workgroup delay asked by a worker
(``pauseWorkgroupSeconds``), to the end of the DAG. Another kills the worker process inside a
request (``tests/e2e/crew_npm/http_kill.js``): the task runs again once the worker is back.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_crew_npm_worker import NPM_DIR, _tail, node
from tests.support.server import Server, free_port

HTTP_SCENARIO_JS = NPM_DIR / "http_scenario.js"
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
__all__ = ["node"]  # the fixture, shared with test_crew_npm_worker


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(tmp_path / "data")
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


def test_crew_http_workers_run_a_dag_as_operators(
    node: str, server: Server, tmp_path: Path
) -> None:
    out = tmp_path / "http.json"
    cmd = [node, str(HTTP_SCENARIO_JS), server.url, str(free_port()), str(out)]
    proc = subprocess.run(cmd, cwd=NPM_DIR, capture_output=True, text=True, timeout=90)
    result = json.loads(out.read_text()) if out.exists() else {}
    if proc.returncode != 0 or not result.get("ok"):
        pytest.fail(
            f"Crew's HttpWorkerGroup scenario failed (node exit {proc.returncode}): "
            f"{result.get('failures')}\n--- node output ---\n{_tail(proc.stdout + proc.stderr)}\n"
            f"--- server log ---\n{_tail(server.log.read_text())}"
        )
    tasks = result["data"]["tasks"]
    assert set(tasks) == {"root", "kid", "flaky", "limited"}
    assert tasks["flaky"]["errors"] == ["boom"] and tasks["flaky"]["isComplete"]
    assert tasks["limited"]["errors"] == ["rate limited"] and tasks["limited"]["isComplete"]
    assert tasks["kid"]["output"] == {"seen": [{"root": True}]}
    assert all(t["assignedTo"] is None for t in tasks.values())


def test_a_crew_http_worker_killed_mid_request_gets_the_task_again(
    node: str, server: Server, tmp_path: Path
) -> None:
    """The worker process dies inside the request (SIGKILL): the operator's call fails, the
    task is released with that error and POSTed again once the worker is back."""
    state, port = tmp_path / "state.json", str(free_port())
    script = str(NPM_DIR / "http_kill.js")
    first = subprocess.run([node, script, server.url, port, str(state), "first"], cwd=NPM_DIR,
                           capture_output=True, text=True, timeout=60)  # fmt: skip
    assert first.returncode == -9, (first.returncode, first.stdout, first.stderr)
    second = subprocess.run([node, script, server.url, port, str(state), "second"], cwd=NPM_DIR,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    result = json.loads(state.read_text())
    assert second.returncode == 0 and result["ok"], (result, second.stdout, second.stderr,
                                                     _tail(server.log.read_text()))  # fmt: skip
    task = result["task"]
    assert task["output"] == {"survived": True} and len(task["errors"]) >= 1
    assert task["assignedTo"] is None
