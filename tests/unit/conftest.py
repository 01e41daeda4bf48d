"""Shared helpers for the engine unit tests: fixed times, spec builders, snapshots."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from crew_aio import keys
from crew_aio.engine import Engine, TaskSpec
from crew_aio.model import Task

T0 = 1_800_000_000.0
LEASE = 60.0


def spec(name: str = "t", channel: str = "c", **kw: Any) -> TaskSpec:
    """A TaskSpec with test defaults (error delay 10 s so timing is easy to follow)."""
    kw.setdefault("error_delay", 10.0)
    return TaskSpec(name=name, channel=channel, **kw)


def child(cid: str, *parents: str, channel: str = "c", **kw: Any) -> TaskSpec:
    """A TaskChild entry: ``_child_id`` = cid, ``_parent_ids`` = parents (None when empty)."""
    return spec(cid, channel, child_id=cid, pseudo_parents=parents or None, **kw)


def snapshot(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    """A deep copy of every persisted record, sorted (the engine mutates lists in place)."""
    return copy.deepcopy(sorted(keys.records_of(engine), key=lambda r: r[0]))


def new_group(engine: Engine, name: str = "g", now: float = T0, **kw: Any) -> str:
    group, _ = engine.create_group(name, now, **kw)
    return group.id


def create(engine: Engine, gid: str, *specs: TaskSpec, now: float = T0) -> list[Task]:
    tasks, _ = engine.create_tasks(gid, list(specs), now)
    return tasks


def acquire(
    engine: Engine,
    channel: str = "c",
    worker: str = "w1",
    now: float = T0,
    count: int = 1,
    lease: float = LEASE,
) -> list[Task]:
    tasks, _ = engine.acquire(channel, worker, now, lease, count)
    return tasks


def acquire_one(
    engine: Engine, channel: str = "c", worker: str = "w1", now: float = T0, lease: float = LEASE
) -> Task:
    tasks = acquire(engine, channel, worker, now, 1, lease)
    assert len(tasks) == 1, f"expected one task on {channel!r}, got {tasks}"
    return tasks[0]


def acquirable(engine: Engine, channel: str = "c", now: float = T0) -> list[str]:
    """Names of every task a worker could lease now, in hand-out order (the leases are real)."""
    return [str(t.name) for t in acquire(engine, channel, "probe", now, count=10_000)]


def complete(engine: Engine, task: Task, now: float = T0, output: Any = None, **kw: Any) -> Task:
    assert task.assigned_to is not None and task.lease_id is not None
    done, _ = engine.release(
        task.id, task.assigned_to, now, lease_id=task.lease_id, output=output, **kw
    )
    return done


@pytest.fixture
def engine() -> Engine:
    return Engine()


@pytest.fixture
def gid(engine: Engine) -> str:
    return new_group(engine)
