"""Dependencies point inward (ARCHITECTURE.md) and the public surface is on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crew_aio

PKG = Path(crew_aio.__file__).parent

# module (or package prefix) → imports it must never make
FORBIDDEN: dict[str, set[str]] = {
    "engine": {"asyncio", "aiohttp", "sqlite3", "sqlitedict", "time", "datetime", "os",
               "crew_aio.store", "crew_aio.service", "crew_aio.http_api", "crew_aio.app",
               "crew_aio.clock", "logging"},
    "model": {"asyncio", "aiohttp", "sqlite3", "sqlitedict", "time", "os", "crew_aio.engine"},
    "errors": {"aiohttp", "asyncio", "crew_aio"},
    "protocol": {"aiohttp", "crew_aio"},
    "store": {"aiohttp", "crew_aio.engine", "crew_aio.model", "crew_aio.service"},
    "sqlite_file": {"aiohttp", "asyncio", "crew_aio.engine", "crew_aio.service"},
    "service": {"aiohttp", "sqlite3", "sqlitedict", "crew_aio.store", "crew_aio.http_api",
                "crew_aio.app", "time"},
    "timers": {"aiohttp", "crew_aio.http_api", "crew_aio.app"},
    "http_api": {"sqlite3", "sqlitedict", "crew_aio.engine", "crew_aio.store"},
    "loopmon": {"crew_aio", "sqlite3", "sqlitedict", "time"},
}  # fmt: skip


def imports_of(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def files_of(module: str) -> list[Path]:
    package = PKG / module
    return sorted(package.rglob("*.py")) if package.is_dir() else [PKG / f"{module}.py"]


@pytest.mark.parametrize("module", sorted(FORBIDDEN))
def test_imports_point_inward(module: str) -> None:
    for path in files_of(module):
        assert path.exists(), path
        bad = {
            name
            for name in imports_of(path)
            for banned in FORBIDDEN[module]
            if name == banned or name.startswith(banned + ".")
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_nothing_else_reads_the_environment() -> None:
    """config parses the environment; cli only hands ``os.environ`` over at the boundary."""
    for path in PKG.rglob("*.py"):
        if path.name in {"config.py", "cli.py"}:
            continue
        assert "os.environ" not in path.read_text() and "getenv" not in path.read_text(), path


def test_public_surface_is_pinned() -> None:
    assert crew_aio.__all__ == ["CrewError", "FakeClock", "SystemClock", "__version__"]


def test_sdk_imports_no_server_code() -> None:
    """The worker SDK and client talk to the server over HTTP only (SDK.md)."""
    allowed = ("crew_aio.client", "crew_aio.worker", "crew_aio.protocol")
    for path in [PKG / "client.py", *sorted((PKG / "worker").rglob("*.py"))]:
        bad = {
            name
            for name in imports_of(path)
            if name.split(".")[0] == "crew_aio" and not name.startswith(allowed)
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"
