"""Crew's own published ``Worker`` (npm @orchard-insights/crew 1.0.25) against ``crew-aio serve``.

The drop-in promise, tested with the other side's real code: ``tests/e2e/crew_npm/scenario.js``
subclasses the Worker from the npm package (installed by ``npm ci`` from the lock file), points it
at a crew_aio server process and drives one scenario per run. It writes what it saw as JSON and
checks the Crew contract itself; this module asserts the same facts again from that JSON, so a
failure names the broken behaviour, and shows Crew's console output and the server's log only then.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import Server

NPM_DIR = Path(__file__).resolve().parent / "crew_npm"
SCENARIO_JS = NPM_DIR / "scenario.js"
CREW_WORKER_JS = (
    NPM_DIR / "node_modules" / "@orchard-insights" / "crew" / "dist" / "src" / "Worker.js"
)
SCENARIO_TIMEOUT = 60.0

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]  # the first test may run `npm ci`


def _text(value: str | bytes | None) -> str:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return value or ""


def _tail(text: str, lines: int = 120) -> str:
    return "\n".join(text.splitlines()[-lines:])


@pytest.fixture(scope="module")
def node() -> str:
    """Installs Crew's npm package from the lock file when it is missing; answers node's path."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("needs node >= 20 and npm on PATH to run Crew's own npm Worker")
    if not CREW_WORKER_JS.exists():
        # --ignore-scripts: the Worker needs no install script (Crew's mongodb-memory-server
        # postinstall would download a MongoDB binary)
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--ignore-scripts"]
        proc = subprocess.run(cmd, cwd=NPM_DIR, capture_output=True, text=True, timeout=200)
        if proc.returncode != 0 or not CREW_WORKER_JS.exists():
            pytest.fail(f"`npm ci` in {NPM_DIR} failed ({proc.returncode}):\n"
                        f"{proc.stdout}\n{proc.stderr}")  # fmt: skip
    return node


def _serve(tmp: Path, *extra: str) -> Iterator[Server]:
    srv = Server(tmp / "data", *extra)
    srv.start()
    try:
        yield srv
    finally:
        srv.kill()


@pytest.fixture(scope="module")
def crew_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("crew-npm"))


@pytest.fixture(scope="module")
def short_lease_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("crew-npm-lease"), "--lease-seconds", "2")


def run_scenario(node: str, server: Server, name: str, tmp_path: Path) -> dict[str, Any]:
    """Runs one scenario of scenario.js; fails with everything it saw unless all its checks held."""
    out = tmp_path / f"{name}.json"
    cmd = [node, str(SCENARIO_JS), name, server.url + "/", str(out)]
    try:
        proc = subprocess.run(cmd, cwd=NPM_DIR, capture_output=True, text=True,
                              timeout=SCENARIO_TIMEOUT)  # fmt: skip
        rc, stdout, stderr = proc.returncode, proc.stdout, proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, stdout, stderr = None, _text(exc.stdout), _text(exc.stderr)
    result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    if rc != 0 or not result.get("ok"):
        how = f"timed out after {SCENARIO_TIMEOUT:.0f} s" if rc is None else f"node exit {rc}"
        failures = "".join(f"  - {f}\n" for f in result.get("failures", []))
        refused = (
            "".join(
                f"  {e['method']} {e['url']} -> {e['status']} {json.dumps(e['response'])}\n"
                f"    request: {json.dumps(e['request'])}\n"
                for e in result.get("serverErrors", [])
            )
            or "  none\n"
        )
        pytest.fail(
            f"scenario {name!r} failed ({how}):\n{failures}"
            f"server answers refusing Crew's Worker:\n{refused}"
            f"setup error: {result.get('setupError')}\n"
            f"--- node stderr ---\n{_tail(stderr)}\n"
            f"--- node stdout (Crew's Worker log, tail) ---\n{_tail(stdout)}\n"
            f"--- server log (tail) ---\n{_tail(server.log.read_text())}"
        )
    assert result["scenario"] == name
    assert result["failures"] == []
    assert result["serverErrors"] == []  # no acquire or release of Crew's Worker was refused
    data: dict[str, Any] = result["data"]
    return data


def _epoch_ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


