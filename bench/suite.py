"""The whole run: floors, the MCP relay, then one daemon for the broker and turn benchmarks."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import broker, cli, dashboard, micro, report, turn
from bench.daemon import Daemon, running_daemon
from bench.stats import p50, p90, p99

AGENTS = [f"b{i}" for i in range(10)]
TURN_AGENT = "w0"
"""The agent whose harness runs the fake claude's turns (the broker's agents are stopped)."""
LONG_POLLS_PER_AGENT = 2
DASHBOARD_READERS = 10
CHECKPOINT_SETTLE = 2.5
"""hive-core checkpoints the WAL every 2 s after writes; let that pass before idling."""


@dataclass(frozen=True)
class Sizes:
    echo_rounds: int
    sqlite_rounds: int
    wake_rounds: int
    wake_warmup: int
    per_sender: int
    idle_window: float
    mcp_rounds: int
    turns: int
    """Turns timed after the harness's first (warm-up) turn; also the spawn floor's rounds."""
    cli_rounds: int


FULL = Sizes(
    echo_rounds=2000,
    sqlite_rounds=300,
    wake_rounds=500,
    wake_warmup=20,
    per_sender=1000,
    idle_window=5.0,
    mcp_rounds=15,
    turns=20,
    cli_rounds=21,
)
QUICK = Sizes(
    echo_rounds=300,
    sqlite_rounds=60,
    wake_rounds=100,
    wake_warmup=10,
    per_sender=100,
    idle_window=2.0,
    mcp_rounds=5,
    turns=5,
    cli_rounds=5,
)


@dataclass(frozen=True)
class Floors:
    """Seconds; the baselines the daemon benchmarks are judged against."""

    echo_rtt: float
    full_commit: float
    python: float = 0.0
    claude_spawn: float = 0.0


def measure_floors(sizes: Sizes) -> Floors:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as tmp:
        directory = Path(tmp)
        floor = micro.blocking_floor_rtt(directory / "floor.sock", sizes.echo_rounds)
        echo = asyncio.run(micro.echo_rtt(directory / "echo.sock", sizes.echo_rounds))
        report.emit(report.latency("echo_rtt_p50", p50(echo), p50(floor)))
        full, normal = micro.sqlite_commits(directory, sizes.sqlite_rounds)
        report.emit(report.latency("sqlite_full_commit_p50", p50(full), p50(normal)))
    return Floors(echo_rtt=p50(echo), full_commit=p50(full))


def measure_mcp(directory: Path, sizes: Sizes) -> float:
    """The relay lines; returns `python_startup_p50`, the least any Python MCP server costs."""
    got = asyncio.run(turn.mcp_startup(directory, sizes.mcp_rounds))
    python, sdk = p50(got.python), p50(got.sdk_import)
    report.emit(report.duration("python_startup_p50", python))
    report.emit(report.latency("mcp_sdk_import_p50", sdk, python))
    report.emit(report.latency("mcp_ready_p50", p50(got.ready), python, "< 0.5 s"))
    report.emit(report.latency("mcp_tools_listed_p50", p50(got.listed), python))
    return python


async def _broker(daemon: Daemon, sizes: Sizes, floors: Floors) -> float:
    """The broker lines; returns `send_to_wake_p50`."""
    started = time.monotonic()
    await broker.spawn_agents(daemon.host_socket, AGENTS)
    await broker.stop_harnesses(daemon.host_socket, AGENTS)
    report.note(f"spawned {len(AGENTS)} agents, stopped their harnesses, in "
                f"{time.monotonic() - started:.2f}s")  # fmt: skip
    async with broker.Swarm(daemon, AGENTS) as swarm:
        wake = await broker.send_to_wake(swarm, sizes.wake_rounds, sizes.wake_warmup)
        baseline = floors.echo_rtt + floors.full_commit
        report.emit(report.latency("send_to_wake_p50", p50(wake), baseline, "≤ 1.5x"))
        report.emit(report.latency("send_to_wake_p99", p99(wake), baseline))
        with dashboard.streams(daemon, reading=0, stalled=1):
            stalled = await broker.send_to_wake(swarm, sizes.wake_rounds, sizes.wake_warmup)
        report.emit(
            report.latency("send_to_wake_p50_1_stalled_stream", p50(stalled), p50(wake), "≤ 1.2x")
        )
        with dashboard.streams(daemon, reading=DASHBOARD_READERS, stalled=1):
            watched = await broker.send_to_wake(swarm, sizes.wake_rounds, sizes.wake_warmup)
        report.emit(
            report.latency(
                f"send_to_wake_p50_{DASHBOARD_READERS}_streams_1_stalled", p50(watched), p50(wake)
            )
        )

        async with broker.WalWatch(daemon) as wal:
            rate = await broker.throughput(swarm, sizes.per_sender)
        report.emit(
            report.rate(
                "broker_msgs_per_s_10_agents",
                rate,
                1 / floors.full_commit,
                "≥ 5.0x (group commit)",
            )
        )

        cpu = await broker.idle_cpu(
            swarm, LONG_POLLS_PER_AGENT, CHECKPOINT_SETTLE, sizes.idle_window
        )
        polls = LONG_POLLS_PER_AGENT * len(AGENTS)
        report.emit(report.cpu_percent(f"idle_cpu_{polls}_longpolls", cpu, "< 1%"))
        sent = len(AGENTS) * sizes.per_sender
        report.emit(report.mebibytes(f"wal_peak_during_{sent}_sends", wal.peak, None, "≤ 64 MiB"))
        report.emit(report.mebibytes("wal_after_idle", daemon.wal_bytes(), None, "0 MiB"))
    return p50(wake)


async def _turns(daemon: Daemon, log: Path, sizes: Sizes, floors: Floors, wake: float) -> None:
    samples = await turn.harness_wake(daemon, TURN_AGENT, log, 1 + sizes.turns)
    first, rest = samples[0], samples[1:]
    report.emit(report.latency("harness_first_turn_wake_to_claude", first, floors.python))
    baseline = wake + floors.claude_spawn
    report.emit(report.latency("harness_wake_to_claude_p50", p50(rest), baseline, "≤ 10 ms"))
    report.emit(report.latency("harness_wake_to_claude_p90", p90(rest), baseline))


async def _against_daemon(daemon: Daemon, log: Path, sizes: Sizes, floors: Floors) -> None:
    wake = await _broker(daemon, sizes, floors)
    await _turns(daemon, log, sizes, floors, wake)


def run(sizes: Sizes) -> None:
    """Measure and print every line."""
    floors = measure_floors(sizes)
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as tmp:
        directory = Path(tmp)
        python = measure_mcp(directory, sizes)
        fake = turn.write_fake_claude(directory)
        spawn = asyncio.run(turn.claude_spawn_floor(fake, directory / "floor.log", sizes.turns))
        report.emit(report.duration("claude_spawn_floor_p50", p50(spawn)))
        floors = Floors(floors.echo_rtt, floors.full_commit, python, p50(spawn))
        log = directory / "spawn.log"
        env = {
            "HIVE_CLAUDE_BIN": str(fake),
            "ANTHROPIC_API_KEY": "bench-not-a-key",  # the harness's login probe takes it as-is
            turn.SPAWN_LOG_ENV: str(log),
        }
        with running_daemon(env) as daemon:
            listed, floor = cli.list_and_floor(daemon, sizes.cli_rounds)
            report.emit(report.latency("cli_list_p50", p50(listed), p50(floor), "≤ 2.0x"))
            asyncio.run(_against_daemon(daemon, log, sizes, floors))
