"""Wire shapes: request bodies as msgspec Structs (validated, camelCase), limits, time parsing.

Each request body is declared once here; the wire layer validates with these types and the
OpenAPI document is built from them. Crew's JavaScript reading of values (``||`` defaults,
``parseInt``) lives in :mod:`crew_aio.jsvalues`. The SDKs use the same field names. No server
internals imported.
"""

from __future__ import annotations

from typing import Annotated, Any

from msgspec import UNSET, Meta, Struct, UnsetType, ValidationError, convert, field

from crew_aio.jsvalues import (
    crew_time,
    js_number,
    js_or,
    js_truthy,
    parse_int,
    to_epoch,
    whole,
)

__all__ = [
    "MAX_CHILDREN",
    "MAX_DEPTH",
    "MAX_FRAMES",
    "MAX_PAGE",
    "AcquireBody",
    "AttemptsBody",
    "CapacityFrame",
    "CreateGroupBody",
    "CreateTaskBody",
    "ErrorEntry",
    "ExchangeBody",
    "ExchangeOut",
    "ExtendBody",
    "ExtendFrame",
    "Frame",
    "ReleaseBody",
    "ReleaseFrame",
    "ReleasedOut",
    "RetryBody",
    "ReturnFrame",
    "SubscribeFrame",
    "TaskChildBody",
    "TaskRef",
    "UnsetType",
    "UnsubscribeFrame",
    "UnwatchFrame",
    "UpdateGroupBody",
    "UpdateTaskBody",
    "WatchFrame",
    "crew_time",
    "js_or",
    "js_truthy",
    "nesting_path",
    "parse_int",
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


class _Body(Struct, rename="camel", kw_only=True):
    """Unknown fields are ignored, as Crew clients send extras."""


# a name, key or workgroup: Crew stores a number (an ad-account id) as it came
Scalar = Annotated[str, Meta(max_length=1024)] | int | float
Label = Name | int | float
Count = Annotated[int, Meta(ge=0, le=1_000_000)] | Annotated[float, Meta(ge=0, le=1_000_000)]
Number = Annotated[int, Meta(ge=-(2**53), le=2**53)] | Annotated[float, Meta(ge=-(2**53), le=2**53)]
Span = Annotated[int, Meta(ge=0, le=10 * 365 * 86400)] | Seconds
Amount = Annotated[int, Meta(ge=0, le=10**12)] | Weight


class CreateGroupBody(_Body):
    name: Label
    is_paused: Any = False

    def __post_init__(self) -> None:
        self.name = js_number(self.name)
        self.is_paused = js_truthy(self.is_paused)


class UpdateGroupBody(_Body):
    """Crew renames only: an ``isPaused`` here is ignored (pause and resume have routes)."""

    name: Label | UnsetType = UNSET

    def __post_init__(self) -> None:
        self.name = js_number(self.name)


class CreateTaskBody(_Body):
    """A task as Crew's ``fromData`` reads it (``||`` defaults, numbers kept as sent). An
    ``isPaused`` is ignored: a task is paused exactly when its group is."""

    name: Label
    channel: Channel
    workgroup: Scalar | None = None
    key: Scalar | None = None
    remaining_attempts: Count | None = None
    priority: Number | None = None
    run_after: Any = None
    progress_weight: Amount | None = None
    is_seed: Any = False
    error_delay_in_seconds: Span | None = 30
    input: Any = None
    parent_ids: list[Id] | None = None

    def __post_init__(self) -> None:
        self.workgroup = js_or(self.workgroup, None)
        self.key = js_or(self.key, None)
        self.remaining_attempts = whole("remainingAttempts", js_or(self.remaining_attempts, 5))
        self.priority = js_or(self.priority, 0)
        self.progress_weight = js_or(self.progress_weight, 1)
        self.is_seed = js_truthy(self.is_seed)
        self.name = js_number(self.name)
        self.error_delay_in_seconds = js_number(self.error_delay_in_seconds or 0)
        self.input = js_or(self.input, None)
        self.run_after = crew_time("runAfter", self.run_after)


# a pseudo-id: Crew's TaskChild type has numbers (0, 1, 2...); strings work too. Compared as
# JavaScript's === does: 1 and 1.0 are one id, 1 and "1" are two.
PseudoId = Annotated[str, Meta(max_length=1024)] | int | float


class TaskChildBody(CreateTaskBody):
    child_id: PseudoId | None = field(default=None, name="_child_id")
    parent_pseudo_ids: list[PseudoId] | None = field(default=None, name="_parent_ids")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.child_id = js_number(self.child_id)  # 1.0 and 1 are one id, as in JavaScript
        if self.parent_pseudo_ids is not None:
            self.parent_pseudo_ids = [js_number(x) for x in self.parent_pseudo_ids]


class UpdateTaskBody(_Body):
    """Crew's ``$set`` of the editable fields; the fields Crew refuses to change (``isPaused``,
    ``isComplete``, ``output``, ``errors``, ``assignedTo``...) are ignored, as Crew ignores them.
    ``parentIds`` re-links the task (crew-ui's edit form sends it)."""

    name: Label | UnsetType = UNSET
    channel: Channel | UnsetType = UNSET
    workgroup: Scalar | UnsetType | None = UNSET
    key: Scalar | UnsetType | None = UNSET
    remaining_attempts: Count | UnsetType = UNSET
    priority: Number | UnsetType | None = UNSET
    run_after: Any = UNSET
    progress_weight: Amount | UnsetType = UNSET
    is_seed: Any = UNSET
    error_delay_in_seconds: Span | UnsetType | None = UNSET
    input: Any | UnsetType = UNSET
    parent_ids: list[Id] | UnsetType = UNSET

    def __post_init__(self) -> None:
        for name in ("name", "priority", "progress_weight", "error_delay_in_seconds"):
            setattr(self, name, js_number(getattr(self, name)))
        if not isinstance(self.workgroup, UnsetType):
            self.workgroup = js_or(self.workgroup, None)
        if not isinstance(self.key, UnsetType):
            self.key = js_or(self.key, None)
        if not isinstance(self.remaining_attempts, UnsetType):
            self.remaining_attempts = whole("remainingAttempts", self.remaining_attempts)
        if self.priority is None:
            self.priority = 0
        if self.error_delay_in_seconds is None:
            self.error_delay_in_seconds = 0
        if not isinstance(self.is_seed, UnsetType):
            self.is_seed = js_truthy(self.is_seed)
        if not isinstance(self.run_after, UnsetType):
            self.run_after = crew_time("runAfter", self.run_after)


Url = Annotated[str, Meta(min_length=1, max_length=2048, pattern=r"^https?://[^\s]+$")]


class RequestConfig(Struct, kw_only=True):
    """The part of Crew's axios ``requestConfig`` an operator's POST uses: its headers (e.g.
    ``Authorization``) and its timeout in milliseconds; other keys are kept and ignored."""

    headers: dict[str, str] | None = None
    timeout: Annotated[int, Meta(ge=1, le=3_600_000)] | None = None


class CreateOperatorBody(_Body):
    channel: Channel
    url: Url
    request_config: dict[str, Any] | None = None
    is_paused: Any = False

    def __post_init__(self) -> None:
        self.is_paused = js_truthy(self.is_paused)
        check_request_config(self.request_config)


class UpdateOperatorBody(_Body):
    channel: Channel | UnsetType = UNSET
    url: Url | UnsetType = UNSET
    request_config: dict[str, Any] | UnsetType | None = UNSET
    is_paused: Any = UNSET

    def __post_init__(self) -> None:
        if not isinstance(self.is_paused, UnsetType):
            self.is_paused = js_truthy(self.is_paused)
        if not isinstance(self.request_config, UnsetType):
            check_request_config(self.request_config)


def check_request_config(config: dict[str, Any] | None) -> None:
    """``requestConfig``'s headers and timeout must be usable (a 400 names what is not)."""
    if config is None:
        return
    try:
        convert(config, RequestConfig)
    except ValidationError as exc:
        raise ValueError(f"`requestConfig` is not usable: {exc}") from None


class AcquireBody(_Body):
    worker_id: WorkerId
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None
    wait_seconds: Annotated[float, Meta(ge=0)] = 0.0
    count: Annotated[int, Meta(ge=1, le=1000)] = 1


class ReleaseBody(_Body):
    """Crew's release: ``error || null``, ``output || null``, ``children || []``; a falsy
    ``error`` (``""``: ``str()`` of a bare Python exception) is a success."""

    worker_id: WorkerId
    lease_id: Id | None = None
    output: Any = None
    error: Any = None
    # msgspec checks the length before converting any entry: a huge list costs no Structs
    children: Annotated[list[TaskChildBody], Meta(max_length=MAX_CHILDREN)] | None = None
    workgroup_delay_in_seconds: Span | None = 0
    children_delay_in_seconds: Span | None = 0

    def __post_init__(self) -> None:
        if self.error is not None and not js_truthy(self.error):
            self.error = None
        if self.output is not None and not js_truthy(self.output):
            self.output = None
        if self.workgroup_delay_in_seconds is None:
            self.workgroup_delay_in_seconds = 0
        if self.children_delay_in_seconds is None:
            self.children_delay_in_seconds = 0


class TaskRef(_Body):
    """An entry of an exchange's ``releases`` or ``returns`` names its task."""

    task_id: Id
    lease_id: Id | None = None


class ExchangeBody(_Body):
    """``POST /channel/:id/exchange`` (ext): releases, hand-backs and an acquire in one request
    and one commit. Each ``releases`` entry is a release body plus ``taskId`` (its
    ``workerId`` defaults to this one's); each is answered on its own, as on the WebSocket."""

    worker_id: WorkerId
    releases: Annotated[list[Any], Meta(max_length=MAX_FRAMES)] = []
    returns: Annotated[list[TaskRef], Meta(max_length=MAX_FRAMES)] = []
    count: Annotated[int, Meta(ge=0, le=1000)] = 0
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None
    wait_seconds: Annotated[float, Meta(ge=0)] = 0.0
    brief: bool = False  # a successful release's entry is {} (no task rendered)


class ErrorEntry(Struct):
    status: int
    code: str
    message: str
    field: str | UnsetType = UNSET


class ReleasedOut(Struct, omit_defaults=True):
    task: TaskOut | UnsetType = UNSET
    error: ErrorEntry | UnsetType = UNSET


class ExchangeOut(Struct):
    released: list[ReleasedOut]
    returned: list[ReleasedOut]
    tasks: list[LeaseOut]


class ExtendBody(_Body):
    worker_id: WorkerId
    lease_id: Id | None = None
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None


class AttemptsBody(_Body):
    """``remainingAttempts`` of retry and reset, read as Crew's ``parseInt(x || default)``:
    None here means "the route's default" (2 for retry and task reset, 5 for group reset)."""

    remaining_attempts: Any = None

    def __post_init__(self) -> None:
        self.remaining_attempts = parse_int("remainingAttempts", self.remaining_attempts)

    def attempts(self, default: int) -> int:
        value = self.remaining_attempts
        return default if value is None else int(value)


RetryBody = AttemptsBody  # the name the SDKs and the OpenAPI document used


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


# Response shapes: declared for the OpenAPI document (the service renders plain dicts). --------


class TaskOut(Struct):
    """Crew's Task document (every field, in its order), then ours."""

    _id: str
    taskGroupId: str
    name: str | int | float
    channel: str
    workgroup: str | int | float | None
    key: str | int | float | None
    remainingAttempts: int
    isPaused: bool
    parentsComplete: bool
    isComplete: bool
    priority: int | float
    runAfter: str | None
    progressWeight: int | float
    isSeed: bool
    errorDelayInSeconds: int | float
    input: Any
    output: Any
    errors: list[Any]
    createdAt: str
    parentIds: list[str]
    assignedTo: str | None
    assignedAt: str | None
    executeMessageId: None
    examineMessageId: None
    status: str
    leaseId: str | None
    leaseExpiresAt: str | None
    updatedAt: str
    completedAt: str | None


class OperatorOut(Struct):
    """Crew's Operator document."""

    _id: str
    channel: str
    url: str
    requestConfig: dict[str, Any] | None
    isPaused: bool
    createdAt: str


class TaskGroupOut(Struct):
    _id: str
    name: str | int | float
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
    """MongoDB's delete result, as Crew answers it; ``deleted`` (ours) lists every task id."""

    acknowledged: bool
    deletedCount: int
    deleted: list[str] | UnsetType = UNSET


class SuccessOut(Struct):
    success: bool


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
    brief: bool = False  # the ack carries no task (the SDKs do not read it)


class ExtendFrame(_Frame, tag="extend"):
    task_id: Id
    worker_id: WorkerId | None = None
    lease_id: Id | None = None
    lease_seconds: Annotated[float, Meta(gt=0)] | None = None


class CapacityFrame(_Frame, tag="capacity"):
    """Change the subscription's capacity in place (the SDK's adaptive prefetch): the leases
    it holds still count; a larger capacity is pushed tasks at once."""

    capacity: Annotated[int, Meta(ge=1, le=10_000)]


class ReturnFrame(_Frame, tag="return"):
    """Give back a pushed lease not started yet (the SDK's prefetch shrank): the task is ready
    again for anyone, and no attempt is counted."""

    task_id: Id
    worker_id: WorkerId | None = None
    lease_id: Id | None = None


class UnsubscribeFrame(_Frame, tag="unsubscribe"):
    """Stop pushes to this socket (graceful worker stop); held leases stay as they are."""


class WatchFrame(_Frame, tag="watch"):
    task_group_id: Id | None = None
    all: bool = False


class UnwatchFrame(_Frame, tag="unwatch"):
    task_group_id: Id | None = None
    all: bool = False


Frame = (
    SubscribeFrame
    | CapacityFrame
    | UnsubscribeFrame
    | ReleaseFrame
    | ExtendFrame
    | ReturnFrame
    | WatchFrame
    | UnwatchFrame
)

# "type" → its frame class: converting to one Struct costs ~1 us, to the union ~18 us (msgspec
# builds a union's decoder on every convert); the union stays for the error of an unknown type
_FRAME_CLASSES = (SubscribeFrame, CapacityFrame, UnsubscribeFrame, ReleaseFrame, ExtendFrame,
                  ReturnFrame, WatchFrame, UnwatchFrame)  # fmt: skip
FRAME_TYPES: dict[str, type[_Frame]] = {
    str(kind.__struct_config__.tag): kind for kind in _FRAME_CLASSES
}
