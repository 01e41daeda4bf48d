"""The single writer: engine → stage → answer with its commit barrier → publish.

Every call takes ``now`` from the clock, runs one engine transition, stages what it touched,
and renders its answer (a snapshot taken before anything else can change the state). Durability
is decided here and only here: a call either returns once the store has committed every change
staged so far (the ``async`` calls, reads included), or returns the answer together with its
commit barrier (:class:`Staged`, the calls a socket makes many of): its caller tells a client
only after awaiting it. No transport touches the store or the engine. Listeners (timers, push,
watchers) hear of each change as it is staged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Container, Generator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import msgspec

from crew_aio import bulk, keys
from crew_aio import protocol as p
from crew_aio.bulk import Bulk, Listing, Turns
from crew_aio.clock import Clock
from crew_aio.commit import Barrier, Store
from crew_aio.dispatch import Dispatcher, Waiter
from crew_aio.engine import Change, Engine, TaskSpec
from crew_aio.engine.state import Steps
from crew_aio.errors import Conflict, Invalid, NotFound, TooLarge
from crew_aio.fields import compile_function
from crew_aio.model import (
    GIVEN_FIELDS,
    Operator,
    Status,
    Task,
    TaskGroup,
    group_to_api,
    operator_to_api,
    task_to_api,
    task_to_record,
)
from crew_aio.recovery import Recovery

__all__ = ["Limits", "Listing", "Service", "Staged", "Turns"]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("crew_aio.service")


def _spec_reader(body: type[msgspec.Struct]) -> Callable[..., TaskSpec]:
    """``read(body, parent_ids, parents_listed, child_id, pseudo_parents)``: a validated create
    body (its fields named on the wire as the task's are) → its TaskSpec, the GIVEN fields of
    the field table read from it; generated, so it costs what hand-written code would. A GIVEN
    field the body lacks fails here, at import."""
    attr_of = dict(zip(body.__struct_encode_fields__, body.__struct_fields__, strict=True))
    args = []
    for f in GIVEN_FIELDS:
        if f.wire not in attr_of:
            raise TypeError(f"{body.__name__} has no field {f.wire!r}, which a create sets")
        if f.attr != "parent_ids":
            args.append(f"{f.attr}=b.{attr_of[f.wire]}")
    src = [
        "def read(b, parent_ids, parents_listed, child_id, pseudo_parents):",
        f"    return TaskSpec({', '.join(args)}, parent_ids=parent_ids,",
        "                    parents_listed=parents_listed, child_id=child_id,",
        "                    pseudo_parents=pseudo_parents)",
    ]
    return compile_function("read", src, {"TaskSpec": TaskSpec})


_read_spec = _spec_reader(p.TaskChildBody)
CLOCK_MARK_EVERY = 1.0  # seconds between stores of the clock mark (only when something changes)
Json = dict[str, Any]
Idempotency = tuple[str, str] | None  # (Idempotency-Key, fingerprint of the request)


class Staged(Generic[T]):
    """An answer and the commit barrier of what it reports: ``await staged`` is the answer once
    that is durable (StoreUnavailable if the commit failed: not done). A transport that answers
    many calls at once (a socket) keeps the barrier with the frame and awaits the last one."""

    __slots__ = ("answer", "barrier")

    def __init__(self, answer: T, barrier: Barrier) -> None:
        self.answer = answer
        self.barrier = barrier

    def __await__(self) -> Generator[Any, None, T]:
        yield from self.barrier.__await__()
        return self.answer


@dataclass(frozen=True, slots=True)
class Limits:
    lease_seconds: float = 60.0
    max_lease_seconds: float = 3600.0
    max_wait_seconds: float = 60.0
    max_tasks_per_request: int = 100_000
    max_parents_per_task: int = 10_000
    max_children_per_release: int = 10_000


class _Poll:
    """A long-polling acquire waiting in the dispatcher's queue."""

    __slots__ = ("count", "future", "got", "lease_seconds", "worker_id")

    def __init__(self, worker_id: str, lease_seconds: float, count: int) -> None:
        self.worker_id = worker_id
        self.lease_seconds = lease_seconds
        self.count = count
        self.got: list[Json] = []
        self.future: asyncio.Future[list[Json]] = asyncio.get_running_loop().create_future()

    def wants(self) -> int:
        return 0 if self.future.done() else self.count - len(self.got)

    def deliver(self, leases: list[Json]) -> None:
        self.got += leases

    def flush(self) -> None:
        if not self.future.done():
            self.future.set_result(self.got)


class Service:
    """``reload`` rebuilds an engine from what the store committed: after a failed commit the
    service answers 503 to everything until the store commits again and the engine is rebuilt
    (memory then holds exactly what was acknowledged: a 503 means not done)."""

    def __init__(
        self,
        engine: Engine,
        store: Store,
        clock: Clock,
        limits: Limits,
        reload: Callable[[], Awaitable[Engine]] | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock
        self.limits = limits
        self.listeners: list[Callable[[Change], None]] = []
        # a channel with an empty ready heap surely has nothing to hand out (the engine is
        # read at each call: a reload after a failed commit replaces it)
        self.dispatcher = Dispatcher(
            self._lease_for, lambda channel: bool(self.engine.ready.get(channel))
        )
        self._polls: set[_Poll] = set()
        self.draining = False
        self._id_staged = engine.last_id  # the id mark staged last (or loaded)
        self._clock_staged = engine.clock_mark  # the clock mark staged last (or loaded)
        self.bulk = Bulk(self)  # operations on many tasks, a slice at a time
        self.recovery = Recovery(self, reload)  # after a failed commit: 503, then reload
        self.check_available = self.recovery.check_available
        self.on_reset = self.recovery.on_reset  # told when the engine is to be rebuilt

    @property
    def rebuilding(self) -> asyncio.Task[None] | None:
        """The reload under way after a failed commit (None: the service takes work)."""
        return self.recovery.rebuilding

    async def healthy(self) -> bool:
        """What ``/healthz`` answers: the store commits (a probe write), and no reload after a
        failed commit is under way (meanwhile every request is refused with 503)."""
        return self.rebuilding is None and await self.store.check()

    @property
    def step(self) -> int:
        """Tasks an operation on a whole group handles between two yields to the loop."""
        return self.bulk.step

    @step.setter
    def step(self, value: int) -> None:
        self.bulk.step = value

    def refuse_waiters(self) -> None:
        """A commit failed: every long poll ends now (answered 503 by its caller)."""
        for poll in list(self._polls):
            poll.flush()

    def install(self, engine: Engine) -> None:
        """Serve from ``engine``, rebuilt from what the store committed."""
        self.engine = engine
        self._id_staged, self._clock_staged = engine.last_id, engine.clock_mark
        if not self.draining:
            self.dispatcher.run(list(engine.ready))

    def drain(self) -> None:
        """Stop handing out tasks (shutdown): acquires answer empty, long polls end now."""
        self.draining = True
        for poll in self._polls:
            poll.flush()

    # plumbing ----------------------------------------------------------------------------
    def stage(self, change: Change) -> None:
        """Write what ``change`` touched to the store (staged: committed by the next group
        commit) and tell the listeners."""
        self.stage_tasks(change.tasks)
        self.stage_rest(change)

    def stage_tasks(self, ids: Iterable[str]) -> None:
        tasks, put, delete, prefix = self.engine.tasks, self.store.put, self.store.delete, keys.TASK
        for tid in ids:  # hot: every touched task of every change (keys.task_key, inlined)
            t = tasks.get(tid)
            if t is None:
                delete(prefix + tid)
            else:
                put(prefix + tid, task_to_record(t))

    def stage_rest(self, change: Change) -> None:
        store = self.store
        for key, record in keys.writes_of(self.engine, change):
            if record is None:
                store.delete(key)
            else:
                store.put(key, record)
        self._stage_marks()
        for listener in self.listeners:
            listener(change)
        if change.ready_channels and not self.draining:
            self.dispatcher.run(change.ready_channels)

    def _stage_marks(self) -> None:
        """The id and clock marks, when they moved."""
        engine, store = self.engine, self.store
        if engine.last_id != self._id_staged:  # new ids only: a release issues none
            self._id_staged = engine.last_id
            store.put(keys.ID_MARK, {"last": self._id_staged})
        now = self.clock.now()
        if now - self._clock_staged >= CLOCK_MARK_EVERY:  # how far time got: at most 1 write/s
            self._clock_staged = now
            store.put(keys.CLOCK_MARK, {"now": now})

    async def _done(self, change: Change, answer: T) -> T:
        """Stage ``change``; ``answer`` once everything staged so far is committed."""
        return await self._staged(change, answer)

    def _staged(self, change: Change, answer: T) -> Staged[T]:
        if change:
            self.stage(change)
        return Staged(answer, self.store.barrier())

    def barrier(self) -> Barrier:
        """The commit barrier of everything staged so far: a frame that announces something
        (a pushed lease, an event) is sent only once it is passed."""
        return self.store.barrier()

    # what listeners and transports may ask of the graph (they never hold the engine) ------
    def may_have_ready(self, channel: str) -> bool:
        """False when ``channel`` surely has nothing to hand out (its ready heap is empty)."""
        return bool(self.engine.ready.get(channel))

    def lease_of(self, task_id: str) -> str | None:
        """The id of the task's current lease (None: not leased, or no such task)."""
        t = self.engine.tasks.get(task_id)
        return None if t is None else t.lease_id

    def next_deadline(self) -> float | None:
        """The earliest time at which :meth:`tick` has something to do."""
        return self.engine.next_deadline()

    def events(self, change: Change, only: Container[str] | None = None) -> list[tuple[str, Json]]:
        """``change`` as watchers' events, each with the id of the group it belongs to: the one
        event feed of every transport that watches (the WebSocket's ``watch``, socket.io).
        ``only``: the groups someone watches (the others' tasks are not rendered)."""
        engine = self.engine
        events: list[tuple[str, Json]] = []
        for tid in change.tasks:
            t = engine.tasks.get(tid)
            if t is None:
                gid = change.deleted.get(tid, "")
                if only is None or gid in only:
                    data = {"_id": tid, "taskGroupId": gid}
                    events.append((gid, {"event": "task:delete", "data": data}))
            elif only is None or t.group_id in only:
                kind = "task:create" if tid in change.created else "task:update"
                events.append((t.group_id, {"event": kind, "data": self.task_json(t)}))
        for gid in change.groups:
            if only is not None and gid not in only:
                continue
            g = engine.groups.get(gid)
            data = group_to_api(g) if g is not None else {"_id": gid}
            events.append((gid, {"event": "group:update" if g else "group:delete", "data": data}))
        return events

    def task_json(self, t: Task) -> Json:
        engine = self.engine
        paused = engine.groups[t.group_id].is_paused
        now = self.clock.now()
        return task_to_api(t, engine.status(t, now), paused, engine.run_after_of(t, now))

    def group_json(self, g: TaskGroup) -> Json:
        e = self.engine
        return group_to_api(g, e.group_counts(g.id, self.clock.now()), e.group_progress(g.id))

    def lease_seconds(self, seconds: float | None) -> float:
        """A requested lease length, or the default, capped by the configured maximum."""
        if seconds is None:
            return self.limits.lease_seconds
        return min(seconds, self.limits.max_lease_seconds)

    # groups ------------------------------------------------------------------------------
    async def create_group(self, body: p.CreateGroupBody, key: Idempotency = None) -> Json:
        again = self._recall(key, "group")
        if again is not None:
            return await self._done(Change(), self.group_json(self.engine.group(again[0])))
        now = self.clock.now()
        group, ch = self.engine.create_group(body.name, now, body.is_paused)
        self._remember(ch, key, "group", (group.id,), now)
        return await self._done(ch, self.group_json(group))

    def _recall(self, key: Idempotency, kind: str) -> tuple[str, ...] | None:
        """The ids a create under ``key`` made before (a retry), or None (a first try)."""
        if key is None:
            return None
        remembered = self.engine.remembered.get(key[0])
        if remembered is None:
            return None
        if remembered.fingerprint != key[1] or remembered.kind != kind:
            raise Conflict("this Idempotency-Key was used for another request", field="key")
        return remembered.ids

    def _remember(
        self, ch: Change, key: Idempotency, kind: str, ids: tuple[str, ...], now: float
    ) -> None:
        if key is not None:
            self.engine.remember(ch, key[0], kind, ids, key[1], now)

    def _existing(self, ids: tuple[str, ...]) -> list[Task]:
        tasks = [self.engine.tasks[i] for i in ids if i in self.engine.tasks]
        if not tasks:
            raise NotFound("the tasks created under this Idempotency-Key were deleted since")
        return tasks

    async def list_groups(self, limit: int | None, skip: int) -> list[Json]:
        groups = self.engine.list_groups(limit, skip)
        return await self._done(Change(), [await self.bulk.group_json(g) for g in groups])

    async def count_groups(self) -> Json:
        return await self._done(Change(), {"count": len(self.engine.groups)})

    async def get_group(self, group_id: str) -> Json:
        return await self._done(Change(), await self.bulk.group_json(self.engine.group(group_id)))

    async def update_group(self, group_id: str, body: p.UpdateGroupBody) -> Json:
        name = None if isinstance(body.name, p.UnsetType) else body.name
        group, ch = self.engine.update_group(group_id, self.clock.now(), name=name)
        return await self._done(ch, await self.bulk.group_json(group))

    async def pause_group(self, group_id: str, paused: bool) -> Json:
        now = self.clock.now()
        group = await self.bulk.run(
            group_id,
            lambda: self.engine.update_group_steps(group_id, now, is_paused=paused, step=self.step),
        )
        return await self.bulk.group_json(group)

    async def delete_group(self, group_id: str) -> Json:
        """MongoDB's answer, as Crew gives it: deleting a group that is not there deletes 0."""
        if group_id not in self.engine.groups:
            return await self._done(Change(), {"acknowledged": True, "deletedCount": 0})
        now = self.clock.now()
        await self.bulk.run(
            group_id, lambda: self.engine.delete_group_steps(group_id, now, self.step)
        )
        return {"acknowledged": True, "deletedCount": 1}

    def _delete_steps(self, group_id: str, now: float) -> Steps[tuple[TaskGroup, Change]]:
        return self.engine.delete_group_steps(group_id, now, self.step)

    async def retry_group(self, group_id: str, body: p.AttemptsBody) -> Json:
        now = self.clock.now()
        group, ch = self.engine.retry_group(group_id, body.attempts(2), now)
        await self.bulk.stage(ch)
        await self.store.sync()
        return await self.bulk.group_json(group)

    async def reset_group(self, group_id: str, body: p.AttemptsBody) -> Json:
        now, attempts = self.clock.now(), body.attempts(5)
        group = await self.bulk.run(
            group_id, lambda: self.engine.reset_group_steps(group_id, now, attempts, self.step)
        )
        return await self.bulk.group_json(group)

    async def group_tasks(self, group_id: str, limit: int | None, skip: int) -> Listing:
        return await self.bulk.listing_of(self.engine.group_task_ids(group_id, limit, skip))

    def check_batch(self, count: int) -> None:
        if count > self.limits.max_tasks_per_request:
            raise TooLarge(f"at most {self.limits.max_tasks_per_request} tasks per request")

    def check_created(self, releases: Iterable[object], field: str) -> None:
        """The children the releases of one message (an exchange, a WebSocket batch) would
        create, all together, are held to the limit of a create request."""
        count = 0
        for raw in releases:
            if type(raw) is dict and type(children := raw.get("children")) is list:
                count += len(children)
        limit = self.limits.max_tasks_per_request
        if count > limit:
            raise TooLarge(f"at most {limit} children in one request or message", field=field)

    def check_children(self, count: int) -> None:
        if count > self.limits.max_children_per_release:
            limit = self.limits.max_children_per_release
            raise TooLarge(f"at most {limit} children per release", field="children")

    async def create_tasks(
        self, group_id: str, bodies: Sequence[p.CreateTaskBody], key: Idempotency = None
    ) -> list[Json]:
        again = self._recall(key, "tasks")
        if again is not None:
            return await self._done(Change(), [self.task_json(t) for t in self._existing(again)])
        self.check_batch(len(bodies))
        specs = [self.spec(b, i) for i, b in enumerate(bodies)]
        now = self.clock.now()
        tasks, ch = self.engine.create_tasks(group_id, specs, now)
        self._remember(ch, key, "tasks", tuple(t.id for t in tasks), now)
        return await self._done(ch, [self.task_json(t) for t in tasks])

    async def create_listing(
        self, group_id: str, bodies: Sequence[p.CreateTaskBody], key: Idempotency = None
    ) -> Listing:
        """:meth:`create_tasks` for a batch of any size, holding the loop for the engine step
        only (it and its staging stay one step: nothing may commit in between). The specs are
        built a chunk at a time before it (they only read the request); the created tasks are
        snapshot as created and rendered a chunk at a time after the commit."""
        again = self._recall(key, "tasks")
        if again is not None:
            return await self.bulk.listing(self._existing(again))
        self.check_batch(len(bodies))
        chunk = Listing.CHUNK
        specs: list[TaskSpec] = []
        for start in range(0, len(bodies), chunk):
            if start:
                await asyncio.sleep(0)
            part = bodies[start : start + chunk]
            specs += [self.spec(b, i) for i, b in enumerate(part, start)]
        now = self.clock.now()

        def steps() -> Steps[tuple[Listing, Change]]:
            # again under the group's lock: a twin sent while the first try was still running
            # (a client's retry after a timeout) gets the first try's tasks, not a second set
            again = self._recall(key, "tasks")
            if again is not None:
                return self.bulk.snapshot(self._existing(again), self.clock.now()), Change()
            tasks, ch = yield from self.engine.create_tasks_steps(group_id, specs, now, self.step)
            self._remember(ch, key, "tasks", tuple(t.id for t in tasks), now)
            items: list[tuple[Task, Status, bool, float | None]] = []
            for start in range(0, len(tasks), bulk.SNAPSHOT_CHUNK):  # the tasks as created
                if start:
                    yield
                items += self.bulk.snapshot(tasks[start : start + bulk.SNAPSHOT_CHUNK], now).items
            return Listing(items), ch

        return await self.bulk.run(group_id, steps)

    def spec(self, body: p.CreateTaskBody, index: int) -> TaskSpec:
        """A validated request entry → the engine's TaskSpec."""
        child = body if isinstance(body, p.TaskChildBody) else None
        pseudo = (
            None if child is None or child.parent_pseudo_ids is None else child.parent_pseudo_ids
        )
        if len(body.parent_ids or ()) + len(pseudo or ()) > self.limits.max_parents_per_task:
            raise Invalid(
                f"at most {self.limits.max_parents_per_task} parents per task",
                field=f"[{index}].{'_parent_ids' if pseudo else 'parentIds'}",
            )
        return _read_spec(
            body,
            tuple(body.parent_ids or ()),
            body.parent_ids is not None,
            None if child is None else child.child_id,
            None if pseudo is None else tuple(pseudo),
        )

    # tasks -------------------------------------------------------------------------------
    async def get_task(self, task_id: str) -> Json:
        return await self._done(Change(), self.task_json(self.engine.task(task_id)))

    async def update_task(self, task_id: str, body: p.UpdateTaskBody) -> Json:
        fields: dict[str, Any] = {}
        for name in body.__struct_fields__:
            value = getattr(body, name)
            if not isinstance(value, p.UnsetType):
                fields[body.__struct_encode_fields__[body.__struct_fields__.index(name)]] = value
        if len(fields.get("parentIds", ())) > self.limits.max_parents_per_task:
            limit = self.limits.max_parents_per_task
            raise Invalid(f"at most {limit} parents per task", field="parentIds")
        task, ch = self.engine.update_task(task_id, fields, self.clock.now())
        return await self._done(ch, self.task_json(task))

    async def delete_task(self, task_id: str) -> Json:
        """Crew's answer (the task's own deleteOne) and ours: every id deleted with it."""
        deleted, ch = self.engine.delete_task(task_id, self.clock.now())
        return await self._done(ch, {"acknowledged": True, "deletedCount": 1, "deleted": deleted})

    async def reset_task(self, task_id: str, body: p.AttemptsBody) -> Json:
        task, ch = self.engine.reset_task(task_id, self.clock.now(), body.attempts(2))
        return await self._done(ch, self.task_json(task))

    async def retry_task(self, task_id: str, body: p.AttemptsBody) -> Json:
        task, ch = self.engine.retry_task(task_id, body.attempts(2), self.clock.now())
        return await self._done(ch, self.task_json(task))

    async def pluck(self, task_id: str) -> Json:
        """The plucked copy (crew-ui opens its ``taskGroupId``)."""
        task, ch = self.engine.pluck(task_id, self.clock.now())
        return await self._done(ch, self.task_json(task))

    # operators (Crew's HTTP push; crew_aio.operators runs them) ---------------------------
    async def list_operators(self, limit: int | None, skip: int) -> list[Json]:
        ops = self.engine.list_operators(limit, skip)
        return await self._done(Change(), [operator_to_api(op) for op in ops])

    async def count_operators(self) -> Json:
        return await self._done(Change(), {"count": len(self.engine.operators)})

    async def get_operator(self, operator_id: str) -> Json:
        return await self._done(Change(), operator_to_api(self.engine.operator(operator_id)))

    async def create_operator(self, body: p.CreateOperatorBody) -> Json:
        op, ch = self.engine.create_operator(
            body.channel, body.url, body.request_config, bool(body.is_paused), self.clock.now()
        )
        return await self._done(ch, operator_to_api(op))

    async def update_operator(self, operator_id: str, body: p.UpdateOperatorBody) -> Json:
        fields = {
            attr: value
            for attr in ("channel", "url", "request_config", "is_paused")
            if not isinstance(value := getattr(body, attr), p.UnsetType)
        }
        op, ch = self.engine.update_operator(operator_id, fields)
        return await self._done(ch, operator_to_api(op))

    async def delete_operator(self, operator_id: str) -> Json:
        deleted, ch = self.engine.delete_operator(operator_id)
        return await self._done(ch, {"acknowledged": True, "deletedCount": int(deleted)})

    def operators(self) -> list[Operator]:
        return list(self.engine.operators.values())

    # channels and leases -----------------------------------------------------------------
    async def channels(self) -> list[Json]:
        return await self._done(Change(), self.engine.channels())

    async def channel_tasks(self, channel: str, limit: int | None, skip: int) -> Listing:
        return await self.bulk.listing_of(self.engine.channel_task_ids(channel, limit, skip))

    def lease_json(self, t: Task) -> Json:
        parents = [
            {"_id": x.id, "channel": x.channel, "input": x.input, "output": x.output}
            for x in self.engine.parents_of(t)
        ]
        return {"task": self.task_json(t), "parents": parents}

    async def acquire(self, channel: str, body: p.AcquireBody) -> list[Json]:
        """Lease up to ``count`` tasks; with ``waitSeconds``, wait in the channel's fair queue."""
        if self.draining:
            return await self._done(Change(), [])
        lease = self.lease_seconds(body.lease_seconds)
        tasks, ch = self.engine.acquire(
            channel, body.worker_id, self.clock.now(), lease, body.count
        )
        wait = min(body.wait_seconds, self.limits.max_wait_seconds)
        if tasks or wait <= 0:
            leases = [self.lease_json(t) for t in tasks]
        else:
            if ch:
                self.stage(ch)
            ch, leases = Change(), await self._poll(channel, body, lease, wait)
        try:
            return await self._done(ch, leases)
        except asyncio.CancelledError:  # the client went away: hand back what it was given
            self._return(leases)
            raise

    async def _poll(
        self, channel: str, body: p.AcquireBody, lease: float, wait: float
    ) -> list[Json]:
        poll = _Poll(body.worker_id, lease, body.count)
        self._polls.add(poll)
        try:
            self.dispatcher.add(channel, poll)
            # asyncio.wait, not wait_for: wait_for would swallow a cancellation that comes with a
            # result, answering a client that is gone
            await asyncio.wait([poll.future], timeout=wait)
            return poll.future.result() if poll.future.done() else []
        except asyncio.CancelledError:
            if poll.future.done():
                self._return(poll.future.result())
            raise
        finally:
            self._polls.discard(poll)
            self.dispatcher.remove(channel, poll)

    def _return(self, leases: list[Json]) -> None:
        for lease in leases:
            task = lease["task"]
            ch = self.engine.return_lease(task["_id"], task["leaseId"], self.clock.now())
            if ch:
                self.stage(ch)

    def _lease_for(self, channel: str, waiter: Waiter, count: int) -> list[Json]:
        """The dispatcher's way to lease for a waiter: engine, stage, render."""
        tasks, ch = self.engine.acquire(
            channel, waiter.worker_id, self.clock.now(), waiter.lease_seconds, count
        )
        leases = [self.lease_json(t) for t in tasks]
        if ch:
            self.stage(ch)
        return leases

    def release(self, task_id: str, body: p.ReleaseBody, *, brief: bool = False) -> Staged[Json]:
        """Settle a lease; the answer comes with its barrier (a socket's releases need no task
        of their own each: its outbox awaits the barrier of its last frame). ``brief``: the
        answer is ``{}`` (the SDKs do not read the task back: rendering it was ~15 % of a
        release's CPU)."""
        self.check_children(len(body.children or ()))
        children = [self.spec(c, i) for i, c in enumerate(body.children or ())]
        task, ch = self.engine.release(
            task_id,
            body.worker_id,
            self.clock.now(),
            lease_id=body.lease_id,
            output=body.output,
            error=body.error,
            children=children,
            workgroup_delay=body.workgroup_delay_in_seconds or 0,
            children_delay=body.children_delay_in_seconds or 0,
        )
        return self._staged(ch, {} if brief else self.task_json(task))

    def extend(self, task_id: str, body: p.ExtendBody) -> Staged[Json]:
        """Renew a lease (heartbeat); the answer comes with its barrier (see :meth:`release`)."""
        lease = self.lease_seconds(body.lease_seconds)
        task, ch = self.engine.extend(
            task_id, body.worker_id, body.lease_id, lease, self.clock.now()
        )
        return self._staged(ch, self.task_json(task))

    def hand_back(self, task_id: str, body: p.ExtendBody) -> Staged[Json]:
        """A lease its holder will not run after all (adaptive prefetch shrank): ready again,
        no attempt counted; the answer comes with its barrier (see :meth:`release`)."""
        task, ch = self.engine.hand_back(task_id, body.worker_id, body.lease_id, self.clock.now())
        return self._staged(ch, self.task_json(task))

    # time --------------------------------------------------------------------------------
    async def tick(self) -> None:
        self.check_available()
        ch = self.engine.tick(self.clock.now())
        await self._done(ch, None)

    async def clean_expired_groups(
        self, older_than_seconds: float, limit: int | None = None
    ) -> int:
        now = self.clock.now()
        expired = self.engine.expired_groups(now - older_than_seconds)[:limit]
        for gid in expired:
            if gid in self.engine.groups:
                await self.bulk.run(gid, functools.partial(self._delete_steps, gid, now))
        await self.store.sync()
        if expired:
            log.info(
                "deleted expired groups", extra={"event": "groups.expired", "count": len(expired)}
            )
        return len(expired)
