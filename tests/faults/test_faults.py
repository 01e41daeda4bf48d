"""R1-R7 of docs/RELIABILITY.md at quick sizes, each against real ``crew-aio serve`` processes.

The same scenarios run larger with ``python -m tests.faults --full`` (see ``__main__.py``).
R8 is covered by tests/store/test_sqlite.py and tests/e2e/test_process.py, R9 by
tests/unit/test_engine_properties.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults import scenarios as s

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def passed(outcome: s.Outcome) -> bool:
    assert outcome.report.acked > 0, outcome.describe()
    assert outcome.ok, outcome.describe()
    return True


async def test_r1_server_kill9_during_a_dag_run(tmp_path: Path) -> None:
    outcome = await s.r1_server_kills(tmp_path, tasks=300, kills=3)
    assert passed(outcome) and outcome.runs == 3
    assert outcome.lag_p99 and max(outcome.lag_p99) < 1000  # read from /healthz before kills


async def test_r2_kill9_during_a_release_with_many_children(tmp_path: Path) -> None:
    assert passed(await s.r2_kill_during_release(tmp_path, runs=3, children=2000))


async def test_r3_dead_worker_task_is_offered_again(tmp_path: Path) -> None:
    assert passed(await s.r3_worker_dies(tmp_path))


async def test_r4_stale_holder_gets_409_and_b_counts(tmp_path: Path) -> None:
    assert passed(await s.r4_stale_holder(tmp_path))


async def test_r5_duplicated_reordered_messages_reach_the_clean_state(tmp_path: Path) -> None:
    assert passed(await s.r5_duplicates(tmp_path, tasks=120))


async def test_r6_extended_lease_survives_restarts(tmp_path: Path) -> None:
    assert passed(await s.r6_extend_across_restarts(tmp_path, restarts=2, lease=3.0))


async def test_r7_disk_full_gives_503_and_recovers(tmp_path: Path) -> None:
    assert passed(await s.r7_storage_fault(tmp_path, "fsize"))


async def test_r7_locked_file_gives_503_and_recovers(tmp_path: Path) -> None:
    assert passed(await s.r7_storage_fault(tmp_path, "lock", kill_mid=True))


async def test_r7_stuck_store_call_exits_70_and_restarts_clean(tmp_path: Path) -> None:
    assert passed(await s.r7_stuck_exit(tmp_path))
