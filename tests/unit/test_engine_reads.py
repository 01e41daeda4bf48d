"""The read side (status, counts, progress, channels, lists) and load/records round trips."""

from __future__ import annotations

import pytest

from crew_aio import keys
from crew_aio.engine import Engine, TaskSpec
from crew_aio.errors import StaleLease
from crew_aio.model import Status, task_to_api
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


def _zoo(engine: Engine, gid: str) -> dict[str, str]:
    """One task per reachable status at T0 + 1; returns name → id."""
    tasks = create(
        engine,
        gid,
        child("completed", channel="x"),
        child("leased", channel="x"),
        child("failed", channel="f", remaining_attempts=1),
        child("waiting", "completed", "ready"),
        child("delayed", channel="z", run_after=T0 + 100),
        child("ready", channel="r"),
    )
    done = acquire_one(engine, "x")
    complete(engine, done, T0)
    acquire_one(engine, "x")
    bad = acquire_one(engine, "f")
    engine.release(bad.id, "w1", T0, error="x")
    (paused,) = create(
        engine, new_group(engine, "held", is_paused=True), child("paused", channel="y")
    )
    return {str(t.name): t.id for t in [*tasks, paused]}


def test_status_of_every_value(engine: Engine, gid: str) -> None:
    ids = _zoo(engine, gid)
    got = {name: engine.status(engine.tasks[tid], T0 + 1) for name, tid in ids.items()}
    assert got == {name: Status(name) for name in ids}
    # every derived status but "cancelled" (which nothing in the engine produces) is reachable
    assert set(got.values()) == set(Status)


def test_status_precedence(engine: Engine) -> None:
    paused = new_group(engine, "p", is_paused=True)
    _p, w, f = create(
        engine,
        paused,
        child("p"),
        child("w", "p", run_after=T0 + 100),
        child("f", remaining_attempts=0),
    )
    assert engine.status(w, T0) is Status.PAUSED
    assert engine.status(f, T0) is Status.FAILED
    engine.update_group(paused, T0, is_paused=False)
    assert engine.status(w, T0) is Status.WAITING


def test_group_counts(engine: Engine, gid: str) -> None:
    _zoo(engine, gid)
    counts = engine.group_counts(gid, T0 + 1)
    unpaused = {s.value: 1 for s in Status if s is not Status.PAUSED}  # "paused" is its own group
    assert {k: v for k, v in counts.items() if v} == unpaused
    assert set(counts) == {s.value for s in Status}
    held = next(g.id for g in engine.groups.values() if g.name == "held")
    assert {k: v for k, v in engine.group_counts(held, T0 + 1).items() if v} == {"paused": 1}
    assert counts == engine.group_counts(gid, T0 + 1)
    later = engine.group_counts(gid, T0 + 100)
    assert later["delayed"] == 0 and later["ready"] == 2


def test_group_counts_of_empty_group(engine: Engine, gid: str) -> None:
    assert sum(engine.group_counts(gid, T0).values()) == 0
    assert engine.group_progress(gid) == 0.0


def test_group_progress_is_weighted(engine: Engine, gid: str) -> None:
    create(
        engine,
        gid,
        spec("heavy", "h", progress_weight=3.0),
        spec("light", "l", progress_weight=1.0),
        spec("zero", "z", progress_weight=0.0),
    )
    assert engine.group_progress(gid) == 0.0
    complete(engine, acquire_one(engine, "l"), T0)
    assert engine.group_progress(gid) == pytest.approx(0.25)
    complete(engine, acquire_one(engine, "h"), T0)
    assert engine.group_progress(gid) == pytest.approx(1.0)


