"""Acquire: order, what is never handed out, lease fields, delayed tasks."""

from __future__ import annotations

from crew_aio.engine import Engine
from crew_aio.model import Status
from tests.unit.conftest import (
    LEASE,
    T0,
    acquirable,
    acquire,
    acquire_one,
    create,
    new_group,
    spec,
)


def test_highest_priority_first_then_oldest(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("low-old", priority=0), spec("high-old", priority=5))
    create(engine, gid, spec("low-new", priority=0), spec("high-new", priority=5), now=T0 + 1)
    create(engine, gid, spec("negative", priority=-3), now=T0 + 2)
    order = acquirable(engine, now=T0 + 3)
    assert order == ["high-old", "high-new", "low-old", "low-new", "negative"]


def test_oldest_first_within_one_batch_and_one_millisecond(engine: Engine, gid: str) -> None:
    create(engine, gid, *(spec(f"t{i}") for i in range(20)))
    assert acquirable(engine) == [f"t{i}" for i in range(20)]


def test_acquire_only_its_channel(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", "x"), spec("b", "y"))
    assert acquirable(engine, "y") == ["b"]
    assert acquirable(engine, "x") == ["a"]
    assert acquire(engine, "z") == []


def test_acquire_count_hands_out_up_to_count(engine: Engine, gid: str) -> None:
    create(engine, gid, *(spec(f"t{i}", priority=i) for i in range(5)))
    got = acquire(engine, count=3)
    assert [t.name for t in got] == ["t4", "t3", "t2"]
    assert len({t.lease_id for t in got}) == 3
    rest = acquire(engine, worker="w2", count=10)
    assert [t.name for t in rest] == ["t1", "t0"]
    assert acquire(engine, count=10) == []


def test_lease_fields_are_set(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("a"))
    got, change = engine.acquire("c", "w1", T0 + 5, 42.0)
    assert got == [t]
    assert t.assigned_to == "w1"
    assert t.assigned_at == T0 + 5
    assert t.lease_expires_at == T0 + 5 + 42.0
    assert t.lease_id is not None and len(t.lease_id) == 24
    assert t.updated_at == T0 + 5
    assert engine.status(t, T0 + 5) is Status.LEASED
    assert list(change.tasks) == [t.id]


def test_leased_task_is_not_handed_out_again(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    acquire_one(engine)
    assert acquire(engine, worker="w2", now=T0 + 1) == []


def test_a_task_is_paused_exactly_when_its_group_is(engine: Engine, gid: str) -> None:
    """Crew keeps a task's isPaused in sync with its group: there is no per-task pause."""
    (t,) = create(engine, gid, spec("a"))
    engine.update_group(gid, T0, is_paused=True)
    assert engine.status(t, T0) is Status.PAUSED and acquire(engine, now=T0 + 1000) == []
    engine.update_group(gid, T0, is_paused=False)
    assert acquirable(engine) == ["a"]


def test_paused_group_hands_nothing_out(engine: Engine) -> None:
    paused = new_group(engine, "p", is_paused=True)
    running = new_group(engine, "r")
    create(engine, paused, spec("in-paused", priority=9))
    create(engine, running, spec("in-running"))
    assert acquirable(engine) == ["in-running"]


def test_future_run_after_is_not_handed_out_until_it_passes(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("later", run_after=T0 + 100))
    assert engine.status(t, T0) is Status.DELAYED
    assert acquire(engine, now=T0 + 99.999) == []
    assert engine.status(t, T0 + 100) is Status.READY
    assert acquire_one(engine, now=T0 + 100) is t


def test_delayed_task_becomes_acquirable_through_tick(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("later", "x", run_after=T0 + 100))
    assert engine.next_deadline() == T0 + 100
    assert not engine.tick(T0 + 50).ready_channels
    change = engine.tick(T0 + 100)
    assert change.ready_channels == {"x"}
    assert acquire_one(engine, "x", now=T0 + 100) is t


def test_past_run_after_is_ready_at_once(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("past", run_after=T0 - 5))
    assert engine.status(t, T0) is Status.READY
    assert acquire_one(engine) is t


def test_no_attempts_left_is_never_handed_out(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("none", remaining_attempts=0), spec("some"))[:1]
    assert engine.status(t, T0) is Status.FAILED
    assert acquirable(engine) == ["some"]


def test_waiting_task_is_not_handed_out(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("p", "other"))
    (p,) = engine.group_task_list(gid, None, 0)
    create(engine, gid, spec("c", parent_ids=(p.id,)))
    assert acquire(engine) == []


def test_acquire_reports_ready_task_in_change(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a"), spec("b"))
    got, change = engine.acquire("c", "w", T0, LEASE, 2)
    assert got == [a, b]
    assert set(change.tasks) == {a.id, b.id}
