"""Benchmarks of the harness's turn path, up to the moment claude starts.

- `mcp_startup`: `python -I -S …/relay.py` (the relay claude launches every
  turn) against a warm `McpHost` in the bench process: spawn → `initialize` reply,
  and spawn → `tools/list` reply. Interleaved with its baselines, `python -c pass`
  and `python -c "import mcp.server"`, each spawn → exit.
- `claude_spawn_floor`: the bench itself spawning the fake claude, spawn → its timestamp.
- `harness_wake`: against a live daemon whose harnesses run the fake claude: an
  operator `send` → the fake claude's timestamp, one turn at a time.

The fake claude is a bash script: it appends `$EPOCHREALTIME` (wall clock, µs, no
fork) to `$BENCH_SPAWN_LOG`, prints one successful stream-json result line and
exits, so a turn costs the harness nothing but its own work.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from bench.broker import PHASE_TIMEOUT, BenchError, spawn_agents
from bench.daemon import Daemon
from bench.report import note
from hive_agent import relay
from hive_agent.mcp_host import McpHost
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, new_idempotency_key

PYTHON_PASS = [sys.executable, "-c", "pass"]
SDK_IMPORT = [sys.executable, "-c", "import mcp.server"]
RELAY = relay.command()
"""The command `hive_agent.invocation` writes into claude's `--mcp-config`."""

STEP_TIMEOUT = 30.0
"""Bound on one spawn, one MCP reply, one turn."""
WARMUP = 1
"""Rounds run and discarded first: page cache, the host's first session."""
SETTLE = 0.1
"""Pause after a turn ends before the next send, so the harness has acked its items
and parked its next `recv` (one ack, one recv: a few ms) when the send lands."""
SPAWN_LOG_ENV = "BENCH_SPAWN_LOG"

INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "1"},
    },
}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
AGENT_TOOLS = frozenset({"send", "recv", "set_status", "whoami"})

RESULT_LINE = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "result": "ok",
    "usage": {},
}
FAKE_CLAUDE = f"""#!/bin/bash
# The bench's claude: note when it started, then end the turn at once.
printf '%s\\n' "$EPOCHREALTIME" >> "${SPAWN_LOG_ENV}"
printf '%s\\n' '{json.dumps(RESULT_LINE, separators=(",", ":"))}'
"""


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode() + b"\n"


# -- the MCP relay --------------------------------------------------------------


@dataclass(frozen=True)
class McpStartup:
    """Seconds per round, warm-up excluded."""

    python: list[float]
    """`python -c pass`, spawn → exit."""
    sdk_import: list[float]
    """`python -c "import mcp.server"`, spawn → exit."""
    ready: list[float]
    """The relay, spawn → `initialize` reply on its stdout."""
    listed: list[float]
    """The relay, spawn → `tools/list` reply (after `notifications/initialized`)."""


async def _spawn_to_exit(argv: list[str]) -> float:
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(STEP_TIMEOUT):
        _, err = await proc.communicate()
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(f"{argv[1:]} exited with {proc.returncode}: {err.decode()[-500:]}")
    return elapsed


async def _reply(proc: asyncio.subprocess.Process, request_id: int) -> dict[str, Any]:
    """The next JSON-RPC message on the relay's stdout that answers `request_id`."""
    assert proc.stdout is not None
    async with asyncio.timeout(STEP_TIMEOUT):
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if isinstance(message, dict) and message.get("id") == request_id:
                if "result" not in message:
                    raise BenchError(f"MCP request {request_id} failed: {message}")
                return message
    await proc.wait()
    err = b"" if proc.stderr is None else await proc.stderr.read()
    raise BenchError(
        f"the relay exited with {proc.returncode} before answering request {request_id}: "
        f"{err.decode(errors='replace')[-500:]}"
    )


async def _relay_handshake(env: dict[str, str]) -> tuple[float, float]:
    """`(spawn → initialize reply, spawn → tools/list reply)` of one relay process."""
    start = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *RELAY,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(_line(INITIALIZE))  # claude writes it as soon as it has spawned us
        await proc.stdin.drain()
        init = await _reply(proc, 1)
        ready = time.perf_counter() - start
        proc.stdin.write(_line(INITIALIZED) + _line(TOOLS_LIST))
        await proc.stdin.drain()
        tools = await _reply(proc, 2)
        listed = time.perf_counter() - start
        proc.stdin.close()  # the relay half-closes the socket, the host ends the session
        async with asyncio.timeout(STEP_TIMEOUT):
            _, err = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if proc.returncode != 0:
        raise BenchError(f"the relay exited with {proc.returncode}: {err.decode()[-500:]}")
    server = init["result"].get("serverInfo", {}).get("name")
    names = {t.get("name") for t in tools["result"].get("tools", [])}
    if server != "hyperhive" or not AGENT_TOOLS.issubset(names):
        raise BenchError(f"unexpected MCP server {server!r} with tools {sorted(map(str, names))}")
    return ready, listed


