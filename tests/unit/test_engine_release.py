"""Release: success, continuations, errors, delays, idempotence, stale leases."""

from __future__ import annotations

from typing import Any

import pytest

from crew_aio import keys
from crew_aio.engine import Engine
from crew_aio.errors import Invalid, NotFound, StaleLease
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
    snapshot,
    spec,
)


def test_success_completes_with_output(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    done, change = engine.release(t.id, "w1", T0 + 1, lease_id=t.lease_id, output={"r": 1})
    assert done is t
    assert (t.is_complete, t.output, t.completed_at, t.updated_at) == (
        True,
        {"r": 1},
        T0 + 1,
        T0 + 1,
    )
    assert (t.assigned_to, t.assigned_at, t.lease_id, t.lease_expires_at) == (None,) * 4
    assert engine.status(t, T0 + 1) is Status.COMPLETED
    assert list(change.tasks) == [t.id]
    assert acquire(engine, now=T0 + 1) == []


def test_release_without_lease_id_is_accepted_from_the_holder(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    engine.release(t.id, "w1", T0 + 1, output=3)
    assert t.is_complete and t.output == 3


def test_success_makes_children_ready(engine: Engine, gid: str) -> None:
    _p, c, other = create(engine, gid, child("p"), child("c", "p"), child("o", "p", "c"))
    complete(engine, acquire_one(engine), T0 + 1)
    assert c.pending_parents == 0 and other.pending_parents == 1
    assert engine.status(c, T0 + 1) is Status.READY
    assert engine.status(other, T0 + 1) is Status.WAITING
    assert acquirable(engine, now=T0 + 1) == ["c"]


def test_continuations_without_parent_ids_depend_on_the_releasing_task(
    engine: Engine, gid: str
) -> None:
    create(engine, gid, spec("p"))
    p = acquire_one(engine)
    _, change = engine.release(
        p.id, "w1", T0 + 1, output="out", children=[spec("k1"), spec("k2", "other")]
    )
    k1, k2 = (engine.tasks[tid] for tid in sorted(change.created))
    assert (k1.name, k2.name) == ("k1", "k2")
    assert k1.parent_ids == (p.id,) and k2.parent_ids == (p.id,)
    assert k1.group_id == gid
    assert p.children == [k1.id, k2.id]
    assert change.ready_channels == {"c", "other"}
    assert acquirable(engine, now=T0 + 1) == ["k1"]
    parents = engine.parents_of(k2)
    assert parents == [p] and parents[0].output == "out"


def test_continuations_with_parent_ids_depend_on_exactly_those_entries(
    engine: Engine, gid: str
) -> None:
    create(engine, gid, spec("p"))
    p = acquire_one(engine)
    _, change = engine.release(
        p.id, "w1", T0 + 1, children=[child("a"), child("b"), child("join", "a", "b")]
    )
    a, b, join = (engine.tasks[tid] for tid in sorted(change.created))
    assert a.parent_ids == (p.id,) and b.parent_ids == (p.id,)
    assert join.parent_ids == (a.id, b.id)
    assert join.pending_parents == 2
    assert engine.status(join, T0 + 1) is Status.WAITING
    assert acquirable(engine, now=T0 + 1) == ["a", "b"]


def test_continuation_with_real_parent_ids_also_depends_on_the_releasing_task(
    engine: Engine, gid: str
) -> None:
    create(engine, gid, spec("p"), spec("q", "other"))
    p = acquire_one(engine)
    (q,) = engine.channel_task_list("other", None, 0)
    _, change = engine.release(p.id, "w1", T0 + 1, children=[spec("k", parent_ids=(q.id,))])
    (k,) = (engine.tasks[tid] for tid in change.created)
    assert k.parent_ids == (q.id, p.id)
    assert k.pending_parents == 1


@pytest.mark.parametrize(
    "children",
    [
        pytest.param([child("a", "missing")], id="unknown-pseudo-id"),
        pytest.param([child("a"), child("a")], id="duplicate-child-id"),
        pytest.param([child("a", "b"), child("b", "a")], id="cycle"),
        pytest.param([child("a", "a")], id="self-cycle"),
        pytest.param([spec("a", parent_ids=("0" * 24,))], id="unknown-parent"),
    ],
)
def test_bad_children_change_nothing_and_keep_the_lease(
    engine: Engine, gid: str, children: list[Any]
) -> None:
    create(engine, gid, spec("p", key="k", workgroup="wg"), spec("mate", key="k"))
    p = acquire_one(engine)
    before = snapshot(engine)
    with pytest.raises(Invalid):
        engine.release(
            p.id, "w1", T0 + 1, lease_id=p.lease_id, children=children, workgroup_delay=50
        )
    assert snapshot(engine) == before
    assert engine.status(p, T0 + 1) is Status.LEASED
    complete(engine, p, T0 + 2, output="late")
    assert p.is_complete and p.output == "late"


def test_child_parent_in_another_group_is_invalid(engine: Engine, gid: str) -> None:
    other = new_group(engine, "other")
    (foreign,) = create(engine, other, spec("f", "x"))
    create(engine, gid, spec("p"))
    p = acquire_one(engine)
    before = snapshot(engine)
    with pytest.raises(Invalid):
        engine.release(p.id, "w1", T0 + 1, children=[spec("k", parent_ids=(foreign.id,))])
    assert snapshot(engine) == before


def test_error_costs_an_attempt_and_delays(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", remaining_attempts=3, error_delay=30))
    t = acquire_one(engine)
    engine.release(t.id, "w1", T0 + 1, lease_id=t.lease_id, error={"message": "boom"})
    assert t.remaining_attempts == 2
    assert list(t.errors) == [{"message": "boom"}]
    assert t.run_after == T0 + 31
    assert not t.is_complete and t.output is None
    assert (t.assigned_to, t.lease_id) == (None, None)
    assert engine.status(t, T0 + 1) is Status.DELAYED
    assert acquire(engine, now=T0 + 30.9) == []
    t2 = acquire_one(engine, worker="w2", now=T0 + 31)
    assert t2 is t
    engine.release(t.id, "w2", T0 + 32, error="again")
    assert list(t.errors) == [{"message": "boom"}, "again"]
    assert t.remaining_attempts == 1


def test_error_with_zero_delay_is_ready_at_once(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", error_delay=0))
    t = acquire_one(engine)
    engine.release(t.id, "w1", T0 + 1, error="x")
    assert acquire_one(engine, now=T0 + 1) is t


def test_last_attempt_fails_and_descendants_stay_waiting(engine: Engine, gid: str) -> None:
    a, b, c = create(
        engine, gid, child("a", remaining_attempts=1), child("b", "a"), child("c", "b")
    )
    t = acquire_one(engine)
    engine.release(t.id, "w1", T0 + 1, error="fatal")
    assert a.remaining_attempts == 0
    assert engine.status(a, T0 + 1000) is Status.FAILED
    assert [engine.status(x, T0 + 1000) for x in (b, c)] == [Status.WAITING, Status.WAITING]
    assert acquire(engine, now=T0 + 1000) == []
    assert engine.tick(T0 + 1000) is not None
    assert acquire(engine, now=T0 + 2000) == []


def test_error_ignores_children(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    _, change = engine.release(t.id, "w1", T0 + 1, error="x", children=[spec("k")])
    assert change.created == set()
    assert len(engine.tasks) == 1


def test_workgroup_delay_holds_back_only_that_workgroup(engine: Engine) -> None:
    g1, g2 = new_group(engine, "g1"), new_group(engine, "g2")
    (a,) = create(engine, g1, spec("a", workgroup="token1"))
    b, late = create(
        engine,
        g1,
        spec("b", workgroup="token1"),
        spec("late", workgroup="token1", run_after=T0 + 500),
    )
    (c,) = create(engine, g2, spec("c", "other", workgroup="token1"))
    (d,) = create(engine, g2, spec("d", workgroup="token2"))
    (e,) = create(engine, g2, spec("e"))
    t = acquire_one(engine)
    assert t is a
    _, change = engine.release(a.id, "w1", T0 + 10, output=1, workgroup_delay=100)
    # one cool-off for the workgroup (O(1), whatever its size): no task record is touched
    assert engine.cooling == {"token1": T0 + 110} and list(change.cooled) == ["token1"]
    assert set(change.tasks) == {a.id}
    run_after = {t.name: engine.run_after_of(t, T0 + 10) for t in (b, c, late, d, e)}
    assert run_after == {"b": T0 + 110, "c": T0 + 110, "late": T0 + 500, "d": None, "e": None}
    assert engine.status(b, T0 + 10) is Status.DELAYED
    assert acquirable(engine, now=T0 + 10) == ["d", "e"]
    assert acquire(engine, "other", now=T0 + 109) == []
    assert acquirable(engine, now=T0 + 110) == ["b"]
    assert acquirable(engine, "other", now=T0 + 110) == ["c"]


def test_workgroup_delay_with_error_delays_the_task_itself(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", workgroup="w", error_delay=5), spec("b", workgroup="w"))
    t = acquire_one(engine)
    engine.release(t.id, "w1", T0, error="rate limited", workgroup_delay=60)
    assert engine.run_after_of(a, T0) == T0 + 60 and engine.run_after_of(b, T0) == T0 + 60
    assert acquire(engine, now=T0 + 59) == []
    assert acquirable(engine, now=T0 + 60) == ["a", "b"]


def test_children_delay_applies_to_every_new_task(engine: Engine, gid: str) -> None:
    """As Crew: each task the release creates without a runAfter of its own gets the delay."""
    create(engine, gid, spec("p"))
    p = acquire_one(engine)
    _, change = engine.release(
        p.id, "w1", T0, children=[child("k1"), child("k2", run_after=T0 + 900), child("g", "k1")],
        children_delay=20,
    )  # fmt: skip
    k1, k2, g = (engine.tasks[tid] for tid in sorted(change.created))
    assert k1.run_after == T0 + 20
    assert k2.run_after == T0 + 900
    assert g.run_after == T0 + 20
    assert acquire(engine, now=T0 + 19) == []
    assert acquirable(engine, now=T0 + 20) == ["k1"]


def test_children_delay_also_delays_existing_children(engine: Engine, gid: str) -> None:
    _p, c = create(engine, gid, child("p"), child("c", "p"))
    complete(engine, acquire_one(engine), T0, children_delay=15)
    assert c.run_after == T0 + 15
    assert acquire(engine, now=T0 + 14) == []
    assert acquire_one(engine, now=T0 + 15) is c


def test_repeated_release_of_completed_task_is_a_no_op(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    lease_id = t.lease_id
    engine.release(t.id, "w1", T0 + 1, lease_id=lease_id, output="first")
    before = snapshot(engine)
    again, change = engine.release(
        t.id, "w1", T0 + 2, lease_id=lease_id, output="second", children=[spec("k")]
    )
    assert again is t and t.output == "first"
    assert not change and change.created == set()
    assert snapshot(engine) == before
    # from the same worker without a lease id (Crew's Worker sends none): safe too
    _, change = engine.release(t.id, "w1", T0 + 3, output="third")
    assert not change and t.output == "first"


@pytest.mark.parametrize(("worker", "lease"), [("w2", None), ("w1", "0" * 24)])
def test_release_of_a_task_completed_by_another_lease_is_stale(
    engine: Engine, gid: str, worker: str, lease: str | None
) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    engine.release(t.id, "w1", T0 + 1, output="first")
    before = snapshot(engine)
    with pytest.raises(StaleLease, match="completed by another lease"):
        engine.release(t.id, worker, T0 + 2, lease_id=lease, output="second")
    assert snapshot(engine) == before


def test_late_success_of_the_last_holder_is_taken(engine: Engine, gid: str) -> None:
    """A worker without heartbeats outlives its lease: its success still counts while nobody
    else has leased the task, whether the expiry was reclaimed yet or not."""
    a, b = create(engine, gid, spec("a"), spec("b", error_delay=0))
    acquire(engine, count=2)
    engine.tick(T0 + LEASE)  # b's lease is reclaimed (an attempt is charged), a's too
    engine.release(a.id, "w1", T0 + LEASE + 5, output="late a")
    assert (a.is_complete, a.output, a.held_by) == (True, "late a", "w1")
    (again,) = acquire(engine, worker="w2", now=T0 + LEASE + 1)
    assert again is b
    with pytest.raises(StaleLease):  # w2 holds it now: w1 is too late
        engine.release(b.id, "w1", T0 + LEASE + 2, output="late b")
    with pytest.raises(StaleLease):  # and may not settle it after w2's success either
        engine.release(b.id, "w2", T0 + LEASE + 3, output="w2's") and engine.release(
            b.id, "w1", T0 + LEASE + 4, output="late b"
        )
    assert b.output == "w2's"


def test_late_release_before_the_reclaim_is_taken(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    _, change = engine.release(t.id, "w1", T0 + LEASE + 30, output="late")
    assert t.is_complete and list(t.errors) == [] and t.id in change.tasks


def test_late_error_release_is_stale(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    engine.tick(T0 + LEASE)
    with pytest.raises(StaleLease):
        engine.release(t.id, "w1", T0 + LEASE + 1, error="late")
    assert list(t.errors) == [{"message": "lease expired", "workerId": "w1"}]


def _stale_setups(engine: Engine, gid: str) -> dict[str, tuple[str, str, str | None, float]]:
    """Each case: (task id, worker, lease id, now) that must be refused."""
    a, b, c, d = create(engine, gid, spec("a"), spec("b"), spec("c"), spec("d"))
    leased = {t.name: t for t in acquire(engine, count=3, lease=LEASE)}
    return {
        "wrong-worker": (a.id, "w2", leased["a"].lease_id, T0 + 1),
        "wrong-lease-id": (b.id, "w1", "0" * 24, T0 + 1),
        "expired-lease-other-lease-id": (c.id, "w1", "0" * 24, T0 + LEASE),
        "not-leased": (d.id, "w1", None, T0 + 1),
    }


@pytest.mark.parametrize(
    "case", ["wrong-worker", "wrong-lease-id", "expired-lease-other-lease-id", "not-leased"]
)
@pytest.mark.parametrize("outcome", ["output", "error"])
def test_stale_release_changes_nothing(engine: Engine, gid: str, case: str, outcome: str) -> None:
    task_id, worker, lease_id, now = _stale_setups(engine, gid)[case]
    before = snapshot(engine)
    kwargs: dict[str, Any] = {outcome: "x"}
    with pytest.raises(StaleLease):
        engine.release(
            task_id,
            worker,
            now,
            lease_id=lease_id,
            children=[spec("k")],
            workgroup_delay=9,
            **kwargs,
        )
    assert snapshot(engine) == before


def test_release_after_lease_was_reclaimed_and_reissued_is_stale(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", error_delay=0))
    t = acquire_one(engine, worker="w1")
    old_lease = t.lease_id
    engine.tick(T0 + LEASE)
    t2 = acquire_one(engine, worker="w1", now=T0 + LEASE)
    assert t2.lease_id != old_lease
    with pytest.raises(StaleLease):
        engine.release(t.id, "w1", T0 + LEASE + 1, lease_id=old_lease, output=1)
    assert not t.is_complete


def test_release_of_unknown_task_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        engine.release("nope", "w", T0)


def test_a_cooling_workgroup_is_skipped_whole(engine: Engine, gid: str) -> None:
    """A cool-off parks the workgroup's lane: the other workgroups of the channel are served at
    once, however many tasks the cooling one has; the lane comes back when the cool-off ends,
    and the cool-off survives a restart."""
    create(engine, gid, spec("rl", workgroup="t1"))
    create(engine, gid, *(spec(f"x{i}", workgroup="t1", priority=5) for i in range(2000)))
    create(engine, gid, spec("other", workgroup="t2"))
    t = acquire_one(engine)
    assert t.name == "x0"
    engine.release(t.id, "w1", T0, output=1, workgroup_delay=30)
    assert [x.name for x in acquire(engine, now=T0 + 1, count=5)] == ["other"]
    assert len(engine.thaws) == 1  # one parked lane, not 2,000 skipped tasks
    fresh = Engine()
    keys.load_into(fresh, keys.records_of(engine))
    assert fresh.cooling == {"t1": T0 + 30}
    assert acquire(fresh, now=T0 + 29) == []
    assert acquire_one(fresh, now=T0 + 30).name == "x1"
    engine.tick(T0 + 30)
    assert engine.cooling == {} and acquire_one(engine, now=T0 + 30).name == "x1"
