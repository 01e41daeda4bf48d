"""Bytes on disk: staged writes, group commit off the loop, load at boot (see :class:`Store`).

Keys are prefixed by kind (``t:<id>``, ``g:<id>``, ``m:<name>``); values are orjson bytes, never
pickle. The store knows nothing of tasks.

sqlitedict 2.1.0 (pinned) runs one thread with one connection: ``execute`` only queues a statement
(it never waits for SQLite) and an error is re-raised at the *next* call. sqlitedict's thread is the
store's writer: a batch's statements are queued from the loop in one go, the last one answering
to a :class:`_Barrier` (called on sqlitedict's thread). If no statement of the batch failed, the
barrier queues ``COMMIT`` (its ``commit()`` blocks forever on failure, upstream #108) answering to
a second barrier, which wakes the loop; so a commit costs one hand-off to sqlitedict's thread and
one back, and nothing after a failed statement gets committed. A failed
batch is drained and ``ROLLBACK``ed from a helper thread (blocking calls, never on the loop).
Every wait has a watchdog.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import os
import pathlib
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import orjson

from crew_aio.commit import DONE, Barrier, Chunk, Store
from crew_aio.errors import StoreUnavailable
from crew_aio.sqlite_file import (
    CHUNK,
    TABLE,
    StoreCorrupt,
    StoreLocked,
    StoreOpenError,
    StoreUnusable,
    lock,
    read_chunks,
    read_records,
    read_rows,
    refuse_corrupt,
    unlock,
)
from crew_aio.sqlitedict_adapter import END, Writer, open_writer

__all__ = [
    "TABLE",
    "MemoryStore",
    "SqliteStore",
    "Store",
    "StoreCorrupt",
    "StoreLocked",
    "StoreOpenError",
    "StoreUnusable",
]

log = logging.getLogger("crew_aio.store")

HEALTH = "m:health"  # the store's own probe record (crew_aio.keys lists every key)
_CHUNK = 250  # rows per multi-row statement (500 bound parameters, well under SQLite's limit)
_RETRY_MIN, _RETRY_MAX = 0.05, 2.0  # pause between retries of a failed batch nobody waits for
_DRAIN_LIMIT = 10_000

Batch = dict[str, bytes | None]  # key -> encoded value, or None for a delete
T = TypeVar("T")


def _check_file(path: pathlib.Path) -> None:
    """:func:`refuse_corrupt`, a file that cannot be read at all being unusable."""
    try:
        refuse_corrupt(path)
    except (OSError, sqlite3.OperationalError) as exc:
        raise StoreUnusable(f"cannot open {path}: {_reason(exc)}") from None


def _open_writer(path: pathlib.Path) -> Writer:
    try:
        return open_writer(path)
    except (OSError, sqlite3.OperationalError) as exc:
        raise StoreUnusable(f"cannot open {path}: {_reason(exc)}") from None


def _decode(key: object, raw: object) -> tuple[str, Any] | None:
    """One stored record, or None (logged) when it cannot be decoded."""
    try:
        if not isinstance(key, str):
            raise TypeError(f"key is {type(key).__name__}, not str")
        return key, orjson.loads(raw)  # type: ignore[arg-type]  # TypeError caught below
    except (ValueError, TypeError) as exc:
        log.error("skipping record %r that cannot be decoded: %s", key, exc)
        return None


class _GroupCommitStore:
    """Staging, ``sync()`` and the committer task; subclasses commit one batch in ``_commit``."""

    def __init__(self) -> None:
        self._staged: Batch = {}
        self._staged_done: asyncio.Future[BaseException | None] | None = None
        self._inflight: Batch = {}
        self._inflight_done: asyncio.Future[BaseException | None] | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closer: asyncio.Task[None] | None = None
        self._closing = False  # no more puts
        self._stopping = False  # committer exits
        self._health = 0
        # a commit failed: its writes and those staged behind it were dropped, and the store
        # refuses writes and syncs until recover(); its owner reloads what is committed
        self._failure: BaseException | None = None
        self._holds = 0  # open hold() calls: no commit starts meanwhile
        self._barrier: Barrier | None = None  # the last one handed out
        self.on_failure: Callable[[BaseException], None] | None = None

    async def _commit(self, batch: Batch) -> None:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        """Release resources once the committer has stopped."""

    def put(self, key: str, value: Any) -> None:
        self._stage(key, orjson.dumps(value))

    def delete(self, key: str) -> None:
        self._stage(key, None)

    def _stage(self, key: str, data: bytes | None) -> None:
        if self._closing:
            raise StoreUnavailable("the store is closed")
        if self._failure is not None:
            raise StoreUnavailable(f"the store cannot commit: {self._failure}")
        self._staged[key] = data
        self._wake.set()

    @property
    def pending(self) -> int:
        if not self._inflight:
            return len(self._staged)
        return len(self._staged.keys() | self._inflight.keys())

    @property
    def failed(self) -> bool:
        """A commit failed and :meth:`recover` has not succeeded since."""
        return self._failure is not None

    async def recover(self) -> bool:
        """After a failed commit: commit a probe; if it goes through, take writes again (the
        owner first reloads its state from what is committed). True when the store works."""
        if self._failure is None:
            return True
        if self._inflight_done is not None:  # a batch is still failing its way out
            return False
        self._staged, self._staged_done = {}, None
        self._health += 1
        # the probe needs room (a full disk often still takes a tiny row in a free page), and
        # is removed by a second commit
        probe = orjson.dumps({"seq": self._health, "pad": "x" * _PROBE_BYTES})
        try:
            await self._commit({HEALTH: probe})
            await self._commit({HEALTH: orjson.dumps({"seq": self._health})})
        except Exception as exc:
            log.info("the store still cannot commit: %s", exc)
            return False
        self._failure = None
        return True

    def barrier(self) -> Barrier:
        if self._failure is not None:
            return Barrier(error=self._failure)
        if self._staged:
            if self._staged_done is not None:  # taken already: checked then
                return self._barrier_of(self._staged_done)
            if self._task is None:
                raise RuntimeError("the store's committer is not running: call start() first")
            if self._task.done():
                return Barrier(error=StoreUnavailable("the store is closed"))
            if self._staged_done is None:
                self._staged_done = asyncio.get_running_loop().create_future()
            return self._barrier_of(self._staged_done)
        if self._inflight_done is not None:
            return self._barrier_of(self._inflight_done)
        return DONE

    def _barrier_of(self, fut: asyncio.Future[BaseException | None]) -> Barrier:
        """One Barrier per batch, however many frames and answers take it (hot: a socket's
        every frame takes one)."""
        barrier = self._barrier
        if barrier is None or barrier.future is not fut:
            barrier = self._barrier = Barrier(fut)
        return barrier

    async def sync(self) -> None:
        await self.barrier()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="crew-store-committer")

    async def check(self) -> bool:
        if self._closing or self._task is None or self._failure is not None:
            return False
        self._health += 1
        self.put(HEALTH, {"seq": self._health})
        try:
            await self.sync()
        except StoreUnavailable:
            return False
        return True

    async def close(self) -> None:
        if self._closer is None:
            self._closer = asyncio.create_task(self._close())
        await asyncio.shield(self._closer)

    async def _close(self) -> None:
        self._closing = True
        await self.start()
        error: StoreUnavailable | None = None
        try:
            if self._failure is None:  # a failed store has nothing staged left to commit
                await self.sync()
        except StoreUnavailable as exc:
            log.error("closing with %d writes that could not be committed: %s", self.pending, exc)
            error = exc
        self._stopping = True
        self._wake.set()
        assert self._task is not None
        await self._task
        await self._shutdown()
        if error is not None:
            raise error

    def hold(self) -> None:
        """Start no commit until :meth:`release`: a change staged a slice at a time (yielding
        to the loop between slices) is committed whole, never half."""
        self._holds += 1

    def release(self) -> None:
        self._holds -= 1
        if not self._holds:
            self._wake.set()

    async def _run(self) -> None:
        retry = _RETRY_MIN
        while not self._stopping:
            if self._holds or not self._staged:
                self._wake.clear()
                await self._wake.wait()
            elif await self._commit_next():
                retry = _RETRY_MIN
            elif self._staged_done is None:  # nobody waits: retry later, or on the next write
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), retry)
                retry = min(retry * 2, _RETRY_MAX)

    async def _commit_next(self) -> bool:
        batch, self._staged = self._staged, {}
        done = self._staged_done or asyncio.get_running_loop().create_future()
        self._staged_done = None
        self._inflight, self._inflight_done = batch, done
        try:
            await self._commit(batch)
        except BaseException as exc:
            # "not done" must mean not done: the failed writes and those staged behind them
            # are dropped, and every caller of sync() hears of it (503); nothing more is taken
            # until recover(), once the owner reloaded its state from what is committed
            behind, dropped = self._staged_done, len(self._staged)
            self._staged, self._staged_done = {}, None
            self._failure = exc
            done.set_result(exc)
            if behind is not None:
                behind.set_result(exc)
            if not isinstance(exc, Exception):
                raise
            log.error("commit of %d keys failed; they and %d staged behind them are dropped: %s",
                      len(batch), dropped, exc)  # fmt: skip
            if self.on_failure is not None:
                self.on_failure(exc)
            return False
        finally:
            self._inflight, self._inflight_done = {}, None
        done.set_result(None)
        return True


class MemoryStore(_GroupCommitStore):
    """The in-memory twin: same semantics; committed bytes in ``.data``.

    "Restart" with ``MemoryStore(old.data)``; make commits fail with ``fail_commits(exc)``.
    """

    def __init__(self, data: dict[str, bytes] | None = None) -> None:
        super().__init__()
        self.data: dict[str, bytes] = dict(data or {})
        self._fail: Exception | None = None

    def fail_commits(self, exc: Exception | None) -> None:
        self._fail = exc

    def load(self, raw: str | None = None) -> Iterator[tuple[str, Any]]:
        for key, data in list(self.data.items()):
            if raw is not None and key.startswith(raw):
                continue
            item = _decode(key, data)
            if item is not None:
                yield item

    def chunks(self, prefix: str, size: int = 1000) -> Iterator[Chunk]:
        keys = sorted(k for k in self.data if k.startswith(prefix))
        for at in range(0, len(keys), size):
            rows: list[tuple[str, Any]] = [(k, self.data[k]) for k in keys[at : at + size]]
            array = b"[" + b",".join([v for _, v in rows]) + b"]"
            yield Chunk(len(rows), array, functools.partial(list, rows))

    async def _commit(self, batch: Batch) -> None:
        await asyncio.sleep(0)  # a real commit yields to the loop: keep the same interleavings
        if self._fail is not None:
            raise self._fail.with_traceback(None)
        for key, data in batch.items():
            if data is None:
                self.data.pop(key, None)
            else:
                self.data[key] = data


class SqliteStore(_GroupCommitStore):
    """One sqlitedict table in WAL mode with ``synchronous=FULL``; open with :meth:`open`."""

    def __init__(
        self,
        path: pathlib.Path,
        db: Writer | None,
        lock_fd: int,
        commit_timeout: float,
        on_stuck: Callable[[], None] | None,
        checking: Future[None] | None = None,
    ) -> None:
        super().__init__()
        self.path = path
        self._db = db  # None until start() when the check runs while the store loads
        self._checking = checking
        self._lock_fd: int | None = lock_fd
        self._commit_timeout = commit_timeout
        self._on_stuck = on_stuck or self._exit_stuck
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crew-store")

    @classmethod
    def open(
        cls,
        path: pathlib.Path,
        *,
        commit_timeout: float = 10.0,
        on_stuck: Callable[[], None] | None = None,
        check_while_loading: bool = False,
    ) -> SqliteStore:
        """Lock, check and open ``path`` (blocking; call at boot). Raises StoreOpenError.

        ``check_while_loading``: the integrity check (~0.3 s a million tasks) runs in a thread
        while the caller loads (reads only), and ``start()`` waits for its verdict before it
        opens the writer: a corrupt file is still refused before anything is written to it,
        and boot does not wait for the check and the load one after the other."""
        path = pathlib.Path(path)
        # sqlitedict logs ~10 ERROR lines per failed statement; the store logs each failure once.
        logging.getLogger("sqlitedict").setLevel(logging.CRITICAL)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_fd = lock(path)
        except OSError as exc:
            raise StoreUnusable(
                f"cannot use data directory {path.parent}: {_reason(exc)}"
            ) from None
        if check_while_loading and path.exists() and path.stat().st_size:  # else nothing to load
            checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="crew-check")
            checking = checker.submit(_check_file, path)
            checker.shutdown(wait=False)  # the check runs on; the thread ends with it
            return cls(path, None, lock_fd, commit_timeout, on_stuck, checking)
        try:
            _check_file(path)
            db = _open_writer(path)
        except BaseException:
            unlock(lock_fd)
            raise
        return cls(path, db, lock_fd, commit_timeout, on_stuck)

    async def start(self) -> None:
        if self._db is None and not self._closing:
            assert self._checking is not None
            try:
                await asyncio.wrap_future(self._checking)
                self._db = await self._in_thread(_open_writer, self.path)
            except BaseException:
                self._unlock()
                raise
        await super().start()

    def _verdict(self) -> None:
        """A read failed: when the check runs meanwhile, its verdict (StoreCorrupt) first."""
        if self._checking is not None:
            self._checking.result()

    def load(self, raw: str | None = None) -> Iterator[tuple[str, Any]]:
        # read-only connections of their own: streaming through sqlitedict's queue costs ~14 s
        # for 1M rows against ~2.5 s here; they read committed data only and, in WAL mode,
        # never block the writer
        try:
            for key, data in read_records(self.path, raw):
                item = _decode(key, data)
                if item is not None:
                    yield item
        except sqlite3.DatabaseError:
            self._verdict()
            raise

    def chunks(self, prefix: str, size: int = CHUNK) -> Iterator[Chunk]:
        try:
            for count, array, after, last in read_chunks(self.path, prefix, size):
                rows = functools.partial(read_rows, self.path, prefix, after, last)
                yield Chunk(count, array, rows)
        except sqlite3.DatabaseError:
            self._verdict()
            raise

    async def _commit(self, batch: Batch) -> None:
        assert self._db is not None, "start() opens the writer"
        loop = asyncio.get_running_loop()
        done: asyncio.Future[BaseException | None] = loop.create_future()
        watchdog = loop.call_later(self._commit_timeout, self._on_stuck)
        try:
            barrier = _Barrier(self._db, loop, done)
            try:
                if len(batch) > _BIG_BATCH:  # building 200,000 rows' statements takes ~50 ms
                    await loop.run_in_executor(
                        self._executor, _queue_writes, self._db, batch, barrier
                    )
                else:
                    _queue_writes(self._db, batch, barrier)
            except Exception as exc:  # an error left over from an earlier statement
                if not done.done():
                    done.set_result(exc)
            error = await asyncio.shield(done)  # sqlitedict goes on: wait for it even if cancelled
            if error is not None:
                await loop.run_in_executor(self._executor, _rollback, self._db)
                raise error
        finally:
            watchdog.cancel()

    async def _shutdown(self) -> None:
        try:
            if self._db is not None:
                await self._in_thread(self._db.close)  # sqlitedict's close does not commit
        finally:
            self._executor.shutdown(wait=False)
            self._unlock()

    def _unlock(self) -> None:
        if self._checking is not None:  # never leave the check's thread reading a closed file
            concurrent.futures.wait([self._checking])
        if self._lock_fd is not None:
            unlock(self._lock_fd)
            self._lock_fd = None

    async def _query(self, sql: str) -> Any:
        """One statement on the writer thread, in order with commits (tests, diagnostics)."""
        assert self._db is not None, "start() opens the writer"
        return await self._in_thread(self._db.select_one, sql)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        watchdog = loop.call_later(self._commit_timeout, self._on_stuck)
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        finally:
            watchdog.cancel()

    def _exit_stuck(self) -> None:
        log.critical(
            "a store call on %s has not returned after %.1f s; exiting so systemd restarts clean",
            self.path,
            self._commit_timeout,
        )
        os._exit(70)


class _Barrier:
    """Where sqlitedict's thread answers a statement (``put``, called on that thread): the
    statement's rows, then the end marker, which it sends even when the statement failed.

    The first barrier rides on a batch's last write: if no write failed, it queues ``COMMIT``
    with a second barrier, which settles ``done`` on the loop with None, or with the error.
    sqlitedict holds the sink by weak reference: ``_live`` keeps it until it has answered.
    """

    __slots__ = ("__weakref__", "_committing", "_conn", "_done", "_loop")
    _live: set[_Barrier] = set()
    _live_lock = threading.Lock()

    def __init__(
        self,
        conn: Writer,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Future[BaseException | None],
        *,
        committing: bool = False,
    ) -> None:
        self._conn = conn
        self._loop = loop
        self._done = done
        self._committing = committing
        with self._live_lock:
            self._live.add(self)

    def put(self, item: object) -> None:
        if item != END:
            return  # a row: writes and COMMIT have none
        with self._live_lock:
            self._live.discard(self)
        error = self._conn.failure()
        if error is None and not self._committing:
            barrier = _Barrier(self._conn, self._loop, self._done, committing=True)
            self._conn.queue("COMMIT", None, barrier)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self._loop.call_soon_threadsafe(_settle, self._done, error)


def _settle(done: asyncio.Future[BaseException | None], error: BaseException | None) -> None:
    if not done.done():
        done.set_result(error)


_PROBE_BYTES = 256 * 1024  # room a failed store must show before it takes writes again
_BIG_BATCH = 5000  # keys past which a commit's statements are built off the event loop


def _queue_writes(conn: Writer, batch: Batch, barrier: _Barrier) -> None:
    """Queue the batch's statements; sqlitedict answers the last one to ``barrier``."""
    puts = [(key, data) for key, data in batch.items() if data is not None]
    deletes = [key for key, data in batch.items() if data is None]
    statements: list[tuple[str, list[str | bytes]]] = [
        (_upsert_sql(len(part)), [x for pair in part for x in pair])
        for part in (puts[i : i + _CHUNK] for i in range(0, len(puts), _CHUNK))
    ]
    statements += [
        (_delete_sql(len(keys)), list[str | bytes](keys))
        for keys in (deletes[i : i + _CHUNK] for i in range(0, len(deletes), _CHUNK))
    ]
    for sql, args in statements[:-1]:
        conn.queue(sql, args)
    sql, args = statements[-1] if statements else ("SELECT 1", [])
    conn.queue(sql, args, barrier)