def test_dag_continuation_with_integer_pseudo_ids(
    node: str, crew_server: Server, tmp_path: Path
) -> None:
    data = run_scenario(node, crew_server, "dag", tmp_path)
    tasks = {t["name"]: t for t in data["tasks"]}
    assert sorted(tasks) == ["B0", "B1", "B2", "B3", "seed"]
    assert all(t["isComplete"] for t in tasks.values()), tasks
    # the continuation's integer pseudo-ids became real parent links (a root child -> the seed)
    assert tasks["B0"]["parentIds"] == [tasks["seed"]["_id"]]
    assert tasks["B1"]["parentIds"] == tasks["B2"]["parentIds"] == [tasks["B0"]["_id"]]
    assert sorted(tasks["B3"]["parentIds"]) == sorted([tasks["B1"]["_id"], tasks["B2"]["_id"]])
    # each task ran once and its worker got its parents' outputs as `parents`
    runs = {e["name"]: e for e in data["executions"]}
    assert sorted(e["name"] for e in data["executions"]) == sorted(tasks)

    def received(name: str) -> list[dict[str, Any]]:
        return sorted(runs[name]["parents"], key=lambda p: str(p["_id"]))

    def parents(*names: str) -> list[dict[str, Any]]:
        fields = ("_id", "channel", "input", "output")
        return sorted(
            ({k: tasks[n][k] for k in fields} for n in names), key=lambda p: str(p["_id"])
        )

    assert runs["seed"]["parents"] == []
    assert received("B0") == parents("seed")
    assert tasks["seed"]["output"] == {"seed": "done", "order": 7}
    assert received("B1") == received("B2") == parents("B0")
    assert tasks["B0"]["output"] == {"from": "B0", "step": 0}
    assert received("B3") == parents("B1", "B2")
    # the join ran after both middle tasks
    assert runs["B3"]["start"] >= max(runs["B1"]["end"], runs["B2"]["end"])


def test_retry_after_a_thrown_error(node: str, crew_server: Server, tmp_path: Path) -> None:
    data = run_scenario(node, crew_server, "retry", tmp_path)
    task, attempts = data["task"], data["attempts"]
    assert len(attempts) == 2
    assert attempts[0]["seen"]["remainingAttempts"] == 3
    assert attempts[1]["seen"]["remainingAttempts"] == 2  # the error release cost one attempt
    assert attempts[1]["seen"]["errors"] == ["boom"]
    assert task["isComplete"] is True
    assert task["errors"] == ["boom"]
    assert task["output"] == {"ok": True, "attempt": 2, "input": {"n": 1}}
    assert task["remainingAttempts"] < 3


def test_workgroup_delay_after_a_rate_limit(node: str, crew_server: Server, tmp_path: Path) -> None:
    data = run_scenario(node, crew_server, "workgroup", tmp_path)
    throw_at, pause_ms = data["throwAt"], data["pauseSeconds"] * 1000
    paused = data["duringPause"]
    assert paused["at"] < throw_at + pause_ms
    assert paused["limited2"]["isComplete"] is False
    assert _epoch_ms(paused["limited2"]["runAfter"]) >= throw_at + pause_ms - 100
    assert _epoch_ms(paused["limited1"]["runAfter"]) >= throw_at + pause_ms - 100
    runs = data["runs"]
    assert runs[0]["name"] == "limited-1"
    others = [r for r in runs if r["name"].startswith("other-")]
    limited_after = [r for r in runs[1:] if r["name"].startswith("limited-")]
    assert len(others) == 2
    assert all(throw_at < r["at"] < throw_at + pause_ms for r in others)  # the other token went on
    assert sorted(r["name"] for r in limited_after) == ["limited-1", "limited-2"]
    assert all(r["at"] >= throw_at + pause_ms - 100 for r in limited_after)
    final = {t["name"]: t for t in data["final"]}
    assert all(t["isComplete"] for t in final.values()), final
    assert final["limited-1"]["errors"] == ["429 Too Many Requests"]


def test_duplicate_key_across_two_groups_runs_once(
    node: str, crew_server: Server, tmp_path: Path
) -> None:
    data = run_scenario(node, crew_server, "duplicate_key", tmp_path)
    assert len(data["calls"]) == 1, data["calls"]
    expected = {"value": 42, "computedBy": data["calls"][0]["worker"]}
    assert [t["isComplete"] for t in data["tasks"]] == [True, True]
    assert [t["output"] for t in data["tasks"]] == [expected, expected]


def test_task_longer_than_the_lease_completes_by_its_worker(
    node: str, short_lease_server: Server, tmp_path: Path
) -> None:
    # Crew's Worker sends no heartbeat: its release comes after the 2 s lease ran out, and nobody
    # else leased the task since, so the server must take it
    data = run_scenario(node, short_lease_server, "long_task", tmp_path)
    worker = data["workerId"]
    assert [e["worker"] for e in data["executions"]] == [worker]
    assert data["final"]["isComplete"] is True
    assert data["final"]["output"] == {"done": "slow", "by": worker, "input": {"n": 5}}
    assert [r["status"] for r in data["releases"]] == [200]