def _recount(engine: Engine) -> list[dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for t in engine.tasks.values():
        row = out.setdefault(
            t.channel,
            {"name": t.channel, "totalCount": 0, "completedCount": 0, "assignedCount": 0},
        )
        row["totalCount"] += 1  # type: ignore[operator]
        row["completedCount"] += t.is_complete  # type: ignore[operator]
        row["assignedCount"] += not t.is_complete and t.assigned_to is not None  # type: ignore[operator]
    return [out[k] for k in sorted(out)]


def test_channel_counters_through_the_lifecycle(engine: Engine, gid: str) -> None:
    def row(total: int, done: int, assigned: int) -> dict[str, object]:
        return {"name": "c", "totalCount": total, "completedCount": done, "assignedCount": assigned}

    assert engine.channels() == []
    a, _b, c, _d = create(
        engine, gid, child("a", key="k"), child("b", key="k"), child("c"), child("d", "c")
    )
    assert engine.channels() == [row(4, 0, 0)]
    acquire_one(engine)  # a, with b assigned as its mate
    assert engine.channels() == [row(4, 0, 2)]
    t = acquire_one(engine)
    assert t is c
    assert engine.channels() == [row(4, 0, 3)]
    complete(engine, a, T0)
    assert engine.channels() == [row(4, 2, 1)]
    engine.release(c.id, "w1", T0, error="x")
    assert engine.channels() == [row(4, 2, 0)]
    engine.reset_task(a.id, T0)
    assert engine.channels() == [row(4, 1, 0)]
    engine.delete_task(c.id, T0)
    assert engine.channels() == [row(2, 1, 0)] == _recount(engine)
    engine.reset_group(gid, T0)
    assert engine.channels() == [row(2, 0, 0)] == _recount(engine)
    engine.delete_group(gid, T0)
    assert engine.channels() == []


def test_list_groups_newest_first_with_pagination(engine: Engine) -> None:
    ids = [new_group(engine, f"g{i}", now=T0 + i) for i in range(5)]
    assert [g.id for g in engine.list_groups(None, 0)] == ids[::-1]
    assert [g.name for g in engine.list_groups(2, 0)] == ["g4", "g3"]
    assert [g.name for g in engine.list_groups(2, 2)] == ["g2", "g1"]
    assert [g.name for g in engine.list_groups(10, 4)] == ["g0"]
    assert engine.list_groups(10, 5) == []


def test_task_lists_newest_first_with_pagination(engine: Engine, gid: str) -> None:
    """Crew sorts a group's and a channel's tasks by createdAt, descending."""
    other = new_group(engine, "other")
    for i in range(5):
        create(engine, gid if i % 2 == 0 else other, spec(f"t{i}", "c" if i < 4 else "d"))
    assert [t.name for t in engine.group_task_list(gid, None, 0)] == ["t4", "t2", "t0"]
    assert [t.name for t in engine.group_task_list(gid, 1, 1)] == ["t2"]
    assert [t.name for t in engine.channel_task_list("c", None, 0)] == ["t3", "t2", "t1", "t0"]
    assert [t.name for t in engine.channel_task_list("c", 2, 1)] == ["t2", "t1"]
    assert engine.channel_task_list("nope", None, 0) == []


def test_parents_of_skips_nothing_and_keeps_order(engine: Engine, gid: str) -> None:
    b, a, j = create(engine, gid, child("b"), child("a"), child("j", "a", "b"))
    assert engine.parents_of(j) == [a, b]
    assert engine.parents_of(a) == []


def test_ids_are_unique_and_sortable_by_creation(engine: Engine) -> None:
    seen: list[str] = []
    for step in range(3):
        g = new_group(engine, f"g{step}", now=T0 + step)
        seen.append(g)
        seen += [t.id for t in create(engine, g, *(spec(f"t{i}") for i in range(5)), now=T0 + step)]
        seen += [t.lease_id or "" for t in acquire(engine, now=T0 + step, count=2)]
    assert len(set(seen)) == len(seen)
    assert seen == sorted(seen)
    assert all(len(i) == 24 for i in seen)


def test_ids_stay_sortable_when_the_clock_steps_back(engine: Engine) -> None:
    a = new_group(engine, now=T0 + 10)
    b = new_group(engine, now=T0)
    assert b > a


def test_task_to_api_shape(engine: Engine, gid: str) -> None:
    p, c = create(engine, gid, child("p"), child("c", "p", run_after=T0 + 1.5))
    api = task_to_api(c, engine.status(c, T0), False)
    assert api["parentIds"] == [p.id] and api["parentsComplete"] is False
    assert api["executeMessageId"] is None and api["examineMessageId"] is None
    assert task_to_api(p, engine.status(p, T0), True)["isPaused"] is True
    crew_fields = ["_id", "taskGroupId", "name", "channel", "workgroup", "key",
                   "remainingAttempts", "isPaused", "parentsComplete", "isComplete", "priority",
                   "runAfter", "progressWeight", "isSeed", "errorDelayInSeconds", "input",
                   "output", "errors", "createdAt", "parentIds", "assignedTo", "assignedAt",
                   "executeMessageId", "examineMessageId"]  # fmt: skip
    assert list(api)[: len(crew_fields)] == crew_fields
    assert api["status"] == "waiting"
    assert api["createdAt"] == "2027-01-15T08:00:00.000Z"
    assert api["runAfter"] == "2027-01-15T08:00:01.500Z"


def test_load_of_records_reproduces_records(engine: Engine, gid: str) -> None:
    _zoo(engine, gid)
    other = new_group(engine, "other", is_paused=True)
    create(engine, other, child("k1", key="k"), child("k2", "k1", key="k2"))
    fresh = Engine()
    assert keys.load_into(fresh, keys.records_of(engine)) == []
    assert len(fresh.tasks) == len(engine.tasks)
    assert snapshot(fresh) == snapshot(engine)
    assert list(keys.records_of(fresh)) == list(keys.records_of(engine))


def test_load_reproduces_behaviour(engine: Engine, gid: str) -> None:
    ids = _zoo(engine, gid)
    fresh = Engine()
    keys.load_into(fresh, snapshot(engine))
    for e in (engine, fresh):
        got = {name: e.status(e.tasks[tid], T0 + 1) for name, tid in ids.items()}
        assert got == {name: Status(name) for name in ids}
        assert e.group_counts(gid, T0 + 1) == engine.group_counts(gid, T0 + 1)
        assert e.channels() == engine.channels()
        assert e.next_deadline() == engine.next_deadline()
    assert [t.id for t in acquire(fresh, "r", now=T0 + 1)] == [ids["ready"]]
    assert acquire(fresh, "z", now=T0 + 99) == []
    assert [t.id for t in acquire(fresh, "z", now=T0 + 100)] == [ids["delayed"]]
    # the next id continues above every loaded one
    g_new = new_group(fresh, now=T0)
    assert g_new > max(fresh.tasks)


def test_loaded_lease_expires_at_its_original_deadline(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, spec("a", key="k", error_delay=0), spec("b", key="k"))
    t = acquire_one(engine, worker="w1", lease=30)
    fresh = Engine()
    keys.load_into(fresh, snapshot(engine))
    ta, tb = fresh.tasks[a.id], fresh.tasks[b.id]
    assert fresh.next_deadline() == T0 + 30
    assert fresh.status(ta, T0 + 1) is Status.LEASED and tb.assigned_to == "w1"
    assert acquire(fresh, worker="w2", now=T0 + 29) == []
    fresh.tick(T0 + 30)
    assert list(ta.errors) == [{"message": "lease expired", "workerId": "w1"}]
    assert tb.assigned_to is None
    assert acquire_one(fresh, worker="w2", now=T0 + 30) is ta
    with pytest.raises(StaleLease):
        fresh.release(a.id, "w1", T0 + 31, lease_id=t.lease_id)


def test_loaded_lease_can_be_released_by_its_holder(engine: Engine, gid: str) -> None:
    a, b, _k = create(engine, gid, child("a", key="k"), child("b", key="k"), child("k", "b"))
    t = acquire_one(engine, worker="w1")
    fresh = Engine()
    keys.load_into(fresh, snapshot(engine))
    fresh.release(a.id, "w1", T0 + 5, lease_id=t.lease_id, output="o")
    assert fresh.tasks[b.id].is_complete and fresh.tasks[b.id].output == "o"
    assert acquirable(fresh, now=T0 + 5) == ["k"]


def test_load_skips_tasks_of_unknown_groups(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a"))
    records = [r for r in snapshot(engine) if r[0].startswith("t:")]
    fresh = Engine()
    assert keys.load_into(fresh, [*records, ("m:meta", {"x": 1})]) == [f"t:{a.id}"]
    assert fresh.tasks == {}


def test_load_skips_malformed_records(engine: Engine, gid: str) -> None:
    (a,) = create(engine, gid, spec("a"))
    good = snapshot(engine)
    fresh = Engine()
    skipped = keys.load_into(fresh, [*good, ("t:broken", {"name": "no id"}), ("g:broken", {})])
    assert sorted(skipped) == ["g:broken", "t:broken"]
    assert list(fresh.tasks) == [a.id]
    assert acquire_one(fresh).name == "a"


def test_ids_never_repeat_after_a_restart_even_of_deleted_tasks() -> None:
    from crew_aio.keys import ID_MARK

    first = Engine()
    group, _ = first.create_group("g", T0)
    tasks, _ = first.create_tasks(
        group.id, [TaskSpec(name="a", channel="c"), TaskSpec(name="b", channel="c")], T0
    )
    first.delete_task(tasks[1].id, T0)
    records = [*keys.records_of(first), (ID_MARK, {"last": first.last_id})]
    second = Engine()
    keys.load_into(second, records)
    again, _ = second.create_tasks(
        group.id, [TaskSpec(name="c", channel="c")], T0
    )  # same millisecond
    assert again[0].id > tasks[1].id
