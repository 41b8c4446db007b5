"""The whole run: floors, the MCP relay, one daemon for the fleet, broker, turn and stream
benchmarks, then cold starts, the floor broker's comparison and the real claude turn on
daemons of their own; each goal's `PASS:`/`FAIL:` line at the end (`report.verdicts`)."""

from __future__ import annotations

import asyncio
import compileall
import importlib.util
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import broker, cli, coldstart, dashboard, fleet, floor, micro, real_turn, report, turn
from bench.daemon import Daemon, running_daemon
from bench.stats import p50, p90, p99
from hive_core.dashboard.app import MAX_STREAMS

TURN_AGENT = "w0"
"""The agent whose harness runs the fake claude's turns (the broker's agents are stopped)."""
WAKE_AGENTS = 10
"""`send_to_wake_p50` rotates over this many agents (and the stream lines too)."""
SENDERS = 50
"""Operator connections sending at once in the throughput lines."""
LONG_POLLS_PER_AGENT = 2
DASHBOARD_READERS = 10
FANOUT_READERS = 100
FANOUT_HELPERS = 2
CHECKPOINT_SETTLE = 2.5
"""hive-core checkpoints the WAL every 2 s after writes; let that pass before idling."""


@dataclass(frozen=True)
class Sizes:
    echo_rounds: int
    sqlite_rounds: int
    wake_rounds: int
    wake_warmup: int
    per_sender: int
    """Messages each of the `SENDERS` sends, in each throughput line."""
    idle_window: float
    mcp_rounds: int
    turns: int
    """Turns timed after the harness's first (warm-up) turn; also the spawn floor's rounds."""
    cli_rounds: int
    fleet: int
    """Harnesses running in the idle-fleet lines; the broker lines use the first 50 of them."""
    cold_agents: int
    cold_messages: int
    cold_rounds: int
    fanout_events: int
    claude_rounds: int
    floor: floor.Pacing
    """The comparison with the floor broker (`floor.py`)."""


