"""Dependencies point inward (docs/ARCHITECTURE.md) and the public surface is on purpose."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import crew_aio

PKG = Path(crew_aio.__file__).parent

TRANSPORTS = (
    "http_api",
    "ws_hub",
    "sio",
    "operators",
)  # and the ones to come: each sits on wire + service
# what no transport may import: the store, the engine, persistence, and the other transports
NOT_FOR_TRANSPORTS = {
    "sqlite3",
    "sqlitedict",
    "crew_aio.store",
    "crew_aio.engine",
    "crew_aio.sqlite_file",
    "crew_aio.app",
    "crew_aio.routes",
}

# module (or package prefix) → imports it must never make
FORBIDDEN: dict[str, set[str]] = {
    "engine": {"asyncio", "aiohttp", "sqlite3", "sqlitedict", "time", "datetime", "os",
               "crew_aio.store", "crew_aio.commit", "crew_aio.service", "crew_aio.http_api",
               "crew_aio.app", "crew_aio.clock", "crew_aio.wire", "logging"},
    "model": {"asyncio", "aiohttp", "sqlite3", "sqlitedict", "time", "os", "crew_aio.engine"},
    "errors": {"aiohttp", "asyncio", "crew_aio"},
    "protocol": {"aiohttp", "crew_aio.engine", "crew_aio.model", "crew_aio.service",
                 "crew_aio.store", "crew_aio.wire"},
    "jsvalues": {"aiohttp", "asyncio", "crew_aio"},
    "commit": {"aiohttp", "sqlite3", "sqlitedict", "crew_aio.engine", "crew_aio.model",
               "crew_aio.service", "crew_aio.store"},
    "store": {"aiohttp", "sqlitedict", "crew_aio.engine", "crew_aio.model", "crew_aio.service"},
    "sqlite_file": {"aiohttp", "asyncio", "crew_aio.engine", "crew_aio.service"},
    "service": {"aiohttp", "sqlite3", "sqlitedict", "crew_aio.store", "crew_aio.http_api",
                "crew_aio.ws_hub", "crew_aio.wire", "crew_aio.routes", "crew_aio.app", "time"},
    "bulk": {"aiohttp", "sqlite3", "sqlitedict", "crew_aio.store", "crew_aio.service",
             "crew_aio.http_api", "crew_aio.ws_hub", "crew_aio.wire", "crew_aio.app"},
    "recovery": {"aiohttp", "sqlite3", "sqlitedict", "crew_aio.store", "crew_aio.service",
                 "crew_aio.http_api", "crew_aio.ws_hub", "crew_aio.wire", "crew_aio.app"},
    "timers": {"aiohttp", "crew_aio.http_api", "crew_aio.app", "crew_aio.engine",
               "crew_aio.store"},
    "wire": {"sqlite3", "sqlitedict", "crew_aio.engine", "crew_aio.store", "crew_aio.commit",
             "crew_aio.service", "crew_aio.http_api", "crew_aio.ws_hub", "crew_aio.routes",
             "crew_aio.app"},
    "openapi": {"crew_aio.http_api", "crew_aio.routes", "crew_aio.ws_hub", "crew_aio.service",
                "crew_aio.engine", "crew_aio.store", "aiohttp"},
    "routes": {"crew_aio.engine", "crew_aio.store", "crew_aio.service", "crew_aio.ws_hub",
               "crew_aio.app"},
    "tcp": {"crew_aio", "aiohttp"},
    "keys": {"asyncio", "aiohttp", "sqlite3", "sqlitedict", "crew_aio.engine", "crew_aio.store",
             "crew_aio.service"},
    "loopmon": {"crew_aio", "sqlite3", "sqlitedict", "time"},
    **{t: NOT_FOR_TRANSPORTS | {f"crew_aio.{o}" for o in TRANSPORTS if o != t}
       for t in TRANSPORTS},
}  # fmt: skip


def imports_of(path: Path, *, typing_too: bool = True) -> set[str]:
    """Every module ``path`` imports, including those under ``if TYPE_CHECKING:`` (a cycle
    hidden there is still a cycle to a reader)."""
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
    """The worker SDK and client talk to the server over HTTP only (docs/SDK.md)."""
    allowed = ("crew_aio.client", "crew_aio.worker", "crew_aio.protocol")
    for path in [PKG / "client.py", *sorted((PKG / "worker").rglob("*.py"))]:
        bad = {
            name
            for name in imports_of(path)
            if name.split(".")[0] == "crew_aio" and not name.startswith(allowed)
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_bench_imports_no_server_code() -> None:
    """``crew-aio bench`` measures a server process (its own, or ``--url``) as a user would."""
    allowed = ("crew_aio.client", "crew_aio.worker", "crew_aio.bench")
    for path in sorted((PKG / "bench").rglob("*.py")):
        bad = {
            name
            for name in imports_of(path)
            if name.split(".")[0] == "crew_aio" and not name.startswith(allowed)
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"


def test_every_error_code_has_a_status() -> None:
    """The wire layer's one table turns every error the server raises into an HTTP status."""
    from crew_aio import errors
    from crew_aio.wire import STATUS, status_of

    codes = {
        cls.code
        for cls in vars(errors).values()
        if isinstance(cls, type)
        and issubclass(cls, errors.CrewError)
        and cls is not errors.CrewError
    }
    assert codes == set(STATUS), "an error code without a status, or a status without a code"
    for code, status in STATUS.items():
        assert 400 <= status < 600, code
    assert status_of(errors.StaleLease("x")) == 409


def test_no_import_cycles_among_server_modules() -> None:
    """Dependencies form a DAG: no module reaches itself through its crew_aio imports."""
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(p for p in rel.parts if p != "__init__")
        graph[name] = {
            dep for dep in imports_of(path, typing_too=True) if dep.startswith("crew_aio.")
        }
    modules = set(graph)
    edges = {m: {d if d in modules else d.rsplit(".", 1)[0] for d in deps} & modules - {m}
             for m, deps in graph.items()}  # fmt: skip
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in sorted(edges[node]):
            if state.get(dep) == 1:
                cycle = [*path[path.index(dep) :], dep] if dep in path else [node, dep]
                raise AssertionError(" -> ".join(cycle))
            if dep not in state:
                visit(dep, [*path, dep])
        state[node] = 2

    for module in sorted(modules):
        if module not in state:
            visit(module, [module])


def test_only_the_adapter_touches_sqlitedict() -> None:
    """sqlitedict's internals sit behind one adapter, checked by its canary test."""
    users = sorted(
        path.name
        for path in PKG.rglob("*.py")
        if any(n == "sqlitedict" or n.startswith("sqlitedict.") for n in imports_of(path))
    )
    assert users == ["sqlitedict_adapter.py"]


def test_listeners_are_wired_in_app_only() -> None:
    """Who hears of each change is decided in one place: app wires the listeners."""
    wiring = [
        path.name
        for path in PKG.rglob("*.py")
        if "listeners +=" in path.read_text()
        or "listeners.append(" in path.read_text()
        or "on_reset.append(" in path.read_text()
    ]
    assert wiring == ["app.py"]
