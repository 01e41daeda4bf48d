"""The SQLite file under the store: single-instance lock and corruption check.

Startup concerns only (blocking; called before the server serves): one server per file (an
flock), a corrupt file refused and never rewritten (docs/RELIABILITY.md). Opening sqlitedict
itself is :mod:`crew_aio.sqlitedict_adapter`'s.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
import sqlite3

__all__ = [
    "TABLE",
    "StoreCorrupt",
    "StoreLocked",
    "StoreOpenError",
    "StoreUnusable",
    "lock",
    "read_only_uri",
    "refuse_corrupt",
    "unlock",
]

TABLE = "crew"
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class StoreOpenError(Exception):
    """The store cannot be opened: the server must not start (not a CrewError)."""


class StoreLocked(StoreOpenError):
    """Another process holds the store's lock file."""


class StoreCorrupt(StoreOpenError):
    """The file is not a SQLite database or fails ``PRAGMA quick_check``."""


class StoreUnusable(StoreOpenError):
    """The data directory or its files cannot be created, written or opened (read-only, a
    file where a directory belongs, no permission, no space)."""


def lock(path: pathlib.Path) -> int:
    lock_path = path.with_name(path.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise StoreLocked(
            f"another crew-aio is using {path} (pid {holder} holds {lock_path})"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def unlock(fd: int) -> None:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


def read_only_uri(path: pathlib.Path) -> str:
    return f"{path.resolve().as_uri()}?mode=ro"


def refuse_corrupt(path: pathlib.Path) -> None:
    """Refuse a file that is not a sound SQLite database; never write to it.

    Read-only on purpose: closing a read-write connection checkpoints a leftover WAL into the file.
    """
    if not path.exists():
        return
    try:
        with contextlib.closing(sqlite3.connect(read_only_uri(path), uri=True)) as conn:
            problems = [str(row[0]) for row in conn.execute("PRAGMA quick_check(3)")]
    except sqlite3.DatabaseError as exc:
        if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _CORRUPT_CODES:
            raise StoreOpenError(f"cannot open {path}: {exc}") from exc
        problems = [str(exc)]
    if problems != ["ok"]:
        detail = "; ".join(problems).replace("\n", " ")
        raise StoreCorrupt(
            f"{path} is corrupt ({detail}); refusing to start: restore a backup or move it away"
        )
