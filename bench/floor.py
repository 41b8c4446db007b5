"""The broker lines against the floor broker (`floor_broker.py`), run alternately.

Each round starts a fresh hive-core and a fresh floor broker, one after the other (in
alternating order), and runs the same client code with the same pacing against each
(`broker.py`): send → parked recv wakes, acked sends from 50 operator connections, and
delivered messages (send, recv up to 100, ack) with 10 senders and 5 receivers. Each figure
is the median over the rounds, printed with the floor's median beside it and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import broker, fleet, report, turn
from bench.daemon import Daemon, launched, wait_ready
from bench.stats import p50

AGENTS = 50
"""Agents of each broker: send → wake rotates over `WAKE_AGENTS` of them, the others send."""
WAKE_AGENTS = 10
SENDERS = 50
"""Operator connections sending at once in the acked-sends line."""
DELIVERED_SENDERS = 10
DELIVERED_RECEIVERS = 5
STOP_TIMEOUT = 10.0

GOALS = {"wake": 1.3, "acked": 0.8, "delivered": 0.8}
"""Send → wake at most 1.3x the floor's latency; acked and delivered rates at least 0.8x."""


@dataclass
class Figures:
    """One broker's figures over the rounds."""

    wake: list[float] = field(default_factory=list)
    """Seconds, p50 of each round."""
    acked: list[float] = field(default_factory=list)
    """Messages per second, each round."""
    delivered: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Pacing:
    rounds: int
    wake_rounds: int
    wake_warmup: int
    per_sender: int
    """Messages each sender sends in the acked-sends line."""
    delivered_per_sender: int


FULL = Pacing(rounds=3, wake_rounds=300, wake_warmup=20, per_sender=100, delivered_per_sender=500)
QUICK = Pacing(rounds=1, wake_rounds=60, wake_warmup=10, per_sender=20, delivered_per_sender=100)


def names(count: int = AGENTS) -> list[str]:
    return [f"f{i}" for i in range(count)]


@contextmanager
def floor_broker(agents: Sequence[str]) -> Iterator[Daemon]:
    """The floor broker on a fresh `/tmp/hb…` root, ready; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hb"))
    notify_path = root / "notify"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as notify:
            notify.bind(str(notify_path))
            with open(root / "daemon.log", "wb") as log:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "bench.floor_broker", str(root), *agents],
                    env={"NOTIFY_SOCKET": str(notify_path), "PATH": "/usr/bin:/bin"},
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=Path(__file__).resolve().parent.parent,
                )
            daemon = Daemon(proc, root, time.perf_counter())
            try:
                wait_ready(daemon, notify)
                yield daemon
            finally:
                daemon.proc.terminate()
                daemon.proc.wait(STOP_TIMEOUT)
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def hive(agents: Sequence[str], env: dict[str, str]) -> Iterator[Daemon]:
    """A fresh hive-core whose `agents` exist with their harnesses stopped (the bench speaks
    as them); stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(dir="/tmp", prefix="hb"))
    try:
        with launched(root, env) as (daemon, notify):
            wait_ready(daemon, notify)

            async def prepare() -> None:
                async with asyncio.timeout(fleet.bound(len(agents))):
                    await fleet.spawn(daemon, agents)
                    await fleet.stop(daemon, agents)

            asyncio.run(prepare())
            yield daemon
    finally:
        shutil.rmtree(root, ignore_errors=True)


async def measure(daemon: Daemon, agents: Sequence[str], pacing: Pacing, into: Figures) -> None:
    """One round of the three figures against `daemon` (hive-core or the floor)."""
    async with broker.Swarm(daemon, agents) as swarm:
        wake = await broker.send_to_wake(swarm, pacing.wake_rounds, pacing.wake_warmup, WAKE_AGENTS)
        into.wake.append(p50(wake))
    rate = await broker.send_only(daemon, agents, SENDERS, pacing.per_sender)
    into.acked.append(rate)
    async with broker.Swarm(daemon, agents) as swarm:
        await broker.drain(swarm, broker.burst_targets(SENDERS, len(agents), pacing.per_sender))
    receivers = list(agents[:DELIVERED_RECEIVERS])
    async with broker.Swarm(daemon, receivers) as swarm:
        rate = await broker.throughput(swarm, DELIVERED_SENDERS, pacing.delivered_per_sender)
        into.delivered.append(rate)


def compare(pacing: Pacing, env: dict[str, str]) -> tuple[Figures, Figures]:
    """(hive-core's figures, the floor's), rounds alternating which one goes first."""
    agents = names()
    ours, floor = Figures(), Figures()
    for n in range(pacing.rounds):
        order = [(ours, True), (floor, False)]
        for figures, is_hive in order if n % 2 == 0 else reversed(order):
            with hive(agents, env) if is_hive else floor_broker(agents) as daemon:
                asyncio.run(measure(daemon, agents, pacing, figures))
        report.note(
            f"floor round {n + 1}: wake {1e3 * ours.wake[-1]:.2f}/{1e3 * floor.wake[-1]:.2f} ms, "
            f"acked {ours.acked[-1]:.0f}/{floor.acked[-1]:.0f}, "
            f"delivered {ours.delivered[-1]:.0f}/{floor.delivered[-1]:.0f} msg/s (hive/floor)"
        )
    return ours, floor


def emit(ours: Figures, floor: Figures) -> None:
    """Print the three lines, each judged by its goal (`report.verdicts` prints them)."""
    med = statistics.median
    report.emit(
        report.latency(
            "floor_send_to_wake_p50",
            med(ours.wake),
            med(floor.wake),
            report.ratio_at_most(GOALS["wake"], "floor"),
        )
    )
    report.emit(
        report.rate(
            f"floor_acked_sends_per_s_{SENDERS}_senders",
            med(ours.acked),
            med(floor.acked),
            report.ratio_at_least(GOALS["acked"], "floor"),
        )
    )
    report.emit(
        report.rate(
            f"floor_delivered_per_s_{DELIVERED_SENDERS}_senders_{DELIVERED_RECEIVERS}_receivers",
            med(ours.delivered),
            med(floor.delivered),
            report.ratio_at_least(GOALS["delivered"], "floor"),
        )
    )


def run(pacing: Pacing) -> None:
    """Compare and print the lines (the fake claude the hive's harnesses would start is
    written to a temporary directory: the bench stops them before any turn)."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as tmp:
        fake = turn.write_fake_claude(Path(tmp))
        env = {"HIVE_CLAUDE_BIN": str(fake), "ANTHROPIC_API_KEY": "bench-not-a-key"}
        ours, floor = compare(pacing, env)
    emit(ours, floor)


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.floor [--quick]`: only the floor lines (`./dev bench` runs them too)."""
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one round, fewer messages")
    args = parser.parse_args(argv)
    run(QUICK if args.quick else FULL)
    return 0 if report.verdicts() else 1


if __name__ == "__main__":
    sys.exit(main())
