"""The whole run: floors first, then one daemon for every broker benchmark."""

from __future__ import annotations

import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bench import broker, micro, report
from bench.daemon import Daemon, running_daemon
from bench.stats import p50, p99

AGENTS = [f"b{i}" for i in range(10)]
LONG_POLLS_PER_AGENT = 2
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


FULL = Sizes(
    echo_rounds=2000,
    sqlite_rounds=300,
    wake_rounds=500,
    wake_warmup=20,
    per_sender=1000,
    idle_window=5.0,
)
QUICK = Sizes(
    echo_rounds=300,
    sqlite_rounds=60,
    wake_rounds=100,
    wake_warmup=10,
    per_sender=100,
    idle_window=2.0,
)


@dataclass(frozen=True)
class Floors:
    """Seconds; the baselines the daemon benchmarks are judged against."""

    echo_rtt: float
    full_commit: float


def measure_floors(sizes: Sizes) -> Floors:
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as tmp:
        directory = Path(tmp)
        floor = micro.blocking_floor_rtt(directory / "floor.sock", sizes.echo_rounds)
        echo = asyncio.run(micro.echo_rtt(directory / "echo.sock", sizes.echo_rounds))
        report.emit(report.latency("echo_rtt_p50", p50(echo), p50(floor)))
        full, normal = micro.sqlite_commits(directory, sizes.sqlite_rounds)
        report.emit(report.latency("sqlite_full_commit_p50", p50(full), p50(normal)))
    return Floors(echo_rtt=p50(echo), full_commit=p50(full))


async def _against_daemon(daemon: Daemon, sizes: Sizes, floors: Floors) -> None:
    started = time.monotonic()
    await broker.spawn_agents(daemon.host_socket, AGENTS)
    report.note(f"spawned {len(AGENTS)} agents in {time.monotonic() - started:.2f}s")
    async with broker.Swarm(daemon, AGENTS) as swarm:
        wake = await broker.send_to_wake(swarm, sizes.wake_rounds, sizes.wake_warmup)
        baseline = floors.echo_rtt + floors.full_commit
        report.emit(report.latency("send_to_wake_p50", p50(wake), baseline, "≤ 3.0x"))
        report.emit(report.latency("send_to_wake_p99", p99(wake), baseline))

        rate = await broker.throughput(swarm, sizes.per_sender)
        report.emit(
            report.rate(
                "broker_msgs_per_s_10_agents",
                rate,
                1 / floors.full_commit,
                "> 1.0x (group commit)",
            )
        )

        cpu = await broker.idle_cpu(
            swarm, LONG_POLLS_PER_AGENT, CHECKPOINT_SETTLE, sizes.idle_window
        )
        polls = LONG_POLLS_PER_AGENT * len(AGENTS)
        report.emit(report.cpu_percent(f"idle_cpu_{polls}_longpolls", cpu, "< 1%"))


def run(sizes: Sizes) -> None:
    """Measure and print every line."""
    floors = measure_floors(sizes)
    with running_daemon() as daemon:
        asyncio.run(_against_daemon(daemon, sizes, floors))
