"""cli.py (crew-aio serve, --help, --version, exit codes) and the logging it configures."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner, Result

from crew_aio import log
from crew_aio.cli import main, version
from crew_aio.config import SPECS, ExitCode, Settings, load_settings

TOKEN = "s3cret-admin-token"
ROOT = Path(__file__).resolve().parents[2]


class FakeApp:
    """Stands in for ``crew_aio.app`` (which the CLI imports only when serving)."""

    def __init__(self) -> None:
        self.calls: list[Settings] = []
        self.exit_code: int = ExitCode.OK

    def run_server(self, settings: Settings) -> int:
        self.calls.append(settings)
        log.get_logger("app").info(
            "ready with token %s", settings.api_token, extra={"event": "app.ready"}
        )
        return self.exit_code


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No CREW_* variable of the machine running the tests leaks in."""
    for spec in SPECS:
        for name in spec.env:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root, ours = logging.getLogger(), logging.getLogger(log.ROOT)
    saved = (list(root.handlers), root.level, ours.level)
    yield
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    ours.setLevel(saved[2])


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> FakeApp:
    fake = FakeApp()
    module = types.ModuleType("crew_aio.app")
    module.run_server = fake.run_server  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "crew_aio.app", module)
    return fake


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(
        main, list(args), env=env, prog_name="crew-aio", catch_exceptions=False
    )


# -- help and version ---------------------------------------------------------------------------


def test_serve_help_lists_every_flag_env_name_and_default() -> None:
    result = invoke("serve", "--help")
    assert result.exit_code == 0
    assert result.output.startswith("Usage: crew-aio serve [OPTIONS]")
    text = " ".join(result.output.split())  # undo click's line wrapping
    for spec in SPECS:
        assert spec.flag in text
        for name in spec.env:
            assert name in text
    assert "[env: CREW_HOST; default: 127.0.0.1]" in text
    assert "[env: CREW_PORT; default: 3000]" in text
    assert "[env: CREW_LEASE_SECONDS, CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS; default: 60]" in text
    assert "[env: CREW_API_TOKEN; default: none]" in text
    assert "--insecure / --no-insecure" in text


def test_group_help_lists_serve() -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    assert "serve" in result.output


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert result.output == f"crew-aio, version {version()}\n"
    assert version() != "unknown"


# -- serve ---------------------------------------------------------------------------------------


def test_serve_passes_flags_over_env_to_run_server(app: FakeApp, tmp_path: Path) -> None:
    env = {"CREW_PORT": "4000", "CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS": "30"}
    result = invoke("serve", "--port", "0", "--data-dir", str(tmp_path), env=env)
    assert result.exit_code == ExitCode.OK, result.output
    expected = load_settings({"port": "0", "data_dir": str(tmp_path)}, env)
    assert app.calls == [expected]
    assert (expected.port, expected.lease_seconds, expected.data_dir) == (0, 30, tmp_path)


def test_serve_only_passes_flags_that_were_given(app: FakeApp) -> None:
    env = {"CREW_PORT": "4000", "CREW_LOG_JSON": "yes", "CREW_HOST": "0.0.0.0"}
    result = invoke("serve", "--insecure", env=env)
    assert result.exit_code == 0, result.output
    [settings] = app.calls
    assert (settings.port, settings.log_json, settings.insecure) == (4000, True, True)


def test_serve_no_flag_overrides_env_true(app: FakeApp) -> None:
    result = invoke("serve", "--no-log-json", env={"CREW_LOG_JSON": "true"})
    assert result.exit_code == 0
    assert app.calls[0].log_json is False


def test_serve_exits_with_run_servers_code(app: FakeApp) -> None:
    app.exit_code = ExitCode.STORE_LOCKED
    assert invoke("serve").exit_code == 75


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "abc"], {}, "--port='abc': expected an integer"),
        ([], {"CREW_PORT": "99999"}, "CREW_PORT=99999: must be between 0 and 65535"),
        (
            ["--host", "0.0.0.0"],
            {},
            "refusing to listen on 0.0.0.0 without CREW_API_TOKEN; pass --insecure to override",
        ),
    ],
)
def test_config_errors_print_one_line_and_exit_78(
    app: FakeApp, args: list[str], env: dict[str, str], message: str
) -> None:
    result = invoke("serve", *args, env=env)
    assert result.exit_code == 78
    assert result.stderr == f"crew-aio: configuration error: {message}\n"
    assert app.calls == []


