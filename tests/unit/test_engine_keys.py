"""Duplicate merge by channel + key."""

from __future__ import annotations

from crew_aio.engine import Engine
from crew_aio.model import Status
from tests.unit.conftest import (
    LEASE,
    T0,
    acquirable,
    acquire,
    acquire_one,
    child,
    complete,
    create,
    new_group,
    spec,
)


def _three_mates(engine: Engine) -> tuple[str, str]:
    g1, g2 = new_group(engine, "g1"), new_group(engine, "g2")
    create(engine, g1, spec("first", key="k"), spec("other-key", key="j"))
    create(engine, g2, spec("second", key="k"), spec("other-channel", "x", key="k"))
    create(engine, g2, spec("third", key="k", priority=-1))
    return g1, g2


def test_acquire_assigns_every_incomplete_mate_in_any_group(engine: Engine) -> None:
    _three_mates(engine)
    t, change = engine.acquire("c", "w1", T0, LEASE)
    (first,) = t
    by_name = {x.name: x for x in engine.tasks.values()}
    second, third = by_name["second"], by_name["third"]
    assert first.name == "first" and first.lease_id is not None
    for mate in (second, third):
        assert mate.assigned_to == "w1" and mate.assigned_at == T0
        assert mate.lease_id is None
        assert engine.status(mate, T0) is Status.LEASED
        assert mate.id in change.tasks
    assert by_name["other-key"].assigned_to is None
    assert by_name["other-channel"].assigned_to is None
    assert acquirable(engine, now=T0 + 1) == ["other-key"]
    assert acquirable(engine, "x", now=T0 + 1) == ["other-channel"]


def test_success_completes_every_mate_and_their_children(engine: Engine) -> None:
    g1 = new_group(engine, "g1")
    g2 = new_group(engine, "g2")
    (a,) = create(engine, g1, spec("a", key="k"))
    b, b_child = create(engine, g2, child("b", key="k"), child("bc", "b", channel="next"))
    t = acquire_one(engine)
    assert t is a
    _, change = engine.release(a.id, "w1", T0 + 1, output={"v": 1})
    assert b.is_complete and b.output == {"v": 1} and b.completed_at == T0 + 1
    assert b.assigned_to is None
    assert b.id in change.tasks
    assert engine.status(b_child, T0 + 1) is Status.READY
    assert acquirable(engine, "next", now=T0 + 1) == ["bc"]
    assert engine.channels() == [
        {"name": "c", "totalCount": 2, "completedCount": 2, "assignedCount": 0},
        {"name": "next", "totalCount": 1, "completedCount": 0, "assignedCount": 1},
    ]


def test_error_charges_and_frees_the_mates(engine: Engine, gid: str) -> None:
    """As Crew: each key-mate is charged the attempt, gets the error appended, waits the
    releasing task's error delay and is freed."""
    a, b = create(engine, gid, spec("a", key="k", error_delay=100), spec("b", key="k"))
    acquire_one(engine)
    _, change = engine.release(a.id, "w1", T0 + 1, error="x")
    assert (b.assigned_to, b.remaining_attempts, list(b.errors)) == (None, 4, ["x"])
    assert b.run_after == T0 + 101 and b.id in change.tasks
    assert engine.status(b, T0 + 1) is Status.DELAYED
    got = acquire_one(engine, worker="w2", now=T0 + 101)
    assert got is a or got is b
    a, b = (a, b) if got is b else (b, a)
    assert a.assigned_to == "w2" and a.lease_id is None
    complete(engine, b, T0 + 2, output="b-out")
    assert a.is_complete and a.output == "b-out"


