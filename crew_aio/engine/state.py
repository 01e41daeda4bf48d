"""The in-memory graph, its indexes, and the primitives every operation is built from.

Indexes (no hot path scans all tasks):

* ``lanes[(channel, workgroup)]``: heap of (-priority, id) of possibly acquirable tasks, lazy
  deletion; ``ready[channel]``: heap of the lanes' tops (-priority, id, workgroup), so a lane
  whose workgroup cools off is parked whole (``thaws``) instead of skipped task by task;
* ``cooling[workgroup]``: the end of its cool-off (``workgroupDelayInSeconds``: O(1));
* ``delays``: heap of (runAfter, id); ``leases``: heap of (leaseExpiresAt, leaseId, id);
* per task: ``pending_parents`` (incomplete parents) and ``children``;
* ``keys[(channel, key)]`` and ``workgroups[name]``: incomplete tasks; ``key_holder``: the
  leased task of a key; ``group_tasks`` / ``channel_tasks`` in creation order; channel counters.

Heap entries are hints: whoever pops one re-checks the task, so a stale entry costs one pop.
"""

from __future__ import annotations

import functools
import heapq
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar, cast

from crew_aio.errors import NotFound
from crew_aio.model import Change, Label, Operator, Remembered, Task, TaskGroup

__all__ = [
    "NO_CHANGE",
    "STEP",
    "Change",
    "ChannelStats",
    "Remembered",
    "State",
    "Steps",
    "run_steps",
    "sliced",
    "transition",
]

R = TypeVar("R")
P = ParamSpec("P")
S = TypeVar("S", bound="State")
Steps = Generator[None, None, R]
"""An operation on many tasks, done a slice at a time: each ``yield`` lets other requests run
(the service awaits the loop there; the store holds its commits so the whole is committed at
once). Its ``return`` value is the operation's result. Its Change is current during each slice
and only then (:func:`sliced`)."""

STEP = 2000  # tasks a sliced operation handles before it yields


def run_steps(steps: Steps[R]) -> R:
    """Run a sliced operation to its end without yielding (tests, small groups)."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            result: R = stop.value
            return result


class _OutsideTransition:
    """The change recorded into outside any operation: using it is a bug, named at once."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("an engine primitive ran outside an operation (no current Change)")

    def __reduce__(self) -> str:
        return "NO_CHANGE"  # the one instance, also in a copied engine


NO_CHANGE = cast(Change, _OutsideTransition())


def transition(op: Callable[Concatenate[S, Change, P], R]) -> Callable[Concatenate[S, P], R]:
    """An engine operation: it runs with its own Change, given to it explicitly and current
    while it runs (every primitive it calls records into it), and none once it returns, so
    no later call can record into a change already handed out. An operation called by
    another joins the caller's change."""

    @functools.wraps(op)
    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        outer = self._ch
        if outer is not NO_CHANGE:
            return op(self, outer, *args, **kwargs)
        ch = self._ch = Change()
        try:
            return op(self, ch, *args, **kwargs)
        finally:
            self._ch = NO_CHANGE

    return run


def sliced(
    op: Callable[Concatenate[S, Change, P], Steps[R]],
) -> Callable[Concatenate[S, P], Steps[R]]:
    """:func:`transition` for an operation done a slice at a time (a generator of
    :data:`Steps`): its change is current during each of its slices, and only then, so other
    operations run between slices with their own."""

    @functools.wraps(op)
    def run(self: S, /, *args: P.args, **kwargs: P.kwargs) -> Steps[R]:
        ch = Change()
        return _slices(self, ch, op(self, ch, *args, **kwargs))

    return run


def _slices(state: State, ch: Change, steps: Steps[R]) -> Steps[R]:
    while True:
        outer, state._ch = state._ch, ch
        try:
            next(steps)
        except StopIteration as stop:
            result: R = stop.value
            return result
        finally:
            state._ch = outer
        yield


K = TypeVar("K")
KEY_TTL = 86_400.0  # seconds an Idempotency-Key is remembered


@dataclass(slots=True)
class ChannelStats:
    total: int = 0
    completed: int = 0
    assigned: int = 0


