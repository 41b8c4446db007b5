from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from hive_core import run_dir
from hive_core.settings import LONGEST_SOCKET_SUFFIX, SOCKET_PATH_MAX, Settings

ENV_VARS = [
    "HIVE_STATE_DIR",
    "HIVE_RUN_DIR",
    "HIVE_BACKEND",
    "HIVE_DASHBOARD_HOST",
    "HIVE_DASHBOARD_PORT",
    "HIVE_DASHBOARD_ALLOWED_HOSTS",
    "HIVE_OPERATOR_PRONOUNS",
    "HIVE_CLI_NAME",
    "STATE_DIRECTORY",
    "RUNTIME_DIRECTORY",
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def _run_dir_of_length(n: int) -> Path:
    path = Path("/" + "r" * (n - 1))
    assert len(str(path)) == n
    return path


def test_a_run_dir_too_long_for_socket_paths_is_refused_naming_hive_run_dir() -> None:
    settings = Settings(run_dir=_run_dir_of_length(100))
    with pytest.raises(ValueError, match="HIVE_RUN_DIR") as info:
        settings.check_socket_paths()
    assert str(settings.run_dir) in str(info.value)


def test_the_longest_run_dir_whose_socket_paths_fit_is_accepted() -> None:
    fits = SOCKET_PATH_MAX - len(LONGEST_SOCKET_SUFFIX)
    Settings(run_dir=_run_dir_of_length(fits)).check_socket_paths()
    with pytest.raises(ValueError, match="HIVE_RUN_DIR"):
        Settings(run_dir=_run_dir_of_length(fits + 1)).check_socket_paths()


def test_the_checked_suffix_covers_every_socket_path() -> None:
    settings = Settings(run_dir=Path("/run/hyperhive"))
    settings.check_socket_paths()
    longest_name = "a" * 9
    sockets = [
        settings.host_socket,
        settings.manager_socket,
        settings.agent_socket(longest_name),
        settings.harness_socket(longest_name),
    ]
    bound = len(str(settings.run_dir) + LONGEST_SOCKET_SUFFIX)
    assert max(len(str(s)) for s in sockets) == bound


def test_settings_are_read_from_hive_environment_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HIVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HIVE_RUN_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("HIVE_BACKEND", "nixos")
    monkeypatch.setenv("HIVE_DASHBOARD_PORT", "0")
    monkeypatch.setenv("HIVE_OPERATOR_PRONOUNS", "they/them")

    settings = Settings()

    assert settings.state_dir == tmp_path / "state"
    assert settings.run_dir == tmp_path / "run"
    assert settings.backend == "nixos"
    assert settings.dashboard_port == 0
    assert settings.operator_pronouns == "they/them"
    assert settings.db_path == tmp_path / "state" / "hive.sqlite"
    assert settings.agents_dir == tmp_path / "state" / "agents"
    assert settings.host_socket == tmp_path / "run" / "host.sock"
    assert settings.agent_socket("alice") == tmp_path / "run" / "agents" / "alice" / "agent.sock"


def test_defaults_apply_when_no_variable_is_set() -> None:
    settings = Settings()
    assert settings.backend == "local"
    assert settings.dashboard_host == "127.0.0.1"
    assert settings.dashboard_port == 7357
    assert settings.operator_pronouns == "she/her"
    assert settings.state_dir.is_absolute()
    assert settings.run_dir.is_absolute()


def test_relative_directories_are_made_absolute(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HIVE_STATE_DIR", "rel/state")
    assert Settings().state_dir == tmp_path / "rel" / "state"


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("HIVE_BACKEND", "docker"),
        ("HIVE_BACKEND", "LOCAL"),
        ("HIVE_DASHBOARD_PORT", "70000"),
        ("HIVE_DASHBOARD_PORT", "-1"),
        ("HIVE_DASHBOARD_PORT", "http"),
        ("HIVE_OPERATOR_PRONOUNS", "   "),
        ("HIVE_OPERATOR_PRONOUNS", "she\x1b[2J"),
        ("HIVE_OPERATOR_PRONOUNS", "x" * 41),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "hive.example.net:7357"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "http://hive.example.net"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "hive.example.net/"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "*.example.net"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "a,,b"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "0.0.0.0"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "[::]"),
        ("HIVE_DASHBOARD_ALLOWED_HOSTS", "-bad.example"),
        ("HIVE_CLI_NAME", ""),
        ("HIVE_CLI_NAME", "./dev\x1b[2J"),
        ("HIVE_CLI_NAME", "x" * 201),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError):
        Settings()


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.backend = "nixos"  # type: ignore[misc]


