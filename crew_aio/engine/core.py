"""The engine: every transition of the API plus the read side and loading.

Deterministic and synchronous: the same calls with the same ``now`` reach the same state.
"""

from __future__ import annotations

from itertools import chain, islice
from operator import attrgetter
from typing import Any

from crew_aio.engine.admin import Admin
from crew_aio.engine.state import transition
from crew_aio.model import Change, Loaded, Status, Task, TaskGroup

__all__ = ["Engine"]


class Engine(Admin):
    # reads -------------------------------------------------------------------------------
    def status(self, t: Task, now: float) -> Status:
        if t.is_complete:
            return Status.COMPLETED
        if t.assigned_to is not None:
            return Status.LEASED
        if t.remaining_attempts <= 0:
            return Status.FAILED
        if self._paused(t):
            return Status.PAUSED
        if t.pending_parents:
            return Status.WAITING
        if t.run_after is not None and t.run_after > now:
            return Status.DELAYED
        if t.workgroup is not None and self.cooling.get(t.workgroup, now) > now:
            return Status.DELAYED
        return Status.READY

    def group_counts(self, group_id: str, now: float) -> dict[str, int]:
        counts = dict.fromkeys((s.value for s in Status), 0)
        for tid in self.group_tasks.get(group_id, ()):
            counts[self.status(self.tasks[tid], now)] += 1
        return counts

    def group_progress(self, group_id: str) -> float:
        done = total = 0.0
        for tid in self.group_tasks.get(group_id, ()):
            t = self.tasks[tid]
            total += t.progress_weight
            done += t.progress_weight if t.is_complete else 0.0
        return done / total if total > 0 else 0.0

    def list_groups(self, limit: int | None, skip: int) -> list[TaskGroup]:
        newest_first = reversed(self.groups.values())
        return list(islice(newest_first, skip, None if limit is None else skip + limit))

    def group_task_list(self, group_id: str, limit: int | None, skip: int) -> list[Task]:
        """A group's tasks, newest first (as Crew sorts them: createdAt descending); none for
        a group that does not exist (Crew filters tasks by group id)."""
        return self._page(self.group_tasks.get(group_id, {}), limit, skip)

    def channel_task_list(self, channel: str, limit: int | None, skip: int) -> list[Task]:
        """A channel's tasks, newest first."""
        return self._page(self.channel_tasks.get(channel, {}), limit, skip)

    def _page(self, ids: dict[str, None], limit: int | None, skip: int) -> list[Task]:
        return [self.tasks[tid] for tid in self.page_ids(ids, limit, skip)]

    def group_task_ids(self, group_id: str, limit: int | None, skip: int) -> list[str]:
        """:meth:`group_task_list` as ids (cheap: a listing looks them up a chunk at a time)."""
        return self.page_ids(self.group_tasks.get(group_id, {}), limit, skip)

    def channel_task_ids(self, channel: str, limit: int | None, skip: int) -> list[str]:
        return self.page_ids(self.channel_tasks.get(channel, {}), limit, skip)

    @staticmethod
    def page_ids(ids: dict[str, None], limit: int | None, skip: int) -> list[str]:
        end = None if limit is None else skip + limit
        return list(islice(reversed(ids), skip, end))

    def channels(self) -> list[dict[str, Any]]:
        return [
            {
                "name": name,
                "totalCount": st.total,
                "completedCount": st.completed,
                "assignedCount": st.assigned,
            }
            for name, st in sorted(self.stats.items())
            if st.total
        ]

    def parents_of(self, t: Task) -> list[Task]:
        return [self.tasks[p] for p in t.parent_ids if p in self.tasks]

    # loading ---------------------------------------------------------------------------
    @transition
    def load(self, ch: Change, loaded: Loaded) -> list[str]:
        """Rebuild the whole graph, leases included, from what a store held (decoded by
        ``crew_aio.keys``). Returns the ids of tasks that could not be used (their group is
        gone): the caller logs them; they are skipped, never fatal."""
        for group in loaded.groups:
            self.groups[group.id] = group
            self.group_tasks.setdefault(group.id, {})
        for ident in loaded.ids:
            self.observe_id(ident)
        self.clock_mark = max(self.clock_mark, loaded.clock_mark)
        self.remembered.update(loaded.remembered)
        for workgroup, until in loaded.cooling:
            self.cool(workgroup, until)
        for op in sorted(loaded.operators, key=lambda o: o.id):
            self.operators[op.id] = op
            self.observe_id(op.id)
        self.groups = dict(sorted(self.groups.items()))
        self.remembered = dict(sorted(self.remembered.items(), key=lambda kv: kv[1].at))
        for group in self.groups.values():
            group.active_at = max(group.created_at, group.updated_at)
        loaded.tasks.sort(key=attrgetter("id"))
        skipped = self._load_tasks(chain([loaded.tasks], loaded.chunks))
        for ident in (*self.groups, next(reversed(self.tasks), "")):
            self.observe_id(ident)
        return skipped
