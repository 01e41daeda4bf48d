"""Value types of the task graph and their two JSON forms.

* the **record** form is what the store keeps (``t:<id>`` / ``g:<id>``): every persisted field,
  times as epoch seconds;
* the **API** form is what docs/API.md names (camelCase, ISO-8601 times, derived ``status``).

Runtime-only fields (children, the count of incomplete parents, queue flags) are rebuilt by the
engine at load and never persisted. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any, Protocol

import msgspec

from crew_aio.fields import (
    EDIT,
    GIVEN,
    INTERNAL,
    PLUCK,
    REQUIRED,
    RUNTIME,
    TIME,
    compile_function,
    differs_from_default,
    table,
)

__all__ = [
    "Change",
    "Label",
    "Loaded",
    "Operator",
    "Remembered",
    "Status",
    "Task",
    "TaskGroup",
    "format_time",
    "group_from_record",
    "group_to_api",
    "group_to_record",
    "task_from_record",
    "task_to_api",
    "task_to_record",
]


Label = str | int | float
"""A task's name, key or workgroup, or a group's name: Crew keeps a number as it was sent."""


class Status(enum.StrEnum):
    """The derived status of a task (docs/API.md ``status``)."""

    WAITING = "waiting"
    READY = "ready"
    DELAYED = "delayed"
    LEASED = "leased"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"


@dataclass(slots=True, eq=False)
class TaskGroup:
    id: str
    name: Label
    is_paused: bool = False
    created_at: float = 0.0
    updated_at: float = 0.0
    # runtime only: the last change to the group or any of its tasks (expired-group cleanup)
    active_at: float = 0.0
    # runtime only: a delete is under way (a slice at a time): nothing is handed out or added
    deleting: bool = False


@dataclass(slots=True)
class Change:
    """What one engine call touched: the service persists it, then publishes it."""

    tasks: dict[str, None] = field(default_factory=dict)
    created: set[str] = field(default_factory=set)
    groups: dict[str, None] = field(default_factory=dict)
    ready_channels: set[str] = field(default_factory=set)
    deleted: dict[str, str] = field(default_factory=dict)  # task id → its group id
    keys: dict[str, None] = field(default_factory=dict)  # idempotency keys added or expired
    cooled: dict[Label, None] = field(default_factory=dict)  # workgroup cool-offs set or ended
    operators: dict[str, None] = field(default_factory=dict)  # operators added, edited, deleted
    # what an operation did as a whole, for watchers: (group id, Crew's event, its data), e.g.
    # ("g1", "group:syncPause", {"isPaused": True}); the touched tasks and groups are above
    notes: list[tuple[str, str, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        """Anything to persist or to announce (a delayed task turning ready touches no record)."""
        return bool(
            self.tasks or self.groups or self.ready_channels or self.keys or self.cooled
            or self.notes or self.operators
        )  # fmt: skip


@dataclass(slots=True, eq=False)
class Operator:
    """Crew's Operator: ready tasks of ``channel`` are leased by the server itself and POSTed to
    ``url`` (an HTTP worker); the answer is the release."""

    id: str
    channel: str
    url: str
    request_config: dict[str, Any] | None = None  # headers (and a timeout) of the POST
    is_paused: bool = False
    created_at: float = 0.0


def operator_to_record(op: Operator) -> dict[str, Any]:
    return {"_id": op.id, "channel": op.channel, "url": op.url,
            "requestConfig": op.request_config, "isPaused": op.is_paused,
            "createdAt": op.created_at}  # fmt: skip


def operator_from_record(record: dict[str, Any]) -> Operator:
    config = record.get("requestConfig")
    return Operator(
        id=str(record["_id"]),
        channel=str(record["channel"]),
        url=str(record["url"]),
        request_config=config if isinstance(config, dict) else None,
        is_paused=bool(record.get("isPaused", False)),
        created_at=float(record.get("createdAt", 0.0)),
    )


def operator_to_api(op: Operator) -> dict[str, Any]:
    """Crew's Operator document."""
    return {"_id": op.id, "channel": op.channel, "url": op.url,
            "requestConfig": op.request_config, "isPaused": op.is_paused,
            "createdAt": format_time(op.created_at)}  # fmt: skip