def test_allowed_hosts_are_split_on_commas_and_written_as_a_host_header_carries_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "HIVE_DASHBOARD_ALLOWED_HOSTS", " Hive.Example.net,192.0.2.7,fe80::1,hive.example.net"
    )
    assert Settings().dashboard_allowed_hosts == ("hive.example.net", "192.0.2.7", "[fe80::1]")
    monkeypatch.setenv("HIVE_DASHBOARD_ALLOWED_HOSTS", "")
    assert Settings().dashboard_allowed_hosts == ()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "hive.example.net"])
def test_a_bind_beyond_loopback_needs_allowed_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="HIVE_DASHBOARD_ALLOWED_HOSTS") as info:
        Settings(dashboard_host=host).check_dashboard_hosts()
    assert host in str(info.value)
    Settings(
        dashboard_host=host, dashboard_allowed_hosts="hive.example.net"
    ).check_dashboard_hosts()


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_a_loopback_bind_needs_no_allowed_hosts(host: str) -> None:
    Settings(dashboard_host=host).check_dashboard_hosts()


def test_the_banner_names_hive_core_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().cli_name == "hive-core"
    monkeypatch.setenv("HIVE_CLI_NAME", "./dev")
    assert Settings().cli_name == "./dev"


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"XDG_RUNTIME_DIR": "/run/user/1000"},
        {"HIVE_RUN_DIR": "/srv/hive/run"},
        {"hive_run_dir": "/srv/lower"},
        {"HIVE_RUN_DIR": "rel/run"},
        {"HIVE_RUN_DIR": "~/run"},
        {"HIVE_RUN_DIR": ""},
        {"RUNTIME_DIRECTORY": "/run/hyperhive"},
        {"RUNTIME_DIRECTORY": "/run/hyperhive:/run/other", "XDG_RUNTIME_DIR": "/run/user/0"},
        {"RUNTIME_DIRECTORY": "/run/hyperhive", "HIVE_RUN_DIR": "/srv/hive/run"},
        {"RUNTIME_DIRECTORY": "", "XDG_RUNTIME_DIR": "/run/user/1000"},
    ],
)
def test_the_cli_finds_the_run_dir_as_the_settings_do(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, env: dict[str, str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for var in ("XDG_RUNTIME_DIR", "hive_run_dir"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert run_dir.run_dir() == Settings().run_dir
    assert run_dir.host_socket(run_dir.run_dir()) == Settings().host_socket
    assert run_dir.run_dir(Path("x")) == Settings(run_dir=Path("x")).run_dir


def test_systemds_directories_are_the_defaults_under_a_unit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg-run"))
    assert Settings().state_dir == tmp_path / "xdg-state" / "hyperhive"
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/hyperhive:/var/lib/other")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/hyperhive:/run/other")
    settings = Settings()
    assert (settings.state_dir, settings.run_dir) == (
        Path("/var/lib/hyperhive"), Path("/run/hyperhive"),
    )  # fmt: skip
    assert run_dir.run_dir() == Path("/run/hyperhive")


def test_hive_variables_and_flags_win_over_systemds_directories(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/hyperhive")
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/hyperhive")
    monkeypatch.setenv("HIVE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("HIVE_RUN_DIR", str(tmp_path / "run"))
    assert Settings().state_dir == tmp_path / "state"
    assert Settings().run_dir == run_dir.run_dir() == tmp_path / "run"
    flagged = Settings(state_dir=tmp_path / "flag-state", run_dir=tmp_path / "flag-run")
    assert (flagged.state_dir, flagged.run_dir) == (tmp_path / "flag-state", tmp_path / "flag-run")


def test_an_empty_systemd_directory_is_no_directory(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg-state"))
    monkeypatch.setenv("STATE_DIRECTORY", "")
    assert Settings().state_dir == tmp_path / "xdg-state" / "hyperhive"


def test_the_cli_falls_back_to_a_system_units_run_dir_only_when_told_nothing(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    mine, system = tmp_path / "xdg" / "hyperhive", tmp_path / "system"
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "xdg"))
    system.mkdir()
    assert run_dir.client_run_dir(system=system) == mine, "no daemon anywhere: the default"
    run_dir.host_socket(system).touch()
    assert run_dir.client_run_dir(system=system) == system
    assert run_dir.client_run_dir(Path("/elsewhere"), system=system) == Path("/elsewhere")
    monkeypatch.setenv("HIVE_RUN_DIR", str(tmp_path / "told"))
    assert run_dir.client_run_dir(system=system) == tmp_path / "told"
    monkeypatch.delenv("HIVE_RUN_DIR")
    mine.mkdir(parents=True)
    run_dir.host_socket(mine).touch()
    assert run_dir.client_run_dir(system=system) == mine, "the user's own daemon first"
