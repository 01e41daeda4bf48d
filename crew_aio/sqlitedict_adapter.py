"""Every sqlitedict internal the store relies on, behind one adapter (sqlitedict 2.1.0, pinned).

sqlitedict runs one thread with one connection (``SqliteMultithread``) and queues statements to
it. The store needs more than sqlitedict's public dict interface to commit in groups without
blocking the event loop; each internal used is named here, and the canary test
(``tests/store/test_sqlitedict_canary.py``) checks each one, so an upgrade that changes any of
them fails that test loudly instead of hanging a commit:

1. ``SqliteDict(...).conn``: the ``SqliteMultithread`` writer thread's handle.
2. ``conn.execute(sql, args, res=sink)``: queues a statement and returns at once; on the writer
   thread, ``sink.put(row)`` is called for each row, then ``sink.put(_RESPONSE_NO_MORE)``, which
   is sent even when the statement failed. The sink is held by weak reference only.
3. ``conn.exception``: ``(type, value, traceback)`` of a failed statement, set before its end
   marker is sent; the next ``execute``/``select_one`` raises it (and clears it).
4. ``conn.select_one(sql)``: runs a statement and blocks for its first row.
5. ``_RESPONSE_NO_MORE``: the end marker of a statement's answer.
6. ``SqliteDict.close()`` with ``autocommit=False`` does not commit what is pending.
"""

from __future__ import annotations

import pathlib
from typing import Any, Protocol

import orjson
import sqlitedict
from sqlitedict import _RESPONSE_NO_MORE, SqliteDict

from crew_aio.sqlite_file import TABLE, StoreOpenError

__all__ = ["END", "PINNED", "Sink", "Writer", "open_writer"]

PINNED = "2.1.0"  # the sqlitedict whose internals are named above
END: object = _RESPONSE_NO_MORE  # (5)


class Sink(Protocol):
    """What receives a statement's answer on the writer thread (2)."""

    def put(self, item: object) -> None: ...


class Writer:
    """sqlitedict's writer thread, as the store uses it."""

    __slots__ = ("_conn", "_db")

    def __init__(self, db: Any) -> None:
        self._db = db
        self._conn = db.conn  # (1)

    def queue(self, sql: str, args: Any = None, sink: Sink | None = None) -> None:
        """Queue a statement; ``sink`` hears its rows and then :data:`END` on the writer thread
        (2). Raises the error of an earlier failed statement, if one is pending (3)."""
        self._conn.execute(sql, args, res=sink)

    def failure(self) -> BaseException | None:
        """The error of the last failed statement not yet raised, read on the writer thread
        from inside a sink (3)."""
        exception = self._conn.exception
        return exception[1] if exception else None

    def select_one(self, sql: str) -> Any:
        """Run ``sql`` and wait for its first row (blocking: never on the loop) (4)."""
        return self._conn.select_one(sql)

    def close(self) -> None:
        """Stop the writer thread; what is not committed is not committed (6)."""
        self._db.close()


def version() -> str:
    return str(sqlitedict.__version__)


def open_writer(path: pathlib.Path) -> Writer:
    """Open ``path``'s table with sqlitedict as the store needs it (blocking; at boot): flag
    'c' (never wipe), no autocommit, WAL, synchronous=FULL read back, orjson, no outer stack."""
    db = SqliteDict(
        str(path),
        tablename=TABLE,
        flag="c",  # never 'n' or 'w': they wipe the file
        autocommit=False,
        journal_mode="WAL",
        encode=orjson.dumps,
        decode=orjson.loads,
        outer_stack=False,
    )
    try:
        db.conn.execute("PRAGMA synchronous=FULL")  # sqlitedict sets OFF on connect
        db.conn.execute("PRAGMA busy_timeout=1000")  # a locked file fails a commit within ~1 s
        synchronous = db.conn.select_one("PRAGMA synchronous")
        journal = db.conn.select_one("PRAGMA journal_mode")
        if synchronous != (2,) or journal != ("wal",):
            raise StoreOpenError(
                f"{path}: need synchronous=2 (FULL) and journal_mode=wal,"
                f" got {synchronous[0]} and {journal[0]}"
            )
    except BaseException:
        db.close()
        raise
    return Writer(db)