@dataclass(slots=True)
class Remembered:
    """What a create with an ``Idempotency-Key`` did: a retry gets the same objects back."""

    kind: str  # "group" | "task" | "tasks"
    ids: tuple[str, ...]
    fingerprint: str  # of the request (path and body): a reuse for another is refused
    at: float


@dataclass(slots=True)
class Loaded:
    """What a store held, decoded (``crew_aio.keys.decode``): the engine is rebuilt from it."""

    groups: list[TaskGroup] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
    # the bulk of the tasks, in id order: chunks decoded as the engine takes them (a chunk
    # that cannot be used adds its keys to ``skipped``, so read that after the load)
    chunks: Iterable[list[Task]] = ()
    operators: list[Operator] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)  # the highest ids issued (the id mark)
    clock_mark: float = 0.0  # how far the server's clock got
    remembered: dict[str, Remembered] = field(default_factory=dict)
    cooling: list[tuple[Label, float]] = field(default_factory=list)  # (workgroup, until)
    skipped: list[str] = field(default_factory=list)  # keys of records that could not be used


_WIRE = {
    "id": "_id",
    "group_id": "taskGroupId",
    "error_delay": "errorDelayInSeconds",
}


def _wire_name(attr: str) -> str:
    """Task attribute → its record/API name (camelCase, Crew's spelling)."""
    head, *rest = attr.split("_")
    return _WIRE.get(attr) or head + "".join(word.title() for word in rest)


class Task(msgspec.Struct, eq=False, gc=False, rename=_wire_name):
    """One task. A msgspec Struct: compact, untracked by the GC (a million stay resident), and
    decoded straight from its stored JSON record at boot. Never holds a reference cycle.

    This is the task field table: each field is declared once, with its type, its default and
    its roles (:mod:`crew_aio.fields`); the record encoder, the API renderer, the editable and
    plucked fields and a create's spec (``crew_aio.engine.graph.TaskSpec``) are derived from it."""

    id: Annotated[str, REQUIRED]
    group_id: Annotated[str, REQUIRED]
    name: Annotated[Label, REQUIRED | GIVEN | EDIT | PLUCK]
    channel: Annotated[str, REQUIRED | GIVEN | EDIT | PLUCK]
    workgroup: Annotated[Label | None, GIVEN | EDIT | PLUCK] = None
    key: Annotated[Label | None, GIVEN | EDIT | PLUCK] = None
    remaining_attempts: Annotated[int, GIVEN | EDIT] = 5
    max_attempts: Annotated[int, INTERNAL] = 5  # remainingAttempts at create
    is_complete: bool = False
    # Crew's stored ``parentsComplete`` of a task with no parents: true only when it was
    # created with a ``parentIds`` list, false again after a group reset
    parents_complete: bool = False
    priority: Annotated[int | float, GIVEN | EDIT | PLUCK] = 0
    run_after: Annotated[float | None, TIME | GIVEN | EDIT] = None
    progress_weight: Annotated[int | float, GIVEN | EDIT | PLUCK] = 1
    is_seed: Annotated[bool, GIVEN | EDIT | PLUCK] = False
    error_delay: Annotated[int | float, GIVEN | EDIT | PLUCK] = 30
    input: Annotated[Any, GIVEN | EDIT | PLUCK] = None
    output: Any = None
    # a tuple: most tasks never fail, and () is one object for all of them (an empty list
    # each was 72 bytes a task); an error makes a new tuple
    errors: tuple[Any, ...] = ()
    created_at: Annotated[float, REQUIRED | TIME] = 0.0
    updated_at: Annotated[float, REQUIRED | TIME] = 0.0
    completed_at: Annotated[float | None, TIME] = None
    parent_ids: Annotated[tuple[str, ...], GIVEN | EDIT] = ()  # an edit re-links the task
    assigned_to: str | None = None
    assigned_at: Annotated[float | None, TIME] = None
    lease_id: str | None = None
    lease_expires_at: Annotated[float | None, TIME] = None
    # the worker and lease that held the task last: set when its lease expires (that worker's
    # late success is still taken while nobody else leased the task) and when it completes (a
    # repeated release must come from the same lease)
    held_by: Annotated[str | None, INTERNAL] = None
    held_lease: Annotated[str | None, INTERNAL] = None
    # rebuilt at load, never stored or shown
    children: Annotated[list[str] | None, RUNTIME] = None
    pending_parents: Annotated[int, RUNTIME] = 0
    queued: Annotated[bool, RUNTIME] = False
    lease_filed: Annotated[float | None, RUNTIME] = None  # its entry's deadline in the lease heap


