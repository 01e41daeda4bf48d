"""Storage faults for R7 on a real server: a database locked by another process, a full disk.

- :class:`LockFault`: another process holds ``BEGIN IMMEDIATE`` on the server's file (its
  writes wait ``busy_timeout`` = 1 s, then fail).
- :class:`FsizeFault`: the server process's ``RLIMIT_FSIZE`` drops to 0 (``prlimit``), so every
  write to a file fails (EFBIG) as on a full disk; raising it back is "disk freed". Needs no
  privilege. (``PRAGMA max_page_count`` cannot do this: it is a per-connection setting and only
  the server's own connection could set it.)
- :class:`TmpfsFault`: a real full file system: the data dir is a small tmpfs and a filler file
  takes its last byte (ENOSPC); deleting the filler frees it. Needs the right to mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import subprocess
import sys
from pathlib import Path

HOLD_LOCK = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=10)
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


class Fault:
    name = ""

    async def on(self) -> None: ...
    async def off(self) -> None: ...


class LockFault(Fault):
    name = "database locked by another process"

    def __init__(self, db: Path) -> None:
        self.db = db
        self.proc: asyncio.subprocess.Process | None = None

    async def on(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", HOLD_LOCK, str(self.db),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        from tests.faults.harness import track

        track(self.proc)
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), 15)
        assert line.strip() == b"locked", line

    async def off(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            assert proc.stdin is not None
            proc.stdin.write(b"\n")
            await proc.stdin.drain()
            await asyncio.wait_for(proc.wait(), 15)


class FsizeFault(Fault):
    name = "disk full (RLIMIT_FSIZE=0 on the server)"

    def __init__(self, pid: int) -> None:
        self.pid = pid

    async def on(self) -> None:
        resource.prlimit(self.pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    async def off(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            limit = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
            resource.prlimit(self.pid, resource.RLIMIT_FSIZE, limit)


def can_mount(scratch: Path) -> bool:
    """Whether this process may mount a tmpfs (root in a permissive sandbox)."""
    probe = scratch / "mount-probe"
    probe.mkdir(parents=True, exist_ok=True)
    cmd = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)]
    try:
        ok = subprocess.run(cmd, capture_output=True, timeout=10).returncode == 0
    except OSError:
        return False
    if ok:
        subprocess.run(["umount", str(probe)], capture_output=True, timeout=10)
    return ok


class TmpfsFault(Fault):
    name = "disk full (tmpfs, ENOSPC)"

    def __init__(self, mountpoint: Path, size: str = "256m") -> None:
        self.mountpoint = mountpoint
        self.size = size
        self.filler = mountpoint / "filler"

    def mount(self) -> None:
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        cmd = ["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.mountpoint)]
        subprocess.run(cmd, check=True, capture_output=True, timeout=10)

    def umount(self) -> None:
        subprocess.run(["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=10)

    async def on(self) -> None:
        await asyncio.to_thread(self._fill)

    def _fill(self) -> None:
        chunk = b"\0" * 65536
        with self.filler.open("wb", buffering=0) as out:
            for size in (65536, 4096, 512, 1):
                try:
                    while True:
                        out.write(chunk[:size])
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise

    async def off(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.filler)
