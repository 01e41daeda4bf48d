"""Hypothesis: a state machine over the engine, checking the graph and lease invariants.

Rules drive the engine through batch create (small DAGs, sometimes invalid), acquire, extend,
release (success with children, error, stale), time passing, operator actions (pause/resume,
update, retry, reset, delete) and restart (a new Engine loaded from ``records()``). An independent
oracle predicts every acquire, so a task that is lost from the indexes fails the run.
"""

from __future__ import annotations

import pickle
from collections import deque
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
import orjson
from hypothesis import HealthCheck, event, note, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from crew_aio import keys
from crew_aio.engine import Engine, TaskSpec
from crew_aio.errors import Invalid, StaleLease
from crew_aio.model import Status, Task
from crew_aio.store import MemoryStore

T0 = 1_800_000_000.0
CHANNELS = ("a", "b")
WORKERS = ("w1", "w2")
KEYS = (None, "k1", "k1", "k2", 7)  # Crew keeps a numeric key (an ad-account id) as a number


@dataclass(frozen=True, slots=True)
class Entry:
    """The choices for one TaskChild entry, resolved against the machine's state by
    ``_specs``. Each is drawn by its own strategy whose simplest value comes first (no parent,
    no key, no delay...), so a failing run shrinks to plain tasks and the few choices that
    matter; repeated options weight the draw."""

    mode: str  # "none": a root; "earlier": a child of the earlier entries in `mask`; "bad"
    mask: int
    bad: int  # the bad pseudo-parent: itself, a later entry, or an unknown one
    real: int  # 1..2n (n tasks in the group): one of them as a real parent; else none
    foreign: bool  # also a task of another group (the batch is refused)
    foreign_index: int
    channel: str
    key: Any
    workgroup: str | None
    priority: int
    attempts: int
    error_delay: float
    offset: float | None  # runAfter = now + offset
    is_seed: bool


ENTRY = st.builds(
    Entry,
    mode=st.sampled_from(["none"] * 3 + ["earlier"] * 5 + ["bad"]),
    mask=st.integers(0, 15),
    bad=st.integers(0, 4),
    real=st.integers(0, 40),
    foreign=st.sampled_from([False] * 20 + [True]),
    foreign_index=st.integers(0, 40),
    channel=st.sampled_from(("a", "a", "b")),
    key=st.sampled_from(KEYS),
    workgroup=st.sampled_from([None, "wg"]),
    priority=st.integers(0, 2),
    attempts=st.integers(1, 3),
    error_delay=st.sampled_from([0.0, 5.0, 30.0]),
    offset=st.sampled_from([None, None, None, -1.0, 7.0]),
    is_seed=st.booleans(),
)
BATCH = st.lists(ENTRY, min_size=1, max_size=4)


def records(engine: Engine) -> list[tuple[str, Any]]:
    """The records as a store would hand them back (JSON round trip), sorted."""
    return [(k, orjson.loads(orjson.dumps(v))) for k, v in sorted(keys.records_of(engine))]


def reload(into: Engine, engine: Engine) -> list[str]:
    """Load ``into`` as the server boots: the task records in chunks as stored (a few each,
    so a DAG spans several), the others decoded."""
    stored = MemoryStore({k: orjson.dumps(v) for k, v in keys.records_of(engine)})
    return keys.load_into(into, stored.load(raw=keys.RAW), stored.chunks(keys.RAW, size=3))


class EngineMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = Engine()
        self.now = T0

    # helpers -------------------------------------------------------------------------------
    def _paused(self, t: Task) -> bool:
        return self.engine.groups[t.group_id].is_paused

    def _has_late(self) -> bool:
        return any(self._late())

    def _late(self) -> list[Task]:
        """Tasks whose lease expired and that nobody leased since."""
        tasks = self.engine.tasks.values()
        return sorted((t for t in tasks if t.held_by and not t.is_complete), key=lambda t: t.id)

    def _parents_complete(self, t: Task) -> bool:
        return all(self.engine.tasks[p].is_complete for p in t.parent_ids)

    def _has_lease(self) -> bool:
        return any(t.lease_id for t in self.engine.tasks.values())

    def _has_tasks(self) -> bool:
        return bool(self.engine.tasks)

    def _leased(self) -> list[Task]:
        return sorted((t for t in self.engine.tasks.values() if t.lease_id), key=lambda t: t.id)

    def _group_ids(self, gid: str) -> list[str]:
        return list(self.engine.group_tasks.get(gid, ()))

    def _expected_acquire(self, count: int, twin: Engine | None = None) -> dict[str, list[str]]:
        """Per channel, what acquire must hand out: brute force on a restarted twin."""
        if twin is None:
            twin = Engine()
            reload(twin, self.engine)
        twin.tick(self.now)
        held = {(t.channel, t.key) for t in twin.tasks.values() if t.lease_id and t.key}
        candidates = sorted(
            (
                t
                for t in twin.tasks.values()
                if not t.is_complete
                and t.assigned_to is None
                and t.remaining_attempts > 0
                and not twin.groups[t.group_id].is_paused
                and not (t.workgroup is not None and twin.cooling.get(t.workgroup, 0) > self.now)
                and all(twin.tasks[p].is_complete for p in t.parent_ids)
                and (t.run_after is None or t.run_after <= self.now)
            ),
            key=lambda t: (-t.priority, t.id),
        )
        out: dict[str, list[str]] = {c: [] for c in CHANNELS}
        for t in candidates:
            if len(out[t.channel]) == count:
                continue
            if t.key is not None:
                if (t.channel, t.key) in held:
                    continue
                held.add((t.channel, t.key))
            out[t.channel].append(t.id)
        return out

    def _specs(self, data: st.DataObject, gid: str) -> tuple[list[TaskSpec], bool]:
        """A small TaskChild list and whether it is valid (decided here, independently)."""
        entries = data.draw(BATCH)
        pseudo = [f"e{i}" for i in range(len(entries))]
        in_group = self._group_ids(gid)
        foreign = sorted(set(self.engine.tasks) - set(in_group))
        specs: list[TaskSpec] = []
        for i, e in enumerate(entries):
            parents: tuple[str, ...] | None = None
            if e.mode == "earlier" and i > 0:
                parents = tuple(p for j, p in enumerate(pseudo[:i]) if e.mask >> j & 1) or None
            elif e.mode == "bad":  # itself, a later entry, or an unknown one
                bad = [*pseudo[i:], "missing"]
                parents = (bad[e.bad % len(bad)],)
            real: tuple[str, ...] = ()
            if in_group and 0 < e.real <= 2 * len(in_group):
                real = (in_group[(e.real - 1) % len(in_group)],)
            if foreign and e.foreign:
                real = (*real, foreign[e.foreign_index % len(foreign)])
            specs.append(
                TaskSpec(
                    name=f"t{i}",
                    channel=e.channel,
                    key=e.key,
                    workgroup=e.workgroup,
                    priority=e.priority,
                    remaining_attempts=e.attempts,
                    error_delay=e.error_delay,
                    run_after=None if e.offset is None else self.now + e.offset,
                    is_seed=e.is_seed,
                    child_id=pseudo[i],
                    pseudo_parents=parents,
                    parent_ids=real,
                )
            )
        note(repr(specs))
        valid = _acyclic_and_known(specs) and all(
            p in in_group for s in specs for p in s.parent_ids
        )
        return specs, valid

    # rules: workers ------------------------------------------------------------------------
    @initialize()
    def first_group(self) -> None:
        self.engine.create_group("g0", self.now)

    @rule(data=st.data())
    def create_batch(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(sorted(self.engine.groups)))
        specs, valid = self._specs(data, gid)
        before = None if valid else records(self.engine)  # only a refusal must change nothing
        try:
            tasks, change = self.engine.create_tasks(gid, specs, self.now)
        except Invalid:
            assert not valid, "a valid batch was refused"
            assert records(self.engine) == before
            event("create: invalid")
            return
        assert valid, "an invalid batch was accepted"
        event("create: ok")
        assert [t.name for t in tasks] == [s.name for s in specs]
        assert change.created == {t.id for t in tasks}
        for t, s in zip(tasks, specs, strict=True):
            pseudo = [str(p) for p in s.pseudo_parents or ()]
            expected = [*s.parent_ids, *(tasks[int(p[1:])].id for p in pseudo)]
            assert t.parent_ids == tuple(dict.fromkeys(expected))

    @rule(data=st.data())
    def create_more(self, data: st.DataObject) -> None:
        self.create_batch(data)

    @precondition(_has_tasks)
    @rule(
        channel=st.sampled_from(CHANNELS),
        worker=st.sampled_from(WORKERS),
        count=st.integers(1, 3),
        lease=st.sampled_from([10.0, 30.0, 60.0]),
    )
    def acquire(self, channel: str, worker: str, count: int, lease: float) -> None:
        expected = self._expected_acquire(count)[channel]
        before = {t.id: (t.lease_id, t.lease_expires_at) for t in self.engine.tasks.values()}
        got, _ = self.engine.acquire(channel, worker, self.now, lease, count)
        assert [t.id for t in got] == expected
        event(f"acquire: {len(got)}")
        for t in got:
            old_lease, old_expiry = before[t.id]
            assert old_lease is None or (old_expiry is not None and old_expiry <= self.now)
            assert self._parents_complete(t), "acquired a task with an incomplete parent"
            assert not self._paused(t) and t.remaining_attempts > 0
            assert t.run_after is None or t.run_after <= self.now
            assert (t.assigned_to, t.lease_expires_at) == (worker, self.now + lease)

    @precondition(_has_tasks)
    @rule(channel=st.sampled_from(CHANNELS), worker=st.sampled_from(WORKERS))
    def acquire_more(self, channel: str, worker: str) -> None:
        self.acquire(channel, worker, 2, 30.0)

    @precondition(_has_lease)
    @rule(data=st.data(), seconds=st.sampled_from([5.0, 60.0]))
    def extend(self, data: st.DataObject, seconds: float) -> None:
        t = data.draw(st.sampled_from(self._leased()))
        worker = data.draw(st.sampled_from([t.assigned_to or "", "intruder"]))
        expired = t.lease_expires_at is not None and t.lease_expires_at <= self.now
        before = records(self.engine) if expired or worker == "intruder" else None
        try:
            self.engine.extend(t.id, worker, t.lease_id, seconds, self.now)
        except StaleLease:
            assert expired or worker == "intruder"
            assert records(self.engine) == before
            return
        assert not expired and worker != "intruder"
        assert t.lease_expires_at == self.now + seconds

    @precondition(_has_lease)
    @rule(data=st.data())
    def release_ok(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self._leased()))
        worker = data.draw(st.sampled_from([t.assigned_to or "", t.assigned_to or "", "intruder"]))
        children, valid = self._specs(data, t.group_id) if data.draw(st.booleans()) else ([], True)
        delays = data.draw(st.sampled_from([(0.0, 0.0), (0.0, 0.0), (20.0, 0.0), (0.0, 15.0)]))
        expired = t.lease_expires_at is not None and t.lease_expires_at <= self.now
        mates = [
            m
            for m in self.engine.tasks.values()
            if t.key is not None and (m.channel, m.key) == (t.channel, t.key) and not m.is_complete
        ]
        # an expired lease's holder is still heard while nobody else has the task
        refused = worker == "intruder" or not valid
        before = records(self.engine) if refused else None
        try:
            _, change = self.engine.release(
                t.id,
                worker,
                self.now,
                lease_id=t.lease_id,
                output={"by": t.id},
                children=children,
                workgroup_delay=delays[0],
                children_delay=delays[1],
            )
        except StaleLease:
            assert worker == "intruder"
            assert records(self.engine) == before
            event("release ok: stale")
            return
        except Invalid:
            assert not valid and worker != "intruder"
            assert records(self.engine) == before
            event("release ok: invalid children")
            return
        assert valid and worker != "intruder"
        event(f"release ok: {min(len(mates), 2)} mates, {min(len(children), 1)} children")
        event(f"release ok: expired {expired}")
        assert t.is_complete and t.output == {"by": t.id}
        for m in [t, *mates]:  # as Crew leaves them
            assert m.is_complete and m.output == {"by": t.id}
            assert (m.remaining_attempts, m.run_after, m.assigned_to) == (0, None, None)
        new = [self.engine.tasks[i] for i in sorted(change.created)]
        assert [c.name for c in new] == [s.name for s in children]
        for c, s in zip(new, children, strict=True):
            on_releaser = s.pseudo_parents is None or t.id in s.parent_ids
            assert (t.id in c.parent_ids) is on_releaser
            if delays[1]:
                assert (c.run_after or 0) >= self.now + delays[1] or t.id not in c.parent_ids

    @precondition(_has_lease)
    @rule(data=st.data())
    def release_ok_again(self, data: st.DataObject) -> None:
        self.release_ok(data)

    @precondition(_has_late)
    @rule(data=st.data())
    def release_late(self, data: st.DataObject) -> None:
        """The holder of a reclaimed lease finishes late: its success is taken; anyone else,
        or an error, is refused and changes nothing."""
        t = data.draw(st.sampled_from(self._late()))
        worker = data.draw(st.sampled_from([t.held_by or "", "intruder"]))
        error = data.draw(st.sampled_from([None, None, {"e": 1}]))
        refused = worker == "intruder" or error is not None
        before = records(self.engine)
        try:
            self.engine.release(t.id, worker, self.now, output={"late": t.id}, error=error)
        except StaleLease:
            assert refused and records(self.engine) == before
            event("release late: stale")
            return
        assert not refused and t.is_complete and t.output == {"late": t.id}
        event("release late: taken")
        with_other = "w2" if worker == "w1" else "w1"
        try:  # a second release by someone else must not settle it again
            self.engine.release(t.id, with_other, self.now, output="again")
            raise AssertionError("a release from another lease was taken")
        except StaleLease:
            assert t.output == {"late": t.id}

    @precondition(_has_lease)
    @rule(data=st.data())
    def release_error(self, data: st.DataObject) -> None:
        t = data.draw(st.sampled_from(self._leased()))
        expired = t.lease_expires_at is not None and t.lease_expires_at <= self.now
        attempts, n_errors, run_after = t.remaining_attempts, len(t.errors), t.run_after
        mates = {
            m.id: (m.remaining_attempts, len(m.errors))
            for m in self.engine.tasks.values()
            if t.key is not None and m is not t and not m.is_complete
            and (m.channel, m.key) == (t.channel, t.key)
        }  # fmt: skip
        before = records(self.engine) if expired else None
        try:
            self.engine.release(t.id, t.assigned_to or "", self.now, error={"e": 1})
        except StaleLease:
            assert expired
            assert records(self.engine) == before
            return
        assert not expired
        event("release error")
        assert t.remaining_attempts == attempts - 1 and len(t.errors) == n_errors + 1
        # the error delay, unless a workgroup cool-off set while leased reaches further; Crew
        # leaves runAfter alone when the delay is 0
        if t.error_delay:
            assert t.run_after == max(self.now + t.error_delay, run_after or self.now)
        else:
            assert t.run_after == run_after
        assert t.lease_id is None and t.assigned_to is None
        for mid, (m_attempts, m_errors) in mates.items():  # charged as Crew charges them
            m = self.engine.tasks[mid]
            assert m.remaining_attempts == max(m_attempts - 1, 0)
            assert len(m.errors) == m_errors + 1 and m.assigned_to is None

    @rule(seconds=st.sampled_from([1.0, 5.0, 10.0, 30.0, 61.0]))
    def advance_and_tick(self, seconds: float) -> None:
        self.now += seconds
        due = {
            t.id: (t.remaining_attempts, len(t.errors), t.assigned_to)
            for t in self.engine.tasks.values()
            if t.lease_expires_at is not None and t.lease_expires_at <= self.now
        }
        self.engine.tick(self.now)
        event(f"tick: {min(len(due), 2)} expired")
        for tid, (attempts, n_errors, worker) in due.items():
            t = self.engine.tasks[tid]
            assert t.lease_id is None and t.assigned_to is None
            assert t.remaining_attempts == attempts - 1 and len(t.errors) == n_errors + 1
            assert t.errors[-1] == {"message": "lease expired", "workerId": worker}
        for t in self.engine.tasks.values():
            assert t.lease_expires_at is None or t.lease_expires_at > self.now

    @rule()
    def restart(self) -> None:
        fresh = Engine()
        assert reload(fresh, self.engine) == []
        self.engine = fresh

    # rules: operators ----------------------------------------------------------------------
    @rule(
        data=st.data(),
        op=st.sampled_from(
            ["group", "pause", "retry", "reset_task", "reset_group", "delete", "drop", "update"]
        ),
    )
    def operator(self, data: st.DataObject, op: str) -> None:
        gid = data.draw(st.sampled_from(sorted(self.engine.groups)))
        tid = data.draw(st.sampled_from(sorted(self.engine.tasks))) if self.engine.tasks else None
        event(f"operator: {op}")
        if op == "group":
            self.engine.create_group("g", self.now)
        elif op == "pause":
            paused = not self.engine.groups[gid].is_paused
            self.engine.update_group(gid, self.now, is_paused=paused)
            assert self.engine.groups[gid].is_paused is paused
        elif op == "retry":
            self.engine.retry_group(gid, 2, self.now)
            for t in map(self.engine.tasks.__getitem__, self._group_ids(gid)):
                assert t.is_complete or t.remaining_attempts > 0
        elif op == "reset_group":
            self._reset_group(gid)
        elif op == "drop" and len(self.engine.groups) > 1:
            survivors = set(self.engine.tasks) - set(self._group_ids(gid))
            self.engine.delete_group(gid, self.now)
            assert set(self.engine.tasks) == survivors and gid not in self.engine.groups
        elif tid is not None:
            self._task_op(data, op, self.engine.tasks[tid])

    @rule(data=st.data(), op=st.sampled_from(["reset_task", "delete", "update", "pause"]))
    def operator_on_tasks(self, data: st.DataObject, op: str) -> None:
        self.operator(data, op)

    def _reset_group(self, gid: str) -> None:
        members = [self.engine.tasks[t] for t in self._group_ids(gid)]
        seeds = {t.id for t in members if t.is_seed}
        self.engine.reset_group(gid, self.now)
        remaining = set(self._group_ids(gid))
        assert remaining == (seeds or {t.id for t in members})
        for t in map(self.engine.tasks.__getitem__, remaining):
            assert not t.is_complete and list(t.errors) == [] and t.assigned_to is None
            assert t.remaining_attempts == 5 and not t.parents_complete  # as Crew

    def _task_op(self, data: st.DataObject, op: str, t: Task) -> None:
        if op == "reset_task":
            self.engine.reset_task(t.id, self.now)
            assert not t.is_complete and t.lease_id is None and list(t.errors) == []
            assert t.remaining_attempts == 2  # Crew's default
        elif op == "delete":
            expected = _descendants(self.engine, t.id)
            survivors = set(self.engine.tasks) - expected
            ids, _ = self.engine.delete_task(t.id, self.now)
            assert set(ids) == expected and set(self.engine.tasks) == survivors
        elif op == "update" and t.lease_id is None:  # key-mates included; see test_engine_keys
            fields: dict[str, Any] = data.draw(
                st.sampled_from(
                    [
                        {"priority": 3},
                        {"priority": -1},
                        {"channel": "b" if t.channel == "a" else "a"},
                        {"key": data.draw(st.sampled_from(KEYS))},
                        {"runAfter": self.now + 3},
                        {"remainingAttempts": 1},
                    ]
                )
            )
            self.engine.update_task(t.id, fields, self.now)

    # invariants ----------------------------------------------------------------------------
    @invariant()
    def parent_graph_is_acyclic_and_closed(self) -> None:
        tasks = self.engine.tasks
        for t in tasks.values():
            assert all(p in tasks for p in t.parent_ids), "a parent vanished under its child"
            assert all(tasks[p].group_id == t.group_id for p in t.parent_ids)
        indegree = {tid: len(t.parent_ids) for tid, t in tasks.items()}
        queue = deque(tid for tid, n in indegree.items() if n == 0)
        seen = 0
        while queue:
            tid = queue.popleft()
            seen += 1
            for c in tasks[tid].children or ():
                indegree[c] -= 1
                if indegree[c] == 0:
                    queue.append(c)
        assert seen == len(tasks), "cycle in the parent graph"

    @invariant()
    def children_mirror_parent_ids(self) -> None:
        expected: dict[str, list[str]] = {tid: [] for tid in self.engine.tasks}
        for t in self.engine.tasks.values():
            for p in t.parent_ids:
                expected[p].append(t.id)
        for t in self.engine.tasks.values():
            assert sorted(t.children or ()) == sorted(expected[t.id])

    @invariant()
    def pending_parents_counts_incomplete_parents(self) -> None:
        for t in self.engine.tasks.values():
            incomplete = sum(not self.engine.tasks[p].is_complete for p in t.parent_ids)
            assert t.pending_parents == incomplete

    @invariant()
    def ready_means_parents_complete(self) -> None:
        for t in self.engine.tasks.values():
            if self.engine.status(t, self.now) is Status.READY:
                assert self._parents_complete(t)
                assert not self._paused(t) and t.remaining_attempts > 0

    @invariant()
    def one_lease_per_task_and_per_key(self) -> None:
        leased = [t for t in self.engine.tasks.values() if t.lease_id is not None]
        assert len({t.lease_id for t in leased}) == len(leased)
        keys = [(t.channel, t.key) for t in leased if t.key is not None]
        assert len(keys) == len(set(keys)), "two key-mates leased at once"
        for t in leased:
            assert not t.is_complete and t.assigned_to and t.lease_expires_at is not None

    @invariant()
    def assigned_tasks_belong_to_a_lease(self) -> None:
        holders = {
            (t.channel, t.key): t.assigned_to
            for t in self.engine.tasks.values()
            if t.lease_id is not None and t.key is not None
        }
        for t in self.engine.tasks.values():
            if t.assigned_to is not None and t.lease_id is None:
                assert not t.is_complete
                assert t.key is not None, "assigned without a lease and without a key"
                assert holders.get((t.channel, t.key)) == t.assigned_to, "orphaned key-mate"

    @invariant()
    def channel_counters_match_a_recount(self) -> None:
        rows: dict[str, dict[str, Any]] = {}
        for t in self.engine.tasks.values():
            row = rows.setdefault(
                t.channel,
                {"name": t.channel, "totalCount": 0, "completedCount": 0, "assignedCount": 0},
            )
            row["totalCount"] += 1
            row["completedCount"] += t.is_complete
            row["assignedCount"] += not t.is_complete and t.assigned_to is not None
        assert self.engine.channels() == [rows[k] for k in sorted(rows)]

    @invariant()
    def group_index_matches(self) -> None:
        for gid, ids in self.engine.group_tasks.items():
            assert gid in self.engine.groups
            assert all(self.engine.tasks[t].group_id == gid for t in ids)
        assert sum(map(len, self.engine.group_tasks.values())) == len(self.engine.tasks)

    @invariant()
    def restart_is_invisible_and_nothing_acquirable_is_lost(self) -> None:
        """``load(records())`` is the identity; and, on copies, acquire hands out exactly what
        the brute-force oracle expects (a task missing from the indexes fails here)."""
        before = records(self.engine)
        twin = Engine()
        assert reload(twin, self.engine) == []
        assert records(twin) == before
        assert twin.channels() == self.engine.channels()
        in_order = {gid: list(ids) for gid, ids in self.engine.group_tasks.items() if ids}
        assert {gid: list(ids) for gid, ids in twin.group_tasks.items() if ids} == in_order
        for channel, ids in self.engine.channel_tasks.items():  # an edit moves one to the end
            assert sorted(twin.channel_tasks.get(channel, ())) == sorted(ids)
        expected = self._expected_acquire(10**6, twin)
        for engine in (self.engine, twin):  # the running engine, and the bulk-loaded one
            clone = pickle.loads(pickle.dumps(engine, pickle.HIGHEST_PROTOCOL))
            for channel in CHANNELS:
                got, _ = clone.acquire(channel, "probe", self.now, 1.0, 10**6)
                assert [t.id for t in got] == expected[channel], "acquirable task not handed out"


def _acyclic_and_known(specs: list[TaskSpec]) -> bool:
    ids = [s.child_id for s in specs]
    if len(set(ids)) != len(ids):
        return False
    index = {cid: i for i, cid in enumerate(ids)}
    deps: list[set[int]] = []
    for s in specs:
        if any(p not in index for p in s.pseudo_parents or ()):
            return False
        deps.append({index[p] for p in s.pseudo_parents or ()})
    done: set[int] = set()
    while len(done) < len(specs):
        free = {i for i in range(len(specs)) if i not in done and deps[i] <= done}
        if not free:
            return False
        done |= free
    return True


def _descendants(engine: Engine, root: str) -> set[str]:
    out = {root}
    changed = True
    while changed:
        changed = False
        for t in engine.tasks.values():
            if t.id not in out and any(p in out for p in t.parent_ids):
                out.add(t.id)
                changed = True
    return out


EngineMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestEngineMachine = EngineMachine.TestCase
