"""Lease heartbeat (extend), expiry through tick, and the timer deadline."""

from __future__ import annotations

import pytest

from crew_aio.engine import Engine
from crew_aio.errors import Conflict, StaleLease
from crew_aio.model import Status
from tests.unit.conftest import LEASE, T0, acquire, acquire_one, complete, create, snapshot, spec


def test_extend_moves_the_deadline(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    lease_id = t.lease_id
    got, change = engine.extend(t.id, "w1", lease_id, 120.0, T0 + 50)
    assert got is t
    assert t.lease_expires_at == T0 + 170
    assert t.lease_id == lease_id
    assert list(change.tasks) == [t.id] and t.updated_at == T0 + 50
    engine.tick(T0 + LEASE + 1)  # the original deadline passes: nothing happens
    assert t.lease_id == lease_id and list(t.errors) == []
    assert engine.next_deadline() == T0 + 170
    complete(engine, t, T0 + 169, output="ok")
    assert t.is_complete


def test_extend_without_lease_id(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    engine.extend(t.id, "w1", None, 10.0, T0 + 1)
    assert t.lease_expires_at == T0 + 11


def test_extended_lease_expires_at_the_new_deadline(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", error_delay=0))
    t = acquire_one(engine)
    engine.extend(t.id, "w1", t.lease_id, 100.0, T0 + 10)
    engine.tick(T0 + 109.9)
    assert engine.status(t, T0 + 109.9) is Status.LEASED
    engine.tick(T0 + 110)
    assert engine.status(t, T0 + 110) is Status.READY
    assert list(t.errors) == [{"message": "lease expired", "workerId": "w1"}]


def test_extend_can_shorten(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    engine.extend(t.id, "w1", t.lease_id, 5.0, T0 + 1)
    assert engine.next_deadline() == T0 + 6
    engine.tick(T0 + 6)
    assert t.lease_id is None and t.remaining_attempts == 4


@pytest.mark.parametrize("case", ["wrong-worker", "wrong-lease", "expired", "not-leased"])
def test_stale_extend_changes_nothing(engine: Engine, gid: str, case: str) -> None:
    a, b = create(engine, gid, spec("a"), spec("b"))
    acquire_one(engine)
    args = {
        "wrong-worker": (a.id, "w2", a.lease_id, T0 + 1),
        "wrong-lease": (a.id, "w1", "f" * 24, T0 + 1),
        "expired": (a.id, "w1", a.lease_id, T0 + LEASE),
        "not-leased": (b.id, "w1", None, T0 + 1),
    }[case]
    before = snapshot(engine)
    with pytest.raises(StaleLease):
        engine.extend(args[0], args[1], args[2], 30.0, args[3])
    assert snapshot(engine) == before


def test_extend_of_completed_task_is_a_conflict(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    t = acquire_one(engine)
    complete(engine, t, T0 + 1)
    with pytest.raises(Conflict):
        engine.extend(t.id, "w1", None, 30.0, T0 + 2)


def test_expiry_counts_a_failed_attempt_and_respects_the_error_delay(
    engine: Engine, gid: str
) -> None:
    (t,) = create(engine, gid, spec("a", remaining_attempts=2, error_delay=30))
    acquire_one(engine, worker="w9")
    assert engine.tick(T0 + LEASE - 0.001).tasks == {}
    change = engine.tick(T0 + LEASE)
    assert list(change.tasks) == [t.id]
    assert t.remaining_attempts == 1
    assert list(t.errors) == [{"message": "lease expired", "workerId": "w9"}]
    assert (t.assigned_to, t.lease_id, t.lease_expires_at) == (None, None, None)
    assert t.run_after == T0 + LEASE + 30
    assert engine.status(t, T0 + LEASE) is Status.DELAYED
    assert acquire(engine, now=T0 + LEASE + 29) == []
    again = acquire_one(engine, worker="w2", now=T0 + LEASE + 30)
    assert again is t and t.assigned_to == "w2"
    engine.tick(T0 + 2 * LEASE + 30)
    assert t.remaining_attempts == 0
    assert engine.status(t, T0 + 10_000) is Status.FAILED
    assert acquire(engine, now=T0 + 10_000) == []


def test_acquire_reclaims_expired_leases_itself(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a", error_delay=0))
    t = acquire_one(engine, worker="w1")
    got, change = engine.acquire("c", "w2", T0 + LEASE, LEASE)
    assert got == [t] and t.assigned_to == "w2"
    assert list(t.errors) == [{"message": "lease expired", "workerId": "w1"}]
    assert t.id in change.tasks


def test_next_deadline(engine: Engine, gid: str) -> None:
    assert engine.next_deadline() is None
    create(engine, gid, spec("a"), spec("b", run_after=T0 + 500))
    assert engine.next_deadline() == T0 + 500
    acquire_one(engine, lease=30)
    assert engine.next_deadline() == T0 + 30
    engine.tick(T0 + 30)  # a fails, error delay 10
    assert engine.next_deadline() == T0 + 40
    engine.tick(T0 + 40)
    assert engine.next_deadline() == T0 + 500
    engine.tick(T0 + 500)
    assert engine.next_deadline() is None


def test_tick_with_nothing_due_changes_nothing(engine: Engine, gid: str) -> None:
    create(engine, gid, spec("a"))
    acquire_one(engine)
    before = snapshot(engine)
    change = engine.tick(T0 + 1)
    assert not change and change.ready_channels == set()
    assert snapshot(engine) == before


def test_heartbeats_leave_one_heap_entry_per_lease(engine: Engine, gid: str) -> None:
    """D12: every extend used to push a heap entry held until its deadline (1,000,000
    heartbeats: +118 MiB). Now the lease's one entry is refiled when it comes due."""
    create(engine, gid, spec("a"))
    t = acquire_one(engine, lease=10)
    for i in range(10_000):
        engine.extend(t.id, "w1", t.lease_id, 10, T0 + i * 0.001)
    assert len(engine.leases) == 1
    last = T0 + 9_999 * 0.001
    engine.tick(T0 + 10)  # the first deadline passes: the entry is refiled, nothing expires
    assert t.lease_id is not None and list(t.errors) == [] and len(engine.leases) == 1
    assert engine.next_deadline() == last + 10
    engine.tick(last + 10)
    assert t.lease_id is None and t.errors[-1]["message"] == "lease expired"
