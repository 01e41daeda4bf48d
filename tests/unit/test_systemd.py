"""systemd/: the unit passes `systemd-analyze verify`, stays hardened, and matches config.py."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crew_aio.config import SPECS, ExitCode, Settings, load_settings

SYSTEMD = Path(__file__).resolve().parents[2] / "systemd"
UNIT = SYSTEMD / "crew-aio.service"
ENV_EXAMPLE = SYSTEMD / "crew-aio.env.example"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def directives(text: str) -> dict[str, list[str]]:
    """``Key=value`` lines of a unit, every value of a repeated key in order."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.fixture
def unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart pointing at this interpreter (verify checks the binary exists)."""
    text = UNIT.read_text()
    text, count = re.subn(r"(?m)^ExecStart=\S+", f"ExecStart={sys.executable}", text)
    assert count == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text)
    return copy


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run([ANALYZE, *args], capture_output=True, text=True, timeout=60, check=False)


@needs_analyze
def test_systemd_analyze_verify(unit_copy: Path) -> None:
    done = analyze("verify", str(unit_copy))
    # verify also reports on the host (no /run/systemd in a container, other units, ...): only
    # lines about this unit count, and for a clean unit there are none at all.
    about_unit = [
        line
        for line in (done.stdout + done.stderr).splitlines()
        if UNIT.name in line or str(unit_copy) in line
    ]
    assert about_unit == []
    assert done.returncode == 0, done.stderr


@needs_analyze
def test_security_exposure_stays_low(unit_copy: Path) -> None:
    done = analyze("security", "--offline=yes", "--threshold=20", str(unit_copy))
    if "--offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd >= 250")
    assert done.returncode == 0, done.stdout[-600:]  # 20 = exposure 2.0 ("OK"); now 1.2


def test_every_directive_is_explained() -> None:
    """Each run of Key=value lines is introduced by a comment saying why."""
    previous = ""
    for number, line in enumerate(UNIT.read_text().splitlines(), 1):
        if _is_directive(line) and not (previous.startswith("#") or _is_directive(previous)):
            pytest.fail(f"{UNIT.name}:{number}: {line!r} has no comment above it")
        previous = line


def _is_directive(line: str) -> bool:
    return bool(line) and not line.startswith(("#", "["))


def test_runs_the_interpreter_directly_with_state_in_state_directory() -> None:
    unit = directives(UNIT.read_text())
    [exec_start] = unit["ExecStart"]
    binary, *args = exec_start.split()
    assert binary.endswith("/bin/python")
    assert args == ["-m", "crew_aio", "serve"]
    assert unit["StateDirectory"] == ["crew-aio"]
    assert "CREW_DATA_DIR=%S/crew-aio" in unit["Environment"]
    assert unit["EnvironmentFile"] == ["-/etc/crew-aio/crew-aio.env"]
    assert unit["DynamicUser"] == ["yes"]
    assert unit["KillSignal"] == ["SIGTERM"]
    assert unit["MemoryDenyWriteExecute"] == ["yes"]


def test_stop_timeout_covers_shutdown_and_final_flush() -> None:
    [timeout] = directives(UNIT.read_text())["TimeoutStopSec"]
    defaults = Settings()
    assert float(timeout) > defaults.shutdown_timeout + defaults.commit_timeout


def test_restarts_except_when_a_restart_cannot_help() -> None:
    unit = directives(UNIT.read_text())
    assert unit["Restart"] == ["on-failure"]
    [prevent] = unit["RestartPreventExitStatus"]
    assert {int(code) for code in prevent.split()} == {
        ExitCode.CONFIG,
        ExitCode.STORE_CORRUPT,
        ExitCode.BAD_HOST,
        ExitCode.DATA_DIR,
        ExitCode.NO_PERMISSION,
    }  # a taken port (69) may free up: restarted


def test_env_example_documents_every_variable_with_its_default() -> None:
    text = ENV_EXAMPLE.read_text()
    for spec in SPECS:
        for name in spec.env:
            assert name in text, f"{name} missing from {ENV_EXAMPLE.name}"
    shown = dict(re.findall(r"(?m)^#(CREW_[A-Z_]+)=(.*)$", text))
    assert set(shown) == {spec.env[0] for spec in SPECS}
    for spec in SPECS:
        value = shown[spec.env[0]]
        if value and spec.name != "data_dir":  # the unit moves data_dir to /var/lib/crew-aio
            parsed = getattr(load_settings({}, {spec.env[0]: value}), spec.name)
            assert parsed == spec.default, spec.env[0]
    assert "/var/lib/crew-aio" in shown["CREW_DATA_DIR"]
