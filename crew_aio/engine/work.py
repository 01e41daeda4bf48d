"""The worker-facing transitions: create, acquire, release, extend, and time passing."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

from crew_aio.engine.graph import TaskSpec, plan_batch
from crew_aio.engine.loading import Loading
from crew_aio.engine.state import (
    NO_CHANGE,
    STEP,
    Change,
    Steps,
    run_steps,
    sliced,
)
from crew_aio.errors import Conflict, Invalid, StaleLease
from crew_aio.fields import compile_function
from crew_aio.model import GIVEN_FIELDS, Task, format_time

__all__ = ["Work"]

LEASE_EXPIRED = "lease expired"


class Work(Loading):
    """Engine calls used by workers; each takes ``now`` and returns what changed."""

    # creation ----------------------------------------------------------------------------
    def create_tasks(
        self, group_id: str, specs: Sequence[TaskSpec], now: float
    ) -> tuple[list[Task], Change]:
        """Create a whole mini-DAG (all or nothing), in request order."""
        return run_steps(self.create_tasks_steps(group_id, specs, now))

    @sliced
    def create_tasks_steps(
        self, ch: Change, group_id: str, specs: Sequence[TaskSpec], now: float, step: int = STEP
    ) -> Steps[tuple[list[Task], Change]]:
        """:meth:`create_tasks` a slice at a time. Everything is checked first (a refusal
        changes nothing); the tasks are built, then registered waiting (seen in listings,
        handed out to nobody), and only the last step links and files them all at once."""
        self.live_group(group_id)
        deps = self._check_batch(group_id, specs)
        ids: list[str] = []
        for start in range(0, len(specs), step):  # unique and ordered, if not contiguous
            yield
            ids += [self.new_id(now) for _ in specs[start : start + step]]
        tasks: list[Task] = []
        for start in range(0, len(specs), step):
            if start:
                yield
            end = start + step
            part = zip(specs[start:end], ids[start:end], deps[start:end], strict=True)
            for spec, tid, dep in part:
                parents = tuple(dict.fromkeys([*spec.parent_ids, *(ids[j] for j in dep)]))
                t = _new_task(spec, tid, group_id, parents, now)
                t.pending_parents = 1  # waiting until linked below
                tasks.append(t)
        for start in range(0, len(tasks), step):
            yield
            for t in tasks[start : start + step]:
                self._register(t)
                ch.tasks[t.id] = None
                ch.created.add(t.id)
        yield
        for t in tasks:
            self._link(t)
        for t in tasks:
            self._queue(t, now)
        return tasks, ch

    def _check_batch(self, group_id: str, specs: Sequence[TaskSpec]) -> list[tuple[int, ...]]:
        deps = plan_batch(specs)
        for i, spec in enumerate(specs):
            for pid in spec.parent_ids:
                parent = self.tasks.get(pid)
                if parent is None or parent.group_id != group_id:
                    raise Invalid(f"no task {pid!r} in this group", field=f"[{i}].parentIds")
        return deps

    def _create_batch(
        self, group_id: str, specs: Sequence[TaskSpec], now: float, default_parent: str | None
    ) -> list[Task]:
        deps = self._check_batch(group_id, specs)
        ids = [self.new_id(now) for _ in specs]
        tasks = []
        for spec, tid, dep in zip(specs, ids, deps, strict=True):
            parents = [*spec.parent_ids, *(ids[j] for j in dep)]
            if spec.pseudo_parents is None and default_parent is not None:
                parents.append(default_parent)
            tasks.append(_new_task(spec, tid, group_id, tuple(dict.fromkeys(parents)), now))
        for t in tasks:
            self._register(t)
            self._ch.tasks[t.id] = None
            self._ch.created.add(t.id)
        for t in tasks:
            self._link(t)
        return tasks

    # leases ------------------------------------------------------------------------------
    def acquire(
        self,
        channel: str,
        worker_id: str,
        now: float,
        lease_seconds: float,
        count: int = 1,
    ) -> tuple[list[Task], Change]:
        """Lease up to ``count`` tasks of ``channel``: highest priority first, then oldest."""
        ch = self._open()  # hot: opened here, not by @transition (see _open)
        try:
            self._advance(now)
            out: list[Task] = []
            while len(out) < count:
                t = self._pop_ready(channel, now)
                if t is None:
                    break
                self._lease(t, worker_id, now, lease_seconds)
                out.append(t)
            return out, ch
        finally:
            self._ch = NO_CHANGE

    def _lease(self, t: Task, worker_id: str, now: float, lease_seconds: float) -> None:
        self._unindex(t)
        t.held_by = t.held_lease = None  # a late release of an earlier holder is now too late
        t.assigned_to, t.assigned_at = worker_id, now
        t.lease_id, t.lease_expires_at = self.new_id(now), now + lease_seconds
        self._index(t)
        self._file_lease(t)
        self._touch(t, now)
        if t.key is not None:
            for mid in list(self.keys.get((t.channel, t.key), ())):
                mate = self.tasks[mid]
                if mate is not t and mate.assigned_to is None:
                    self._set_assigned(mate, worker_id, now)
            update = {"assignedTo": worker_id, "assignedAt": format_time(now)}
            self._key_note(t, "task:acquire:key", update)

    def _key_note(self, t: Task, event: str, update: dict[str, Any]) -> None:
        """Crew's summary of what happened to every task of ``t``'s channel + key."""
        note = {"channel": t.channel, "key": t.key, "update": update}
        self._ch.notes.append((t.group_id, event, note))

    def _set_assigned(self, t: Task, worker_id: str | None, now: float | None) -> None:
        self._unindex(t)
        t.assigned_to, t.assigned_at = worker_id, now
        self._index(t)
        self._ch.tasks[t.id] = None

    @staticmethod
    def _drop_lease(t: Task) -> None:
        """Clear ``t``'s lease fields (the caller has unindexed it)."""
        t.assigned_to = t.assigned_at = t.lease_id = t.lease_expires_at = None

    def _check_holder(self, t: Task, worker_id: str, lease_id: str | None, now: float) -> None:
        if t.lease_id is None:
            raise StaleLease(f"task {t.id!r} is not leased")
        if t.assigned_to != worker_id:
            raise StaleLease(f"task {t.id!r} is leased by another worker")
        if lease_id is not None and lease_id != t.lease_id:
            raise StaleLease(f"lease {lease_id!r} of task {t.id!r} is no longer current")
        if t.lease_expires_at is not None and t.lease_expires_at <= now:
            raise StaleLease(f"the lease of task {t.id!r} expired")

    def extend(
        self,
        task_id: str,
        worker_id: str,
        lease_id: str | None,
        lease_seconds: float,
        now: float,
    ) -> tuple[Task, Change]:
        """Renew a lease (heartbeat): it now ends ``lease_seconds`` from ``now``."""
        ch = self._open()  # hot: opened here, not by @transition (see _open)
        try:
            t = self.task(task_id)
            if t.is_complete:
                raise Conflict(f"task {task_id!r} is already complete")
            self._check_holder(t, worker_id, lease_id, now)
            # a later deadline needs no new heap entry: when the filed one comes due, _advance
            # files the lease again (one entry per lease, not one per heartbeat); an earlier
            # one does
            t.lease_expires_at = now + lease_seconds
            if t.lease_filed is None or t.lease_expires_at < t.lease_filed:
                self._file_lease(t)
            self._touch(t, now)
            return t, ch
        finally:
            self._ch = NO_CHANGE

    # release -----------------------------------------------------------------------------
    def release(
        self,
        task_id: str,
        worker_id: str,
        now: float,
        *,
        lease_id: str | None = None,
        output: Any = None,
        error: Any = None,
        children: Sequence[TaskSpec] = (),
        workgroup_delay: float = 0.0,
        children_delay: float = 0.0,
    ) -> tuple[Task, Change]:
        """Settle a lease: an error costs an attempt (key-mates' too, as in Crew); success
        completes, key-mates included, and creates ``children`` (all or nothing).

        A repeated release of a completed task by the lease that completed it returns it
        unchanged; from anyone else it is a 409. A success from the last holder of a lease that
        expired is still taken while nobody else has leased the task since: a worker without
        heartbeats (Crew's) that outlives its lease does not lose its work.
        """
        ch = self._open()  # hot: opened here, not by @transition (see _open)
        try:
            t = self.task(task_id)
            if t.is_complete:
                self._check_completer(t, worker_id, lease_id)
                return t, ch
            if error is not None or not self._late_holder(t, worker_id, lease_id, now):
                self._check_holder(t, worker_id, lease_id, now)
            if error is not None:
                self._fail_attempt(t, error, now)
                self._charge_mates(t, error, now)
                if t.key is not None:
                    self._key_note(t, "task:release:key", {
                        "assignedTo": None, "assignedAt": None, "executeMessageId": None,
                        "examineMessageId": None, "error": error, "isComplete": False,
                        "runAfter": format_time(t.run_after),
                        "remainingAttempts": t.remaining_attempts,
                    })  # fmt: skip
            else:
                self._succeed(t, worker_id, output, children, children_delay, now)
                if t.key is not None:
                    self._key_note(t, "task:release:key", {
                        "assignedTo": None, "assignedAt": None, "output": output,
                        "isComplete": True, "runAfter": None, "remainingAttempts": 0,
                    })  # fmt: skip
            if workgroup_delay > 0 and t.workgroup is not None:
                until = now + workgroup_delay
                self.cool(t.workgroup, until)
                update = {"runAfter": format_time(until)}
                ch.notes.append(
                    (t.group_id, "workgroup:delay", {"workgroup": t.workgroup, "update": update})
                )
            return t, ch
        finally:
            self._ch = NO_CHANGE

    @staticmethod
    def _late_holder(t: Task, worker_id: str, lease_id: str | None, now: float) -> bool:
        """True when ``worker_id`` held the last lease of ``t``, which expired (reclaimed or
        not yet), and nobody has leased ``t`` since."""
        if t.lease_id is None:
            return t.held_by == worker_id and lease_id in (None, t.held_lease)
        expired = t.lease_expires_at is not None and t.lease_expires_at <= now
        return expired and t.assigned_to == worker_id and lease_id in (None, t.lease_id)

    @staticmethod
    def _check_completer(t: Task, worker_id: str, lease_id: str | None) -> None:
        """A release of a completed task must come from the lease that completed it."""
        if t.held_by is None:  # completed before holders were recorded
            return
        if t.held_by != worker_id or lease_id not in (None, t.held_lease):
            raise StaleLease(f"task {t.id!r} was completed by another lease")

    def _fail_attempt(self, t: Task, error: Any, now: float) -> None:
        self._unindex(t)
        t.remaining_attempts -= 1
        t.errors = (*t.errors, error)
        if t.error_delay:  # Crew leaves runAfter alone when the delay is 0
            # a workgroup cool-off already in force outlasts the error delay
            t.run_after = max(now + t.error_delay, t.run_after or now)
        self._drop_lease(t)
        self._index(t)
        self._touch(t, now)
        self._drop_mates(t, now)
        self._queue(t, now)

    def _charge_mates(self, t: Task, error: Any, now: float) -> None:
        """An error release settles the key-mates as Crew does: each is charged the attempt,
        gets the error appended and (for a delay) the releasing task's ``runAfter``."""
        for mate in self._mates(t):
            self._unindex(mate)
            mate.remaining_attempts = max(mate.remaining_attempts - 1, 0)
            mate.errors = (*mate.errors, error)
            if t.error_delay:
                mate.run_after = max(now + t.error_delay, mate.run_after or now)
            self._index(mate)
            self._touch(mate, now)
            self._queue(mate, now)

    def hand_back(
        self, task_id: str, worker_id: str, lease_id: str | None, now: float
    ) -> tuple[Task, Change]:
        """The holder gives a lease it has not started back (its prefetch shrank): the task is
        ready again at once, for anyone, and no attempt is counted."""
        t = self.task(task_id)  # the checks only read: return_lease opens the change
        if t.is_complete:
            raise Conflict(f"task {task_id!r} is already complete")
        self._check_holder(t, worker_id, lease_id, now)
        assert t.lease_id is not None
        return t, self.return_lease(task_id, t.lease_id, now)

    def return_lease(self, task_id: str, lease_id: str, now: float) -> Change:
        """Undo a hand-out nobody received (the requester went away): no attempt is counted."""
        ch = self._open()  # hot: opened here, not by @transition (see _open)
        try:
            t = self.tasks.get(task_id)
            if t is None or t.lease_id is None or t.lease_id != lease_id:
                return ch
            self._unindex(t)
            self._drop_lease(t)
            self._index(t)
            self._touch(t, now)
            self._drop_mates(t, now)
            self._queue(t, now)
            return ch
        finally:
            self._ch = NO_CHANGE

    def _mates(self, t: Task) -> list[Task]:
        """The other incomplete tasks of ``t``'s channel + key."""
        if t.key is None:
            return []
        return [self.tasks[m] for m in self.keys.get((t.channel, t.key), ()) if m != t.id]

    def _drop_mates(self, t: Task, now: float) -> None:
        for mate in self._mates(t):
            if mate.assigned_to is not None and mate.lease_id is None:
                self._set_assigned(mate, None, None)
                self._touch(mate, now)
            # a mate created during the lease was never assigned nor queued (the key was held)
            self._queue(mate, now)

    def _succeed(
        self,
        t: Task,
        worker_id: str,
        output: Any,
        children: Sequence[TaskSpec],
        delay: float,
        now: float,
    ) -> None:
        if children:
            self._check_batch(t.group_id, children)
        mates = [] if t.key is None else list(self.keys.get((t.channel, t.key), ()))
        lease_id = t.lease_id or t.held_lease
        unblocked = self._complete(t, output, now, worker_id, lease_id)
        for mid in mates:
            mate = self.tasks[mid]
            if mate is not t:
                unblocked += self._complete(mate, output, now, worker_id, lease_id)
        new = self._create_batch(t.group_id, children, now, default_parent=t.id) if children else []
        if delay > 0:  # as Crew: every new task without a runAfter, and every direct child
            for c in new:
                if c.run_after is None:
                    self._delay(c, now + delay, now)
            for cid in t.children or ():
                child = self.tasks[cid]
                if not child.is_complete:  # a key-mate child completed with ``t`` stays as is
                    self._delay(child, now + delay, now)
        for c in [*unblocked, *new]:
            self._queue(c, now)

    def _complete(
        self, t: Task, output: Any, now: float, worker_id: str, lease_id: str | None
    ) -> list[Task]:
        """Mark ``t`` complete as Crew leaves it (no attempts left, no runAfter, unassigned);
        returns the children it unblocked."""
        self._unindex(t)
        t.is_complete, t.output, t.completed_at = True, output, now
        t.remaining_attempts, t.run_after = 0, None
        t.held_by, t.held_lease = worker_id, lease_id
        self._drop_lease(t)
        self._index(t)
        self._touch(t, now)
        unblocked = []
        for cid in t.children or ():
            child = self.tasks[cid]
            child.pending_parents -= 1
            if child.pending_parents == 0:
                unblocked.append(child)
        return unblocked

    def _delay(self, t: Task, until: float, now: float) -> None:
        if t.run_after is None or t.run_after < until:
            t.run_after = until
            self._touch(t, now)
            heapq.heappush(self.delays, (until, t.id))

    # time --------------------------------------------------------------------------------
    def tick(self, now: float) -> Change:
        """Let time pass: due delayed tasks become ready, expired leases are reclaimed."""
        ch = self._open()  # hot: opened here, not by @transition (see _open)
        try:
            self._advance(now)
            self._forget_keys(now)
            return ch
        finally:
            self._ch = NO_CHANGE

    def _advance(self, now: float) -> None:
        if self.thaws or self.cool_ends:
            self._thaw(now)
        delays, leases = self.delays, self.leases
        while delays and delays[0][0] <= now:
            _, tid = heapq.heappop(delays)
            t = self.tasks.get(tid)
            if t is not None and t.run_after is not None and t.run_after <= now:
                self._queue(t, now)
        while leases and leases[0][0] <= now:
            _, lid, tid = heapq.heappop(leases)
            t = self.tasks.get(tid)
            if t is None or t.lease_id != lid or t.lease_expires_at is None:
                continue
            if t.lease_expires_at > now:  # extended since this entry was filed
                self._file_lease(t)
                continue
            if t.lease_expires_at <= now:
                t.held_by, t.held_lease = t.assigned_to, t.lease_id
                self._fail_attempt(t, {"message": LEASE_EXPIRED, "workerId": t.assigned_to}, now)


def _task_maker() -> Callable[[TaskSpec, str, str, tuple[str, ...], float], Task]:
    """``_new_task(spec, id, group_id, parents, now)``: the task ``spec`` describes, created
    now: its GIVEN fields, plus what a create sets (attempts at the start, Crew's
    ``parentsComplete`` of a root). Generated from the field table (hot: one call per task)."""
    given = ", ".join(f"{f.attr}=s.{f.attr}" for f in GIVEN_FIELDS if f.attr != "parent_ids")
    src = [
        "def _new_task(s, tid, group_id, parents, now):",
        "    return Task(id=tid, group_id=group_id, parent_ids=parents, created_at=now,",
        "                updated_at=now, max_attempts=s.remaining_attempts,",
        f"                parents_complete=s.parents_listed, {given})",
    ]
    return compile_function("_new_task", src, {"Task": Task})


_new_task = _task_maker()
