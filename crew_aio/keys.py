"""The key schema of the store and the record codec: the one place that knows both.

The store keeps opaque ``key → JSON`` records and the engine keeps objects; this module maps one
onto the other:

==================  =====================================================================
key                 record
==================  =====================================================================
``t:<task id>``     a task (:func:`crew_aio.model.task_to_record`: defaults left out)
``g:<group id>``    a task group
``o:<id>``          an operator (Crew's HTTP push to a worker's URL)
``k:<key>``         what a create under an ``Idempotency-Key`` made (kept 24 h)
``w:<type>:<wg>``   a workgroup's cool-off (``1`` and ``"1"`` are two workgroups)
``m:ids``           the highest id issued: ids of deleted tasks never come back
``m:clock``         how far the server's clock got (it never runs backwards)
``m:health``        the store's own probe (``check``, ``recover``); never loaded
==================  =====================================================================

Unknown keys are ignored at load (a newer server's records survive a downgrade).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from crew_aio.model import (
    Change,
    Label,
    Loaded,
    Operator,
    Remembered,
    Task,
    TaskGroup,
    group_from_record,
    group_to_record,
    operator_from_record,
    operator_to_record,
    task_from_json,
    task_from_record,
    task_to_record,
    tasks_from_json,
)

__all__ = [
    "CLOCK_MARK",
    "HEALTH",
    "ID_MARK",
    "RAW",
    "cooling_key",
    "cooling_record",
    "decode",
    "group_key",
    "idempotency_key",
    "operator_key",
    "records_of",
    "remembered_record",
    "task_key",
    "writes_of",
]

TASK, GROUP, IDEMPOTENCY, COOLING, OPERATOR = "t:", "g:", "k:", "w:", "o:"
ID_MARK = "m:ids"
CLOCK_MARK = "m:clock"
HEALTH = "m:health"
RAW = (TASK,)  # records the store hands over as JSON bytes: msgspec decodes them into Tasks


def task_key(task_id: str) -> str:
    return TASK + task_id


def group_key(group_id: str) -> str:
    return GROUP + group_id


def operator_key(operator_id: str) -> str:
    return OPERATOR + operator_id


def idempotency_key(key: str) -> str:
    return IDEMPOTENCY + key


def cooling_key(workgroup: Label) -> str:
    """The record of a workgroup's cool-off (1 and "1" are two workgroups)."""
    return f"{COOLING}{type(workgroup).__name__}:{workgroup}"


def cooling_record(workgroup: Label, until: float) -> dict[str, Any]:
    return {"workgroup": workgroup, "until": until}


def remembered_record(remembered: Remembered) -> dict[str, Any]:
    r = remembered
    return {"kind": r.kind, "ids": list(r.ids), "fp": r.fingerprint, "at": r.at}


def _remembered(value: Any) -> Remembered:
    ids = tuple(str(i) for i in value["ids"])
    return Remembered(str(value["kind"]), ids, str(value["fp"]), float(value["at"]))


def decode(records: Iterable[tuple[str, Any]]) -> Loaded:
    """Store records → typed items; a record that cannot be used is named in ``skipped``."""
    out = Loaded()
    raws: list[tuple[str, bytes]] = []  # task records as stored: decoded a chunk at a time
    pool: dict[Any, Any] = {}  # see _share
    near: dict[str, str] = {}
    for key, value in records:
        if key.startswith(TASK) and isinstance(value, bytes):
            raws.append((key, value))
            if len(raws) == _CHUNK:
                _decode_tasks(raws, out, pool, near)
                raws = []
            continue
        try:
            _decode_record(key, value, out)
        except (KeyError, TypeError, ValueError, AttributeError):
            out.skipped.append(key)
    _decode_tasks(raws, out, pool, near)
    return out


def _decode_record(key: str, value: Any, out: Loaded) -> None:
    if key.startswith(TASK):
        out.tasks.append(task_from_record(value))
    elif key.startswith(GROUP):
        out.groups.append(group_from_record(value))
    elif key.startswith(OPERATOR):
        out.operators.append(operator_from_record(value))
    elif key == ID_MARK:
        out.ids.append(str(value["last"]))
    elif key == CLOCK_MARK:
        out.clock_mark = max(out.clock_mark, float(value["now"]))
    elif key.startswith(IDEMPOTENCY):
        out.remembered[key[len(IDEMPOTENCY) :]] = _remembered(value)
    elif key.startswith(COOLING):
        out.cooling.append((value["workgroup"], float(value["until"])))


