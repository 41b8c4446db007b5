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
[stuck]                               # this agent's stuck thresholds (hive-wide defaults
no_progress_minutes = 30              # are hive-core's HIVE_STUCK_* settings)
repeat = 8
burn_tokens = 5000000
silent_minutes = 60
ping_pong_messages = 40
[budget]                              # this agent's limits (defaults: HIVE_BUDGET_*)
tokens_5h = 2000000
tokens_7d = 20000000
usd_7d = 50.0

On NixOS the agent's `agent.nix` may declare more servers (`hyperhive.extraMcpServers`),
which the container's configuration writes as JSON to `/etc/hyperhive/extra-mcp.json`
(`HIVE_EXTRA_MCP_FILE`): `{"<key>": {"command": …, "args": […], "env": {…},
"allowedTools": […]}}`. `load` merges them in; a key defined in both places is refused.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

OUR_SERVER = "hyperhive"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
ToolPattern = Annotated[str, Field(pattern=r"^[A-Za-z0-9_*-]{1,100}$")]


class ConfigError(ValueError):
    """agent.toml is unreadable or invalid; the message names the file and the field."""


def _command(value: str) -> str:
    if "/" in value and not value.startswith("/"):
        raise ValueError(
            f"{value!r} is a relative path; give an absolute path or a bare name, which is "
            "looked up on the agent's PATH"
        )
    return value


Command = Annotated[str, Field(min_length=1), AfterValidator(_command)]

MODEL_ALIASES = ("default", "opus", "sonnet", "haiku", "fable", "opusplan")
"""The model aliases Claude Code resolves itself; any other name must be a `claude-…` id."""
_MODEL_ID = re.compile(
    r"(?:[a-z]{2,4}\.)?(?:anthropic\.)?claude-[a-z0-9][a-z0-9._:@-]{0,88}"
    r"|arn:aws[a-z-]*:bedrock:[A-Za-z0-9:/._-]{1,80}"
)
"""A Claude model id: `claude-…`, Bedrock's `[us.]anthropic.claude-…` or an inference
profile's ARN, Vertex's `claude-…@date`."""
_CONTEXT = "[1m]"


def check_model(name: str) -> str:
    """`name` if Claude Code can run it: an alias or a `claude-…` id, either optionally
    with `[1m]` (the long context window).

    Raises:
        ValueError: anything else, naming what is accepted.
    """
    base = name.removesuffix(_CONTEXT)
    if len(name) <= 100 and (base in MODEL_ALIASES or _MODEL_ID.fullmatch(base)):
        return name
    raise ValueError(
        f"model {name[:40]!r} is not one Claude Code can run: give an alias "
        f"({', '.join(MODEL_ALIASES)}) or a claude-… model id (claude-sonnet-4-5, say, or "
        f"its Bedrock or Vertex id), either optionally followed by {_CONTEXT}"
    )


Model = Annotated[str, Field(max_length=100), AfterValidator(check_model)]
"""An MCP server's program: an absolute path, or a bare name looked up on PATH. A relative
path would depend on the directory Claude Code starts it in."""


class McpServer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Command
    args: list[str] = []
    env: dict[str, str] = {}
    allowed_tools: list[ToolPattern] = []


class ExtraMcpServer(BaseModel):
    """One server of the extra MCP servers file: the JSON the NixOS module writes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: Command
    args: list[str] = []
    env: dict[str, str] = {}
    allowed_tools: list[ToolPattern] = Field(default=[], alias="allowedTools")

    def server(self) -> McpServer:
        return McpServer(
            command=self.command, args=self.args, env=self.env, allowed_tools=self.allowed_tools
        )


_EXTRA_FILE = TypeAdapter(dict[str, ExtraMcpServer])


class StuckLimits(BaseModel):
    """`[stuck]`: per-agent stuck thresholds; an absent key keeps hive-core's setting."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    no_progress_minutes: Annotated[float, Field(gt=0, le=10_080)] | None = None
    repeat: Annotated[int, Field(ge=2, le=1000)] | None = None
    burn_tokens: Annotated[int, Field(ge=1000, le=10**12)] | None = None
    silent_minutes: Annotated[float, Field(gt=0, le=10_080)] | None = None
    ping_pong_messages: Annotated[int, Field(ge=2, le=100_000)] | None = None


class BudgetLimits(BaseModel):
    """`[budget]`: per-agent limits over the rolling windows; an absent key keeps hive-core's
    setting (`HIVE_BUDGET_*`), and none at all means no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tokens_5h: Annotated[int, Field(ge=1, le=10**12)] | None = None
    tokens_7d: Annotated[int, Field(ge=1, le=10**12)] | None = None
    usd_7d: Annotated[float, Field(gt=0, le=1e6)] | None = None


class AgentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Model | None = None
    max_turns: Annotated[int, Field(ge=1, le=10_000)] | None = None
    """Cap on model round trips per turn (`--max-turns`); none by default."""
    env: dict[str, str] = {}
    mcp_servers: dict[str, McpServer] = {}
    stuck: StuckLimits = StuckLimits()
    budget: BudgetLimits = BudgetLimits()


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


def load(path: Path | None, extra_mcp_file: Path | None = None) -> AgentConfig:
    """Read agent.toml and merge in the extra MCP servers file; a missing file (or None)
    means the defaults, or no extra servers.

    Raises:
        ConfigError: either file is invalid (not TOML or JSON, unknown fields, a server key
            that would shadow ours), or a server key is defined in both.
    """
    config = AgentConfig()
    text = _read(path)
    if text is not None:
        assert path is not None
        config = parse(text, str(path))
    extra = _read(extra_mcp_file)
    if extra is None:
        return config
    assert extra_mcp_file is not None
    return merge(config, parse_extra(extra, str(extra_mcp_file)), str(extra_mcp_file))


def _read(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


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
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        err["msg"] = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {loc}: {err['msg']}") from None
    for key in config.mcp_servers:
        if normalize_key(key) == OUR_SERVER:
            raise ConfigError(f"{where}: mcp_servers.{key} would shadow the {OUR_SERVER} server")
    return config


def parse_extra(text: str, where: str) -> dict[str, McpServer]:
    """Check the extra MCP servers file's JSON; `where` names it in errors.

    Raises:
        ConfigError: not JSON, not the expected shape, or a key that would shadow ours.
    """
    try:
        servers = _EXTRA_FILE.validate_python(json.loads(text))
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to read") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{where}: not JSON: {exc}") from None
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"])
        err["msg"] = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"{where}: {loc + ': ' if loc else ''}{err['msg']}") from None
    for key in servers:
        if normalize_key(key) == OUR_SERVER:
            raise ConfigError(f"{where}: {key} would shadow the {OUR_SERVER} server")
    return {key: server.server() for key, server in servers.items()}


def merge(config: AgentConfig, extra: dict[str, McpServer], where: str) -> AgentConfig:
    """agent.toml's config with the extra servers added; `where` names their file.

    Raises:
        ConfigError: a server key (as Claude Code normalises it) is in both.
    """
    ours = {normalize_key(key): key for key in config.mcp_servers}
    for key in extra:
        if normalize_key(key) in ours:
            raise ConfigError(
                f"{where}: mcp server {key} is also agent.toml's mcp_servers."
                f"{ours[normalize_key(key)]}; define it in one place"
            )
    return config.model_copy(update={"mcp_servers": {**config.mcp_servers, **extra}})
