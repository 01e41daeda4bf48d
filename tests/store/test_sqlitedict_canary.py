"""The canary: each sqlitedict internal the store relies on, checked by name.

``crew_aio.sqlitedict_adapter`` lists them (1-6). An upgrade of sqlitedict that changes any of
them fails here, by name, instead of hanging a commit in production.
"""

from __future__ import annotations

import inspect
import queue
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
import sqlitedict

from crew_aio import sqlitedict_adapter as adapter

TABLE = "canary"


class Sink:
    def __init__(self) -> None:
        self.items: queue.Queue[object] = queue.Queue()
        self.threads: set[str] = set()

    def put(self, item: object) -> None:
        self.threads.add(threading.current_thread().name)
        self.items.put(item)

    def answer(self) -> list[object]:
        out = []
        while (item := self.items.get(timeout=5)) != adapter.END:
            out.append(item)
        return out


@pytest.fixture
def db(tmp_path: Path) -> Any:
    d = sqlitedict.SqliteDict(str(tmp_path / "c.sqlite"), tablename=TABLE, autocommit=False,
                              outer_stack=False)  # fmt: skip
    yield d
    d.close()


def test_the_pinned_version() -> None:
    assert sqlitedict.__version__ == adapter.PINNED == adapter.version()


def test_1_conn_is_the_writer_thread(db: Any) -> None:
    conn = db.conn
    assert isinstance(conn, sqlitedict.SqliteMultithread)
    assert isinstance(conn, threading.Thread) and conn.is_alive()


def test_2_execute_queues_and_answers_a_sink_on_the_writer_thread(db: Any) -> None:
    params = inspect.signature(db.conn.execute).parameters
    assert list(params)[:3] == ["req", "arg", "res"]
    sink = Sink()
    db.conn.execute("SELECT 1 UNION ALL SELECT 2", None, res=sink)
    assert sink.answer() == [(1,), (2,)]
    assert threading.current_thread().name not in sink.threads
    # the end marker comes even when the statement fails
    failing = Sink()
    db.conn.execute("SELECT * FROM no_such_table", None, res=failing)
    assert failing.answer() == []
    with pytest.raises(Exception, match="no_such_table"):
        db.conn.select_one("SELECT 1")


def test_2_the_sink_is_held_by_weak_reference(db: Any) -> None:
    """The store keeps its barriers alive itself (``_Barrier._live``) because of this."""
    source = inspect.getsource(sqlitedict.SqliteMultithread.execute)
    assert "weakref.ref(res)" in source
    sink = Sink()
    ref = weakref.ref(sink)
    db.conn.execute("SELECT 1", None, res=sink)
    assert sink.answer() == [(1,)] and ref() is sink


def test_3_exception_is_set_before_the_end_marker_and_raised_by_the_next_call(db: Any) -> None:
    seen: list[object] = []

    class Peek:
        def put(self, item: object) -> None:
            if item == adapter.END:
                seen.append(db.conn.exception)

    peek = Peek()  # held here: sqlitedict holds it by weak reference only
    db.conn.execute("INSERT INTO no_such_table VALUES (1)", None, res=peek)
    writer = adapter.Writer(db)
    for _ in range(500):
        if seen:
            break
        threading.Event().wait(0.01)
    assert seen and isinstance(seen[0], tuple) and len(seen[0]) == 3  # (type, value, tb)
    assert "no_such_table" in str(seen[0][1])
    assert writer.failure() is not None
    with pytest.raises(Exception, match="no_such_table"):
        db.conn.execute("SELECT 1")
    assert db.conn.exception is None  # raised once, then cleared
    assert writer.failure() is None


def test_4_select_one_blocks_for_the_first_row(db: Any) -> None:
    assert db.conn.select_one("SELECT 41 + 1") == (42,)


def test_5_the_end_marker(db: Any) -> None:
    assert adapter.END == sqlitedict._RESPONSE_NO_MORE


def test_6_close_does_not_commit_without_autocommit(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    d = sqlitedict.SqliteDict(path, tablename=TABLE, autocommit=False, outer_stack=False)
    d["kept"] = 1
    d.commit()
    d["lost"] = 2
    d.close()
    again = sqlitedict.SqliteDict(path, tablename=TABLE, flag="r", outer_stack=False)
    try:
        assert set(again.keys()) == {"kept"}
    finally:
        again.close()


def test_open_writer_gives_wal_and_full_sync(tmp_path: Path) -> None:
    writer = adapter.open_writer(tmp_path / "s.sqlite")
    try:
        assert writer.select_one("PRAGMA synchronous") == (2,)
        assert writer.select_one("PRAGMA journal_mode") == ("wal",)
    finally:
        writer.close()
