"""Value types of the task graph and their two JSON forms.

* the **record** form is what the store keeps (``t:<id>`` / ``g:<id>``): every persisted field,
  times as epoch seconds;
* the **API** form is what API.md names (camelCase, ISO-8601 times, derived ``status``).

Runtime-only fields (children, the count of incomplete parents, queue flags) are rebuilt by the
engine at load and never persisted. Nothing here does I/O or reads the clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

__all__ = [
    "Change",
    "Label",
    "Loaded",
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
    """The derived status of a task (API.md ``status``)."""

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

    def __bool__(self) -> bool:
        """Anything to persist or to announce (a delayed task turning ready touches no record)."""
        return bool(self.tasks or self.groups or self.ready_channels or self.keys or self.cooled)


@dataclass(slots=True)
class Remembered:
    """What a create with an ``Idempotency-Key`` did: a retry gets the same objects back."""

    kind: str  # "group" | "task" | "tasks"
    ids: tuple[str, ...]
    fingerprint: str  # of the request (method, path, body): a reuse for another is refused
    at: float


@dataclass(slots=True)
class Loaded:
    """What a store held, decoded (``crew_aio.keys.decode``): the engine is rebuilt from it."""

    groups: list[TaskGroup] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)
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
    decoded straight from its stored JSON record at boot. Never holds a reference cycle."""

    id: str
    group_id: str
    name: Label
    channel: str
    workgroup: Label | None = None
    key: Label | None = None
    remaining_attempts: int = 5
    max_attempts: int = 5
    is_complete: bool = False
    # Crew's stored ``parentsComplete`` of a task with no parents: true only when it was
    # created with a ``parentIds`` list, false again after a group reset
    parents_complete: bool = False
    priority: int | float = 0
    run_after: float | None = None
    progress_weight: int | float = 1
    is_seed: bool = False
    error_delay: int | float = 30
    input: Any = None
    output: Any = None
    errors: list[Any] = msgspec.field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    completed_at: float | None = None
    parent_ids: tuple[str, ...] = ()
    assigned_to: str | None = None
    assigned_at: float | None = None
    lease_id: str | None = None
    lease_expires_at: float | None = None
    # the worker and lease that held the task last: set when its lease expires (that worker's
    # late success is still taken while nobody else leased the task) and when it completes (a
    # repeated release must come from the same lease)
    held_by: str | None = None
    held_lease: str | None = None
    # runtime only: never written to a record (see task_to_record), rebuilt at load
    children: list[str] | None = None
    pending_parents: int = 0
    queued: bool = False
    lease_filed: float | None = None  # the deadline of the lease's entry in the lease heap


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


# Record form: the always-present fields, then (attribute, wire name, default) of the optional
# ones, which a record leaves out while they hold their default (smaller writes, faster boot).
_REQUIRED = (
    ("id", "_id"),
    ("group_id", "taskGroupId"),
    ("name", "name"),
    ("channel", "channel"),
    ("created_at", "createdAt"),
    ("updated_at", "updatedAt"),
)
_OPTIONAL: tuple[tuple[str, str, Any], ...] = (
    ("workgroup", "workgroup", None),
    ("key", "key", None),
    ("remaining_attempts", "remainingAttempts", 5),
    ("max_attempts", "maxAttempts", 5),
    ("is_complete", "isComplete", False),
    ("parents_complete", "parentsComplete", False),
    ("priority", "priority", 0),
    ("run_after", "runAfter", None),
    ("progress_weight", "progressWeight", 1),
    ("is_seed", "isSeed", False),
    ("error_delay", "errorDelayInSeconds", 30),
    ("input", "input", None),
    ("output", "output", None),
    ("errors", "errors", []),
    ("completed_at", "completedAt", None),
    ("parent_ids", "parentIds", ()),
    ("assigned_to", "assignedTo", None),
    ("assigned_at", "assignedAt", None),
    ("lease_id", "leaseId", None),
    ("lease_expires_at", "leaseExpiresAt", None),
    ("held_by", "heldBy", None),
    ("held_lease", "heldLease", None),
)