_CHUNK = 1000


def _decode_tasks(
    raws: list[tuple[str, bytes]], out: Loaded, pool: dict[Any, Any], near: dict[str, str]
) -> None:
    """Decode a chunk of stored task records at once; if one is malformed, each on its own,
    so that only the bad ones are skipped."""
    if not raws:
        return
    try:
        tasks = tasks_from_json([raw for _, raw in raws])
    except (TypeError, ValueError):
        tasks = []
        for key, raw in raws:
            try:
                tasks.append(task_from_json(raw))
            except (TypeError, ValueError):
                out.skipped.append(key)
    _share(tasks, pool, near)
    out.tasks += tasks


def _share(tasks: list[Task], pool: dict[Any, Any], near: dict[str, str]) -> None:
    """One object for equal values a million tasks repeat: their group's id, their channel,
    their create and update times (a batch's tasks share one ``now``), and their parents' ids
    when the parent was stored shortly before (``near``: the last chunk's ids; a DAG is
    created in one batch). Done a chunk at a time while loading, so the next chunk reuses what
    the copies freed: ~200 bytes a task less resident."""
    ids = {t.id: t.id for t in tasks}
    for t in tasks:
        t.group_id = pool.setdefault(t.group_id, t.group_id)
        t.channel = pool.setdefault(t.channel, t.channel)
        t.created_at = pool.setdefault(t.created_at, t.created_at)
        t.updated_at = pool.setdefault(t.updated_at, t.updated_at)
        if t.parent_ids:
            t.parent_ids = tuple([ids.get(pid) or near.get(pid) or pid for pid in t.parent_ids])
    near.clear()
    near.update(ids)


class Graph(Protocol):
    """What :func:`records_of` reads of an engine."""

    @property
    def groups(self) -> dict[str, TaskGroup]: ...
    @property
    def tasks(self) -> dict[str, Task]: ...
    @property
    def cooling(self) -> dict[Label, float]: ...
    @property
    def operators(self) -> dict[str, Operator]: ...


def records_of(graph: Graph) -> Iterator[tuple[str, dict[str, Any]]]:
    """The group, task and cool-off records of a graph (snapshots and tests)."""
    for group in graph.groups.values():
        yield group_key(group.id), group_to_record(group)
    for t in graph.tasks.values():
        yield task_key(t.id), task_to_record(t)
    for workgroup, until in graph.cooling.items():
        yield cooling_key(workgroup), cooling_record(workgroup, until)
    for op in graph.operators.values():
        yield operator_key(op.id), operator_to_record(op)


class Staging(Graph, Protocol):
    """What :func:`writes_of` reads of an engine, besides :class:`Graph`."""

    @property
    def remembered(self) -> dict[str, Remembered]: ...


def writes_of(graph: Staging, change: Change) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """The records ``change`` touched, other than tasks', as they are now: ``(key, record)``,
    or ``(key, None)`` for one to delete. (Task records are the hot path: the service writes
    them itself, with :func:`task_key` inlined.)"""
    for gid in change.groups:
        g = graph.groups.get(gid)
        yield group_key(gid), None if g is None else group_to_record(g)
    for oid in change.operators:
        op = graph.operators.get(oid)
        yield operator_key(oid), None if op is None else operator_to_record(op)
    for workgroup in change.cooled:
        until = graph.cooling.get(workgroup)
        yield cooling_key(workgroup), None if until is None else cooling_record(workgroup, until)
    for key in change.keys:
        remembered = graph.remembered.get(key)
        record = None if remembered is None else remembered_record(remembered)
        yield idempotency_key(key), record


class Loadable(Protocol):
    def load(self, loaded: Loaded) -> list[str]: ...


def load_into(engine: Loadable, records: Iterable[tuple[str, Any]]) -> list[str]:
    """Rebuild ``engine`` from store records; the keys of the records that were skipped."""
    loaded = decode(records)
    return loaded.skipped + [task_key(tid) for tid in engine.load(loaded)]
