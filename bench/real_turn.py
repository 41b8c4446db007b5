"""A trivial turn of the real Claude Code CLI through the hive, against the bare CLI, both
on the scripted fake Anthropic API (`tests/fake_anthropic.py`).

- baseline: `claude -p hi --output-format stream-json --verbose` (and the harness's model,
  tools and environment), run directly: spawn → exit.
- value: an operator `send` to an agent whose harness runs the same CLI → the turn's end
  (`turn_status` long-poll on its harness socket).
- the MCP floor: the bare run again with `--mcp-config` naming `bench/mcp_floor.py`, a
  standard-library server that answers with the agent's own MCP `initialize` and
  `tools/list` (asked from its harness first): what the CLI itself spends connecting an
  MCP server and taking in these tools, whoever serves them.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench.broker import BenchError, spawn_agents
from bench.daemon import Daemon, running_daemon
from bench.report import note
from bench.turn import describe_server
from hive_agent.claude import BUILTIN_TOOLS, CLAUDE_ENV
from hive_agent.model import DEFAULT_MODEL
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, new_idempotency_key
from tests.fake_anthropic import FakeAnthropic, Reply, Seen, text

REPO = Path(__file__).resolve().parent.parent
PINNED_CLAUDE = REPO / ".tools" / "claude" / "node_modules" / ".bin" / "claude"
CLAUDE_BIN_ENV = "HIVE_TEST_CLAUDE_BIN"
AGENT = "r0"
REPLY = "ok"
TURN_TIMEOUT = 60.0
"""Bound on one turn, through the hive or bare."""
WARMUP = 1
FLOOR_SERVER = Path(__file__).resolve().with_name("mcp_floor.py")


def claude_bin() -> str | None:
    """The real CLI: `$HIVE_TEST_CLAUDE_BIN`, else the one `./dev` pins; None if neither runs."""
    for candidate in (os.environ.get(CLAUDE_BIN_ENV), str(PINNED_CLAUDE)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _script(seen: Seen) -> Reply:
    return text(REPLY)


@dataclass(frozen=True)
class Turns:
    hive: list[float]
    bare: list[float]
    mcp_floor: list[float]


def hive_env(fake: FakeAnthropic, home: Path, claude: str) -> dict[str, str]:
    """What the daemon (and so its harnesses) and the bare CLI get on top of the bench's."""
    return {
        "HIVE_CLAUDE_BIN": claude,
        "ANTHROPIC_BASE_URL": fake.url,
        "ANTHROPIC_API_KEY": "bench-not-a-key",  # the harness's login probe takes it as-is
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "HOME": str(home),
    }


async def _bare(claude: str, env: dict[str, str], cwd: Path, *extra: str) -> float:
    """One bare `claude -p hi` (plus `extra` flags), spawn → exit; checks it printed the
    fake's reply."""
    argv = [
        claude, "-p", "hi", "--output-format", "stream-json", "--verbose",
        "--model", DEFAULT_MODEL, "--tools", ",".join(BUILTIN_TOOLS), *extra,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        async with asyncio.timeout(TURN_TIMEOUT):
            out, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    took = time.perf_counter() - start
    if proc.returncode != 0 or f'"result":"{REPLY}"' not in out.decode(errors="replace"):
        raise BenchError(
            f"the bare claude exited with {proc.returncode}: {err.decode(errors='replace')[-500:]}"
        )
    init = json.loads(out.split(b"\n", 1)[0])
    servers = {s.get("name"): s.get("status") for s in init.get("mcp_servers", [])}
    if extra and servers != {"hyperhive": "connected"}:
        raise BenchError(f"the MCP floor server did not connect: {servers}")
    return took


async def _hive_turn(daemon: Daemon, operator: HiveClient, harness: HiveClient, n: int) -> float:
    """Operator `send` → the harness's `turn_status` says turn `n` ended, successfully."""
    request = rq.Send(
        cmd="send", to=AGENT, body=f"bench turn {n}", idempotency_key=new_idempotency_key()
    )
    start = time.perf_counter()
    await operator.call(request, rs.Sent)
    status = rq.TurnStatus(cmd="turn_status", after_turns=n, wait_seconds=TURN_TIMEOUT)
    state = await harness.call(status, rs.HarnessState)
    took = time.perf_counter() - start
    if state.turns_run < n or state.last_result != "success":
        raise BenchError(
            f"{AGENT}'s turn {n}: {state.turns_run} turns run, last {state.last_result}"
        )
    return took


async def _floor_config(daemon: Daemon, root: Path) -> Path:
    """An `--mcp-config` naming the floor server, loaded with the agent's own MCP server's
    description (once its harness is up: after its first turn)."""
    description = await describe_server(daemon.harness_socket(AGENT).with_name("mcp.sock"))
    described = root / "mcp-floor.json"
    described.write_text(json.dumps(description))
    server = {"command": sys.executable, "args": ["-I", "-S", str(FLOOR_SERVER), str(described)]}
    config = root / "mcp-floor-config.json"
    config.write_text(json.dumps({"mcpServers": {"hyperhive": server}}))
    return config


async def _rounds(
    daemon: Daemon, claude: str, env: dict[str, str], cwd: Path, root: Path, count: int
) -> Turns:
    async with asyncio.timeout((WARMUP + count) * 3 * TURN_TIMEOUT):
        await spawn_agents(daemon.host_socket, [AGENT])
        result = Turns([], [], [])
        async with (
            HiveClient(daemon.host_socket) as operator,
            HiveClient(daemon.harness_socket(AGENT)) as harness,
        ):
            floor_flags: list[str] = []
            for n in range(1, WARMUP + count + 1):
                bare = await _bare(claude, env, cwd)
                hive = await _hive_turn(daemon, operator, harness, n)
                if not floor_flags:
                    config = await _floor_config(daemon, root)
                    floor_flags = ["--mcp-config", str(config), "--strict-mcp-config"]
                floor = await _bare(claude, env, cwd, *floor_flags)
                if n > WARMUP:
                    result.bare.append(bare)
                    result.hive.append(hive)
                    result.mcp_floor.append(floor)
    return result


def turns(count: int) -> Turns | None:
    """`count` interleaved rounds (after one warm-up) of a bare turn and a hive turn; None
    (with a note) when the real CLI is not installed."""
    claude = claude_bin()
    if claude is None:
        note(
            f"skipped claude_turn_*: no Claude Code CLI at ${CLAUDE_BIN_ENV} or {PINNED_CLAUDE} "
            "(./dev test installs it)"
        )
        return None
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hb"))
    try:
        home, cwd = root / "home", root / "cwd"
        home.mkdir()
        cwd.mkdir()
        with FakeAnthropic(_script) as fake:
            env = hive_env(fake, home, claude)
            bare_env = {k: v for k, v in os.environ.items() if not k.startswith("HIVE_")}
            bare_env.update(env, **CLAUDE_ENV, CLAUDE_CONFIG_DIR=str(root / "claude-config"))
            with running_daemon(env) as daemon:
                return asyncio.run(_rounds(daemon, claude, bare_env, cwd, root, count))
    finally:
        shutil.rmtree(root, ignore_errors=True)
