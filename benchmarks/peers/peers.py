"""The peers: how to start each one's driver and worker processes, and what to call it."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from benchmarks.peers.redis_server import redis_major

REPO = Path(__file__).resolve().parents[2]
BULLMQ_DIR = Path(__file__).resolve().parent / "bullmq"
QUEUE = "peers"


@dataclass(frozen=True)
class Peer:
    key: str
    uses_redis: bool

    @property
    def name(self) -> str:
        raise NotImplementedError

    def check(self) -> None:
        """Raise if this peer cannot run on this machine."""

    def env(self, workdir: Path, redis_port: int | None) -> dict[str, str]:
        env = dict(os.environ)
        env["PEERS_QUEUE"] = QUEUE
        if redis_port is not None:
            env["PEERS_REDIS_PORT"] = str(redis_port)
        return env

    def driver(self) -> tuple[list[str], Path]:
        raise NotImplementedError

    def worker(self, concurrency: int) -> tuple[list[str], Path]:
        raise NotImplementedError


@dataclass(frozen=True)
class BullMQ(Peer):
    @property
    def name(self) -> str:
        return f"BullMQ {bullmq_version()} (Redis {redis_major()}, AOF everysec)"

    def check(self) -> None:
        if shutil.which("node") is None:
            raise RuntimeError("node is not on PATH")
        if not (BULLMQ_DIR / "node_modules" / "bullmq").is_dir():
            raise RuntimeError(f"BullMQ is not installed: run `npm ci` in {BULLMQ_DIR}")

    def driver(self) -> tuple[list[str], Path]:
        return ["node", "driver.js"], BULLMQ_DIR

    def worker(self, concurrency: int) -> tuple[list[str], Path]:
        return ["node", "worker.js", str(concurrency)], BULLMQ_DIR


@dataclass(frozen=True)
class Huey(Peer):
    storage: str  # "redis" or "sqlite"

    @property
    def name(self) -> str:
        if self.storage == "redis":
            return f"Huey {version('huey')} RedisHuey (Redis {redis_major()}, AOF everysec)"
        return f"Huey {version('huey')} SqliteHuey (SQLite {sqlite3.sqlite_version}, WAL)"

    def env(self, workdir: Path, redis_port: int | None) -> dict[str, str]:
        env = super().env(workdir, redis_port)
        env["PEERS_HUEY"] = self.storage
        env["PEERS_SQLITE_PATH"] = str(workdir / "huey.sqlite")
        return env

    def driver(self) -> tuple[list[str], Path]:
        return [sys.executable, "-m", "benchmarks.peers.huey_driver"], REPO

    def worker(self, concurrency: int) -> tuple[list[str], Path]:
        app = "benchmarks.peers.huey_app.huey"
        argv = [sys.executable, "-m", "huey.bin.huey_consumer", app]
        return [*argv, "-w", str(concurrency), "-k", "thread"], REPO


def bullmq_version() -> str:
    package = BULLMQ_DIR / "node_modules" / "bullmq" / "package.json"
    try:
        found: str = json.loads(package.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return "?"
    return found


PEERS: dict[str, Peer] = {
    "bullmq": BullMQ("bullmq", uses_redis=True),
    "redis-huey": Huey("redis-huey", uses_redis=True, storage="redis"),
    "sqlite-huey": Huey("sqlite-huey", uses_redis=False, storage="sqlite"),
}