FULL = Sizes(
    echo_rounds=2000,
    sqlite_rounds=300,
    wake_rounds=500,
    wake_warmup=20,
    per_sender=200,
    idle_window=5.0,
    mcp_rounds=15,
    turns=20,
    cli_rounds=21,
    fleet=100,
    cold_agents=200,
    cold_messages=1_000_000,
    cold_rounds=3,
    fanout_events=50,
    claude_rounds=5,
    floor=floor.FULL,
)
QUICK = Sizes(
    echo_rounds=300,
    sqlite_rounds=60,
    wake_rounds=100,
    wake_warmup=10,
    per_sender=20,
    idle_window=2.0,
    mcp_rounds=5,
    turns=5,
    cli_rounds=5,
    fleet=20,
    cold_agents=20,
    cold_messages=100_000,
    cold_rounds=1,
    fanout_events=10,
    claude_rounds=1,
    floor=floor.QUICK,
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
    report.emit(
        report.latency("mcp_ready_p50", p50(got.ready), python, report.below(0.5, "< 0.5 s"))
    )
    report.emit(report.latency("mcp_tools_listed_p50", p50(got.listed), python))
    return python


def _agents(count: int) -> list[str]:
    return [f"b{i}" for i in range(count)]


async def _fleet(daemon: Daemon, sizes: Sizes) -> None:
    """The idle-fleet lines: `sizes.fleet` harnesses started, idle, then stopped (their
    sockets and inboxes stay for the broker lines)."""
    names = _agents(sizes.fleet)
    started = time.monotonic()
    async with asyncio.timeout(fleet.bound(len(names))):
        await fleet.spawn(daemon, names)
    report.note(f"spawned {len(names)} agents in {time.monotonic() - started:.1f}s")
    idle = await fleet.idle(daemon, names, CHECKPOINT_SETTLE, sizes.idle_window)
    n = len(names)
    report.emit(
        report.cpu_percent(f"idle_cpu_{n}_agents", idle.daemon_cpu, report.below(1.0, "< 1%"))
    )
    report.emit(report.cpu_percent(f"idle_cpu_{n}_agents_harnesses", idle.harness_cpu))
    report.emit(report.mebibytes("harness_rss_idle", idle.harness_rss))
    report.emit(report.mebibytes("harness_rss_anon_idle", idle.harness_anon))
    started = time.monotonic()
    async with asyncio.timeout(fleet.bound(len(names))):
        await fleet.stop(daemon, names)
    report.note(f"stopped their harnesses in {time.monotonic() - started:.1f}s")


async def _wake_lines(swarm: broker.Swarm, sizes: Sizes, floors: Floors) -> float:
    """The send_to_wake lines; returns `send_to_wake_p50` (over `WAKE_AGENTS` agents)."""
    baseline = floors.echo_rtt + floors.full_commit
    rotations = sorted({1, WAKE_AGENTS, len(swarm.names)})
    wake: list[float] = []
    for agents in rotations:
        got = await broker.send_to_wake(swarm, sizes.wake_rounds, sizes.wake_warmup, agents)
        if agents == WAKE_AGENTS:
            wake = got
            report.emit(report.latency("send_to_wake_p50", p50(got), baseline))
            report.emit(report.latency("send_to_wake_p99", p99(got), baseline))
        name = f"send_to_wake_p50_{agents}_agents"
        report.emit(report.latency(name, p50(got), baseline))
    with dashboard.streams(swarm.daemon, reading=0, stalled=1):
        stalled = await broker.send_to_wake(
            swarm, sizes.wake_rounds, sizes.wake_warmup, WAKE_AGENTS
        )
    report.emit(
        report.latency(
            "send_to_wake_p50_1_stalled_stream", p50(stalled), p50(wake), report.ratio_at_most(1.2)
        )
    )
    with dashboard.streams(swarm.daemon, reading=DASHBOARD_READERS, stalled=1):
        watched = await broker.send_to_wake(
            swarm, sizes.wake_rounds, sizes.wake_warmup, WAKE_AGENTS
        )
    report.emit(
        report.latency(
            f"send_to_wake_p50_{DASHBOARD_READERS}_streams_1_stalled", p50(watched), p50(wake)
        )
    )
    return p50(wake)


async def _broker(daemon: Daemon, sizes: Sizes, floors: Floors) -> float:
    """The broker lines, on the fleet's first 50 agents; returns `send_to_wake_p50`."""
    names = _agents(min(SENDERS, sizes.fleet))
    single = 1 / floors.full_commit
    async with broker.WalWatch(daemon) as wal:
        rate = await broker.send_only(daemon, names, SENDERS, sizes.per_sender)
        report.emit(report.rate(f"broker_send_only_msgs_per_s_{SENDERS}_senders", rate, single))
        async with broker.Swarm(daemon, names) as swarm:
            backlog = broker.burst_targets(SENDERS, len(names), sizes.per_sender)
            await broker.drain(swarm, backlog)
            wake = await _wake_lines(swarm, sizes, floors)
            rate = await broker.throughput(swarm, SENDERS, sizes.per_sender)
            report.emit(report.rate(f"broker_msgs_per_s_{SENDERS}_senders", rate, single))
            await wal.finish()
            cpu = await broker.idle_cpu(
                swarm, LONG_POLLS_PER_AGENT, CHECKPOINT_SETTLE, sizes.idle_window
            )
            polls = LONG_POLLS_PER_AGENT * len(names)
            report.emit(
                report.cpu_percent(f"idle_cpu_{polls}_longpolls", cpu, report.below(1.0, "< 1%"))
            )
            sent = 2 * SENDERS * sizes.per_sender
            report.emit(
                report.mebibytes(
                    f"wal_peak_during_{sent}_sends",
                    wal.peak,
                    None,
                    report.at_most(64 * 2**20, "≤ 64 MiB"),
                )
            )
            report.emit(
                report.frames(
                    "wal_backlog_after_idle", daemon.wal_backlog(), report.at_most(0, "0 frames")
                )
            )
            report.emit(report.mebibytes("wal_file_after_idle", daemon.wal_bytes()))
            report.emit(report.mebibytes("daemon_rss_after_broker", daemon.rss_bytes()))
    return wake


async def _turns(daemon: Daemon, log: Path, sizes: Sizes, floors: Floors, wake: float) -> None:
    samples = await turn.harness_wake(daemon, TURN_AGENT, log, 1 + sizes.turns)
    first, rest = samples[0], samples[1:]
    report.emit(report.latency("harness_first_turn_wake_to_claude", first, floors.python))
    baseline = wake + floors.claude_spawn
    report.emit(
        report.latency(
            "harness_wake_to_claude_p50", p50(rest), baseline, report.at_most(0.010, "≤ 10 ms")
        )
    )
    report.emit(report.latency("harness_wake_to_claude_p90", p90(rest), baseline))
    # What a harness that has run turns holds: the MCP SDK is in by now.
    rss = await fleet.harness_rss(daemon, TURN_AGENT)
    report.emit(report.mebibytes("harness_rss_after_turns", rss))


async def _against_daemon(daemon: Daemon, log: Path, sizes: Sizes, floors: Floors) -> None:
    await _fleet(daemon, sizes)
    wake = await _broker(daemon, sizes, floors)
    await _turns(daemon, log, sizes, floors, wake)


def _fanout(daemon: Daemon, sizes: Sizes) -> None:
    readers = min(FANOUT_READERS, MAX_STREAMS - 1)  # one more is the stalled stream
    if readers < FANOUT_READERS:
        report.note(
            f"hive-core serves at most {MAX_STREAMS} event streams (dashboard MAX_STREAMS): "
            f"{readers} readers and 1 stalled stream, not {FANOUT_READERS}"
        )
    got = dashboard.fanout(daemon, readers, FANOUT_HELPERS, sizes.fanout_events, "b0")
    name = f"dashboard_event_to_{readers}_streams_p99"
    report.emit(report.duration(name, p99(got), report.at_most(0.050, "≤ 50 ms")))


def _cold_start(env: dict[str, str], sizes: Sizes) -> None:
    cached = coldstart.build(env, sizes.cold_agents, sizes.cold_messages)
    value, empty = coldstart.rounds(cached, env, sizes.cold_agents, sizes.cold_rounds)
    name = f"cold_start_to_list_{sizes.cold_agents}_agents_{sizes.cold_messages // 1000}k_messages"
    report.emit(report.latency(name, p50(value), p50(empty), report.at_most(1.0, "≤ 1 s")))


def _claude_turns(sizes: Sizes) -> None:
    got = real_turn.turns(sizes.claude_rounds)
    if got is None:
        return
    report.emit(
        report.latency("claude_turn_p50", p50(got.hive), p50(got.bare), report.ratio_at_most(1.05))
    )
    floor = p50(got.mcp_floor)
    report.emit(report.latency("claude_turn_mcp_floor_p50", floor, p50(got.bare)))
    report.emit(report.latency("claude_turn_p50_over_mcp_floor", p50(got.hive), floor))


PACKAGES = ("hive_share", "hive_core", "hive_agent", "hive_front")


def compile_bytecode() -> None:
    """Write the packages' bytecode, as pip and Nix do when they install them: a checkout
    run with PYTHONDONTWRITEBYTECODE would otherwise compile every module at every start,
    and the start-up lines would measure the compiler."""
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise RuntimeError(f"package {name} is not importable")
        for location in spec.submodule_search_locations:
            if not compileall.compile_dir(location, quiet=1):
                report.note(f"could not compile every module under {location}")


def run(sizes: Sizes) -> None:
    """Measure and print every line."""
    compile_bytecode()
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
            times = cli.list_and_floors(daemon, sizes.cli_rounds)
            listed = p50(times.listed)
            report.emit(report.latency("cli_list_p50", listed, p50(times.python)))
            bare = p50(times.typer)
            report.emit(
                report.latency(
                    "cli_list_vs_bare_typer_p50", listed, bare, report.ratio_at_most(1.5)
                )
            )
            asyncio.run(_against_daemon(daemon, log, sizes, floors))
            _fanout(daemon, sizes)
        _cold_start(env, sizes)
    floor.run(sizes.floor)
    _claude_turns(sizes)