@functools.lru_cache(maxsize=64)
def _upsert_sql(rows: int) -> str:
    """An upsert rewrites an existing row in place; REPLACE would delete it and insert a new
    rowid, touching ~3x the pages per commit (~6 WAL pages against 2-3 for a task's
    release-and-lease): that doubled the fsync'd bytes and the commit time."""
    values = ",".join(["(?,?)"] * rows)
    return (
        f'INSERT INTO "{TABLE}" (key, value) VALUES {values} '
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
    )


@functools.lru_cache(maxsize=64)
def _delete_sql(rows: int) -> str:
    return f'DELETE FROM "{TABLE}" WHERE key IN (' + ",".join(["?"] * rows) + ")"


def _drain(conn: Writer) -> None:
    """Wait until every queued statement has run and no error is left pending."""
    for _ in range(_DRAIN_LIMIT):
        try:
            conn.select_one("SELECT 1")
            return
        except Exception as exc:  # an earlier statement's error, already reported
            log.debug("drained a pending error: %s", exc)
    raise RuntimeError("sqlitedict keeps raising errors; giving up")


def _rollback(conn: Writer) -> None:
    _drain(conn)
    conn.queue("ROLLBACK")  # may fail ("no transaction is active"): the drain takes that
    _drain(conn)


def _reason(exc: BaseException) -> str:
    """An OS or SQLite error as a few words: "Read-only file system", "Not a directory"."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
