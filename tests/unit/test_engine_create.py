"""Readiness at creation and atomic batch (mini-DAG) create."""

from __future__ import annotations

import pytest

from crew_aio.engine import Engine
from crew_aio.errors import Invalid, NotFound
from crew_aio.model import Status
from tests.unit.conftest import T0, acquirable, child, create, new_group, snapshot, spec


def test_task_without_parents_is_acquirable_at_once(engine: Engine, gid: str) -> None:
    (t,) = create(engine, gid, spec("a"))
    assert engine.status(t, T0) is Status.READY
    assert t.pending_parents == 0
    assert acquirable(engine) == ["a"]


def test_created_task_fields(engine: Engine, gid: str) -> None:
    (t,) = create(
        engine,
        gid,
        spec("a", "ch", workgroup="wg", key="k", remaining_attempts=3, priority=7, input={"x": 1}),
    )
    assert (t.group_id, t.name, t.channel, t.workgroup, t.key) == (gid, "a", "ch", "wg", "k")
    assert (t.remaining_attempts, t.max_attempts, t.priority) == (3, 3, 7)
    assert t.input == {"x": 1}
    assert (t.created_at, t.updated_at, t.is_complete, list(t.errors)) == (T0, T0, False, [])
    assert t.assigned_to is None and t.lease_id is None


def test_task_with_incomplete_parent_waits(engine: Engine, gid: str) -> None:
    (p,) = create(engine, gid, spec("p"))
    (c,) = create(engine, gid, spec("c", parent_ids=(p.id,)))
    assert c.pending_parents == 1
    assert engine.status(c, T0) is Status.WAITING
    assert acquirable(engine) == ["p"]


def test_task_whose_parents_are_all_complete_is_ready(engine: Engine, gid: str) -> None:
    (p,) = create(engine, gid, spec("p"))
    (leased,) = engine.acquire("c", "w", T0, 60)[0]
    engine.release(leased.id, "w", T0, output=1)
    (c,) = create(engine, gid, spec("c", parent_ids=(p.id,)))
    assert c.pending_parents == 0
    assert engine.status(c, T0) is Status.READY
    assert acquirable(engine) == ["c"]


def test_batch_pseudo_ids_build_the_dag(engine: Engine, gid: str) -> None:
    a, b, j = create(engine, gid, child("a"), child("b"), child("j", "a", "b"))
    assert j.parent_ids == (a.id, b.id)
    assert (a.parent_ids, b.parent_ids) == ((), ())
    assert j.pending_parents == 2
    assert sorted(a.children or []) == [j.id] and b.children == [j.id]
    assert [engine.status(t, T0) for t in (a, b, j)] == [
        Status.READY,
        Status.READY,
        Status.WAITING,
    ]
    assert engine.parents_of(j) == [a, b]


def test_batch_returns_tasks_in_request_order_even_when_parents_come_later(
    engine: Engine, gid: str
) -> None:
    late_child, parent = create(engine, gid, child("x", "p"), child("p"))
    assert [late_child.name, parent.name] == ["x", "p"]
    assert late_child.parent_ids == (parent.id,)
    assert late_child.pending_parents == 1


def test_batch_mixes_real_parent_ids_and_pseudo_ids(engine: Engine, gid: str) -> None:
    (root,) = create(engine, gid, spec("root"))
    a, b = create(engine, gid, child("a", parent_ids=(root.id,)), child("b", "a"))
    assert a.parent_ids == (root.id,)
    assert b.parent_ids == (a.id,)
    assert root.children == [a.id]


def test_batch_duplicate_pseudo_parent_is_one_edge(engine: Engine, gid: str) -> None:
    a, b = create(engine, gid, child("a"), child("b", "a", "a"))
    assert b.parent_ids == (a.id,)
    assert b.pending_parents == 1


def test_batch_entries_without_child_id_are_roots(engine: Engine, gid: str) -> None:
    tasks = create(engine, gid, spec("x"), spec("y"))
    assert [t.parent_ids for t in tasks] == [(), ()]
    assert acquirable(engine) == ["x", "y"]


def test_batch_create_of_nothing_creates_nothing(engine: Engine, gid: str) -> None:
    assert create(engine, gid) == []
    assert engine.tasks == {}


@pytest.mark.parametrize(
    ("entries", "field"),
    [
        pytest.param([child("a"), child("b", "nope")], "[1]._parent_ids", id="unknown-pseudo-id"),
        pytest.param([child("a"), child("a")], "[1]._child_id", id="duplicate-child-id"),
        pytest.param([child("a", "a")], "[0]._parent_ids", id="self-cycle"),
        pytest.param([child("a", "b"), child("b", "a")], "[0]._parent_ids", id="two-cycle"),
        pytest.param(
            [child("r"), child("a", "r", "c"), child("b", "a"), child("c", "b")],
            "[1]._parent_ids",
            id="long-cycle",
        ),
        pytest.param(
            [child("a"), spec("b", parent_ids=("000000000000000000000000",))],
            "[1].parentIds",
            id="unknown-real-parent",
        ),
    ],
)
def test_invalid_batch_creates_nothing(
    engine: Engine, gid: str, entries: list[object], field: str
) -> None:
    create(engine, gid, spec("existing"))
    before = snapshot(engine)
    with pytest.raises(Invalid) as info:
        engine.create_tasks(gid, entries, T0 + 1)  # type: ignore[arg-type]
    assert info.value.field == field
    assert snapshot(engine) == before
    assert len(engine.tasks) == 1
    assert acquirable(engine, now=T0 + 1) == ["existing"]


def test_parent_in_another_group_is_invalid_and_creates_nothing(engine: Engine, gid: str) -> None:
    other = new_group(engine, "other")
    (foreign,) = create(engine, other, spec("foreign"))
    before = snapshot(engine)
    with pytest.raises(Invalid) as info:
        engine.create_tasks(gid, [spec("ok"), spec("bad", parent_ids=(foreign.id,))], T0)
    assert info.value.field == "[1].parentIds"
    assert snapshot(engine) == before
    assert foreign.children is None


def test_invalid_batch_does_not_consume_ids(engine: Engine, gid: str) -> None:
    fresh = Engine()
    fresh_gid = new_group(fresh)
    with pytest.raises(Invalid):
        engine.create_tasks(gid, [child("a", "a")], T0)
    (t1,) = create(engine, gid, spec("x"))
    (t2,) = create(fresh, fresh_gid, spec("x"))
    assert t1.id == t2.id


def test_create_in_unknown_group_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        engine.create_tasks("nope", [spec("a")], T0)
    assert engine.tasks == {}


def test_create_reports_the_change(engine: Engine, gid: str) -> None:
    tasks, change = engine.create_tasks(
        gid, [child("a", channel="x"), child("b", "a", channel="y")], T0
    )
    assert change.created == {t.id for t in tasks}
    assert list(change.tasks) == [t.id for t in tasks]
    assert change.ready_channels == {"x"}
