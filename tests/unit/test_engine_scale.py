"""Big graphs: nothing recurses, nothing goes quadratic (no timing asserts: they just run).

The cyclic GC is paused while they run, as the server freezes it after loading
(docs/ARCHITECTURE.md):
the point here is the engine's own complexity, not the collector's passes over 100k objects.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator

import pytest

from crew_aio.engine import Engine, TaskSpec
from crew_aio.errors import Invalid
from crew_aio.model import Status
from tests.unit.conftest import T0, new_group

N = 100_000
FAN = 10_000


@pytest.fixture(autouse=True)
def _no_gc_passes() -> Iterator[None]:
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _chain(n: int) -> list[TaskSpec]:
    """An n-long chain as one TaskChild list."""
    names = [f"n{i}" for i in range(n)]
    specs = [TaskSpec(names[0], "c", child_id=names[0])]
    specs += [
        TaskSpec(n, "c", child_id=n, pseudo_parents=(p,)) for p, n in itertools.pairwise(names)
    ]
    return specs


def test_chain_of_100k_created_in_one_batch_completed_link_by_link_and_deleted() -> None:
    engine = Engine()
    gid = new_group(engine)
    tasks, change = engine.create_tasks(gid, _chain(N), T0)
    assert len(tasks) == N == len(change.created)
    assert tasks[-1].parent_ids == (tasks[-2].id,)
    assert sum(t.pending_parents for t in tasks) == N - 1
    now = T0
    for i in range(N):
        (got,), _ = engine.acquire("c", "w", now, 60.0, 1)
        assert got is tasks[i]
        engine.release(got.id, "w", now, lease_id=got.lease_id, output=i)
        now += 0.001
    assert tasks[0].output == 0 and tasks[-1].output == N - 1
    assert engine.group_progress(gid) == 1.0
    assert engine.channels() == [
        {"name": "c", "totalCount": N, "completedCount": N, "assignedCount": 0}
    ]
    ids, change = engine.delete_task(tasks[0].id, now)  # the whole chain, in one call
    assert len(ids) == N == len(change.tasks)
    assert engine.tasks == {} and engine.channels() == []
    assert engine.group_task_list(gid, None, 0) == []


def test_fan_out_of_10k_children_with_one_join() -> None:
    engine = Engine()
    gid = new_group(engine)
    fan = [TaskSpec(f"f{i}", "c", child_id=f"f{i}", pseudo_parents=("root",)) for i in range(FAN)]
    join = TaskSpec(
        name="join", channel="j", child_id="join", pseudo_parents=tuple(s.name for s in fan)
    )
    tasks, _ = engine.create_tasks(
        gid, [TaskSpec(name="root", channel="c", child_id="root"), *fan, join], T0
    )
    root, joined = tasks[0], tasks[-1]
    assert len(root.children or ()) == FAN and joined.pending_parents == FAN
    (got,), _ = engine.acquire("c", "w", T0, 60.0)
    engine.release(got.id, "w", T0, output="root")
    leased, _ = engine.acquire("c", "w", T0 + 1, 60.0, FAN)
    assert len(leased) == FAN
    for i, t in enumerate(leased):
        assert joined.pending_parents == FAN - i
        engine.release(t.id, "w", T0 + 1, output=i)
    assert engine.status(joined, T0 + 1) is Status.READY
    assert len(engine.parents_of(joined)) == FAN
    (j,), _ = engine.acquire("j", "w", T0 + 2, 60.0)
    assert j is joined
    ids, _ = engine.delete_task(root.id, T0 + 3)
    assert len(ids) == FAN + 2 and engine.tasks == {}


def test_cycle_through_100k_entries_is_found_and_creates_nothing() -> None:
    engine = Engine()
    gid = new_group(engine)
    specs = _chain(N)
    specs[0] = TaskSpec(
        name="n0", channel="c", child_id="n0", pseudo_parents=(f"n{N - 1}",)
    )  # close the ring
    with pytest.raises(Invalid, match="cycle") as info:
        engine.create_tasks(gid, specs, T0)
    assert info.value.field == "[0]._parent_ids"
    assert engine.tasks == {} and engine.group_task_list(gid, None, 0) == []
    tasks, _ = engine.create_tasks(gid, _chain(N)[:3], T0)  # the engine is still usable
    assert [t.pending_parents for t in tasks] == [0, 1, 1]
