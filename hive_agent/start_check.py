"""What a harness checks before it reports itself alive: that its `agent.toml` (with the
extra MCP servers file, `HIVE_EXTRA_MCP_FILE`) loads, the model it will run is valid, and
every extra MCP server it declares answers `initialize`.

A deploy is verified on this report: hive-core rolls a new config back when the
restarted harness names a problem. On an ordinary start the problems are only logged
and reported; the agent still runs (Claude Code starts without a failed server).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from hive_agent.model import InvalidModel, ModelStore
from hive_share import agent_config
from hive_share.models import ModelSource

logger = logging.getLogger(__name__)

PROBE_TIMEOUT = 15.0
"""Seconds an extra MCP server has to start and answer `initialize`."""
MAX_PROBLEM = 500


@dataclass
class StartReport:
    model: str | None = None
    model_source: ModelSource | None = None
    problems: list[str] = field(default_factory=list)


async def check(
    config_path: Path | None,
    extra_mcp_file: Path | None,
    models: ModelStore,
    env: Mapping[str, str],
    cwd: Path,
) -> StartReport:
    """Load the config, resolve the model and start each extra MCP server once."""
    report = StartReport()
    try:
        config = agent_config.load(config_path, extra_mcp_file)
    except agent_config.ConfigError as exc:
        report.problems.append(_cut(f"config: {exc}"))
        return report
    try:
        report.model = models.get(config.model)
        report.model_source = models.source(config.model)
    except InvalidModel as exc:
        report.problems.append(_cut(f"model: {exc}"))
    if config.mcp_servers:
        server_env = {**env, **config.env}
        found = dict.fromkeys(config.mcp_servers, "")

        async def probe(key: str, server: agent_config.McpServer) -> None:
            found[key] = await _probe(key, server, server_env, cwd)

        async with anyio.create_task_group() as probes:  # all at once, each bounded
            for key, server in config.mcp_servers.items():
                probes.start_soon(probe, key, server)
        report.problems += [p for p in found.values() if p]
    for problem in report.problems:
        logger.warning("start check: %s", problem)
    return report


async def _probe(
    key: str, server: agent_config.McpServer, env: Mapping[str, str], cwd: Path
) -> str:
    """Start one MCP server, complete its handshake and stop it; "" when it worked."""
    # Imported here: the SDK's client costs a second to import, and only agents with
    # extra servers need it.
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=server.command, args=server.args, env={**env, **server.env}, cwd=cwd
    )
    try:
        with anyio.fail_after(PROBE_TIMEOUT):
            async with (
                stdio_client(params, errlog=sys.stderr) as (read, write),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
    except TimeoutError:
        return f"mcp server {key} did not answer initialize within {PROBE_TIMEOUT:.0f}s"
    except Exception as exc:  # noqa: BLE001 - whatever the server or SDK raised is reported
        return _cut(f"mcp server {key} did not start: {_describe(exc)}")
    return ""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        return _describe(exc.exceptions[0])
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _cut(text: str) -> str:
    return text if len(text) <= MAX_PROBLEM else text[: MAX_PROBLEM - 1] + "…"
