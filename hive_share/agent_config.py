"""`agent.toml`: the per-agent harness settings in the agent's `applied` repo, checked by
the harness at every turn and by hive-core before it deploys a proposed commit.

model = "sonnet"                      # default model until one is picked at run time
max_turns = 50                        # optional cap on round trips per turn
[env]                                 # extra environment for claude
FOO = "bar"
[mcp_servers.matrix]                  # extra MCP servers
command = "/usr/bin/matrix-mcp"
args = ["--stdio"]
env = { TOKEN_FILE = "/state/matrix.token" }
allowed_tools = ["*"]                 # mapped to mcp__matrix__*
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

OUR_SERVER = "hyperhive"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ToolPattern = Annotated[str, Field(pattern=r"^[A-Za-z0-9_*-]{1,100}$")]


class ConfigError(ValueError):
    """agent.toml is unreadable or invalid; the message names the file and the field."""


class McpServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Annotated[str, Field(min_length=1)]
    args: list[str] = []
    env: dict[str, str] = {}
    allowed_tools: list[ToolPattern] = []


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Annotated[str, Field(pattern=r"^[A-Za-z0-9._:\[\]-]{1,100}$")] | None = None
    max_turns: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """Cap on model round trips per turn (`--max-turns`); none by default."""
    env: dict[str, str] = {}
    mcp_servers: dict[str, McpServer] = {}


def normalize_key(key: str) -> str:
    """Claude Code's server-key normalisation: anything outside `[A-Za-z0-9_-]` becomes `_`."""
    return _KEY_UNSAFE.sub("_", key)


def allowed_patterns(config: AgentConfig) -> list[str]:
    """`--allowedTools` entries for the extra servers: `mcp__<key>__<pattern>`."""
    return [
        f"mcp__{normalize_key(key)}__{pattern}"
        for key, server in config.mcp_servers.items()
        for pattern in server.allowed_tools
    ]


def load(path: Path | None) -> AgentConfig:
    """Read agent.toml; a missing file means the defaults.

    Raises:
        ConfigError: not TOML, unknown fields, or a server key that would shadow ours.
    """
    if path is None or not path.exists():
        return AgentConfig()
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return parse(text, str(path))


def parse(text: str, where: str) -> AgentConfig:
    """Check agent.toml's text; `where` names it in errors. hive-core validates a
    proposed config with this before deploying it, the harness at every turn.

    Raises:
        ConfigError: not TOML, unknown fields, or a server key that would shadow ours.
    """
    try:
        config = AgentConfig.model_validate(tomllib.loads(text))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{where}: {loc}: {err['msg']}") from None
    for key in config.mcp_servers:
        if normalize_key(key) == OUR_SERVER:
            raise ConfigError(f"{where}: mcp_servers.{key} would shadow the {OUR_SERVER} server")
    return config
