"""Each engine operation records into its own Change, current while it runs and only then."""

from __future__ import annotations

import pytest

from crew_aio.engine import Engine, TaskSpec
from crew_aio.model import Change

NOW = 1000.0


def spec(name: str, channel: str = "c") -> TaskSpec:
    return TaskSpec(name=name, channel=channel)


def test_a_primitive_outside_an_operation_fails_loudly() -> None:
    engine = Engine()
    group, _ = engine.create_group("g", NOW)
    (t,), _ = engine.create_tasks(group.id, [spec("t")], NOW)
    with pytest.raises(RuntimeError, match="outside an operation"):
        engine._touch(t, NOW)


def test_a_change_handed_out_is_never_written_to_again() -> None:
    engine = Engine()
    group, first = engine.create_group("g", NOW)
    before = (dict(first.tasks), dict(first.groups), set(first.ready_channels))
    (t,), second = engine.create_tasks(group.id, [spec("t")], NOW)
    (leased,), third = engine.acquire("c", "w", NOW, 30.0)
    assert leased is t
    assert (dict(first.tasks), dict(first.groups), set(first.ready_channels)) == before
    assert first is not second is not third
    assert list(second.tasks) == [t.id] and list(third.tasks) == [t.id]
    assert engine.cool("wg", NOW + 5).cooled == {"wg": None}


def test_sliced_operations_interleaved_keep_their_own_changes() -> None:
    engine = Engine()
    a, _ = engine.create_group("a", NOW)
    b, _ = engine.create_group("b", NOW)
    a_tasks, _ = engine.create_tasks(a.id, [spec(f"a{i}") for i in range(10)], NOW)
    b_tasks, _ = engine.create_tasks(b.id, [spec(f"b{i}") for i in range(10)], NOW)
    delete = engine.delete_group_steps(a.id, NOW + 1, step=3)
    reset = engine.reset_group_steps(b.id, NOW + 1, 5, step=3)
    results: dict[str, tuple[object, Change]] = {}
    between = []
    while len(results) < 2:
        for name, steps in (("delete", delete), ("reset", reset)):
            if name in results:
                continue
            try:
                next(steps)
            except StopIteration as stop:
                results[name] = stop.value
            # another operation between slices gets a change of its own
            between.append(engine.tick(NOW + 1))
    _, deleted = results["delete"]
    _, reset_change = results["reset"]
    assert set(deleted.tasks) == {t.id for t in a_tasks}
    assert set(deleted.groups) == {a.id}
    assert set(reset_change.tasks) == {t.id for t in b_tasks}
    assert all(not ch.tasks and not ch.groups for ch in between)


def test_an_operation_called_by_another_joins_its_change() -> None:
    engine = Engine()
    group, _ = engine.create_group("g", NOW)
    (t,), _ = engine.create_tasks(group.id, [spec("t")], NOW)
    copy, ch = engine.pluck(t.id, NOW)  # creates a group, then the copy: one change
    assert set(ch.groups) == {copy.group_id} and set(ch.tasks) == {copy.id}


def test_a_change_left_open_is_caught_by_the_next_operation() -> None:
    engine = Engine()
    engine._ch = Change()  # as if an operation had forgotten to close its change
    with pytest.raises(RuntimeError, match="left its change open"):
        engine.acquire("c", "w", NOW, 30.0)
