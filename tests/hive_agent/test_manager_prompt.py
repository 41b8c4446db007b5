"""The manager's prompt teaches the whole config surface, and what it names exists: the
agent.toml keys the harness reads, the `hyperhive.*` options harness-base.nix declares, the
flake wiring of the agent template, and which file applies on which backend."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hive_agent.prompts import render_role_prompt
from hive_share.agent_config import AgentConfig, BudgetLimits, McpServer, StuckLimits

ROOT = Path(__file__).resolve().parents[2]
HARNESS_BASE = (ROOT / "nix" / "templates" / "harness-base.nix").read_text(encoding="utf-8")
TEMPLATE = ROOT / "hive_core" / "templates" / "agent"


@pytest.fixture(scope="module")
def prompt() -> str:
    return render_role_prompt("manager", "hm1nd", "she/her")


def _section(prompt: str, title: str) -> str:
    start = prompt.index(f"## {title}\n")
    end = prompt.find("\n## ", start + 1)
    return prompt[start : end if end > 0 else None]


def test_each_config_file_says_which_backend_it_applies_on(prompt: str) -> None:
    section = _section(prompt, "What an agent's config holds")
    assert "`agent.toml`, **both backends**" in section
    assert "`agent.nix`, **NixOS backend only**" in section
    assert "`flake.nix`, **NixOS backend only**" in section
    assert "`/meta`" in section  # how the manager tells the backends apart


def test_the_agent_toml_keys_it_names_are_the_harness_settings(prompt: str) -> None:
    section = _section(prompt, "What an agent's config holds")
    block = section[section.index("```toml") : section.index("```", section.index("```toml") + 3)]
    assert "[mcp_servers.notes]" in block
    keys = set(re.findall(r"^\s*(\w+) =", block, re.M))
    assert keys and keys <= set(McpServer.model_fields)
    # Every key of agent.toml is taught: a new one needs a line in the prompt.
    assert set(AgentConfig.model_fields) == {
        "model", "max_turns", "env", "mcp_servers", "stuck", "budget"
    }  # fmt: skip
    for shown in ("`model`", "`max_turns`", "`[env]`", "[mcp_servers.", "`[stuck]`", "`[budget]`"):
        assert shown in section
    for table in (StuckLimits, BudgetLimits):
        for key in table.model_fields:
            assert f"`{key}`" in section


def test_the_nix_options_it_names_are_declared(prompt: str) -> None:
    named = set(re.findall(r"hyperhive\.(\w+)", prompt))
    assert {"extraMcpServers", "name", "port"} <= named
    for option in named:
        assert re.search(rf"^    {option} = mkOption", HARNESS_BASE, re.M), option
    example = prompt[prompt.index("hyperhive.extraMcpServers.matrix = {") :]
    example = example[: example.index("};")]
    for attribute in re.findall(r"^\s+(\w+) =", example, re.M):
        assert re.search(rf"^      {attribute} = mkOption", HARNESS_BASE, re.M), attribute


def test_flake_inputs_reach_agent_nix_as_the_template_wires_them(prompt: str) -> None:
    flake = (TEMPLATE / "flake.nix").read_text(encoding="utf-8")
    agent_nix = (TEMPLATE / "agent.nix").read_text(encoding="utf-8")
    assert "_module.args.flakeInputs = inputs;" in flake
    assert "flakeInputs," in agent_nix
    section = _section(prompt, "What an agent's config holds")
    assert "inputs.matrix-mcp.url" in section and "flakeInputs.matrix-mcp" in section
    assert "{ config, lib, pkgs, flakeInputs, ... }:" in section
