"""Wire shapes: request bodies as msgspec Structs (validated, camelCase), limits, time parsing.

Each request body is declared once here; ``http_api`` validates with these types and builds the
OpenAPI document from them. The SDKs use the same field names. No server internals imported.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType, field

__all__ = [
    "MAX_CHILDREN",
    "MAX_DEPTH",
    "MAX_FRAMES",
    "MAX_PAGE",
    "AcquireBody",
    "CreateGroupBody",
    "CreateTaskBody",
    "ExtendBody",
    "ExtendFrame",
    "Frame",
    "ReleaseBody",
    "ReleaseFrame",
    "RetryBody",
    "SubscribeFrame",
    "TaskChildBody",
    "UnsetType",
    "UnsubscribeFrame",
    "UnwatchFrame",
    "UpdateGroupBody",
    "UpdateTaskBody",
    "WatchFrame",
    "nesting_path",
    "to_epoch",
]

MAX_DEPTH = 100
"""Deepest nesting of arrays and objects in a request body or WebSocket frame (a top-level object
is level 1): ``input``, ``output`` and ``error`` nest a few levels less. MongoDB, Crew's store,
has the same limit; responses wrap payloads a few levels deeper and still encode."""

MAX_CHILDREN = 100_000  # children of one release; CREW_MAX_CHILDREN_PER_RELEASE may lower it
MAX_PAGE = 2**31 - 1  # largest ``limit`` and ``skip`` of a listing
MAX_FRAMES = 1000  # frames in one WebSocket message sent as a JSON array (a batch)

Name = Annotated[str, Meta(min_length=1, max_length=1024)]
Channel = Annotated[str, Meta(min_length=1, max_length=256)]
Key = Annotated[str, Meta(max_length=1024)]
WorkerId = Annotated[str, Meta(min_length=1, max_length=256)]
Id = Annotated[str, Meta(max_length=64)]  # task, group and lease ids (ours are 24 characters)
Ref = Annotated[str, Meta(max_length=256)] | Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
Attempts = Annotated[int, Meta(ge=0, le=1_000_000)]
Priority = Annotated[int, Meta(ge=-(2**53), le=2**53)]
Seconds = Annotated[float, Meta(ge=0, le=10 * 365 * 86400)]
Weight = Annotated[float, Meta(ge=0, le=1e12)]
# ISO-8601 string or epoch milliseconds, rendered back as ISO-8601: years 0001 .. 9999 (UTC)
MIN_TIME = -62_135_596_800.0  # 0001-01-01T00:00:00Z, epoch seconds
MAX_TIME = 253_402_300_799.0  # 9999-12-31T23:59:59Z
When = datetime | Annotated[float, Meta(ge=0, le=MAX_TIME * 1000)]


class _Body(Struct, rename="camel", kw_only=True):
    """Unknown fields are ignored, as Crew clients send extras."""


class CreateGroupBody(_Body):
    name: Name
    is_paused: bool = False


class UpdateGroupBody(_Body):
    name: Name | UnsetType = UNSET
    is_paused: bool | UnsetType = UNSET


class CreateTaskBody(_Body):
    name: Name
    channel: Channel
    workgroup: Key | None = None
    key: Key | None = None
    remaining_attempts: Attempts = 5
    priority: Priority = 0
    run_after: When | None = None
    progress_weight: Weight = 1.0
    is_seed: bool = False
    error_delay_in_seconds: Seconds = 30.0
    input: Any = None
    is_paused: bool = False
    parent_ids: list[Id] = []

    def __post_init__(self) -> None:
        _check_time("runAfter", self.run_after)


class TaskChildBody(CreateTaskBody):
    child_id: Key | None = field(default=None, name="_child_id")
    parent_pseudo_ids: list[Key] | None = field(default=None, name="_parent_ids")


class UpdateTaskBody(_Body):
    name: Name | UnsetType = UNSET
    channel: Channel | UnsetType = UNSET
    workgroup: Key | UnsetType | None = UNSET
    key: Key | UnsetType | None = UNSET
    remaining_attempts: Attempts | UnsetType = UNSET
    priority: Priority | UnsetType = UNSET
    run_after: When | UnsetType | None = UNSET
    progress_weight: Weight | UnsetType = UNSET
    is_seed: bool | UnsetType = UNSET
    is_paused: bool | UnsetType = UNSET
    error_delay_in_seconds: Seconds | UnsetType = UNSET
    input: Any | UnsetType = UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.run_after, UnsetType):
            _check_time("runAfter", self.run_after)


class AcquireBody(_Body):
    worker_id: WorkerId
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None
    wait_seconds: Annotated[float, Meta(ge=0)] = 0.0
    count: Annotated[int, Meta(ge=1, le=1000)] = 1


class ReleaseBody(_Body):
    worker_id: WorkerId
    lease_id: Id | None = None
    output: Any = None
    error: Any = None
    # msgspec checks the length before converting any entry: a huge list costs no Structs
    children: Annotated[list[TaskChildBody], Meta(max_length=MAX_CHILDREN)] | None = None
    workgroup_delay_in_seconds: Seconds = 0.0
    children_delay_in_seconds: Seconds = 0.0


class ExtendBody(_Body):
    worker_id: WorkerId
    lease_id: Id | None = None
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None


class RetryBody(_Body):
    remaining_attempts: Attempts = 2


def nesting_path(value: Any, limit: int = MAX_DEPTH) -> list[str | int] | None:
    """The path to the first array/object nested deeper than ``limit`` levels, or None.

    Iterative (a 10,000-deep value neither recurses nor raises); a fast level-by-level pass
    answers the common case, a second pass finds the path only when there is one.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return _first_deep_path(value, limit)
        level = [c for v in level for c in _values(v) if type(c) is dict or type(c) is list]
    return None


