"""The store contract, run over SqliteStore and MemoryStore alike."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from crew_aio.errors import StoreUnavailable
from tests.store.conftest import Harness, MemoryHarness
from tests.support.wait import eventually


def contents(store: Any) -> dict[str, Any]:
    return dict(store.load())


def hold_commits(store: Any) -> asyncio.Event:
    """Every commit waits for the returned event before it starts."""
    gate = asyncio.Event()
    commit = store._commit

    async def held(batch: dict[str, bytes | None]) -> None:
        await gate.wait()
        await commit(batch)

    store._commit = held
    return gate


async def until(condition: Callable[[], object]) -> None:
    """Let the loop run until `condition()` holds (retried at each turn of the loop)."""
    await eventually(condition, 5, 0)


async def spin(turns: int = 20) -> None:
    """Let the loop run a few turns."""
    for _ in range(turns):
        await asyncio.sleep(0)


async def test_round_trip(harness: Harness) -> None:
    store = await harness.open()
    store.put("t:1", {"status": "pending", "n": 1})
    store.put("g:1", {"tasks": ["t:1", "t:2"]})
    store.put("m:meta", [1, 2.5, None, "é"])
    await store.sync()
    store.delete("g:1")
    store.delete("m:absent")  # deleting a key that never existed is fine
    await store.sync()
    assert store.pending == 0
    store = await harness.reopen(store)
    assert contents(store) == {"t:1": {"status": "pending", "n": 1}, "m:meta": [1, 2.5, None, "é"]}


async def test_last_write_wins_and_value_is_encoded_at_put(harness: Harness) -> None:
    store = await harness.open()
    value = {"n": 1}
    store.put("t:1", value)
    value["n"] = 99  # mutating after put changes nothing
    store.put("t:2", {"n": 1})
    store.put("t:2", {"n": 2})
    store.put("t:3", {"n": 1})
    store.delete("t:3")
    store.put("t:4", {"n": 1})
    await store.sync()
    store.delete("t:4")
    store.put("t:4", {"n": 4})
    assert store.pending == 1
    await store.sync()
    store = await harness.reopen(store)
    assert contents(store) == {"t:1": {"n": 1}, "t:2": {"n": 2}, "t:4": {"n": 4}}


async def test_sync_with_nothing_pending_returns_without_suspending(harness: Harness) -> None:
    store = await harness.open()
    coro = store.sync()
    with pytest.raises(StopIteration):
        coro.send(None)  # finished on the first step: it never awaited anything
    store.put("t:1", {})
    await store.sync()
    coro = store.sync()
    with pytest.raises(StopIteration):
        coro.send(None)


async def test_sync_waits_for_the_batch_in_flight(harness: Harness) -> None:
    store = await harness.open()
    gate = hold_commits(store)
    store.put("t:1", {"n": 1})
    first = asyncio.ensure_future(store.sync())
    await until(lambda: store._inflight)  # the committer took the batch
    assert store.pending == 1
    second = asyncio.ensure_future(store.sync())  # nothing staged, one batch in flight
    await spin()
    assert not second.done()
    gate.set()
    await second
    assert contents(store) == {"t:1": {"n": 1}}
    await first


async def test_a_failed_commit_drops_its_writes_and_those_staged_behind_it(
    harness: Harness,
) -> None:
    """A 503 means not done: the failed batch and what was staged during it are dropped, and
    the store takes nothing more until recover() (its owner reloads what is committed)."""
    store = await harness.open()
    store.put("t:0", {"v": "kept"})
    await store.sync()
    await harness.break_commits(store)
    gate = hold_commits(store)
    store.put("t:1", {"v": "old", "blob": "x" * 20_000})
    store.put("t:2", {"v": "old"})
    first = asyncio.ensure_future(store.sync())
    await until(lambda: store._inflight)
    store.put("t:1", {"v": "new"})  # staged while the failing batch is in flight
    store.delete("t:0")
    assert store.pending == 3
    failures: list[BaseException] = []
    store.on_failure = failures.append
    gate.set()
    with pytest.raises(StoreUnavailable):
        await first
    assert store.pending == 0 and store.failed and len(failures) == 1
    with pytest.raises(StoreUnavailable):
        store.put("t:3", {})
    with pytest.raises(StoreUnavailable):
        await store.sync()
    if isinstance(harness, MemoryHarness):  # (SQLite's cap only refuses what needs a page)
        assert await store.recover() is False  # still cannot commit
    await harness.heal_commits(store)
    assert await store.recover() is True and not store.failed
    store.put("t:4", {"v": "after"})
    await store.sync()
    store = await harness.reopen(store)
    assert contents(store) == {"t:0": {"v": "kept"}, "t:4": {"v": "after"}} | {
        k: v for k, v in contents(store).items() if k == "m:health"
    }


async def test_a_sync_behind_a_failing_commit_fails_with_it(harness: Harness) -> None:
    """A failing store answers within one commit attempt: whoever staged while it was failing
    hears of it when it fails, not after one more attempt of its own (its writes are dropped)."""
    store = await harness.open()
    await harness.break_commits(store)
    gate = hold_commits(store)
    store.put("t:1", {"v": 1, "blob": "x" * 20_000})  # needs new pages: SQLITE_FULL
    first = asyncio.ensure_future(store.sync())
    await until(lambda: store._inflight)
    store.put("t:2", {"v": 2})
    second = asyncio.ensure_future(store.sync())
    attempts: list[int] = []
    commit = store._commit

    async def counting_commit(batch: dict[str, bytes | None]) -> None:
        attempts.append(len(batch))
        await commit(batch)

    store._commit = counting_commit  # type: ignore[method-assign]
    gate.set()
    for waiter in (first, second):
        with pytest.raises(StoreUnavailable):
            await waiter
    assert attempts == []  # the second waiter did not wait for a commit of its own
    assert store.pending == 0
    await harness.heal_commits(store)
    assert await store.recover() is True
    store = await harness.reopen(store)
    assert "t:1" not in contents(store) and "t:2" not in contents(store)


async def test_many_concurrent_syncs_over_several_batches(harness: Harness) -> None:
    store = await harness.open()
    batches: list[int] = []
    commit = store._commit

    async def counting_commit(batch: dict[str, bytes | None]) -> None:
        batches.append(len(batch))
        await commit(batch)

    store._commit = counting_commit  # type: ignore[method-assign]

    async def client(i: int) -> None:
        store.put(f"t:{i}", {"i": i})
        await store.sync()

    tasks = []
    for wave in range(5):
        tasks += [asyncio.ensure_future(client(wave * 100 + i)) for i in range(100)]
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert 2 <= len(batches) < 500, batches  # grouped, and more than one batch
    assert sum(batches) == 500
    store = await harness.reopen(store)
    assert contents(store) == {f"t:{i}": {"i": i} for i in range(500)}


async def test_a_cancelled_sync_does_not_cancel_the_batch(harness: Harness) -> None:
    store = await harness.open()
    store.put("t:1", {})
    other = asyncio.ensure_future(store.sync())
    cancelled = asyncio.ensure_future(store.sync())
    await asyncio.sleep(0)
    cancelled.cancel()
    await other
    assert cancelled.cancelled()
    assert contents(store) == {"t:1": {}}


async def test_close_commits_staged_writes_and_is_idempotent(harness: Harness) -> None:
    store = await harness.open()
    store.put("t:1", {"n": 1})
    store.put("t:2", {"n": 2})
    await asyncio.gather(store.close(), store.close())
    await store.close()
    with pytest.raises(StoreUnavailable):
        store.put("t:3", {})
    assert await store.check() is False
    store = await harness.open()
    assert contents(store) == {"t:1": {"n": 1}, "t:2": {"n": 2}}


async def test_close_without_start_still_commits(harness: Harness) -> None:
    store = harness.open_unstarted()
    store.put("t:1", {})
    await store.close()
    store = await harness.open()
    assert contents(store) == {"t:1": {}}


async def test_check(harness: Harness) -> None:
    store = await harness.open()
    assert await store.check() is True
    assert await store.check() is True
    await harness.break_commits(store)
    store.put("t:big", {"blob": "x" * 20_000})  # needs new pages: the cap makes it fail
    assert await store.check() is False
    await harness.heal_commits(store)
    assert await store.check() is False  # failed until recovered
    assert await store.recover() is True
    assert await store.check() is True
    assert "m:health" in contents(store)


async def test_failed_commit_raises_then_recovers(harness: Harness) -> None:
    store = await harness.open()
    store.put("t:old", {"n": 0})
    await store.sync()
    await harness.break_commits(store)

    store.put("t:1", {"n": 1, "blob": "x" * 20_000})
    store.put("t:2", {"n": 2})
    with pytest.raises(StoreUnavailable) as info:
        await store.sync()
    assert info.value.code == "store_unavailable"
    assert store.pending == 0  # the failed writes are dropped
    assert contents(store) == {"t:old": {"n": 0}}  # nothing of the failed batch on disk

    await harness.heal_commits(store)
    assert await store.recover() is True
    store.put("t:1", {"n": 11})
    store.delete("t:old")
    await store.sync()
    assert store.pending == 0
    store = await harness.reopen(store)
    records = {k: v for k, v in contents(store).items() if k != "m:health"}
    assert records == {"t:1": {"n": 11}}


async def test_a_failed_store_closes_without_raising(harness: Harness) -> None:
    store = await harness.open()
    await harness.break_commits(store)
    store.put("t:1", {"blob": "x" * 20_000})
    with pytest.raises(StoreUnavailable):
        await store.sync()
    await harness.heal_commits(store)
    await store.close()  # what failed was dropped: nothing left to commit
    store = await harness.reopen(store)
    assert "t:1" not in contents(store)


async def test_undecodable_record_is_logged_and_skipped(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    store = await harness.open()
    store.put("t:1", {"ok": True})
    store.put("t:3", {"ok": True})
    await store.close()
    harness.write_raw("t:2", b"\xff{not json")
    store = await harness.open()
    with caplog.at_level(logging.ERROR, logger="crew_aio.store"):
        assert contents(store) == {"t:1": {"ok": True}, "t:3": {"ok": True}}
    assert any("t:2" in r.getMessage() for r in caplog.records if r.name == "crew_aio.store")


async def test_sync_before_start_is_an_error(harness: Harness) -> None:
    store = harness.open_unstarted()
    store.put("t:1", {})
    with pytest.raises(RuntimeError, match="start"):
        await store.sync()


async def test_records_under_a_prefix_come_in_chunks_as_stored(harness: Harness) -> None:
    """``load(raw=p)`` leaves out the records under ``p``; ``chunks(p)`` hands them over in key
    order, as stored in one JSON array, each also row by row."""
    store = await harness.open()
    for i in reversed(range(2500)):
        store.put(f"t:{i:05}", {"i": i})
    store.put("s:below", 1)
    store.put("u:above", 2)
    await store.sync()
    store = await harness.reopen(store)
    assert contents_raw(store, "t:") == {"s:below": 1, "u:above": 2}
    chunks = list(store.chunks("t:", size=1000))
    assert [c.count for c in chunks] == [1000, 1000, 500]
    values = [v for c in chunks for v in orjson.loads(c.array)]
    assert values == [{"i": i} for i in range(2500)]
    rows = [row for c in chunks for row in c.rows()]
    assert [k for k, _ in rows] == [f"t:{i:05}" for i in range(2500)]
    assert [orjson.loads(v) for _, v in rows] == values
    assert list(store.chunks("x:")) == []


def contents_raw(store: Any, raw: str) -> dict[str, Any]:
    return dict(store.load(raw=raw))