def test_a_bad_token_is_not_echoed(app: FakeApp) -> None:
    result = invoke("serve", "--api-token", "two words")
    assert result.exit_code == ExitCode.CONFIG
    assert "two words" not in result.output
    assert "--api-token=<redacted>" in result.stderr


def test_serve_logs_through_the_redactor(app: FakeApp) -> None:
    result = invoke("serve", "--api-token", TOKEN, "--log-level", "debug")
    assert result.exit_code == 0
    assert "app.ready ready with token ***" in result.stderr
    assert "cli.settings" in result.stderr
    assert TOKEN not in result.output


def test_cli_imports_without_the_server() -> None:
    code = "import sys, crew_aio.cli; assert 'crew_aio.app' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=30)


def test_python_m_crew_aio() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "crew_aio", "--version"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout == f"crew-aio, version {version()}\n"


# -- logging ------------------------------------------------------------------------------------


def emit(*, json: bool = False, journal_stream: str | None = None) -> list[str]:
    out = io.StringIO()
    log.configure("info", json, stream=out, journal_stream=journal_stream)
    logger = log.get_logger("http")
    logger.debug("hidden", extra={"event": "nope"})
    logger.info("GET %s", "/x", extra={"event": "http.request", "status": 200, "note": "a b"})
    return out.getvalue().splitlines()


def test_plain_lines_show_the_event_and_the_extra_fields() -> None:
    [line] = emit()
    stamp, rest = line.split(" ", 1)
    assert stamp.endswith("Z")
    assert "T" in stamp
    assert rest == 'INFO crew_aio.http http.request GET /x status=200 note="a b"'


def test_json_lines() -> None:
    [line] = emit(json=True)
    record = orjson.loads(line)
    assert record.pop("ts").endswith("Z")
    assert record == {
        "level": "info",
        "logger": "crew_aio.http",
        "event": "http.request",
        "msg": "GET /x",
        "status": 200,
        "note": "a b",
    }


def test_journald_lines_drop_the_timestamp_and_carry_a_priority(tmp_path: Path) -> None:
    with (tmp_path / "stderr").open("w+") as stream:
        stat = os.fstat(stream.fileno())
        log.configure("info", False, stream=stream, journal_stream=f"{stat.st_dev}:{stat.st_ino}")
        log.get_logger("store").error("disk full", extra={"event": "store.commit_failed"})
        stream.seek(0)
        assert stream.read() == "<3>ERROR crew_aio.store store.commit_failed disk full\n"
    # a JOURNAL_STREAM that names another file (e.g. inherited by a terminal) changes nothing
    [line] = emit(journal_stream="1:2")
    assert not line.startswith("<")


def test_tokens_never_reach_the_output() -> None:
    for json in (False, True):
        out = io.StringIO()
        log.configure("info", json, stream=out, secrets=[TOKEN, 'q"x9z'])
        logger = log.get_logger("ws")
        logger.info("token %s", TOKEN, extra={"event": "x", "header": f"Bearer {TOKEN}"})
        logger.info("other", extra={"event": "x", "auth": "bearer abc", "url": "/ws?token=zzz&a=1"})
        logger.info("quoted", extra={"event": "x", "value": 'q"x9z'})
        try:
            raise RuntimeError(TOKEN)
        except RuntimeError:
            logger.exception("failed", extra={"event": "x"})
        text = out.getvalue()
        for leaked in (TOKEN, "abc", "zzz", "x9z"):
            assert leaked not in text
        assert "***" in text


def test_configure_replaces_its_handler_and_rejects_bad_levels() -> None:
    log.configure("info", False, stream=io.StringIO())
    log.configure("warning", False, stream=io.StringIO())
    ours = [h for h in logging.getLogger().handlers if isinstance(h, log._CrewHandler)]
    assert len(ours) == 1
    assert logging.getLogger(log.ROOT).level == logging.WARNING
    with pytest.raises(ValueError, match="unknown log level"):
        log.configure("loud", False)
