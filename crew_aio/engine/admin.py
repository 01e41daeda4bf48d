"""Operator transitions: groups, pause/resume, retry, reset, pluck, edit, delete."""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Any

from crew_aio.engine.graph import descendants
from crew_aio.engine.state import STEP, Change, Steps, run_steps, sliced, transition
from crew_aio.engine.work import Work
from crew_aio.errors import Invalid, NotFound
from crew_aio.model import (
    EDITABLE,
    PLUCKED,
    Label,
    Operator,
    Task,
    TaskGroup,
    group_to_api,
    operator_to_api,
)

__all__ = ["Admin"]


class Admin(Work):
    # groups ------------------------------------------------------------------------------
    @transition
    def create_group(
        self, ch: Change, name: Label, now: float, is_paused: bool = False
    ) -> tuple[TaskGroup, Change]:
        group = TaskGroup(self.new_id(now), name, is_paused, now, now, active_at=now)
        self.groups[group.id] = group
        self.group_tasks[group.id] = {}
        ch.groups[group.id] = None
        ch.notes.append((group.id, "group:create", group_to_api(group)))
        return group, ch

    def update_group(
        self, group_id: str, now: float, *, name: Label | None = None, is_paused: bool | None = None
    ) -> tuple[TaskGroup, Change]:
        return run_steps(self.update_group_steps(group_id, now, name=name, is_paused=is_paused))

    @sliced
    def update_group_steps(
        self,
        ch: Change,
        group_id: str,
        now: float,
        *,
        name: Label | None = None,
        is_paused: bool | None = None,
        step: int = STEP,
    ) -> Steps[tuple[TaskGroup, Change]]:
        """Rename, pause or resume; a resume files the group's tasks a slice at a time."""
        group = self.group(group_id)
        if name is not None:
            group.name = name
        if is_paused is not None:  # Crew announces a pause or resume even when nothing changes
            ch.notes.append((group_id, "group:syncPause", {"isPaused": is_paused}))
        if is_paused is not None and is_paused != group.is_paused:
            group.is_paused = is_paused
            if not is_paused:
                ids = list(self.group_tasks.get(group_id, ()))
                for start in range(0, len(ids), step):
                    if start:
                        yield
                    if group.is_paused:  # paused again meanwhile: the rest waits for a resume
                        break
                    self._queue_all((t for t in ids[start : start + step] if t in self.tasks), now)
        self._touch_group(group, now)
        return group, ch

    def delete_group(self, group_id: str, now: float) -> tuple[TaskGroup, Change]:
        return run_steps(self.delete_group_steps(group_id, now))

    @sliced
    def delete_group_steps(
        self, ch: Change, group_id: str, now: float, step: int = STEP
    ) -> Steps[tuple[TaskGroup, Change]]:
        """Delete a group and its tasks, a slice at a time; meanwhile the group hands nothing
        out and takes no new task."""
        group = self.live_group(group_id)
        group.deleting = True
        first = True
        while part := list(islice(self.group_tasks.get(group_id, ()), step)):
            if not first:
                yield
            first = False
            self._delete(part, now)
        self.group_tasks.pop(group_id, None)
        del self.groups[group_id]
        ch.groups[group_id] = None
        return group, ch

    def expired_groups(self, idle_since: float) -> list[str]:
        """Groups in which nothing changed since ``idle_since`` (Crew's expired-group cleanup)."""
        return [g.id for g in self.groups.values() if g.active_at < idle_since]

    @transition
    def retry_group(
        self, ch: Change, group_id: str, attempts: int, now: float
    ) -> tuple[TaskGroup, Change]:
        """Failed tasks of the group get ``attempts`` more attempts, runnable at once."""
        group = self.group(group_id)
        for tid in self.group_tasks.get(group_id, ()):
            t = self.tasks[tid]
            if not t.is_complete and t.remaining_attempts <= 0:
                self._give_attempts(t, attempts, now)
        ch.notes.append((group_id, "group:retry", None))
        return group, ch

    def reset_group(self, group_id: str, now: float, attempts: int = 5) -> tuple[TaskGroup, Change]:
        return run_steps(self.reset_group_steps(group_id, now, attempts))

    @sliced
    def reset_group_steps(
        self, ch: Change, group_id: str, now: float, attempts: int = 5, step: int = STEP
    ) -> Steps[tuple[TaskGroup, Change]]:
        """Delete non-seed tasks if the group has seeds; every remaining task looks never run,
        with ``attempts`` attempts and, as in Crew, ``parentsComplete`` false. A slice at a
        time: a task deleted meanwhile is skipped, one created meanwhile is new already."""
        group = self.live_group(group_id)
        ch.notes.append((group_id, "group:reset", None))
        members = [self.tasks[tid] for tid in self.group_tasks.get(group_id, ())]
        if any(t.is_seed for t in members):
            doomed = [t.id for t in members if not t.is_seed]
            for start in range(0, len(doomed), step):
                yield
                gone = [tid for tid in doomed[start : start + step] if tid in self.tasks]
                self._delete(gone, now, cascade=False)
            members = [t for t in members if t.is_seed]
        for start in range(0, len(members), step):
            yield
            for t in members[start : start + step]:
                if t.id in self.tasks:
                    self._strip_parents(t, now)
                    self._reset_fields(t, now, attempts)
                    t.parents_complete = False
        for start in range(0, len(members), step):
            yield
            kept = [t for t in members[start : start + step] if t.id in self.tasks]
            for t in kept:
                t.pending_parents = sum(  # a parent the store lost counts as done, as in _link
                    p in self.tasks and not self.tasks[p].is_complete for p in t.parent_ids
                )
            self._queue_all((t.id for t in kept), now)
        return group, ch

    def _strip_parents(self, t: Task, now: float) -> None:
        """Drop parents that are gone (the non-seed tasks a reset deleted)."""
        kept = tuple(p for p in t.parent_ids if p in self.tasks)
        if kept != t.parent_ids:
            t.parent_ids = kept
            self._touch(t, now)

    # operators (Crew's HTTP push) ----------------------------------------------------------
    @transition
    def create_operator(
        self,
        ch: Change,
        channel: str,
        url: str,
        request_config: dict[str, Any] | None,
        is_paused: bool,
        now: float,
    ) -> tuple[Operator, Change]:
        op = Operator(self.new_id(now), channel, url, request_config, is_paused, now)
        self.operators[op.id] = op
        ch.operators[op.id] = None
        ch.notes.append(("operators", "operator:create", operator_to_api(op)))
        return op, ch

    def operator(self, operator_id: str) -> Operator:
        op = self.operators.get(operator_id)
        if op is None:
            raise NotFound(f"no operator {operator_id!r}")
        return op

    @transition
    def update_operator(
        self, ch: Change, operator_id: str, fields: dict[str, Any]
    ) -> tuple[Operator, Change]:
        """Set ``fields`` (attribute names: channel, url, request_config, is_paused)."""
        op = self.operator(operator_id)
        for name, value in fields.items():
            setattr(op, name, value)
        ch.operators[op.id] = None
        ch.notes.append(("operators", "operator:update", operator_to_api(op)))
        if not op.is_paused:  # its channel's ready tasks go to it now
            ch.ready_channels.add(op.channel)
        return op, ch

    @transition
    def delete_operator(self, ch: Change, operator_id: str) -> tuple[bool, Change]:
        """Forget an operator; False when there was none (MongoDB's deletedCount 0)."""
        op = self.operators.pop(operator_id, None)
        if op is not None:
            ch.operators[operator_id] = None
            ch.notes.append(("operators", "operator:delete", operator_to_api(op)))
        return op is not None, ch

    def list_operators(self, limit: int | None, skip: int) -> list[Operator]:
        """Newest first, as Crew sorts them."""
        newest_first = reversed(self.operators.values())
        return list(islice(newest_first, skip, None if limit is None else skip + limit))

    # tasks -------------------------------------------------------------------------------
    @transition
    def reset_task(
        self, ch: Change, task_id: str, now: float, attempts: int = 2
    ) -> tuple[Task, Change]:
        t = self.task(task_id)
        if t.is_complete:
            for cid in t.children or ():
                self.tasks[cid].pending_parents += 1
        self._reset_fields(t, now, attempts)
        self._queue(t, now)
        return t, ch

    @transition
    def retry_task(
        self, ch: Change, task_id: str, attempts: int, now: float
    ) -> tuple[Task, Change]:
        """Set the task's attempts (as Crew, on any task: a complete one stays complete)."""
        t = self.task(task_id)
        if t.is_complete:
            t.remaining_attempts = attempts
            self._touch(t, now)
        else:
            self._give_attempts(t, attempts, now)
        return t, ch

    @transition
    def pluck(self, ch: Change, task_id: str, now: float) -> tuple[Task, Change]:
        """Copy a task, never run and with no parents, into a new paused group named as Crew
        names it; returns the copy. Like Crew's, the copy keeps the key and seed flag, and
        starts with 5 attempts."""
        t = self.task(task_id)
        group, _ = self.create_group(f"Pluck Task {t.id}", now, is_paused=True)  # joins ch
        copy = Task(
            id=self.new_id(now), group_id=group.id, created_at=now, updated_at=now,
            **{attr: getattr(t, attr) for attr in PLUCKED},
        )  # fmt: skip
        self._register(copy)
        ch.tasks[copy.id] = None
        ch.created.add(copy.id)
        return copy, ch

    @transition
    def update_task(
        self, ch: Change, task_id: str, fields: dict[str, Any], now: float
    ) -> tuple[Task, Change]:
        """Apply editable fields (API names, already validated) to a task; ``parentIds``
        re-links it (parents of its group, none of them its descendants)."""
        t = self.task(task_id)
        parents = fields.pop("parentIds", None)
        if parents is not None:
            self._check_parents(t, tuple(dict.fromkeys(parents)))
        old_channel, old_priority, old_workgroup = t.channel, t.priority, t.workgroup
        moved = (fields.get("channel", t.channel), fields.get("key", t.key)) != (t.channel, t.key)
        self._unindex(t)
        if moved:
            self._leave_key(t, now)
        for name, value in fields.items():
            setattr(t, EDITABLE[name], value)
        self._index(t)
        if t.channel != old_channel:
            self.channel_tasks[old_channel].pop(t.id, None)
            self.channel_tasks.setdefault(t.channel, {})[t.id] = None
        if t.channel != old_channel or t.priority != old_priority or t.workgroup != old_workgroup:
            t.queued = False  # filed again, in its new lane
        if parents is not None:
            self._relink(t, tuple(dict.fromkeys(parents)))
        self._touch(t, now)
        self._queue(t, now)
        return t, ch

    def _check_parents(self, t: Task, parents: tuple[str, ...]) -> None:
        if set(parents) == set(t.parent_ids):
            return
        below = set(descendants([t.id], lambda tid: self.tasks[tid].children or ()))
        for pid in parents:
            parent = self.tasks.get(pid)
            if parent is None or parent.group_id != t.group_id:
                raise Invalid(f"no task {pid!r} in this group", field="parentIds")
            if pid in below:
                raise Invalid(f"task {pid!r} depends on this task: a cycle", field="parentIds")

    def _relink(self, t: Task, parents: tuple[str, ...]) -> None:
        """Move ``t`` under ``parents`` (checked): children lists and its pending count."""
        if set(parents) == set(t.parent_ids):
            return
        for pid in t.parent_ids:
            parent = self.tasks.get(pid)
            if parent is not None and parent.children:
                parent.children = [c for c in parent.children if c != t.id] or None
        t.parent_ids = parents
        t.queued = False
        self._link(t)

    @transition
    def delete_task(self, ch: Change, task_id: str, now: float) -> tuple[list[str], Change]:
        """Delete a task and all its descendants; returns their ids."""
        self.task(task_id)
        doomed = descendants([task_id], lambda tid: self.tasks[tid].children or ())
        self._delete(doomed, now)
        return doomed, ch

    # helpers -----------------------------------------------------------------------------
    def _leave_key(self, t: Task, now: float) -> None:
        """``t`` (unindexed) leaves its channel+key: a holder frees its old key-mates, and an
        assigned key-mate stops waiting on a holder it no longer shares a key with."""
        if t.is_complete or t.assigned_to is None:
            return
        if t.lease_id is not None:
            self._drop_mates(t, now)
        else:
            t.assigned_to = t.assigned_at = None

    def _delete(self, ids: list[str], now: float, cascade: bool = True) -> None:
        holders = [t for t in map(self.tasks.__getitem__, ids) if t.lease_id and t.key is not None]
        if not cascade:
            doomed = set(ids)
            for tid in ids:
                t = self.tasks[tid]
                for cid in t.children or ():
                    if cid not in doomed:
                        self.tasks[cid].pending_parents -= not t.is_complete
        self._remove(ids)
        for t in holders:  # their surviving key-mates were assigned with no lease of their own
            self._drop_mates(t, now)

    def _give_attempts(self, t: Task, attempts: int, now: float) -> None:
        t.remaining_attempts = attempts
        t.run_after = None
        self._touch(t, now)
        self._queue(t, now)

    def _reset_fields(self, t: Task, now: float, attempts: int) -> None:
        self._unindex(t)
        was_holder = t.lease_id is not None
        t.is_complete, t.output, t.completed_at = False, None, None
        t.errors = ()
        t.remaining_attempts, t.run_after = attempts, None
        t.held_by = t.held_lease = None
        self._drop_lease(t)
        self._index(t)
        self._touch(t, now)
        if was_holder:
            self._drop_mates(t, now)

    def _queue_all(self, ids: Iterable[str], now: float) -> None:
        for tid in ids:
            self._queue(self.tasks[tid], now)
