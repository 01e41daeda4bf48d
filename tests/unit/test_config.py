"""config.py: defaults, precedence, parsing, every refusal."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from crew_aio.config import (
    SPECS,
    ConfigError,
    ExitCode,
    Settings,
    is_loopback,
    journal_stream,
    load_settings,
)

# The contract (docs/API.md "Running" + the config brief), written out once more on purpose.
EXPECTED: dict[str, tuple[object, tuple[str, ...]]] = {
    "host": ("127.0.0.1", ("CREW_HOST",)),
    "port": (3000, ("CREW_PORT",)),
    "data_dir": (Path("crew-data"), ("CREW_DATA_DIR",)),
    "api_token": (None, ("CREW_API_TOKEN",)),
    "worker_token": (None, ("CREW_WORKER_TOKEN",)),
    "insecure": (False, ("CREW_INSECURE",)),
    "lease_seconds": (60.0, ("CREW_LEASE_SECONDS", "CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS")),
    "max_lease_seconds": (3600.0, ("CREW_MAX_LEASE_SECONDS",)),
    "max_wait_seconds": (60.0, ("CREW_MAX_WAIT_SECONDS",)),
    "clean_expired_groups": (False, ("CREW_CLEAN_EXPIRED_GROUPS",)),
    "expired_group_interval_days": (30.0, ("CREW_EXPIRED_GROUP_INTERVAL_IN_DAYS",)),
    "clean_batch_size": (20, ("CREW_CLEAN_BATCH_SIZE",)),
    "max_body_bytes": (16 * 1024 * 1024, ("CREW_MAX_BODY_BYTES",)),
    "max_tasks_per_request": (100_000, ("CREW_MAX_TASKS_PER_REQUEST",)),
    "max_parents_per_task": (10_000, ("CREW_MAX_PARENTS_PER_TASK",)),
    "max_children_per_release": (10_000, ("CREW_MAX_CHILDREN_PER_RELEASE",)),
    "commit_timeout": (10.0, ("CREW_COMMIT_TIMEOUT",)),
    "shutdown_timeout": (20.0, ("CREW_SHUTDOWN_TIMEOUT",)),
    "operator_concurrency": (16, ("CREW_OPERATOR_CONCURRENCY",)),
    "operator_hosts": ("*", ("CREW_OPERATOR_HOSTS",)),
    "virtual_operator_base_url": (None, ("CREW_VIRTUAL_OPERATOR_BASE_URL",)),
    "virtual_operator_auth_token": (None, ("CREW_VIRTUAL_OPERATOR_AUTH_TOKEN",)),
    "cors_origins": ("*", ("CREW_CORS_ORIGINS",)),
    "ws_heartbeat": (15.0, ("CREW_WS_HEARTBEAT",)),
    "head_timeout": (10.0, ("CREW_HEAD_TIMEOUT",)),
    "body_timeout": (30.0, ("CREW_BODY_TIMEOUT",)),
    "idle_timeout": (60.0, ("CREW_IDLE_TIMEOUT",)),
    "log_level": ("info", ("CREW_LOG_LEVEL",)),
    "log_json": (False, ("CREW_LOG_JSON",)),
}
SPEC = {spec.name: spec for spec in SPECS}
# A valid non-default value per field, as a string.
SAMPLE = {
    "host": "::1",
    "port": "8080",
    "data_dir": "/srv/crew",
    "api_token": "admin-token",
    "worker_token": "worker-token",
    "insecure": "true",
    "lease_seconds": "30",
    "max_lease_seconds": "600",
    "max_wait_seconds": "5.5",
    "clean_expired_groups": "yes",
    "expired_group_interval_days": "7",
    "clean_batch_size": "5",
    "max_body_bytes": "1024",
    "max_tasks_per_request": "10",
    "max_parents_per_task": "3",
    "max_children_per_release": "7",
    "commit_timeout": "2.5",
    "shutdown_timeout": "1",
    "ws_heartbeat": "5",
    "operator_concurrency": "4",
    "operator_hosts": "workers.internal,127.0.0.1",
    "virtual_operator_base_url": "http://workers.internal:8080/execute/",
    "virtual_operator_auth_token": "op-token",
    "cors_origins": "https://ui.example.com,http://localhost:8080",
    "head_timeout": "3",
    "body_timeout": "4",
    "idle_timeout": "6",
    "log_level": "debug",
    "log_json": "1",
}


def test_the_table_is_the_contract() -> None:
    assert {s.name: (s.default, s.env) for s in SPECS} == EXPECTED
    assert [f.name for f in dataclasses.fields(Settings)] == [s.name for s in SPECS]
    assert set(SAMPLE) == set(EXPECTED)


def test_defaults() -> None:
    settings = load_settings({}, {})
    assert settings == Settings()
    for name, (default, _) in EXPECTED.items():
        assert getattr(settings, name) == default
    assert settings.db_path == Path("crew-data") / "crew.sqlite"


def test_settings_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().port = 1  # type: ignore[misc]


@pytest.mark.parametrize("name", list(SAMPLE))
def test_every_field_reads_its_env_and_its_flag(name: str) -> None:
    spec = SPEC[name]
    from_env = load_settings({}, {spec.env[0]: SAMPLE[name]})
    from_cli = load_settings({name: SAMPLE[name]}, {})
    assert getattr(from_env, name) == getattr(from_cli, name) != spec.default


def test_precedence_cli_over_env_over_alias_over_default() -> None:
    env = {"CREW_LEASE_SECONDS": "20", "CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS": "30"}
    assert load_settings({"lease_seconds": "10"}, env).lease_seconds == 10
    assert load_settings({}, env).lease_seconds == 20
    assert load_settings({}, {"CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS": "30"}).lease_seconds == 30
    assert load_settings({}, {}).lease_seconds == 60


def test_a_cli_flag_beats_the_env_even_when_false() -> None:
    env = {"CREW_INSECURE": "true", "CREW_HOST": "0.0.0.0"}
    assert load_settings({}, env).insecure is True
    with pytest.raises(ConfigError, match="refusing"):
        load_settings({"insecure": False}, env)


def test_empty_env_values_count_as_unset() -> None:
    env = {"CREW_LEASE_SECONDS": "", "CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS": "30"}
    assert load_settings({}, env).lease_seconds == 30
    assert load_settings({}, {"CREW_API_TOKEN": "", "CREW_PORT": ""}) == Settings()


def test_cli_none_means_not_given_and_typed_values_are_accepted(tmp_path: Path) -> None:
    settings = load_settings({"port": 0, "data_dir": tmp_path, "host": None}, {"CREW_HOST": "::1"})
    assert (settings.port, settings.data_dir, settings.host) == (0, tmp_path, "::1")
    assert settings.db_path == tmp_path / "crew.sqlite"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("1", True),
        (" yes ", True),
        ("false", False),
        ("False", False),
        ("NO", False),
        ("0", False),
    ],
)
def test_bools(raw: str, expected: bool) -> None:
    assert load_settings({}, {"CREW_LOG_JSON": raw}).log_json is expected


def test_log_level_is_case_insensitive() -> None:
    assert load_settings({}, {"CREW_LOG_LEVEL": "WARNING"}).log_level == "warning"


@pytest.mark.parametrize(
    ("env", "raw"),
    [
        ("CREW_PORT", "abc"),
        ("CREW_PORT", "80.5"),
        ("CREW_PORT", "-1"),
        ("CREW_PORT", "65536"),
        ("CREW_MAX_BODY_BYTES", "16MiB"),
        ("CREW_MAX_BODY_BYTES", "0"),
        ("CREW_MAX_TASKS_PER_REQUEST", "-5"),
        ("CREW_MAX_PARENTS_PER_TASK", "0"),
        ("CREW_MAX_CHILDREN_PER_RELEASE", "0"),
        ("CREW_MAX_CHILDREN_PER_RELEASE", "ten"),
        ("CREW_MAX_CHILDREN_PER_RELEASE", "100001"),
        ("CREW_LEASE_SECONDS", "soon"),
        ("CREW_LEASE_SECONDS", "0.5"),
        ("CREW_ABANDONED_TASK_INTERVAL_IN_SECONDS", "nan"),
        ("CREW_LEASE_SECONDS", "3601"),
        ("CREW_MAX_LEASE_SECONDS", "inf"),
        ("CREW_MAX_LEASE_SECONDS", "0"),
        ("CREW_MAX_WAIT_SECONDS", "0"),
        ("CREW_EXPIRED_GROUP_INTERVAL_IN_DAYS", "-1"),
        ("CREW_COMMIT_TIMEOUT", "0"),
        ("CREW_SHUTDOWN_TIMEOUT", "-0.1"),
        ("CREW_INSECURE", "maybe"),
        ("CREW_CLEAN_EXPIRED_GROUPS", "2"),
        ("CREW_LOG_JSON", "on?"),
        ("CREW_LOG_LEVEL", "loud"),
        ("CREW_HOST", " "),
    ],
)
def test_bad_env_values_name_the_variable_and_the_value(env: str, raw: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, {env: raw})
    message = str(info.value)
    assert message.startswith(f"{env}=")
    assert raw.strip() in message or str(float(raw)) in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("name", "raw", "flag"),
    [
        ("port", "abc", "--port"),
        ("port", "70000", "--port"),
        ("lease_seconds", "-1", "--lease-seconds"),
        ("data_dir", "", "--data-dir"),
        ("host", "", "--host"),
        ("log_level", "verbose", "--log-level"),
        ("insecure", "perhaps", "--insecure"),
    ],
)
def test_bad_flag_values_name_the_flag(name: str, raw: str, flag: str) -> None:
    with pytest.raises(ConfigError, match=f"^{flag}=") as info:
        load_settings({name: raw}, {})
    assert info.value.name == name


def test_lease_above_max_lease_names_both() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"CREW_LEASE_SECONDS": "120", "CREW_MAX_LEASE_SECONDS": "100"})
    assert str(info.value) == ("CREW_LEASE_SECONDS=120.0: must not exceed max_lease_seconds (100)")
    assert load_settings({}, {"CREW_LEASE_SECONDS": "100", "CREW_MAX_LEASE_SECONDS": "100"})


@pytest.mark.parametrize("env", ["CREW_API_TOKEN", "CREW_WORKER_TOKEN"])
@pytest.mark.parametrize("token", ["has space", "tab\there", "new\nline", "bell\x07"])
def test_bad_tokens_are_refused_without_echoing_them(env: str, token: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, {env: token})
    assert str(info.value).startswith(f"{env}=<redacted>: ")
    assert token not in str(info.value)


def test_unknown_cli_keys_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_settings({"prot": "1"}, {})


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "example.com", "[::]"])
def test_non_loopback_without_api_token_is_refused(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings({}, {"CREW_HOST": host})
    assert str(info.value) == (
        f"refusing to listen on {host} without CREW_API_TOKEN; pass --insecure to override"
    )
    assert info.value.name == "host"
    # a worker token alone does not protect the admin endpoints
    with pytest.raises(ConfigError, match="refusing"):
        load_settings({}, {"CREW_HOST": host, "CREW_WORKER_TOKEN": "w"})
    assert load_settings({}, {"CREW_HOST": host, "CREW_API_TOKEN": "t"}).host == host
    assert load_settings({"insecure": True}, {"CREW_HOST": host}).insecure


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.1.2.3", True),
        ("::1", True),
        ("[::1]", True),
        ("localhost", True),
        ("LocalHost", True),
        ("0.0.0.0", False),
        ("::", False),
        ("10.0.0.1", False),
        ("localhost.example.com", False),
        ("", False),
    ],
)
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_validate_on_a_hand_built_settings_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^port=70000: must be between 0 and 65535$"):
        Settings(port=70000).validate()
    with pytest.raises(ConfigError, match=r"^--port=70000"):
        Settings(port=70000).validate({"port": "--port"})
    Settings().validate()


def test_tokens_stay_out_of_repr_and_redacted() -> None:
    settings = load_settings({}, {"CREW_API_TOKEN": "admin-secret", "CREW_WORKER_TOKEN": "w-s"})
    assert "admin-secret" not in repr(settings)
    assert "w-s" not in repr(settings)
    shown = settings.redacted()
    assert shown["api_token"] == shown["worker_token"] == "<set>"
    assert shown["port"] == 3000
    assert set(shown) == set(EXPECTED)
    assert settings.secrets == ("admin-secret", "w-s")
    assert Settings().secrets == ()
    assert Settings().redacted()["api_token"] is None


def test_journal_stream() -> None:
    assert journal_stream({"JOURNAL_STREAM": "8:1234"}) == "8:1234"
    assert journal_stream({"JOURNAL_STREAM": ""}) is None
    assert journal_stream({}) is None


def test_exit_codes_are_sysexits() -> None:
    assert {code.name: int(code) for code in ExitCode} == {
        "OK": 0,
        "STORE_CORRUPT": 65,
        "BAD_HOST": 68,
        "CANNOT_LISTEN": 69,
        "STORE_STUCK": 70,
        "DATA_DIR": 73,
        "STORE_LOCKED": 75,
        "NO_PERMISSION": 77,
        "CONFIG": 78,
    }