async def describe_server(mcp_socket: Path) -> dict[str, Any]:
    """The `initialize` and `tools/list` results of the MCP server at `mcp_socket`, asked
    through the relay as claude asks them."""
    proc = await asyncio.create_subprocess_exec(
        *RELAY,
        env=dict(os.environ, HIVE_MCP_SOCKET=str(mcp_socket)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdin is not None
    try:
        proc.stdin.write(_line(INITIALIZE) + _line(INITIALIZED) + _line(TOOLS_LIST))
        await proc.stdin.drain()
        init = await _reply(proc, 1)
        tools = await _reply(proc, 2)
        proc.stdin.close()
        async with asyncio.timeout(STEP_TIMEOUT):
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if "result" not in init or "result" not in tools:
        raise BenchError(f"the MCP server at {mcp_socket} answered {init!r}, {tools!r}")
    return {"initialize": init["result"], "tools": tools["result"]}


async def mcp_startup(directory: Path, rounds: int) -> McpStartup:
    """Interleaved rounds of the two python baselines and the relay handshake."""
    async with anyio.create_task_group() as tasks:  # the host's listener and sessions
        host = McpHost(
            directory / "mcp.sock", "agent", directory / "no-core.sock", lambda _: None, tasks
        )
        started = time.perf_counter()
        await host.start()
        note(f"warm MCP host up in {time.perf_counter() - started:.2f}s (imports the SDK)")
        env = dict(os.environ, HIVE_MCP_SOCKET=str(host.path))
        result = McpStartup([], [], [], [])
        try:
            for i in range(WARMUP + rounds):
                python = await _spawn_to_exit(PYTHON_PASS)
                sdk = await _spawn_to_exit(SDK_IMPORT)
                ready, listed = await _relay_handshake(env)
                if i >= WARMUP:
                    result.python.append(python)
                    result.sdk_import.append(sdk)
                    result.ready.append(ready)
                    result.listed.append(listed)
        finally:
            tasks.cancel_scope.cancel()  # the host stops listening and removes its socket
    if host.sessions != WARMUP + rounds:
        raise BenchError(f"the host saw {host.sessions} sessions for {WARMUP + rounds} relays")
    return result


# -- the fake claude and the harness --------------------------------------------


def write_fake_claude(directory: Path) -> Path:
    path = directory / "claude"
    path.write_text(FAKE_CLAUDE)
    path.chmod(0o755)
    return path


def _stamps(log: Path) -> list[float]:
    try:
        text = log.read_text()
    except FileNotFoundError:
        return []
    return [float(s.replace(",", ".")) for s in text.split()]  # a locale may use a comma


async def claude_spawn_floor(fake: Path, log: Path, rounds: int) -> list[float]:
    """Seconds from just before the bench spawns `fake` (as the harness does) to its stamp."""
    env = dict(os.environ, **{SPAWN_LOG_ENV: str(log)})
    samples: list[float] = []
    for i in range(WARMUP + rounds):
        before = time.time()
        proc = await asyncio.create_subprocess_exec(
            str(fake),
            "-p",
            "--output-format",
            "stream-json",
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        async with asyncio.timeout(STEP_TIMEOUT):
            out, err = await proc.communicate()
        stamps = _stamps(log)
        if proc.returncode != 0 or len(stamps) != i + 1 or b'"result"' not in out:
            raise BenchError(f"the fake claude failed ({proc.returncode}): {err.decode()[-500:]}")
        if i >= WARMUP:
            samples.append(stamps[-1] - before)
    return samples


def _harness_log_tail(daemon: Daemon, name: str, max_bytes: int = 2000) -> str:
    try:
        data = (daemon.state_dir / "agents" / name / "harness.log").read_bytes()
    except OSError as exc:
        return f"(log unreadable: {exc.strerror})"
    return data[-max_bytes:].decode(errors="replace").strip() or "(empty log)"


async def harness_wake(daemon: Daemon, name: str, log: Path, turns: int) -> list[float]:
    """Seconds from just before an operator `send` to `name` until the fake claude's stamp.

    One sample per turn, the first (the harness's one-time warm-up) included. Each
    turn's end is awaited with the harness's long-poll `turn_status`.
    """
    async with asyncio.timeout(PHASE_TIMEOUT):
        await spawn_agents(daemon.host_socket, [name])
        samples: list[float] = []
        async with (
            HiveClient(daemon.host_socket) as operator,
            HiveClient(daemon.harness_socket(name)) as harness,
        ):
            for n in range(1, turns + 1):
                await asyncio.sleep(SETTLE)
                request = rq.Send(
                    cmd="send",
                    to=name,
                    body=f"bench turn {n}",
                    idempotency_key=new_idempotency_key(),
                )
                sent_at = time.time()
                await operator.call(request, rs.Sent)
                status = rq.TurnStatus(cmd="turn_status", after_turns=n, wait_seconds=STEP_TIMEOUT)
                state = await harness.call(status, rs.HarnessState)
                if state.turns_run < n:
                    raise BenchError(
                        f"{name} finished {state.turns_run} of {n} turns within "
                        f"{STEP_TIMEOUT:.0f}s; its log:\n{_harness_log_tail(daemon, name)}"
                    )
                if state.last_result != "success":
                    raise BenchError(
                        f"{name}'s turn {n} ended with {state.last_result}; its log:\n"
                        f"{_harness_log_tail(daemon, name)}"
                    )
                stamps = _stamps(log)
                if len(stamps) != n:
                    raise BenchError(f"the fake claude ran {len(stamps)} times in {n} turns")
                samples.append(stamps[-1] - sent_at)
    return samples
