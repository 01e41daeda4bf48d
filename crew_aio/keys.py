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

from crew_aio.commit import Chunk
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
RAW = TASK  # records the store hands over in chunks as stored: msgspec decodes them into Tasks


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


def decode(records: Iterable[tuple[str, Any]], chunks: Iterable[Chunk] = ()) -> Loaded:
    """Store records → typed items; a record that cannot be used is named in ``skipped``.
    ``chunks`` (task records as stored) are decoded a chunk at a time as ``Loaded.chunks`` is
    read: the engine takes each chunk while its objects are fresh in the CPU's cache."""
    out = Loaded()
    for key, value in records:
        try:
            _decode_record(key, value, out)
        except (KeyError, TypeError, ValueError, AttributeError):
            out.skipped.append(key)
    out.chunks = _decode_chunks(chunks, out.skipped)
    return out


def _decode_record(key: str, value: Any, out: Loaded) -> None:
    if key.startswith(TASK):
        raw = isinstance(value, bytes)
        out.tasks.append(task_from_json(value) if raw else task_from_record(value))
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


def _decode_chunks(chunks: Iterable[Chunk], skipped: list[str]) -> Iterator[list[Task]]:
    """Each chunk's tasks, decoded in one call; a chunk with a malformed record (or one that
    is not one JSON value) is decoded record by record, and only the bad ones are skipped."""
    for chunk in chunks:
        try:
            tasks = tasks_from_json(chunk.array)
        except (TypeError, ValueError):
            tasks = []
        if len(tasks) != chunk.count:
            tasks = []
            for key, raw in chunk.rows():
                try:
                    tasks.append(task_from_json(raw.encode() if isinstance(raw, str) else raw))
                except (TypeError, ValueError):
                    skipped.append(key)
        yield tasks


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


def load_into(
    engine: Loadable, records: Iterable[tuple[str, Any]], chunks: Iterable[Chunk] = ()
) -> list[str]:
    """Rebuild ``engine`` from store records (and chunks of task records: ``Store.chunks``);
    the keys of the records that were skipped."""
    loaded = decode(records, chunks)
    skipped = engine.load(loaded)  # reads the chunks, adding to loaded.skipped
    return loaded.skipped + [task_key(tid) for tid in skipped]
