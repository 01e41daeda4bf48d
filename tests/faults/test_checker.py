"""The fault checker itself: it must catch what it is there to catch."""

from __future__ import annotations

from typing import Any

from tests.faults.harness import Checker

T = "2026-11-28T08:00:00.000Z"
LATER = "2026-11-28T08:00:05.000Z"


def task(tid: str, *, parents: tuple[str, ...] = (), status: str = "completed",
         output: Any = None, errors: int = 0, completed: str | None = T,
         name: str | None = None) -> dict[str, Any]:  # fmt: skip
    return {"_id": tid, "name": name or tid, "status": status, "output": output,
            "errors": [{"message": "lease expired"}] * errors, "parentIds": list(parents),
            "completedAt": completed if status == "completed" else None,
            "input": {"i": tid}}  # fmt: skip


def test_a_clean_run_passes() -> None:
    c = Checker()
    a, b = task("a", output=1), task("b", parents=("a",), output=2, completed=LATER)
    c.tasks_created([a, b])
    c.executed(a, [], "w")
    c.executed(b, [{"_id": "a", "output": 1}], "w")
    c.released("a", 1, a, [])
    report = c.verify([a, b])
    assert report.ok and report.acked == 3, report


def test_lost_writes_are_counted() -> None:
    c = Checker()
    c.tasks_created([task("gone")])
    c.released("a", {"mine": 1}, None, [{"name": "kid"}])
    report = c.verify([task("a", output={"other": 1})], all_complete=False)
    assert report.lost == 2 and not report.ok  # the create, and the release's output


def test_missing_and_doubled_children() -> None:
    c = Checker()
    c.released("a", 1, None, [{"name": "k1"}, {"name": "k2"}])
    tasks = [task("a", output=1), task("x", name="k1", parents=("a",)),
             task("y", name="k1", parents=("a",))]  # fmt: skip
    report = c.verify(tasks)
    assert report.lost == 1 and report.duplicates == 1


def test_reruns_beyond_lease_semantics_are_duplicates() -> None:
    c = Checker()
    t = task("a", errors=1)
    for _ in range(3):  # one run, one re-run after an expiry, one more with no reason
        c.executed(t, [], "w")
    assert c.verify([t]).duplicates == 1
    assert c.verify([task("a", errors=2)]).duplicates == 0


def test_a_task_started_before_its_parent_completed() -> None:
    c = Checker()
    parent = task("p", completed="2099-01-01T00:00:00.000Z")
    child = task("c", parents=("p",))
    c.executed(child, [{"_id": "p", "output": None}], "w")
    report = c.verify([parent, child])
    assert any("before its parent" in p for p in report.problems)


def test_unfinished_tasks_fail_the_run() -> None:
    report = Checker().verify([task("a", status="leased")])
    assert not report.ok
