"""Harness settings, handed over by hive-core's container backend as `HIVE_*` variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hive_share.names import validate_agent_name


class HarnessSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HIVE_", frozen=True, extra="ignore")

    agent_name: str
    """This agent's name (hive-core decides it; the harness only displays it)."""
    role: Literal["agent", "manager"] = "agent"
    socket: Path
    """The agent's socket in hive-core."""
    harness_socket: Path
    """Where this harness answers hive-core's pings."""
    state: Path = Field(default_factory=Path.cwd)
    """The agent's durable state dir."""
    web_port: int = Field(default=0, ge=0, le=65535)
    """The agent page's port (0: no page)."""
    web_host: str = "127.0.0.1"
    """The agent page's bind address: where the dashboard listens."""
    web_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """Host names (no port) the page answers to besides loopback and its bind address: the
    dashboard's allowed hosts (comma-separated in the environment)."""
    dashboard_url: str | None = None
    """The dashboard's address, for the page's link back."""
    operator_pronouns: str = "she/her"
    claude_bin: str = "claude"
    """The Claude Code CLI: a path, or a name looked up on PATH."""
    agent_config: Path | None = None
    """This agent's `agent.toml` (model, env, extra MCP servers); absent means defaults."""
    extra_mcp_file: Path | None = Path("/etc/hyperhive/extra-mcp.json")
    """Extra MCP servers from the NixOS configuration (JSON), merged with agent.toml's; a
    missing file means none, and an empty value reads no file."""
    parent_pid: int | None = None
    """Set by the local backend: the harness exits when that process dies."""
    nice: int = Field(default=5, ge=0, le=19)
    """How much lower than hive-core's the CPU priority of the harness, and so of its claude
    turns, is: a burst of turns on a small machine never starves hive-core and its
    dashboard. 0 keeps the priority the harness was started with."""

    @field_validator("extra_mcp_file", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("web_allowed_hosts", mode="before")
    @classmethod
    def _host_list(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @field_validator("agent_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_agent_name(value)