def task_to_record(task: Task) -> dict[str, Any]:  # noqa: C901 (unrolled on purpose)
    """Every persisted field of ``task`` that differs from its default; times as epoch seconds.

    Hot (every touched task of every change): spelled out field by field, ~3x the speed of a
    loop over ``_OPTIONAL``, which stays the reference (tests check the two agree).
    """
    t = task
    record: dict[str, Any] = {
        "_id": t.id,
        "taskGroupId": t.group_id,
        "name": t.name,
        "channel": t.channel,
        "createdAt": t.created_at,
        "updatedAt": t.updated_at,
    }
    if t.workgroup is not None:
        record["workgroup"] = t.workgroup
    if t.key is not None:
        record["key"] = t.key
    if t.remaining_attempts != 5 or type(t.remaining_attempts) is not int:
        record["remainingAttempts"] = t.remaining_attempts
    if t.max_attempts != 5 or type(t.max_attempts) is not int:
        record["maxAttempts"] = t.max_attempts
    if t.is_complete is not False:
        record["isComplete"] = t.is_complete
    if t.parents_complete is not False:
        record["parentsComplete"] = t.parents_complete
    if t.priority != 0 or type(t.priority) is not int:
        record["priority"] = t.priority
    if t.run_after is not None:
        record["runAfter"] = t.run_after
    if t.progress_weight != 1 or type(t.progress_weight) is not int:
        record["progressWeight"] = t.progress_weight
    if t.is_seed is not False:
        record["isSeed"] = t.is_seed
    if t.error_delay != 30 or type(t.error_delay) is not int:
        record["errorDelayInSeconds"] = t.error_delay
    if t.input is not None:
        record["input"] = t.input
    if t.output is not None:
        record["output"] = t.output
    if t.errors:
        record["errors"] = t.errors
    if t.completed_at is not None:
        record["completedAt"] = t.completed_at
    if t.parent_ids:
        record["parentIds"] = t.parent_ids
    if t.assigned_to is not None:
        record["assignedTo"] = t.assigned_to
    if t.assigned_at is not None:
        record["assignedAt"] = t.assigned_at
    if t.lease_id is not None:
        record["leaseId"] = t.lease_id
    if t.lease_expires_at is not None:
        record["leaseExpiresAt"] = t.lease_expires_at
    if t.held_by is not None:
        record["heldBy"] = t.held_by
    if t.held_lease is not None:
        record["heldLease"] = t.held_lease
    return record


def task_to_record_reference(task: Task) -> dict[str, Any]:
    """:func:`task_to_record` as a loop over the field table (the reference for tests)."""
    record = {wire: getattr(task, attr) for attr, wire in _REQUIRED}
    for attr, wire, default in _OPTIONAL:
        value = getattr(task, attr)
        if value is not default and (type(value) is not type(default) or value != default):
            record[wire] = value
    return record


_TASK_DECODER = msgspec.json.Decoder(Task)


def task_from_record(record: dict[str, Any]) -> Task:
    """Inverse of :func:`task_to_record`; raises msgspec.ValidationError on a malformed one."""
    return msgspec.convert(record, Task)


def task_from_json(raw: bytes) -> Task:
    """A stored task record's bytes → Task in one C call (boot loads a million of these)."""
    return _TASK_DECODER.decode(raw)


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


def task_to_api(
    task: Task, status: Status, paused: bool, run_after: float | None = None
) -> dict[str, Any]:
    """The Task object: Crew's Task document, every field in its order, then our extensions.

    ``paused`` is the group's: a task's ``isPaused`` mirrors its group, as Crew keeps it.
    ``run_after`` is the one a client sees (its workgroup's cool-off may reach further).
    """
    return {
        "_id": task.id,
        "taskGroupId": task.group_id,
        "name": task.name,
        "channel": task.channel,
        "workgroup": task.workgroup,
        "key": task.key,
        "remainingAttempts": task.remaining_attempts,
        "isPaused": paused,
        "parentsComplete": task.pending_parents == 0 if task.parent_ids else task.parents_complete,
        "isComplete": task.is_complete,
        "priority": task.priority,
        "runAfter": format_time(task.run_after if run_after is None else run_after),
        "progressWeight": task.progress_weight,
        "isSeed": task.is_seed,
        "errorDelayInSeconds": task.error_delay,
        "input": task.input,
        "output": task.output,
        "errors": task.errors,
        "createdAt": format_time(task.created_at),
        "parentIds": list(task.parent_ids),
        "assignedTo": task.assigned_to,
        "assignedAt": format_time(task.assigned_at),
        "executeMessageId": None,  # Crew's Cloud Tasks messengers: not served (README)
        "examineMessageId": None,
        "status": _STATUS_TEXT[status],
        "leaseId": task.lease_id,
        "leaseExpiresAt": format_time(task.lease_expires_at),
        "updatedAt": format_time(task.updated_at),
        "completedAt": format_time(task.completed_at),
    }


def group_to_api(
    group: TaskGroup, counts: dict[str, int] | None = None, progress: float | None = None
) -> dict[str, Any]:
    """The TaskGroup object of API.md; ``counts``/``progress`` when the caller computed them."""
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
