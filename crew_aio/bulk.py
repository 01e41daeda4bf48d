"""Operations on many tasks at once, a slice at a time: the loop is never held long.

An operation on a whole group (pause, resume, reset, delete, a big create) runs as engine
:data:`~crew_aio.engine.state.Steps`, one slice between two yields to the loop, one such
operation at a time per group (a lock), committed whole (the store holds its commits until all
of it is staged). Listings are copied a chunk at a time, and a big group's counts are taken a
slice at a time. Owned by the service (:attr:`crew_aio.service.Service.bulk`).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

from msgspec.structs import replace as copy_struct

from crew_aio.clock import Clock
from crew_aio.commit import Store
from crew_aio.engine import Engine
from crew_aio.engine.state import STEP, Steps
from crew_aio.model import Change, Status, Task, TaskGroup, group_to_api, task_to_api

__all__ = ["SNAPSHOT_CHUNK", "STAGE_CHUNK", "TURN", "Bulk", "Listing", "Turns"]

R = TypeVar("R")
Json = dict[str, Any]
SNAPSHOT_CHUNK = 2000  # tasks a listing copies between two yields to the loop
STAGE_CHUNK = 2000  # task records a big change encodes and stages between two yields
TURN = 0.02  # seconds a run of small operations (a batch's releases) holds the loop, at most


class Turns:
    """For a handler that runs many small operations in a row (the releases of a WebSocket
    batch or of an exchange, each maybe with thousands of children): ``due()`` says when
    :data:`TURN` has gone by since the last yield, so the handler lets other requests run
    (``await asyncio.sleep(0)``) before the next one. The loop is then held for one operation
    past ``TURN`` at most, not for the whole message."""

    __slots__ = ("_loop", "_until")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._until = self._loop.time() + TURN

    def due(self) -> bool:
        now = self._loop.time()
        if now < self._until:
            return False
        self._until = now + TURN
        return True


class Host(Protocol):
    """What :class:`Bulk` uses of the service that owns it."""

    engine: Engine
    store: Store
    clock: Clock

    def check_available(self) -> None: ...
    def stage(self, change: Change) -> None: ...
    def stage_tasks(self, ids: Iterable[str]) -> None: ...
    def stage_rest(self, change: Change) -> None: ...
    def group_json(self, g: TaskGroup) -> Json: ...


class Listing:
    """Tasks as they were when listed, rendered on demand in chunks of ``CHUNK``."""

    CHUNK = 500

    def __init__(self, items: list[tuple[Task, Status, bool, float | None]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def chunks(self) -> Iterator[list[Json]]:
        items = self.items
        for i in range(0, len(items), self.CHUNK):
            yield [task_to_api(*item) for item in items[i : i + self.CHUNK]]


class Bulk:
    def __init__(self, host: Host) -> None:
        self.host = host
        self.step = STEP  # tasks an operation on a whole group handles between two yields
        self._group_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    async def run(self, group_id: str, steps: Callable[[], Steps[tuple[R, Change]]]) -> R:
        """Run an engine operation a slice at a time, letting other requests run between
        slices, and stage it; no commit starts until it is all staged."""
        async with self.lock(group_id):
            self.host.check_available()
            self.host.store.hold()
            try:
                result, ch = await self._drive(steps())
                await self.stage(ch)
            finally:
                self.host.store.release()
        await self.host.store.sync()
        return result

    @staticmethod
    async def _drive(steps: Steps[R]) -> R:
        while True:
            try:
                next(steps)
            except StopIteration as stop:
                result: R = stop.value
                return result
            await asyncio.sleep(0)

    def lock(self, group_id: str) -> asyncio.Lock:
        lock = self._group_locks.get(group_id)
        if lock is None:
            lock = self._group_locks[group_id] = asyncio.Lock()
        return lock

    async def stage(self, change: Change) -> None:
        """The service's staging for a change of many tasks: their records are encoded and staged
        STAGE_CHUNK at a time, yielding to the loop between, under a store hold, so the change
        is still committed whole (200,000 records held the loop ~1.6 s)."""
        if len(change.tasks) <= STAGE_CHUNK:
            self.host.stage(change)
            return
        self.host.store.hold()
        try:
            ids = list(change.tasks)
            for start in range(0, len(ids), STAGE_CHUNK):
                if start:
                    await asyncio.sleep(0)
                self.host.stage_tasks(ids[start : start + STAGE_CHUNK])
            self.host.stage_rest(change)
        finally:
            self.host.store.release()

    async def group_json(self, g: TaskGroup) -> Json:
        """The service's ``group_json``; a big group's counts are taken a slice at a time."""
        ids = list(self.host.engine.group_tasks.get(g.id, ()))
        if len(ids) <= STEP:
            return self.host.group_json(g)
        counts = dict.fromkeys((s.value for s in Status), 0)
        done = total = 0.0
        for start in range(0, len(ids), STEP):
            if start:
                await asyncio.sleep(0)
            now, tasks = self.host.clock.now(), self.host.engine.tasks
            for tid in ids[start : start + STEP]:
                t = tasks.get(tid)
                if t is not None:
                    counts[self.host.engine.status(t, now)] += 1
                    total += t.progress_weight
                    done += t.progress_weight if t.is_complete else 0.0
        return group_to_api(g, counts, done / total if total > 0 else 0.0)

    async def listing_of(self, ids: list[str]) -> Listing:
        """:meth:`listing` of task ids, looked up a chunk at a time."""
        if len(ids) <= SNAPSHOT_CHUNK:
            tasks = self.host.engine.tasks
            return await self.listing([tasks[tid] for tid in ids if tid in tasks])
        items: list[tuple[Task, Status, bool, float | None]] = []
        for start in range(0, len(ids), SNAPSHOT_CHUNK):
            if start:
                await asyncio.sleep(0)
            tasks = self.host.engine.tasks  # a task deleted meanwhile is left out
            part = [tasks[tid] for tid in ids[start : start + SNAPSHOT_CHUNK] if tid in tasks]
            items += self.snapshot(part, self.host.clock.now()).items
        await self.host.store.sync()
        return Listing(items)

    async def listing(self, tasks: list[Task]) -> Listing:
        """Shallow copies of the tasks with their statuses, durable like every answer; rendered
        later chunk by chunk. The copies are taken SNAPSHOT_CHUNK at a time, yielding between:
        a listing of 200,000 tasks holds the loop for no chunk longer than a few ms, and shows
        each task as it was at one moment during the request."""
        if len(tasks) <= SNAPSHOT_CHUNK:
            listing = self.snapshot(tasks, self.host.clock.now())
        else:
            items: list[tuple[Task, Status, bool, float | None]] = []
            for start in range(0, len(tasks), SNAPSHOT_CHUNK):
                if start:
                    await asyncio.sleep(0)
                alive = self.host.engine.tasks  # a task deleted meanwhile is left out
                part = [t for t in tasks[start : start + SNAPSHOT_CHUNK] if t.id in alive]
                items += self.snapshot(part, self.host.clock.now()).items
            listing = Listing(items)
        await self.host.store.sync()
        return listing

    def snapshot(self, tasks: list[Task], now: float) -> Listing:
        """Tasks as they are now (shallow copies), to render later."""
        engine, groups = self.host.engine, self.host.engine.groups
        status, run_after = engine.status, engine.run_after_of
        items = [
            (copy_struct(t), status(t, now), groups[t.group_id].is_paused, run_after(t, now))
            for t in tasks
        ]
        return Listing(items)
