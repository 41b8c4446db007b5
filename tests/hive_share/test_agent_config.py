from __future__ import annotations

import re
from pathlib import Path

import pytest

from hive_share.agent_config import (
    AgentConfig,
    ConfigError,
    McpServer,
    allowed_patterns,
    load,
)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_missing_file_means_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path / "agent.toml")
    assert config == AgentConfig()
    assert config.model is None
    assert config.max_turns is None
    assert config.env == {}
    assert config.mcp_servers == {}


def test_no_path_means_the_defaults() -> None:
    assert load(None) == AgentConfig()


def test_a_valid_file_is_parsed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
model = "sonnet"
max_turns = 50
[env]
FOO = "bar"
[mcp_servers.matrix]
command = "/usr/bin/matrix-mcp"
args = ["--stdio"]
env = { TOKEN_FILE = "/state/matrix.token" }
allowed_tools = ["*"]
""",
    )
    config = load(path)
    assert config.model == "sonnet"
    assert config.max_turns == 50
    assert config.env == {"FOO": "bar"}
    assert config.mcp_servers == {
        "matrix": McpServer(
            command="/usr/bin/matrix-mcp",
            args=["--stdio"],
            env={"TOKEN_FILE": "/state/matrix.token"},
            allowed_tools=["*"],
        )
    }
    assert allowed_patterns(config) == ["mcp__matrix__*"]


def test_allowed_patterns_use_the_normalised_server_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[mcp_servers."my-srv.v2 x"]
command = "srv"
allowed_tools = ["shout", "get_*"]
[mcp_servers.plain]
command = "plain"
""",
    )
    assert allowed_patterns(load(path)) == ["mcp__my-srv_v2_x__shout", "mcp__my-srv_v2_x__get_*"]


def test_an_unknown_top_level_field_names_the_file_and_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, 'modle = "sonnet"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert "modle" in str(info.value)


def test_an_unknown_server_field_names_its_full_location(tmp_path: Path) -> None:
    path = _write(tmp_path, '[mcp_servers.matrix]\ncommand = "x"\ncomand = "y"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert "mcp_servers.matrix.comand" in str(info.value)


def test_a_file_that_is_not_toml_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, 'model = "sonnet\n')
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load(path)


def test_a_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b'model = "\xff"\n')
    with pytest.raises(ConfigError, match=re.escape(str(path))):
        load(path)


def test_a_server_key_that_would_shadow_ours_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[mcp_servers.hyperhive]\ncommand = "evil"\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert "mcp_servers.hyperhive" in str(info.value)


@pytest.mark.parametrize("pattern", ["a b", "", "mcp__x__y z", "a/b", "x" * 101])
def test_a_bad_tool_pattern_is_refused(tmp_path: Path, pattern: str) -> None:
    path = _write(tmp_path, f'[mcp_servers.srv]\ncommand = "x"\nallowed_tools = ["{pattern}"]\n')
    with pytest.raises(ConfigError) as info:
        load(path)
    assert str(path) in str(info.value)
    assert "mcp_servers.srv.allowed_tools" in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        'model = "a b"\n',
        "max_turns = 0\n",
        "max_turns = 10001\n",
        '[mcp_servers.srv]\ncommand = ""\n',
        "[mcp_servers.srv]\nargs = []\n",
        "[env]\nFOO = 1\n",
    ],
)
def test_an_invalid_value_is_a_config_error(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError):
        load(_write(tmp_path, text))