def test_lease_expiry_frees_mates(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", key="k", error_delay=100), spec("b", key="k"))
    acquire_one(engine)
    engine.tick(T0 + LEASE)
    assert list(a.errors) == [{"message": "lease expired", "workerId": "w1"}]
    assert b.assigned_to is None and list(b.errors) == []
    assert acquire_one(engine, worker="w2", now=T0 + LEASE) is b


def test_mates_are_not_handed_out_while_assigned(engine: Engine, gid: str) -> None:
    create(engine, gid, *(spec(f"t{i}", key="k") for i in range(4)))
    got = acquire(engine, count=10)
    assert [t.name for t in got] == ["t0"]
    assert acquire(engine, worker="w2", now=T0 + 1, count=10) == []


def test_mate_created_during_the_lease_is_settled_by_success(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a", key="k"))
    acquire_one(engine)
    (late,) = create(engine, gid, spec("late", key="k"), now=T0 + 1)
    assert acquire(engine, worker="w2", now=T0 + 1) == []
    complete(engine, a, T0 + 2, output="o")
    assert late.is_complete and late.output == "o"


def test_mate_created_during_the_lease_is_acquirable_after_an_error(
    engine: Engine, gid: str
) -> None:
    (a,) = create(engine, gid, spec("a", key="k", error_delay=100))
    acquire_one(engine)
    (late,) = create(engine, gid, spec("late", key="k", error_delay=0), now=T0 + 1)
    engine.release(a.id, "w1", T0 + 2, error="x")
    assert list(late.errors) == ["x"] and late.remaining_attempts == 4
    assert engine.status(late, T0 + 102) is Status.READY
    a.remaining_attempts = 0  # only the mate is left to hand out
    assert acquire_one(engine, worker="w2", now=T0 + 102) is late


def test_mate_created_during_the_lease_is_acquirable_after_expiry(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", key="k", error_delay=100))
    acquire_one(engine)
    (late,) = create(engine, gid, spec("late", key="k"), now=T0 + 1)
    engine.tick(T0 + LEASE)
    assert acquire_one(engine, worker="w2", now=T0 + LEASE) is late


def test_deleting_the_lease_holder_frees_its_mates(engine: Engine) -> None:
    g1, g2 = new_group(engine, "g1"), new_group(engine, "g2")
    (a,) = create(engine, g1, spec("a", key="k"))
    (b,) = create(engine, g2, spec("b", key="k"))
    acquire_one(engine)
    assert b.assigned_to == "w1"
    _, change = engine.delete_task(a.id, T0 + 1)
    assert b.assigned_to is None and b.id in change.tasks
    assert engine.channels()[0]["assignedCount"] == 0
    assert acquire_one(engine, worker="w2", now=T0 + 1) is b


def test_deleting_the_holders_group_frees_mates_elsewhere(engine: Engine) -> None:
    g1, g2 = new_group(engine, "g1"), new_group(engine, "g2")
    create(engine, g1, spec("a", key="k"))
    (b,) = create(engine, g2, spec("b", key="k"))
    acquire_one(engine)
    engine.delete_group(g1, T0 + 1)
    assert acquire_one(engine, worker="w2", now=T0 + 1) is b


def test_resetting_the_holder_frees_its_mates(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", key="k"), spec("b", key="k"))
    acquire_one(engine)
    engine.reset_task(a.id, T0 + 1)
    assert (a.assigned_to, b.assigned_to) == (None, None)
    assert acquirable(engine, now=T0 + 1) == ["a"]


def test_key_is_per_channel(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", "x", key="k"), spec("b", "y", key="k"))
    assert acquire_one(engine, "x").name == "a"
    assert acquire_one(engine, "y").name == "b"


def test_tasks_without_key_are_never_merged(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"), spec("b"))
    assert [t.name for t in acquire(engine, count=2)] == ["a", "b"]


def test_editing_the_key_of_an_assigned_mate_frees_it(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", key="k"), spec("b", key="k"))
    acquire_one(engine)
    assert b.assigned_to == "w1"
    engine.update_task(b.id, {"key": "other"}, T0 + 1)
    assert b.assigned_to is None
    assert acquire_one(engine, worker="w2", now=T0 + 1) is b
    complete(engine, a, T0 + 2, output="a")
    assert b.output is None and not b.is_complete


def test_editing_the_key_of_the_holder_frees_its_old_mates(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", key="k"), spec("b", key="k"))
    acquire_one(engine)
    engine.update_task(a.id, {"key": "other"}, T0 + 1)
    assert b.assigned_to is None
    assert acquire_one(engine, worker="w2", now=T0 + 1) is b
