"""The extra MCP servers file (`HIVE_EXTRA_MCP_FILE`, written by the NixOS templates) merged
with agent.toml: what the harness runs with, and what its start check reports."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from hive_agent import start_check
from hive_agent.model import ModelStore
from hive_agent.settings import HarnessSettings
from hive_core.containers.backend import AgentSpec
from hive_core.containers.local import harness_env
from hive_share.agent_config import ConfigError, McpServer, allowed_patterns, load

EXTRA_SERVER = Path(__file__).resolve().parents[1] / "extra_mcp_server.py"


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _extra(tmp_path: Path, servers: object) -> Path:
    path = tmp_path / "extra-mcp.json"
    path.write_text(json.dumps(servers), encoding="utf-8")
    return path


def test_the_extra_servers_are_merged_with_agent_toml(tmp_path: Path) -> None:
    toml = _toml(tmp_path, 'model = "sonnet"\n[mcp_servers.notes]\ncommand = "notes"\n')
    extra = _extra(
        tmp_path,
        {
            "matrix.chat": {
                "command": "/nix/store/x/bin/matrix-mcp",
                "args": ["--stdio"],
                "env": {"TOKEN_FILE": "/state/matrix.token"},
                "allowedTools": ["send", "read_*"],
            },
            "bare": {"command": "bare-mcp"},
        },
    )

    config = load(toml, extra)

    assert config.model == "sonnet"
    assert config.mcp_servers == {
        "notes": McpServer(command="notes"),
        "matrix.chat": McpServer(
            command="/nix/store/x/bin/matrix-mcp",
            args=["--stdio"],
            env={"TOKEN_FILE": "/state/matrix.token"},
            allowed_tools=["send", "read_*"],
        ),
        "bare": McpServer(command="bare-mcp"),
    }
    assert allowed_patterns(config) == ["mcp__matrix_chat__send", "mcp__matrix_chat__read_*"]


def test_a_missing_extra_file_or_none_adds_no_server(tmp_path: Path) -> None:
    toml = _toml(tmp_path, '[mcp_servers.notes]\ncommand = "notes"\n')
    assert load(toml, tmp_path / "absent.json") == load(toml, None) == load(toml)
    assert list(load(toml, None).mcp_servers) == ["notes"]


def test_the_extra_file_alone_works_without_agent_toml(tmp_path: Path) -> None:
    extra = _extra(tmp_path, {"solo": {"command": "solo"}})
    assert load(tmp_path / "agent.toml", extra).mcp_servers == {"solo": McpServer(command="solo")}


def test_a_key_in_both_files_is_refused_naming_both(tmp_path: Path) -> None:
    toml = _toml(tmp_path, '[mcp_servers.matrix]\ncommand = "a"\n')
    extra = _extra(tmp_path, {"matrix": {"command": "b"}})
    with pytest.raises(ConfigError) as info:
        load(toml, extra)
    assert str(extra) in str(info.value)
    assert "mcp_servers.matrix" in str(info.value)
    assert "one place" in str(info.value)


def test_keys_that_normalise_alike_are_refused_too(tmp_path: Path) -> None:
    toml = _toml(tmp_path, '[mcp_servers."my.srv"]\ncommand = "a"\n')
    extra = _extra(tmp_path, {"my_srv": {"command": "b"}})
    with pytest.raises(ConfigError, match=r"my_srv is also agent.toml's mcp_servers.my.srv"):
        load(toml, extra)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{not json", "not JSON"),
        ('["a list"]', "dict"),
        ('{"srv": {"args": []}}', "srv.command"),
        ('{"srv": {"command": ""}}', "srv.command"),
        ('{"srv": {"command": "x", "allowed_tools": ["*"]}}', "srv.allowed_tools"),
        ('{"srv": {"command": "x", "allowedTools": ["a b"]}}', "srv.allowedTools"),
        ('{"srv": {"command": "x", "env": {"A": 1}}}', "srv.env.A"),
        ('{"hyperhive": {"command": "evil"}}', "shadow the hyperhive server"),
    ],
)
def test_a_malformed_extra_file_is_a_config_error_naming_the_file(
    tmp_path: Path, text: str, where: str
) -> None:
    extra = tmp_path / "extra-mcp.json"
    extra.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load(None, extra)
    assert str(info.value).startswith(f"{extra}: ")
    assert where in str(info.value)


def test_an_extra_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    extra = tmp_path / "extra-mcp.json"
    extra.write_bytes(b'{"\xff": {}}')
    with pytest.raises(ConfigError, match=str(extra)):
        load(None, extra)


def _harness_env(extra: str | None) -> dict[str, str]:
    env = {"HIVE_AGENT_NAME": "alice", "HIVE_SOCKET": "/s", "HIVE_HARNESS_SOCKET": "/h"}
    if extra is not None:
        env["HIVE_EXTRA_MCP_FILE"] = extra
    return env


def test_the_setting_defaults_to_the_containers_path_and_empty_means_none(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("HIVE_EXTRA_MCP_FILE", raising=False)
    for name, value in _harness_env(None).items():
        monkeypatch.setenv(name, value)
    assert HarnessSettings().extra_mcp_file == Path("/etc/hyperhive/extra-mcp.json")
    monkeypatch.setenv("HIVE_EXTRA_MCP_FILE", "/elsewhere.json")
    assert HarnessSettings().extra_mcp_file == Path("/elsewhere.json")
    monkeypatch.setenv("HIVE_EXTRA_MCP_FILE", "")
    assert HarnessSettings().extra_mcp_file is None


def test_the_local_backend_reads_no_extra_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = AgentSpec(
        name="alice",
        role="agent",
        agent_dir=tmp_path / "alice",
        socket=tmp_path / "agent.sock",
        harness_socket=tmp_path / "harness.sock",
        web_port=0,
        operator_pronouns="she/her",
    )
    env = harness_env({"HIVE_EXTRA_MCP_FILE": "/etc/hyperhive/extra-mcp.json"}, spec)
    assert env["HIVE_EXTRA_MCP_FILE"] == ""
    for name in [n for n in os.environ if n.startswith("HIVE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("HIVE_"):
            monkeypatch.setenv(name, value)
    assert HarnessSettings().extra_mcp_file is None


async def test_the_start_check_reports_a_clash(tmp_path: Path) -> None:
    toml = _toml(tmp_path, '[mcp_servers.matrix]\ncommand = "a"\n')
    extra = _extra(tmp_path, {"matrix": {"command": "b"}})
    report = await start_check.check(toml, extra, ModelStore(tmp_path), {}, tmp_path)
    assert len(report.problems) == 1
    assert report.problems[0].startswith(f"config: {extra}: mcp server matrix is also")


async def test_the_start_check_probes_the_extra_files_servers(tmp_path: Path) -> None:
    extra = _extra(
        tmp_path,
        {
            "works": {"command": sys.executable, "args": [str(EXTRA_SERVER)]},
            "broken": {"command": str(tmp_path / "no-such-mcp")},
        },
    )
    env = {"PATH": "/usr/bin:/bin"}
    report = await start_check.check(None, extra, ModelStore(tmp_path), env, tmp_path)
    assert report.model == "opus"
    assert len(report.problems) == 1
    assert report.problems[0].startswith("mcp server broken did not start")