class State:
    """Tasks, groups and indexes; every mutation of a task goes through unindex → edit → index."""

    def __init__(self) -> None:
        self.tasks: dict[str, Task] = {}
        self.groups: dict[str, TaskGroup] = {}
        self.group_tasks: dict[str, dict[str, None]] = {}
        self.channel_tasks: dict[str, dict[str, None]] = {}
        self.channel_names: dict[str, str] = {}  # each channel's one string object
        self.stats: dict[str, ChannelStats] = {}
        self.keys: dict[tuple[str, Label], dict[str, None]] = {}
        self.key_holder: dict[tuple[str, Label], str] = {}
        self.workgroups: dict[Label, dict[str, None]] = {}
        self.ready: dict[str, list[tuple[int | float, str, Label | None]]] = {}
        self.lanes: dict[tuple[str, Label | None], list[tuple[int | float, str]]] = {}
        self.cooling: dict[Label, float] = {}
        self.cool_ends: list[tuple[float, int, Label]] = []  # (until, seq, workgroup)
        self.thaws: list[tuple[float, int, str, Label]] = []  # (until, seq, channel, workgroup)
        self._seq_heap = 0  # tie-breaker: labels of different types never get compared
        self.delays: list[tuple[float, str]] = []
        self.leases: list[tuple[float, str, str]] = []
        self._last_ms = 0
        self._seq = 0
        self._last_id = f"{0:024x}"
        self.clock_mark = 0.0  # the latest time a loaded store had seen (see Engine.load)
        self.remembered: dict[str, Remembered] = {}  # idempotency key → what it created
        self.operators: dict[str, Operator] = {}  # in creation order
        self._ch: Change = NO_CHANGE  # the running operation's (see transition)

    def _open(self) -> Change:
        """Open a new operation's change, inline: the few hottest operations (acquire,
        release, extend, tick) open and close theirs themselves (``ch = self._open()``, then
        ``try: ... finally: self._ch = NO_CHANGE``) instead of through :func:`transition`,
        whose wrapper costs ~10 % of an acquire+release cycle. Still nothing can be forgotten:
        a change left open makes the next ``_open`` fail, and a primitive outside any
        operation fails."""
        if self._ch is not NO_CHANGE:
            raise RuntimeError("an operation left its change open")
        ch = self._ch = Change()
        return ch

    # ids ---------------------------------------------------------------------------------
    def new_id(self, now: float) -> str:
        """24 hex digits: milliseconds then a sequence; unique and sortable by creation."""
        ms = int(now * 1000)
        if ms > self._last_ms:
            self._last_ms, self._seq = ms, 0
        else:
            self._seq += 1
        self._last_id = f"{self._last_ms:012x}{self._seq:012x}"
        return self._last_id

    @property
    def last_id(self) -> str:
        """The highest id issued so far (persisted, so no id repeats after a restart)."""
        return self._last_id

    def observe_id(self, ident: str) -> None:
        """Keep new ids above one loaded from the store."""
        try:
            ms, seq = int(ident[:12], 16), int(ident[12:24], 16)
        except ValueError:
            return
        if (ms, seq) > (self._last_ms, self._seq):
            self._last_ms, self._seq = ms, seq
            self._last_id = f"{ms:012x}{seq:012x}"

    # lookups -----------------------------------------------------------------------------
    def task(self, task_id: str) -> Task:
        task = self.tasks.get(task_id)
        if task is None:
            raise NotFound(f"no task {task_id!r}")
        return task

    def group(self, group_id: str) -> TaskGroup:
        group = self.groups.get(group_id)
        if group is None:
            raise NotFound(f"no task group {group_id!r}")
        return group

    def live_group(self, group_id: str) -> TaskGroup:
        """:meth:`group`, refusing one whose delete is under way (nothing may be added)."""
        group = self.group(group_id)
        if group.deleting:
            raise NotFound(f"task group {group_id!r} is being deleted")
        return group

    # change tracking ---------------------------------------------------------------------
    def _touch(self, task: Task, now: float) -> None:
        task.updated_at = now
        self._ch.tasks[task.id] = None
        self.groups[task.group_id].active_at = now

    def _touch_group(self, group: TaskGroup, now: float) -> None:
        group.updated_at = group.active_at = now
        self._ch.groups[group.id] = None

    # indexes -----------------------------------------------------------------------------
    def _index(self, t: Task) -> None:
        st = self.stats.get(t.channel)
        if st is None:
            st = self.stats[t.channel] = ChannelStats()
        st.total += 1
        if t.is_complete:
            st.completed += 1
            return
        if t.assigned_to is not None:
            st.assigned += 1
        if t.key is not None or t.workgroup is not None:
            self._index_labels(t)

    def _unindex(self, t: Task) -> None:
        st = self.stats[t.channel]
        st.total -= 1
        if t.is_complete:
            st.completed -= 1
            return
        if t.assigned_to is not None:
            st.assigned -= 1
        if t.key is not None:
            k = (t.channel, t.key)
            _discard(self.keys, k, t.id)
            if self.key_holder.get(k) == t.id:
                del self.key_holder[k]
        if t.workgroup is not None:
            _discard(self.workgroups, t.workgroup, t.id)

    def _register(self, t: Task) -> None:
        """Add a new or loaded task to the maps and indexes (link it once its parents are in).
        Its channel is the one string object all tasks of that channel hold (a request's JSON
        gives each task a copy: ~55 bytes a task resident)."""
        channel = self.channel_names.get(t.channel)
        if channel is None:
            channel = self.channel_names[t.channel] = t.channel
        t.channel = channel
        self.tasks[t.id] = t
        self.group_tasks.setdefault(t.group_id, {})[t.id] = None
        self.channel_tasks.setdefault(t.channel, {})[t.id] = None
        self._index(t)
        if t.lease_id is not None and t.lease_expires_at is not None:
            self._file_lease(t)

    def _index_labels(self, t: Task) -> None:
        """The key and workgroup indexes of an incomplete task (part of ``_index``)."""
        if t.key is not None:
            self.keys.setdefault((t.channel, t.key), {})[t.id] = None
            if t.lease_id is not None:
                self.key_holder[(t.channel, t.key)] = t.id
        if t.workgroup is not None:
            self.workgroups.setdefault(t.workgroup, {})[t.id] = None

    def _file_lease(self, t: Task) -> None:
        """Enter ``t``'s lease in the lease heap at its current deadline."""
        assert t.lease_id is not None and t.lease_expires_at is not None
        t.lease_filed = t.lease_expires_at
        heapq.heappush(self.leases, (t.lease_expires_at, t.lease_id, t.id))

    def _link(self, t: Task) -> None:
        """Enter ``t`` in its parents' children lists and count its incomplete parents."""
        pending = 0
        for pid in t.parent_ids:
            parent = self.tasks.get(pid)
            if parent is None:
                continue
            if parent.children is None:
                parent.children = []
            parent.children.append(t.id)
            pending += not parent.is_complete
        t.pending_parents = pending

    def _remove(self, ids: list[str]) -> None:
        """Forget these tasks; surviving parents' children lists are filtered once each."""
        doomed = set(ids)
        parents: dict[str, None] = {}
        for tid in ids:
            t = self.tasks.pop(tid)
            self._unindex(t)
            _discard(self.group_tasks, t.group_id, tid)
            _discard(self.channel_tasks, t.channel, tid)
            for pid in t.parent_ids:
                if pid not in doomed:
                    parents[pid] = None
            self._ch.tasks[tid] = None
            self._ch.deleted[tid] = t.group_id
        for pid in parents:
            parent = self.tasks.get(pid)
            if parent is not None and parent.children:
                parent.children = [c for c in parent.children if c not in doomed] or None

    # readiness ---------------------------------------------------------------------------
    def _paused(self, t: Task) -> bool:
        """A task is paused exactly when its group is (Crew keeps the two in sync), and while
        its group is being deleted."""
        group = self.groups[t.group_id]
        return group.is_paused or group.deleting

    def _blocked(self, t: Task) -> bool:
        """True when ``t`` cannot be handed out for a reason other than time."""
        if t.is_complete or t.assigned_to is not None or t.remaining_attempts <= 0:
            return True
        if t.pending_parents or self._paused(t):
            return True
        if t.key is not None:
            holder = self.key_holder.get((t.channel, t.key))
            return holder is not None and holder != t.id
        return False

    def _queue(self, t: Task, now: float) -> None:
        """Put ``t`` where it will be found: its channel heap, or the delay heap."""
        if self._blocked(t):
            return
        if t.run_after is not None and t.run_after > now:
            heapq.heappush(self.delays, (t.run_after, t.id))
            return
        if not t.queued:
            t.queued = True
            lane_key = (t.channel, t.workgroup)
            lane = self.lanes.get(lane_key)
            if lane is None:
                lane = self.lanes[lane_key] = []
            entry = (-t.priority, t.id)
            heapq.heappush(lane, entry)
            if lane[0] is entry:  # a new top: its lane stands in the channel's heap with it
                heapq.heappush(self.ready.setdefault(t.channel, []), (*entry, t.workgroup))
        self._ch.ready_channels.add(t.channel)

    def _pop_ready(self, channel: str, now: float) -> Task | None:
        heads = self.ready.get(channel)
        while heads:
            neg_priority, tid, workgroup = heads[0]
            lane = self.lanes.get((channel, workgroup))
            if not lane or lane[0] != (neg_priority, tid):  # stale: the lane's top moved
                heapq.heappop(heads)
                continue
            if workgroup is not None:
                until = self.cooling.get(workgroup)
                if until is not None and until > now:  # cooling off: park the whole lane
                    heapq.heappop(heads)
                    self._seq_heap += 1
                    heapq.heappush(self.thaws, (until, self._seq_heap, channel, workgroup))
                    continue
            heapq.heappop(lane)
            if lane:
                heapq.heapreplace(heads, (*lane[0], workgroup))
            else:
                heapq.heappop(heads)
                del self.lanes[(channel, workgroup)]
            t = self.tasks.get(tid)
            if t is None or t.channel != channel or -neg_priority != t.priority:
                continue
            if t.workgroup != workgroup:
                continue
            t.queued = False
            if self._blocked(t):
                continue
            if t.run_after is not None and t.run_after > now:
                heapq.heappush(self.delays, (t.run_after, t.id))
                continue
            return t
        return None

    def _thaw(self, now: float) -> None:
        """Lanes parked while their workgroup cooled stand in their channel again; ended
        cool-offs are forgotten."""
        thaws, cool_ends = self.thaws, self.cool_ends
        while thaws and thaws[0][0] <= now:
            _, _, channel, workgroup = heapq.heappop(thaws)
            lane = self.lanes.get((channel, workgroup))
            if lane:
                heapq.heappush(self.ready.setdefault(channel, []), (*lane[0], workgroup))
                self._ch.ready_channels.add(channel)
        while cool_ends and cool_ends[0][0] <= now:
            until, _, workgroup = heapq.heappop(cool_ends)
            if self.cooling.get(workgroup) == until:
                del self.cooling[workgroup]
                self._ch.cooled[workgroup] = None

    @transition
    def cool(self, ch: Change, workgroup: Label, until: float) -> Change:
        """Nothing of ``workgroup`` is handed out before ``until`` (O(1), whatever its size)."""
        current = self.cooling.get(workgroup)
        if current is not None and current >= until:
            return ch
        self.cooling[workgroup] = until
        self._seq_heap += 1
        heapq.heappush(self.cool_ends, (until, self._seq_heap, workgroup))
        ch.cooled[workgroup] = None
        return ch

    def run_after_of(self, t: Task, now: float) -> float | None:
        """``t``'s runAfter as a client sees it: its own, or its workgroup's cool-off end."""
        if t.workgroup is not None and not t.is_complete:
            until = self.cooling.get(t.workgroup)
            if until is not None and until > now and (t.run_after is None or until > t.run_after):
                return until
        return t.run_after

    def next_deadline(self) -> float | None:
        """The earliest runAfter, lease expiry, cool-off end or key expiry to wake for."""
        times: list[float] = [h[0][0] for h in (self.delays, self.leases) if h]
        times += [h[0][0] for h in (self.thaws, self.cool_ends) if h]
        if self.remembered:
            times.append(next(iter(self.remembered.values())).at + KEY_TTL)
        return min(times) if times else None

    # idempotency keys --------------------------------------------------------------------
    def remember(
        self, ch: Change, key: str, kind: str, ids: tuple[str, ...], fp: str, now: float
    ) -> None:
        """Record what a create under ``key`` made, in ``ch``, the change of that create."""
        self.remembered[key] = Remembered(kind, ids, fp, now)
        ch.keys[key] = None

    def _forget_keys(self, now: float) -> None:
        remembered = self.remembered
        while remembered:
            key, first = next(iter(remembered.items()))
            if first.at + KEY_TTL > now:
                break
            del remembered[key]
            self._ch.keys[key] = None


def _discard(index: dict[K, dict[str, None]], key: K, tid: str) -> None:
    bucket = index.get(key)
    if bucket is not None:
        bucket.pop(tid, None)
        if not bucket:
            del index[key]
