"""What only SqliteStore owes: pragmas, single instance, corrupt files, crashes, the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any

import orjson
import pytest

from crew_aio import store as store_module
from crew_aio.errors import StoreUnavailable
from crew_aio.store import SqliteStore, StoreCorrupt, StoreLocked
from tests.store.conftest import SqliteHarness

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run_child(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def slow_writes(monkeypatch: pytest.MonkeyPatch, gate: threading.Event) -> None:
    """Make every commit wait on sqlitedict's thread until `gate` is set (5 s at most)."""
    answer = store_module._Barrier.put

    def gated(self: store_module._Barrier, item: object) -> None:
        assert gate.wait(5), "gate never opened: the event loop was blocked"
        answer(self, item)

    monkeypatch.setattr(store_module._Barrier, "put", gated)


async def test_wal_and_synchronous_full_after_every_open(sqlite_harness: SqliteHarness) -> None:
    store = await sqlite_harness.open()
    for _ in range(2):
        assert await store._query("PRAGMA synchronous") == (2,)  # FULL, on the store's connection
        assert await store._query("PRAGMA journal_mode") == ("wal",)
        with sqlite3.connect(sqlite_harness.path) as other:
            assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        other.close()
        store = await sqlite_harness.reopen(store)


async def test_second_instance_is_refused(sqlite_harness: SqliteHarness) -> None:
    store = await sqlite_harness.open()
    with pytest.raises(StoreLocked, match="another crew-aio is using") as info:
        SqliteStore.open(sqlite_harness.path)
    assert str(sqlite_harness.path) in str(info.value)
    assert f"pid {os.getpid()}" in str(info.value)
    assert "\n" not in str(info.value)
    await store.close()
    store = await sqlite_harness.open()  # the lock went with the close


def test_second_process_is_refused(sqlite_harness: SqliteHarness) -> None:
    sqlite_harness.open_unstarted()
    child = run_child(f"""
        import pathlib
        from crew_aio.store import SqliteStore, StoreLocked
        try:
            SqliteStore.open(pathlib.Path({str(sqlite_harness.path)!r}))
        except StoreLocked as exc:
            print(exc)
            raise SystemExit(3)
    """)
    assert child.returncode == 3, child.stderr
    assert "another crew-aio is using" in child.stdout


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: b"this is not a database, just text\n" * 200, id="not-sqlite"),
        pytest.param(lambda data: data[:8192] + b"\xff" * 64 + data[8256:], id="bad-page"),
    ],
)
async def test_corrupt_file_is_refused_and_left_untouched(
    sqlite_harness: SqliteHarness, damage: Any
) -> None:
    store = await sqlite_harness.open()
    for i in range(300):
        store.put(f"t:{i}", {"i": i, "pad": "z" * 100})
    await store.close()
    path = sqlite_harness.path
    broken = damage(path.read_bytes())
    path.write_bytes(broken)
    before = sorted(os.listdir(path.parent))
    for _ in range(2):  # refused each time, and the lock is not left held
        with pytest.raises(StoreCorrupt, match="corrupt") as info:
            SqliteStore.open(path)
        assert str(path) in str(info.value)
        assert "\n" not in str(info.value)
    assert path.read_bytes() == broken
    for name in set(os.listdir(path.parent)) - set(before):  # SQLite's own empty side files only
        assert name in {"crew.sqlite-wal", "crew.sqlite-shm"}
        assert name.endswith("-shm") or (path.parent / name).stat().st_size == 0


def test_wal_left_by_a_crash_is_recovered(sqlite_harness: SqliteHarness) -> None:
    child = run_child(f"""
        import asyncio, os, pathlib
        from crew_aio.store import SqliteStore

        async def main():
            store = SqliteStore.open(pathlib.Path({str(sqlite_harness.path)!r}))
            await store.start()
            for i in range(100):
                store.put(f"t:{{i}}", {{"i": i}})
            await store.sync()
            store.put("t:unsynced", {{}})  # staged, never committed
            os._exit(1)

        asyncio.run(main())
    """)
    assert child.returncode == 1, child.stderr
    wal = sqlite_harness.path.with_name(sqlite_harness.path.name + "-wal")
    assert wal.stat().st_size > 0  # the data is only in the WAL
    store = sqlite_harness.open_unstarted()
    assert dict(store.load()) == {f"t:{i}": {"i": i} for i in range(100)}


