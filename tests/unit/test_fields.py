"""The task field table: every list of task fields is derived from ``Task``'s declaration, and
the wire declarations that cannot be derived (request bodies, the documented answer) are held
to it here."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import pytest

from crew_aio import protocol as p
from crew_aio.engine import Engine, TaskSpec
from crew_aio.fields import EDIT, GIVEN, INTERNAL, PLUCK, REQUIRED, RUNTIME, table
from crew_aio.model import (
    API_ORDER,
    EDITABLE,
    PLUCKED,
    TASK_FIELDS,
    Status,
    Task,
    task_to_api,
    task_to_record,
)


def wires(struct: type[msgspec.Struct]) -> list[str]:
    return list(struct.__struct_encode_fields__)


def test_the_table_is_the_task_struct() -> None:
    assert [f.attr for f in TASK_FIELDS] == list(Task.__struct_fields__)
    assert [f.wire for f in TASK_FIELDS] == wires(Task)
    by_attr = {f.attr: f for f in TASK_FIELDS}
    assert by_attr["error_delay"].wire == "errorDelayInSeconds"
    assert by_attr["remaining_attempts"].default == 5 and by_attr["errors"].default == ()
    assert REQUIRED in by_attr["id"].roles and RUNTIME in by_attr["children"].roles


def test_request_bodies_take_exactly_the_fields_the_table_names() -> None:
    given = {f.wire for f in TASK_FIELDS if f.has(GIVEN)}
    assert set(wires(p.CreateTaskBody)) == given
    assert set(wires(p.UpdateTaskBody)) == {f.wire for f in TASK_FIELDS if f.has(EDIT)}
    assert set(EDITABLE) == set(wires(p.UpdateTaskBody))


def test_the_documented_answer_is_the_rendered_one() -> None:
    t = Task("a", "g", "n", "c")
    rendered = task_to_api(t, Status.READY, False)
    assert list(rendered) == wires(p.TaskOut)
    assert list(rendered)[: len(API_ORDER)] == list(API_ORDER)
    hidden = {f.wire for f in TASK_FIELDS if f.has(INTERNAL) or f.has(RUNTIME)}
    assert not hidden & set(rendered)
    msgspec.convert(rendered, p.TaskOut)  # the types agree too


def test_a_record_holds_every_stored_field_and_no_runtime_one() -> None:
    stored = [f for f in TASK_FIELDS if not f.has(RUNTIME)]
    values: dict[str, Any] = {
        "id": "x", "group_id": "g", "name": "n", "channel": "c", "errors": ["e"],
        "parent_ids": ("p",), "children": ["z"], "pending_parents": 3, "queued": True,
        "lease_filed": 9.0,
    }  # fmt: skip
    for f in stored:
        if f.attr not in values:
            values[f.attr] = 7 if isinstance(f.default, bool | int | float) else "v"
    record = task_to_record(Task(**values))
    assert set(record) == {f.wire for f in stored}


def test_a_pluck_copies_exactly_the_plucked_fields() -> None:
    engine = Engine()
    group, _ = engine.create_group("g", 1.0)
    spec = TaskSpec("n", "c", workgroup="w", key="k", remaining_attempts=3, priority=4,
                    run_after=5.0, progress_weight=6, is_seed=True, error_delay=7,
                    input={"i": 1})  # fmt: skip
    (t,), _ = engine.create_tasks(group.id, [spec], 1.0)
    copy, _ = engine.pluck(t.id, 2.0)
    for f in TASK_FIELDS:
        if f.has(PLUCK):
            assert getattr(copy, f.attr) == getattr(t, f.attr), f.attr
    assert set(PLUCKED) == {"name", "channel", "workgroup", "key", "priority", "progress_weight",
                            "is_seed", "error_delay", "input"}  # fmt: skip
    assert copy.remaining_attempts == 5 and copy.run_after is None  # not plucked: defaults


def test_a_body_becomes_a_spec_with_every_given_field() -> None:
    from crew_aio.service import _read_spec, _spec_reader

    body = msgspec.convert(
        {"name": "n", "channel": "c", "workgroup": "w", "key": 3, "remainingAttempts": 2,
         "priority": 1, "runAfter": 5000, "progressWeight": 2, "isSeed": True,
         "errorDelayInSeconds": 9, "input": [1], "parentIds": ["a"]},
        p.TaskChildBody,
    )  # fmt: skip
    engine = Engine()
    group, _ = engine.create_group("g", 1.0)
    (parent,), _ = engine.create_tasks(group.id, [TaskSpec("p", "c")], 1.0)
    spec = _read_spec(body, (parent.id,), True, None, None)
    (t,), _ = engine.create_tasks(group.id, [spec], 2.0)
    given = [f for f in TASK_FIELDS if f.has(GIVEN) and f.attr != "parent_ids"]
    assert len(given) == 11
    for f in given:
        assert getattr(t, f.attr) == getattr(spec, f.attr), f.attr
    assert (t.name, t.key, t.run_after, t.remaining_attempts) == ("n", 3, 5.0, 2)
    assert (t.error_delay, t.is_seed, t.input, t.workgroup) == (9, True, [1], "w")
    assert t.max_attempts == 2 and t.parent_ids == (parent.id,) and t.created_at == 2.0
    assert t.parents_complete is True

    class Short(msgspec.Struct, rename="camel"):
        name: str
        channel: str

    with pytest.raises(TypeError, match="has no field"):
        _spec_reader(Short)


def test_a_spec_takes_the_given_fields_only() -> None:
    spec = TaskSpec("n", "c", key="k", parent_ids=["a"])
    assert (spec.name, spec.key, spec.remaining_attempts, spec.parent_ids) == ("n", "k", 5, ("a",))
    with pytest.raises(TypeError):
        TaskSpec("n", "c", is_complete=True)


def test_roles_come_from_annotations() -> None:
    class Toy(msgspec.Struct):
        a: Annotated[int, GIVEN | EDIT] = 1
        b: int = 2

    (a, b) = table(Toy)
    assert a.has(GIVEN) and a.has(EDIT) and not a.has(PLUCK)
    assert not b.roles