def _values(container: Any) -> Any:
    return container.values() if type(container) is dict else container


def _items(container: Any) -> Any:
    return container.items() if type(container) is dict else enumerate(container)


def _first_deep_path(value: Any, limit: int) -> list[str | int]:
    """Depth-first with a stack of iterators: the path is the keys of the open containers."""
    path: list[str | int] = []
    stack = [iter(_items(value))]
    while stack:
        for key, child in stack[-1]:
            if type(child) is dict or type(child) is list:
                if len(stack) >= limit:
                    return [*path, key]
                path.append(key)
                stack.append(iter(_items(child)))
                break
        else:
            stack.pop()
            if path:
                path.pop()
    raise AssertionError("no path deeper than the limit")  # pragma: no cover


def _check_time(name: str, value: datetime | float | None) -> None:
    """A time must render back as ISO-8601 (msgspec turns the ValueError into a 400 whose
    message starts with the field's name in backticks)."""
    seconds = to_epoch(value)
    if seconds is not None and not MIN_TIME <= seconds <= MAX_TIME:
        raise ValueError(f"`{name}` must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")


def to_epoch(value: datetime | float | None) -> float | None:
    """API time input → epoch seconds: an aware/naive-UTC datetime, or epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC).timestamp()
        return value.timestamp()
    return float(value) / 1000.0


# Response shapes: declared for the OpenAPI document (the service renders plain dicts). --------


class TaskOut(Struct):
    _id: str
    taskGroupId: str
    name: str
    channel: str
    workgroup: str | None
    key: str | None
    remainingAttempts: int
    isPaused: bool
    parentsComplete: bool
    isComplete: bool
    priority: int
    runAfter: str | None
    progressWeight: float
    isSeed: bool
    errorDelayInSeconds: float
    input: Any
    output: Any
    errors: list[Any]
    createdAt: str
    parentIds: list[str]
    assignedTo: str | None
    assignedAt: str | None
    status: str
    leaseId: str | None
    leaseExpiresAt: str | None
    updatedAt: str
    completedAt: str | None


class TaskGroupOut(Struct):
    _id: str
    name: str
    isPaused: bool
    createdAt: str
    updatedAt: str
    counts: dict[str, int] | UnsetType = UNSET
    progress: float | UnsetType = UNSET


class ParentOut(Struct):
    _id: str
    channel: str
    input: Any
    output: Any


class LeaseOut(Struct):
    task: TaskOut | None
    parents: list[ParentOut]


class LeaseListOut(Struct):
    tasks: list[LeaseOut]


class ChannelOut(Struct):
    name: str
    totalCount: int
    completedCount: int
    assignedCount: int


class CountOut(Struct):
    count: int


class DeletedOut(Struct):
    deleted: list[str]


class LoopLagOut(Struct):
    """Event-loop lag (how late a 50 ms timer wakes) over the last minute, in milliseconds."""

    p50Ms: float
    p99Ms: float
    maxMs: float
    samples: int
    windowSeconds: float
    stalls: int  # wake-ups later than 100 ms since start (each logged as a WARNING)


class HealthOut(Struct):
    healthy: bool
    loopLag: LoopLagOut | UnsetType = UNSET


class ErrorOut(Struct):
    message: str
    status: int
    code: str
    field: str | UnsetType = UNSET


# WebSocket frames (client → server), told apart by their "type". ----------------------------


class _Frame(Struct, rename="camel", kw_only=True, tag_field="type"):
    """``ref`` is echoed in the ack/error answering the frame."""

    ref: Ref | None = None


class SubscribeFrame(_Frame, tag="subscribe"):
    worker_id: WorkerId
    channels: Annotated[list[Channel], Meta(min_length=1, max_length=1000)]
    capacity: Annotated[int, Meta(ge=1, le=10_000)] = 1
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None


class ReleaseFrame(_Frame, tag="release"):
    """The fields of :class:`ReleaseBody` plus ``taskId``; ``workerId`` defaults to the
    subscription's. The hub validates the rest of the frame as a ReleaseBody."""

    task_id: Id
    worker_id: WorkerId | None = None


class ExtendFrame(_Frame, tag="extend"):
    task_id: Id
    worker_id: WorkerId | None = None
    lease_id: Id | None = None
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None


class UnsubscribeFrame(_Frame, tag="unsubscribe"):
    """Stop pushes to this socket (graceful worker stop); held leases stay as they are."""


class WatchFrame(_Frame, tag="watch"):
    task_group_id: Id | None = None
    all: bool = False


class UnwatchFrame(_Frame, tag="unwatch"):
    task_group_id: Id | None = None
    all: bool = False


Frame = SubscribeFrame | UnsubscribeFrame | ReleaseFrame | ExtendFrame | WatchFrame | UnwatchFrame

# "type" → its frame class: converting to one Struct costs ~1 us, to the union ~18 us (msgspec
# builds a union's decoder on every convert); the union stays for the error of an unknown type
_FRAME_CLASSES = (SubscribeFrame, UnsubscribeFrame, ReleaseFrame, ExtendFrame, WatchFrame,
                  UnwatchFrame)  # fmt: skip
FRAME_TYPES: dict[str, type[_Frame]] = {
    str(kind.__struct_config__.tag): kind for kind in _FRAME_CLASSES
}