TASK_FIELDS = table(Task)
EDITABLE = {f.wire: f.attr for f in TASK_FIELDS if f.has(EDIT)}  # PUT /task/:id: wire → attr
PLUCKED = tuple(f.attr for f in TASK_FIELDS if f.has(PLUCK))
GIVEN_FIELDS = tuple(f for f in TASK_FIELDS if f.has(GIVEN))
_GIVEN_ATTRS = frozenset(f.attr for f in GIVEN_FIELDS)


def format_time(when: float | None) -> str | None:
    """Epoch seconds → ``2026-11-28T04:15:03.123Z`` (None stays None).

    Hot: a dozen calls per task rendered, mostly of a few recent values (a change stamps
    ``updatedAt``, ``assignedAt`` and the like with one ``now``): those come from a small dict.
    Like datetime, the value is rounded to the microsecond, then cut to the millisecond.
    """
    if when is None:
        return None
    text = _RECENT.get(when)
    if text is not None:
        return text
    frac, whole = math.modf(when)  # the split datetime.fromtimestamp makes, to match it exactly
    micros = round(frac * 1e6)
    seconds = int(whole) + micros // 1_000_000
    head = _SECONDS.get(seconds) or _second(seconds)
    text = head + _MILLIS[(micros % 1_000_000) // 1000]
    if len(_RECENT) >= 512:
        _RECENT.clear()
    _RECENT[when] = text
    return text


_RECENT: dict[float, str] = {}  # epoch seconds → text, for the values rendered last
_SECONDS: dict[int, str] = {}  # epoch second → "2026-11-28T04:15:03." (bounded: see _second)
_MILLIS = [f"{ms:03d}Z" for ms in range(1000)]


def _second(seconds: int) -> str:
    if len(_SECONDS) >= 4096:
        _SECONDS.clear()
    text = _SECONDS[seconds] = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.")
    return text


def _record_encoder() -> Callable[[Task], dict[str, Any]]:
    """``task_to_record``, generated from the table: REQUIRED fields always, the others while
    they differ from their default (smaller writes, faster boot), field by field."""
    env: dict[str, Any] = {}
    stored = [f for f in TASK_FIELDS if f.stored]
    head = ", ".join(f"{f.wire!r}: t.{f.attr}" for f in stored if f.has(REQUIRED))
    src = ["def task_to_record(t):", f"    r = {{{head}}}"]
    for f in stored:
        if not f.has(REQUIRED):
            src.append(f"    if {differs_from_default('t.' + f.attr, f.default, env)}:")
            src.append(f"        r[{f.wire!r}] = t.{f.attr}")
    src.append("    return r")
    return compile_function("task_to_record", src, env)


task_to_record = _record_encoder()
task_to_record.__doc__ = """Every persisted field of a task that differs from its default (times as
epoch seconds), REQUIRED fields always; generated from the field table (the reference, a loop
over the table, is :func:`task_to_record_reference`: tests check the two agree)."""


def task_to_record_reference(task: Task) -> dict[str, Any]:
    """:func:`task_to_record` as a loop over the field table (the reference for tests)."""
    record = {f.wire: getattr(task, f.attr) for f in TASK_FIELDS if f.has(REQUIRED)}
    for f in TASK_FIELDS:
        if f.has(REQUIRED) or not f.stored:
            continue
        value, default = getattr(task, f.attr), f.default
        if value is not default and (type(value) is not type(default) or value != default):
            record[f.wire] = value
    return record


_TASK_DECODER = msgspec.json.Decoder(Task)


def task_from_record(record: dict[str, Any]) -> Task:
    """Inverse of :func:`task_to_record`; raises msgspec.ValidationError on a malformed one."""
    return msgspec.convert(record, Task)


def task_from_json(raw: bytes) -> Task:
    """A stored task record's bytes → Task in one C call (boot loads a million of these)."""
    return _TASK_DECODER.decode(raw)


_TASKS_DECODER = msgspec.json.Decoder(list[Task])


def tasks_from_json(raw: bytes) -> list[Task]:
    """A JSON array of stored task records → Tasks in one C call (~15 % less than one call
    each); raises as :func:`task_from_json` when one of them is malformed."""
    return _TASKS_DECODER.decode(raw)


def group_to_record(group: TaskGroup) -> dict[str, Any]:
    return {
        "_id": group.id,
        "name": group.name,
        "isPaused": group.is_paused,
        "createdAt": group.created_at,
        "updatedAt": group.updated_at,
    }


def group_from_record(record: dict[str, Any]) -> TaskGroup:
    return TaskGroup(
        id=record["_id"],
        name=record["name"],
        is_paused=bool(record.get("isPaused", False)),
        created_at=float(record.get("createdAt", 0.0)),
        updated_at=float(record.get("updatedAt", 0.0)),
    )


_STATUS_TEXT = {status: status.value for status in Status}  # .value is a slow descriptor


# The API form: Crew's Task document, every field in its order, then ours; then any other field
# the table shows, in table order. Names here that are no field are derived from the arguments.
API_ORDER = (
    "_id", "taskGroupId", "name", "channel", "workgroup", "key", "remainingAttempts", "isPaused",
    "parentsComplete", "isComplete", "priority", "runAfter", "progressWeight", "isSeed",
    "errorDelayInSeconds", "input", "output", "errors", "createdAt", "parentIds", "assignedTo",
    "assignedAt", "executeMessageId", "examineMessageId",
    "status", "leaseId", "leaseExpiresAt", "updatedAt", "completedAt",
)  # fmt: skip
_DERIVED = {
    "isPaused": "paused",  # the group's: a task's isPaused mirrors its group, as Crew keeps it
    "parentsComplete": "t.pending_parents == 0 if t.parent_ids else t.parents_complete",
    # the runAfter a client sees (its workgroup's cool-off may reach further)
    "runAfter": "fmt(t.run_after if run_after is None else run_after)",
    "executeMessageId": "None",  # Crew's Cloud Tasks messengers: not served (README)
    "examineMessageId": "None",
    "status": "STATUS_TEXT[status]",
}


def _api_renderer() -> Callable[..., dict[str, Any]]:
    by_wire = {f.wire: f for f in TASK_FIELDS if f.shown}
    names = [*API_ORDER, *(w for w in by_wire if w not in API_ORDER)]
    items = []
    for wire in names:
        if wire in _DERIVED:
            expr = _DERIVED[wire]
        else:
            f = by_wire[wire]  # a name in API_ORDER that is neither a field nor derived: KeyError
            expr = f"t.{f.attr}"
            if f.has(TIME):
                expr = f"fmt({expr})"
            elif f.default == ():
                expr = f"list({expr})"
        items.append(f"        {wire!r}: {expr},")
    src = ["def task_to_api(t, status, paused, run_after=None):", "    return {", *items, "    }"]
    return compile_function("task_to_api", src, {"fmt": format_time, "STATUS_TEXT": _STATUS_TEXT})


class _Renderer(Protocol):
    def __call__(
        self, task: Task, status: Status, paused: bool, run_after: float | None = None
    ) -> dict[str, Any]: ...


task_to_api: _Renderer = _api_renderer()
task_to_api.__doc__ = """``task_to_api(task, status, paused, run_after=None)``: the Task object of
the API (:data:`API_ORDER`), generated from the field table. ``paused`` is the group's;
``run_after`` is the one a client sees (its workgroup's cool-off may reach further)."""


def group_to_api(
    group: TaskGroup, counts: dict[str, int] | None = None, progress: float | None = None
) -> dict[str, Any]:
    """The TaskGroup object (docs/API.md); ``counts``/``progress`` when computed by the caller."""
    out: dict[str, Any] = {
        "_id": group.id,
        "name": group.name,
        "isPaused": group.is_paused,
        "createdAt": format_time(group.created_at),
        "updatedAt": format_time(group.updated_at),
    }
    if counts is not None:
        out["counts"] = counts
    if progress is not None:
        out["progress"] = progress
    return out
