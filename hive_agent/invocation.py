"""What one claude run is built from: the prompt and model, the role prompt and settings
files, the MCP config (the `hyperhive` server over HTTP, or its relay, and agent.toml's
servers, written to MCP_CONFIG_FILE), the allowed tools and the environment."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from hive_agent import prompts, relay
from hive_agent.claude import CLAUDE_ENV, Invocation
from hive_agent.mcp_http import Endpoint
from hive_agent.settings import HarnessSettings
from hive_share import agent_config

MCP_CONFIG_FILE = "hyperhive-mcp.json"


def claude_env(
    base: Mapping[str, str], config: agent_config.AgentConfig, state: Path
) -> dict[str, str]:
    """The harness's environment, then agent.toml's, then what claude must run with."""
    env = dict(base)
    env.update(config.env)
    env.update(CLAUDE_ENV)
    env.setdefault("CLAUDE_CONFIG_DIR", str(state / ".claude"))
    return env


def our_server(mcp_socket: Path, endpoint: Endpoint | None) -> dict[str, object]:
    """How claude reaches the `hyperhive` server: over HTTP at `endpoint` with its bearer
    header, or, when the harness has no port (`endpoint` None), through the stdio relay to
    `mcp_socket`."""
    if endpoint is not None:
        return {"type": "http", "url": endpoint.url, "headers": endpoint.headers}
    return {
        "command": relay.command()[0],
        "args": relay.command()[1:],
        "env": {"HIVE_MCP_SOCKET": str(mcp_socket)},
    }


def write_mcp_config(
    state: Path, mcp_socket: Path, endpoint: Endpoint | None, config: agent_config.AgentConfig
) -> Path:
    """Write `--mcp-config` (when it changed; owner-only: it holds the bearer secret): our
    server, then agent.toml's servers.

    Raises:
        OSError: the file could not be written.
    """
    servers: dict[str, object] = {agent_config.OUR_SERVER: our_server(mcp_socket, endpoint)}
    for key, server in config.mcp_servers.items():
        servers[key] = {"command": server.command, "args": server.args, "env": server.env}
    path = state / MCP_CONFIG_FILE
    prompts.write_if_changed(path, json.dumps({"mcpServers": servers}, indent=2), mode=0o600)
    return path


def build(
    settings: HarnessSettings,
    env: Mapping[str, str],
    config: agent_config.AgentConfig,
    mcp_socket: Path,
    endpoint: Endpoint | None,
    prompt: str,
    model: str,
    continue_session: bool,
) -> Invocation:
    """One run of `prompt`, its files written first.

    Raises:
        OSError: the role prompt or the MCP config could not be written.
    """
    return Invocation(
        claude_bin=settings.claude_bin,
        prompt=prompt,
        model=model,
        continue_session=continue_session,
        settings=prompts.settings_path(),
        role_prompt=prompts.write_role_prompt(
            settings.state, settings.role, settings.agent_name, settings.operator_pronouns
        ),
        mcp_config=write_mcp_config(settings.state, mcp_socket, endpoint, config),
        allowed_tools=["mcp__hyperhive", *agent_config.allowed_patterns(config)],
        cwd=settings.state,
        env=claude_env(env, config, settings.state),
        max_turns=config.max_turns,
    )