async def test_commits_never_block_the_loop(
    sqlite_harness: SqliteHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = await sqlite_harness.open()
    gate = threading.Event()
    slow_writes(monkeypatch, gate)
    store.put("t:1", {})
    syncing = asyncio.ensure_future(store.sync())
    longest, last = 0.0, time.monotonic()
    for _ in range(200):  # the commit cannot finish until this ticker has ticked 200 times
        await asyncio.sleep(0)
        now = time.monotonic()
        longest, last = max(longest, now - last), now
    assert not syncing.done()
    gate.set()
    await syncing
    assert longest < 0.5


async def test_watchdog_calls_on_stuck(
    sqlite_harness: SqliteHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = threading.Event()
    stuck: list[float] = []

    def on_stuck() -> None:
        stuck.append(time.monotonic())
        gate.set()  # let the commit finish, so the test can end

    store = await sqlite_harness.open(commit_timeout=0.05, on_stuck=on_stuck)
    slow_writes(monkeypatch, gate)
    store.put("t:1", {})
    await store.sync()
    assert len(stuck) == 1
    assert dict(store.load()) == {"t:1": {}}
    await store.sync()  # a fast commit does not trip it
    store.put("t:2", {})
    await store.sync()
    assert len(stuck) == 1


def test_default_watchdog_exits_70(sqlite_harness: SqliteHarness) -> None:
    child = run_child(f"""
        import asyncio, pathlib, time
        from crew_aio.store import SqliteStore, _Barrier

        async def main():
            store = SqliteStore.open(pathlib.Path({str(sqlite_harness.path)!r}), commit_timeout=0.1)
            _Barrier.put = lambda self, item: time.sleep(10)
            await store.start()
            store.put("t:1", {{}})
            await store.sync()

        asyncio.run(main())
    """)
    assert child.returncode == 70
    assert "has not returned after 0.1 s" in child.stderr


async def test_load_streams_in_one_pass(sqlite_harness: SqliteHarness) -> None:
    store = await sqlite_harness.open()
    for i in range(5000):
        store.put(f"t:{i:05}", {"i": i})
    store.delete("t:00000")
    await store.sync()
    items = store.load()
    assert next(items) == ("t:00001", {"i": 1})  # lazy: rows come as they are read
    assert sum(1 for _ in items) == 4998


async def test_a_failed_batch_commits_nothing_even_if_later_statements_succeed(
    sqlite_harness: SqliteHarness,
) -> None:
    store = await sqlite_harness.open()
    store.put("t:old", {})
    await store.sync()
    await sqlite_harness.break_commits(store)
    store.put("t:big", {"blob": "x" * 20_000})  # first statement: SQLITE_FULL, txn rolled back
    for i in range(300):  # the next statement (a new implicit transaction) fits and succeeds
        store.put(f"t:{i}", 0)
    with pytest.raises(StoreUnavailable):
        await store.sync()
    with sqlite3.connect(sqlite_harness.path) as other:
        assert other.execute("SELECT key FROM crew").fetchall() == [("t:old",)]
    other.close()
    await sqlite_harness.heal_commits(store)
    assert await store.recover() is True
    assert [k for k, _ in store.load() if k.startswith("t:")] == ["t:old"]


def test_corrupt_file_with_a_crash_wal_is_left_untouched(sqlite_harness: SqliteHarness) -> None:
    child = run_child(f"""
        import asyncio, os, pathlib
        from crew_aio.store import SqliteStore

        async def main():
            path = pathlib.Path({str(sqlite_harness.path)!r})
            store = SqliteStore.open(path)
            for i in range(300):
                store.put(f"t:{{i}}", {{"pad": "z" * 100}})
            await store.close()  # checkpointed into the file
            store = SqliteStore.open(path)
            await store.start()
            store.put("t:new", {{}})
            await store.sync()
            os._exit(1)  # leaves a WAL

        asyncio.run(main())
    """)
    assert child.returncode == 1, child.stderr
    path = sqlite_harness.path
    wal = path.with_name(path.name + "-wal")
    assert wal.stat().st_size > 0
    data = bytearray(path.read_bytes())
    for page in range(4096, len(data), 4096):  # every b-tree page header but the first
        data[page : page + 16] = b"\xff" * 16
    path.write_bytes(data)
    files = {p: p.read_bytes() for p in (path, wal)}
    with pytest.raises(StoreCorrupt):
        SqliteStore.open(path)
    assert {p: p.read_bytes() for p in (path, wal)} == files  # no checkpoint into a bad file


def test_empty_file_is_a_new_store(sqlite_harness: SqliteHarness) -> None:
    sqlite_harness.path.parent.mkdir(parents=True)
    sqlite_harness.path.touch()
    store = sqlite_harness.open_unstarted()
    assert list(store.load()) == []


async def test_an_update_rewrites_its_row_in_place(sqlite_harness: SqliteHarness) -> None:
    """Upserts, not REPLACE: an updated record keeps its row (REPLACE deletes and re-inserts,
    touching about three times the pages per commit), so records load in first-write order."""
    store = await sqlite_harness.open()
    store.put("t:a", {"v": 1})
    store.put("t:b", {"v": 1})
    await store.sync()
    sql = f"SELECT rowid FROM \"{store_module.TABLE}\" WHERE key = 't:a'"
    row = await store._query(sql)
    store.put("t:a", {"v": 2})
    await store.sync()
    assert await store._query(sql) == row
    assert list(store.load()) == [("t:a", {"v": 2}), ("t:b", {"v": 1})]
    store = await sqlite_harness.reopen(store)
    assert list(store.load()) == [("t:a", {"v": 2}), ("t:b", {"v": 1})]


async def test_odd_rows_under_the_prefix_are_skipped_alone_and_odd_keys_still_load(
    sqlite_harness: SqliteHarness,
) -> None:
    """Rows sqlitedict never writes (a NULL or a text value, a number or a blob for a key)
    neither break the chunked load nor vanish unnamed: a chunk whose count or JSON is off is
    read row by row."""
    from crew_aio import keys
    from crew_aio.engine import Engine

    store = await sqlite_harness.open()
    group = {"_id": "g" * 24, "name": "g", "isPaused": False, "createdAt": 1.0, "updatedAt": 1.0}
    store.put(keys.group_key("g" * 24), group)
    for i in range(30):
        record = {"_id": f"{i:024x}", "taskGroupId": "g" * 24, "name": i, "channel": "c"}
        store.put(keys.task_key(f"{i:024x}"), record)
    await store.close()
    record = {"_id": f"{40:024x}", "taskGroupId": "g" * 24, "name": 1, "channel": "c"}
    text = orjson.dumps(record).decode()
    sqlite_harness.write_raw(keys.task_key(f"{40:024x}"), text)  # a text value: it still loads
    sqlite_harness.write_raw(keys.task_key(f"{41:024x}"), None)
    sqlite_harness.write_raw(keys.task_key(f"{42:024x}"), b"1,2")
    sqlite_harness.write_raw(5, b"{}")  # keys that sort below and above any text
    sqlite_harness.write_raw(b"blob", b"{}")
    store = sqlite_harness.open_unstarted()
    engine = Engine()
    skipped = keys.load_into(engine, store.load(raw=keys.RAW), store.chunks(keys.RAW, size=7))
    assert sorted(skipped) == [keys.task_key(f"{i:024x}") for i in (41, 42)]
    assert list(engine.tasks) == [f"{i:024x}" for i in [*range(30), 40]]


def test_the_check_runs_while_loading_and_a_corrupt_file_is_refused_before_any_write(
    sqlite_harness: SqliteHarness,
) -> None:
    """Boot opens with ``check_while_loading``: the integrity check runs beside the load, and
    ``start()`` (the first write) waits for its verdict: a corrupt file is refused, untouched,
    its lock released."""
    path = sqlite_harness.path
    child = run_child(f"""
        import asyncio, pathlib
        from crew_aio.store import SqliteStore

        async def main():
            store = SqliteStore.open(pathlib.Path({str(path)!r}))
            for i in range(3000):
                store.put(f"t:{{i:05}}", {{"pad": "z" * 100}})
            await store.close()

        asyncio.run(main())
    """)
    assert child.returncode == 0, child.stderr
    good = SqliteStore.open(path, check_while_loading=True)
    assert sum(c.count for c in good.chunks("t:")) == 3000
    asyncio.run(good.close())  # the verdict was good: the writer opened, nothing was staged
    data = bytearray(path.read_bytes())
    for page in range(4096 * 3, len(data), 4096 * 2):  # some b-tree pages, not the first
        data[page : page + 16] = b"\xff" * 16
    path.write_bytes(data)
    store = SqliteStore.open(path, check_while_loading=True)  # returns at once: locked
    with pytest.raises(StoreLocked):
        SqliteStore.open(path)
    with contextlib.suppress(StoreCorrupt, sqlite3.DatabaseError):
        list(store.load()), [c.count for c in store.chunks("t:")]  # a read may fail first
    with pytest.raises(StoreCorrupt):
        asyncio.run(store.start())
    assert path.read_bytes() == data
    with pytest.raises(StoreCorrupt):  # the lock went with the refusal
        SqliteStore.open(path)
