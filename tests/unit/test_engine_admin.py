"""Operator transitions: groups, pause/resume, retry, reset, pluck, update, delete."""

from __future__ import annotations

import pytest

from crew_aio import keys
from crew_aio.engine import Engine
from crew_aio.errors import Invalid, NotFound, StaleLease
from crew_aio.model import Status
from tests.unit.conftest import (
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


def _fail(engine: Engine, now: float = T0, channel: str = "c") -> None:
    """Lease the next task of ``channel`` and fail it once."""
    t = acquire_one(engine, channel, now=now)
    engine.release(t.id, "w1", now, error="x")


# groups ------------------------------------------------------------------------------------
def test_create_group(engine: Engine) -> None:
    group, change = engine.create_group("nightly", T0, is_paused=True)
    assert (group.name, group.is_paused, group.created_at, group.updated_at) == (
        "nightly",
        True,
        T0,
        T0,
    )
    assert engine.groups[group.id] is group
    assert list(change.groups) == [group.id] and change.tasks == {}


def test_pause_and_resume_group(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a"), spec("b"))
    held = acquire_one(engine)
    group, change = engine.update_group(gid, T0 + 1, is_paused=True)
    assert group.is_paused and list(change.groups) == [gid] and group.updated_at == T0 + 1
    assert engine.status(b, T0 + 1) is Status.PAUSED
    assert acquire(engine, now=T0 + 1) == []
    # a leased task finishes while the group is paused
    complete(engine, held, T0 + 2, output="done")
    assert a.is_complete
    _, change = engine.update_group(gid, T0 + 3, is_paused=False)
    assert change.ready_channels == {"c"}
    assert engine.status(b, T0 + 3) is Status.READY
    assert acquirable(engine, now=T0 + 3) == ["b"]


def test_resume_keeps_delayed_tasks_delayed(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("a", run_after=T0 + 100))
    engine.update_group(gid, T0, is_paused=True)
    engine.tick(T0 + 100)  # due while paused
    assert acquire(engine, now=T0 + 100) == []
    engine.update_group(gid, T0 + 50 + 100, is_paused=False)
    assert acquire_one(engine, now=T0 + 150) is t


def test_resume_before_run_after_waits_for_it(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("a", run_after=T0 + 100))
    engine.update_group(gid, T0, is_paused=True)
    engine.update_group(gid, T0 + 1, is_paused=False)
    assert acquire(engine, now=T0 + 99) == []
    assert acquire_one(engine, now=T0 + 100) is t


def test_rename_group(engine: Engine, gid: str) -> None:
    group, _ = engine.update_group(gid, T0 + 1, name="renamed")
    assert group.name == "renamed" and not group.is_paused


def test_retry_group_gives_failed_tasks_attempts(engine: Engine, gid: str) -> None:
    a, b, c = create(
        engine,
        gid,
        spec("a", remaining_attempts=1),
        spec("b", remaining_attempts=3),
        spec("done"),
    )
    _fail(engine)  # a fails for good
    _fail(engine)  # b has 2 left, delayed
    complete(engine, acquire_one(engine), T0)
    assert engine.status(a, T0) is Status.FAILED
    _, change = engine.retry_group(gid, 2, T0 + 1)
    assert a.remaining_attempts == 2 and a.run_after is None
    assert list(a.errors) == ["x"]
    assert b.remaining_attempts == 2 and b.run_after == T0 + 10  # not failed: untouched
    assert c.is_complete
    assert set(change.tasks) == {a.id}
    assert acquirable(engine, now=T0 + 1) == ["a"]


def test_reset_group_without_seeds_resets_every_task(engine: Engine, gid: str) -> None:
    a, b, c = create(engine, gid, child("a", key="k"), child("b", "a"), child("c", "b"))
    complete(engine, acquire_one(engine), T0, output="A")
    _fail(engine, T0 + 1)
    assert list(b.errors) == ["x"]
    t = acquire_one(engine, now=T0 + 20)
    assert t is b
    _, change = engine.reset_group(gid, T0 + 30)
    assert set(change.tasks) == {a.id, b.id, c.id}
    for x in (a, b, c):
        assert (x.is_complete, x.output, x.completed_at, list(x.errors)) == (False, None, None, [])
        assert (x.remaining_attempts, x.run_after, x.assigned_to, x.lease_id) == (
            5,
            None,
            None,
            None,
        )
    assert (a.pending_parents, b.pending_parents, c.pending_parents) == (0, 1, 1)
    assert [engine.status(x, T0 + 30) for x in (a, b, c)] == [
        Status.READY,
        Status.WAITING,
        Status.WAITING,
    ]
    assert acquirable(engine, now=T0 + 30) == ["a"]
    with pytest.raises(StaleLease):  # the old lease of b is gone
        engine.release(b.id, "w1", T0 + 31, output=1)
    assert engine.channels() == [
        {"name": "c", "totalCount": 3, "completedCount": 0, "assignedCount": 1}
    ]


def test_reset_group_with_seeds_deletes_the_rest(engine: Engine, gid: str) -> None:
    seed, s2, x, y = create(
        engine,
        gid,
        child("seed", is_seed=True),
        child("s2", "seed", is_seed=True),
        child("x", "s2"),
        child("y", "x", channel="other"),
    )
    complete(engine, acquire_one(engine), T0)
    t = acquire_one(engine)
    _, change = engine.release(t.id, "w1", T0, children=[spec("cont")])
    (cont,) = (engine.tasks[i] for i in change.created)
    complete(engine, acquire_one(engine), T0)  # x
    _, change = engine.reset_group(gid, T0 + 5)
    assert set(engine.tasks) == {seed.id, s2.id}
    assert {x.id, y.id, cont.id} <= set(change.tasks)
    assert s2.parent_ids == (seed.id,)
    assert seed.children == [s2.id] and s2.children is None
    assert not seed.is_complete and not s2.is_complete
    assert engine.status(s2, T0 + 5) is Status.WAITING
    assert acquirable(engine, now=T0 + 5) == ["seed"]
    assert engine.channels() == [
        {"name": "c", "totalCount": 2, "completedCount": 0, "assignedCount": 1}
    ]
    assert engine.group_task_list(gid, None, 0) == [s2, seed]  # newest first, as Crew


def test_reset_group_with_seeds_strips_deleted_parents(engine: Engine, gid: str) -> None:
    pre, seed = create(engine, gid, child("pre"), child("seed", "pre", is_seed=True))
    assert seed.pending_parents == 1
    engine.reset_group(gid, T0 + 1)
    assert seed.parent_ids == () and seed.pending_parents == 0
    assert pre.id not in engine.tasks
    assert acquirable(engine, now=T0 + 1) == ["seed"]


def test_reset_group_leaves_other_groups_alone(engine: Engine, gid: str) -> None:
    other = new_group(engine, "other")
    create(engine, gid, spec("a"))
    (b,) = create(engine, other, spec("b", "x"))
    complete(engine, acquire_one(engine, "x"), T0)
    engine.reset_group(gid, T0 + 1)
    assert b.is_complete


def test_reset_task_makes_children_wait_again(engine: Engine, gid: str) -> None:
    a, b, c = create(engine, gid, child("a"), child("b", "a"), child("c", "a"))
    complete(engine, acquire_one(engine), T0, output="A")
    complete(engine, acquire_one(engine), T0)  # b
    assert engine.status(c, T0) is Status.READY
    t, change = engine.reset_task(a.id, T0 + 1)
    assert t is a and set(change.tasks) == {a.id}
    assert (a.is_complete, a.output, a.remaining_attempts) == (False, None, 2)  # Crew's default
    assert c.pending_parents == 1 and b.pending_parents == 1
    assert engine.status(c, T0 + 1) is Status.WAITING
    assert b.is_complete  # a finished child is not reset
    (again,) = acquire(engine, now=T0 + 1, count=10)
    assert again is a
    complete(engine, again, T0 + 2)
    assert acquirable(engine, now=T0 + 2) == ["c"]


def test_reset_task_of_failed_task_restores_attempts(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a", remaining_attempts=1))
    _fail(engine)
    engine.reset_task(a.id, T0 + 1, attempts=1)  # what crew-ui sends
    assert (a.remaining_attempts, list(a.errors), a.run_after) == (1, [], None)
    assert acquire_one(engine, now=T0 + 1) is a


def test_retry_task(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a", remaining_attempts=1))
    _fail(engine)
    t, change = engine.retry_task(a.id, 3, T0 + 1)
    assert t.remaining_attempts == 3 and t.run_after is None and list(t.errors) == ["x"]
    assert list(change.tasks) == [a.id]
    assert acquire_one(engine, now=T0 + 1) is a


def test_retry_of_a_completed_task_sets_attempts_only(engine: Engine, gid: str) -> None:
    """Crew's retry sets remainingAttempts on any task; a complete one stays complete."""
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    complete(engine, t, T0, output="done")
    _, change = engine.retry_task(t.id, 3, T0 + 1)
    assert (t.is_complete, t.output, t.remaining_attempts) == (True, "done", 3)
    assert list(change.tasks) == [t.id] and acquire(engine, now=T0 + 1) == []


def test_pluck_copies_into_a_new_paused_group(engine: Engine, gid: str) -> None:
    _p, c = create(
        engine,
        gid,
        child("p"),
        child("c", "p", input={"i": 1}, priority=3, remaining_attempts=2, workgroup="wg"),
    )
    copy, change = engine.pluck(c.id, T0 + 1)
    group = engine.groups[copy.group_id]
    assert group.is_paused and group.id != gid and group.name == f"Pluck Task {c.id}"
    assert engine.group_task_list(group.id, None, 0) == [copy]
    assert copy.id != c.id and copy.id in change.created and list(change.groups) == [group.id]
    assert (copy.name, copy.channel, copy.input, copy.priority) == ("c", "c", {"i": 1}, 3)
    # Crew's pluck leaves remainingAttempts to fromData's default
    assert (copy.remaining_attempts, copy.workgroup, copy.parent_ids) == (5, "wg", ())
    assert (copy.is_complete, list(copy.errors), copy.created_at) == (False, [], T0 + 1)
    assert engine.status(copy, T0 + 1) is Status.PAUSED
    assert acquirable(engine, now=T0 + 1) == ["p"]
    engine.update_group(group.id, T0 + 2, is_paused=False)
    assert acquirable(engine, now=T0 + 2) == ["c"]
    assert c.pending_parents == 1


def test_update_task_priority_reorders(engine: Engine, gid: str) -> None:
    a, _b, c = create(engine, gid, spec("a"), spec("b"), spec("c"))
    engine.update_task(c.id, {"priority": 10}, T0 + 1)
    engine.update_task(a.id, {"priority": -1}, T0 + 1)
    assert acquirable(engine, now=T0 + 1) == ["c", "b", "a"]


def test_update_task_priority_back_and_forth(engine: Engine, gid: str) -> None:
    a, _b = create(engine, gid, spec("a"), spec("b"))
    engine.update_task(a.id, {"priority": -5}, T0)
    engine.update_task(a.id, {"priority": 0}, T0)
    engine.update_task(a.id, {"priority": -5}, T0)
    assert acquirable(engine) == ["b", "a"]


def test_update_task_channel_moves_it(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", "x"), spec("b", "x"))
    t, change = engine.update_task(a.id, {"channel": "y", "name": "moved"}, T0 + 1)
    assert t.channel == "y" and t.name == "moved" and list(change.tasks) == [a.id]
    assert acquirable(engine, "x", now=T0 + 1) == ["b"]
    assert acquirable(engine, "y", now=T0 + 1) == ["moved"]
    assert [x.name for x in engine.channel_task_list("y", None, 0)] == ["moved"]
    assert engine.channel_task_list("x", None, 0) == [b]
    assert engine.channels() == [
        {"name": "x", "totalCount": 1, "completedCount": 0, "assignedCount": 1},
        {"name": "y", "totalCount": 1, "completedCount": 0, "assignedCount": 1},
    ]


def test_update_task_run_after(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a"))
    engine.update_task(a.id, {"runAfter": T0 + 60}, T0 + 1)
    assert engine.status(a, T0 + 1) is Status.DELAYED
    assert acquire(engine, now=T0 + 59) == []
    engine.update_task(a.id, {"runAfter": None}, T0 + 2)
    assert acquire_one(engine, now=T0 + 2) is a


def test_update_task_remaining_attempts_revives_failed(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a", remaining_attempts=1, error_delay=0))
    _fail(engine)
    engine.update_task(a.id, {"remainingAttempts": 1}, T0 + 1)
    assert acquire_one(engine, now=T0 + 1) is a


def test_delete_task_cascades_to_all_descendants(engine: Engine, gid: str) -> None:
    root, a, b, c, d, other = create(
        engine,
        gid,
        child("root"),
        child("a", "root"),
        child("b", "root"),
        child("c", "a", "b"),
        child("d", "c", "other"),
        child("other"),
    )
    ids, change = engine.delete_task(a.id, T0 + 1)
    assert sorted(ids) == sorted([a.id, c.id, d.id])
    assert set(change.tasks) == set(ids)
    assert set(engine.tasks) == {root.id, b.id, other.id}
    assert root.children == [b.id] and b.children is None and other.children is None
    assert engine.group_task_list(gid, None, 0) == [other, b, root]
    assert engine.channels()[0]["totalCount"] == 3
    assert acquirable(engine, now=T0 + 1) == ["root", "other"]


def test_delete_leased_task_makes_its_lease_stale(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    engine.delete_task(t.id, T0 + 1)
    with pytest.raises(NotFound):
        engine.release(t.id, "w1", T0 + 2, output=1)
    assert engine.tick(T0 + 1000).tasks == {}
    assert engine.channels() == []


def test_delete_group_removes_its_tasks_only(engine: Engine, gid: str) -> None:
    other = new_group(engine, "other")
    create(engine, gid, child("a"), child("b", "a"))
    (keep,) = create(engine, other, spec("keep"))
    group, change = engine.delete_group(gid, T0 + 1)
    assert group.id == gid and list(change.groups) == [gid] and len(change.tasks) == 2
    assert set(engine.groups) == {other}
    assert list(engine.tasks) == [keep.id]
    assert engine.group_task_list(gid, None, 0) == []  # as Crew: no tasks of that id
    assert acquirable(engine, now=T0 + 1) == ["keep"]


def test_expired_groups(engine: Engine) -> None:
    old = new_group(engine, "old", now=T0)
    mid = new_group(engine, "mid", now=T0 + 100)
    new_group(engine, "new", now=T0 + 200)
    assert engine.expired_groups(T0 + 150) == [old, mid]
    assert engine.expired_groups(T0) == []


def test_group_with_recent_activity_is_not_expired(engine: Engine) -> None:
    old = new_group(engine, "old", now=T0)
    busy = new_group(engine, "busy", now=T0)
    renamed = new_group(engine, "renamed", now=T0)
    create(engine, busy, spec("a"), now=T0)
    complete(engine, acquire_one(engine, now=T0 + 500), T0 + 500)
    engine.update_group(renamed, T0 + 400, name="x")
    assert engine.expired_groups(T0 + 300) == [old]
    fresh = Engine()
    keys.load_into(fresh, snapshot(engine))  # activity survives a restart
    assert fresh.expired_groups(T0 + 300) == [old]


@pytest.mark.parametrize(
    "call",
    [
        lambda e: e.update_group("nope", T0, name="x"),
        lambda e: e.delete_group("nope", T0),
        lambda e: e.retry_group("nope", 1, T0),
        lambda e: e.reset_group("nope", T0),
        lambda e: e.reset_task("nope", T0),
        lambda e: e.retry_task("nope", 1, T0),
        lambda e: e.pluck("nope", T0),
        lambda e: e.update_task("nope", {"name": "x"}, T0),
        lambda e: e.delete_task("nope", T0),
        lambda e: e.extend("nope", "w", None, 1.0, T0),
    ],
)
def test_unknown_ids_are_not_found(engine: Engine, call: object) -> None:
    with pytest.raises(NotFound):
        call(engine)  # type: ignore[operator]


def test_reset_group_survives_a_parent_lost_by_the_store(engine: Engine, gid: str) -> None:
    p, c = create(engine, gid, child("p"), child("c", "p"))
    records = [r for r in snapshot(engine) if r[0] != f"t:{p.id}"]
    fresh = Engine()
    keys.load_into(fresh, records)
    orphan = fresh.tasks[c.id]
    assert orphan.pending_parents == 0
    fresh.reset_group(gid, T0 + 1)
    assert orphan.pending_parents == 0
    assert acquire_one(fresh, now=T0 + 1) is orphan


def test_update_parent_ids_relinks_the_task(engine: Engine, gid: str) -> None:
    """crew-ui's edit form sends parentIds: the task moves under its new parents."""
    a, b, c = create(engine, gid, child("a"), child("b"), child("c", "a"))
    complete(engine, acquire_one(engine), T0)  # a
    assert engine.status(c, T0) is Status.READY
    engine.update_task(c.id, {"parentIds": [b.id]}, T0 + 1)
    assert c.parent_ids == (b.id,) and c.pending_parents == 1
    assert a.children is None and b.children == [c.id]
    assert engine.status(c, T0 + 1) is Status.WAITING
    engine.update_task(c.id, {"parentIds": [b.id, b.id]}, T0 + 2)  # the same set: no change
    assert c.parent_ids == (b.id,)
    complete(engine, acquire_one(engine, now=T0 + 3), T0 + 3)  # b
    assert acquire_one(engine, now=T0 + 3) is c
    engine.update_task(c.id, {"parentIds": []}, T0 + 4)
    assert not c.parent_ids and b.children is None


@pytest.mark.parametrize("case", ["itself", "descendant", "missing", "other-group"])
def test_update_parent_ids_refuses_cycles_and_strangers(
    engine: Engine, gid: str, case: str
) -> None:
    a, _b, c = create(engine, gid, child("a"), child("b", "a"), child("c", "b"))
    (stranger,) = create(engine, new_group(engine, "other"), spec("s"))
    pid = {"itself": a.id, "descendant": c.id, "missing": "0" * 24, "other-group": stranger.id}
    before = snapshot(engine)
    with pytest.raises(Invalid) as err:
        engine.update_task(a.id, {"parentIds": [pid[case]], "name": "renamed"}, T0 + 1)
    assert err.value.field == "parentIds"
    assert snapshot(engine) == before
