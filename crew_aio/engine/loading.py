"""Loading: the engine rebuilt from a store's records at boot (a million tasks in ~1.5 s).

One pass over the tasks, a chunk at a time as they are decoded, does what ``_register``,
``_link``, ``_index`` and ``_queue`` (:mod:`crew_aio.engine.state`) do task by task, with the same
result; the maps and heaps are then built whole. The engine's ``load`` (``core.py``) calls it.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from crew_aio.engine.state import ChannelStats, State
from crew_aio.model import Label, Task, TaskGroup

__all__ = ["Loading"]


@dataclass(slots=True)
class _Load:
    """What :meth:`State._load_tasks` gathers in its pass over the loaded tasks."""

    group_ids: dict[str, list[str]] = field(default_factory=dict)  # in the order loaded
    channel_ids: dict[str, list[str]] = field(default_factory=dict)
    lanes: dict[tuple[str, Label | None], list[tuple[int | float, str]]] = field(
        default_factory=dict
    )
    unlinked: list[Task] = field(default_factory=list)  # a parent was not in yet
    keyed: list[Task] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    top_lease: str = ""
    in_order: bool = True


class Loading(State):
    """The load pass, between the graph's primitives (``State``) and the operations."""

    def _load_tasks(self, chunks: Iterable[list[Task]]) -> list[str]:
        """What ``_register``, ``_link``, ``_index`` and ``_queue`` do for each task, for all
        the tasks of a load (a million at boot), with the same result: one pass, a chunk at a
        time as it is decoded (its objects still in the CPU's cache), then the maps and heaps
        built whole (``dict.fromkeys``, heapify) instead of an insert or a push per task.
        Chunks come in id order, so parents come first: a task whose parent is not in yet (an
        edit made a later task its parent) is linked after the pass, and tasks out of id
        order are put back in order at the end. Returns the ids of the tasks skipped because
        their group is gone (or a second record of one task)."""
        assert not self.tasks and not self.channel_names, "a load starts from an empty engine"
        load = _Load()
        self._load_pass(chunks, load)
        for t in load.unlinked:
            self._link(t)  # every task is in by now
        for t in (*load.unlinked, *load.keyed):
            self._load_ready(t, load.lanes)
        if not load.in_order:
            self.tasks = dict(sorted(self.tasks.items()))
            for ids in (*load.group_ids.values(), *load.channel_ids.values()):
                ids.sort()
        for gid, ids in load.group_ids.items():
            self.group_tasks[gid] = dict.fromkeys(ids)
        for channel, ids in load.channel_ids.items():
            self.channel_tasks[channel] = dict.fromkeys(ids)
            self.stats[channel].total = len(ids)
        heapq.heapify(self.leases)
        heapq.heapify(self.delays)
        for (channel, workgroup), lane in load.lanes.items():
            heapq.heapify(lane)
            self.lanes[(channel, workgroup)] = lane
            self.ready.setdefault(channel, []).append((*lane[0], workgroup))
            self._ch.ready_channels.add(channel)
        for heads in self.ready.values():
            heapq.heapify(heads)
        self.observe_id(load.top_lease)
        return load.skipped

    def _load_pass(self, chunks: Iterable[list[Task]], load: _Load) -> None:  # noqa: C901
        """The pass of :meth:`_load_tasks`: one loop on purpose (a call per task costs ~0.1 s
        a million), its maps in locals. The values tasks repeat become one object each (~200
        bytes a task resident): the group's id, the channel's one string, the timestamps of
        the task before, the parents' own ids."""
        by_id, groups, names, stats = self.tasks, self.groups, self.channel_names, self.stats
        leases, index_labels, ready = self.leases, self._index_labels, self._load_ready
        group_ids, channel_ids, lanes = load.group_ids, load.channel_ids, load.lanes
        unlinked, keyed, skipped = load.unlinked, load.keyed, load.skipped
        created = updated = 0.0
        last = gid = ""
        group: TaskGroup | None = None
        gids: list[str] = []
        for t in itertools.chain.from_iterable(chunks):
            tid = t.id
            if tid <= last:
                if tid in by_id:  # two records of one task (its key names another)
                    skipped.append(tid)
                    continue
                load.in_order = False
            last = tid
            if t.group_id != gid or group is None:  # a chunk is mostly one group's tasks
                group = groups.get(t.group_id)
                if group is None:
                    skipped.append(tid)
                    continue
                gid = group.id
                gids = group_ids.setdefault(gid, [])
            by_id[tid] = t
            t.group_id = gid
            gids.append(tid)
            channel = names.get(t.channel)
            if channel is None:
                channel = names[t.channel] = t.channel
                channel_ids[channel] = []
                stats[channel] = ChannelStats()
            t.channel = channel
            channel_ids[channel].append(tid)
            if t.created_at == created:
                t.created_at = created
            else:
                created = t.created_at
            if t.updated_at == updated:
                t.updated_at = updated
            else:
                updated = t.updated_at
            if updated > group.active_at:
                group.active_at = updated
            if t.lease_id is not None:
                load.top_lease = max(load.top_lease, t.lease_id)
                if t.lease_expires_at is not None:
                    t.lease_filed = t.lease_expires_at
                    leases.append((t.lease_expires_at, t.lease_id, tid))
            linked = True
            pids = t.parent_ids
            if len(pids) == 1:  # the usual DAG edge: no list, no loop
                parent = by_id.get(pids[0])
                if parent is None:
                    linked = False
                else:
                    t.parent_ids = (parent.id,)
                    if parent.children is None:
                        parent.children = [tid]
                    else:
                        parent.children.append(tid)
                    t.pending_parents = not parent.is_complete
            elif pids:
                parents = list(map(by_id.get, pids))
                if None in parents:
                    linked = False
                else:
                    t.parent_ids = tuple([p.id for p in parents])  # type: ignore[union-attr]
                    pending = 0
                    for parent in parents:
                        assert parent is not None
                        if parent.children is None:
                            parent.children = [tid]
                        else:
                            parent.children.append(tid)
                        pending += not parent.is_complete
                    t.pending_parents = pending
            if t.is_complete:
                stats[channel].completed += 1
                if not linked:
                    unlinked.append(t)
                continue
            if t.key is not None or t.workgroup is not None:
                index_labels(t)
            if t.assigned_to is not None:
                stats[channel].assigned += 1
            if not linked:
                unlinked.append(t)
            elif t.key is not None:
                keyed.append(t)  # queued once every key's holder is known
            elif t.assigned_to is None and not t.pending_parents:
                ready(t, lanes)

    def _load_ready(
        self, t: Task, lanes: dict[tuple[str, Label | None], list[tuple[int | float, str]]]
    ) -> None:
        """``_queue`` at now = -inf (every runAfter waits for the next tick) for a loaded task,
        into ``lanes`` (heapified once all are in)."""
        if self._blocked(t):
            return
        if t.run_after is not None:
            self.delays.append((t.run_after, t.id))
            return
        t.queued = True
        lane = lanes.get((t.channel, t.workgroup))
        if lane is None:
            lane = lanes[(t.channel, t.workgroup)] = []
        lane.append((-t.priority, t.id))
