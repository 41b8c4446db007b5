"""A burst of one message to each of many idle agents at once, with real harnesses and the real
claude CLI on a fake API that answers at once: how soon the first turn reaches the model, when
the last one does, and when every turn has ended, with turn admission at its defaults and with
admission off (every turn starts at once), alternately on fresh hives in the same run.

`python -m bench.burst [--agents N] [--rounds R]` (`./dev bench` runs it with its defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench import fleet, real_turn, report
from bench.broker import BenchError
from bench.daemon import Daemon, running_daemon
from bench.stats import p50, p99
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient, new_idempotency_key
from tests.fake_anthropic import FakeAnthropic, Reply, Seen, text

AGENTS = 40
ROUNDS = 2
TURN_BOUND = 180.0
"""Seconds every burst turn may take to end."""
UNLIMITED = {"HIVE_TURN_SLOTS": "10000", "HIVE_TURN_STARTS": "10000"}
"""Admission off: as many turns and starts at once as there are agents."""


class Clock:
    """When each agent's first request reached the fake model."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self._lock = threading.Lock()

    def script(self, seen: Seen) -> Reply:
        agent = seen.agent()
        if agent is not None:
            with self._lock:
                self.first.setdefault(agent, time.perf_counter())
        return text("ok")


@dataclass
class Burst:
    first: list[float] = field(default_factory=list)
    """Seconds from the sends to the first turn's request at the model, each round."""
    model_p50: list[float] = field(default_factory=list)
    model_p99: list[float] = field(default_factory=list)
    ended: list[float] = field(default_factory=list)
    """Seconds from the sends until every burst turn had ended."""


async def _one_burst(
    daemon: Daemon, names: list[str], clock: Clock
) -> tuple[float, list[float], float]:
    async with asyncio.timeout(fleet.bound(len(names))):
        await fleet.spawn(daemon, names)
    await fleet.idle(daemon, names, settle=0.5, window=0.5)  # every harness started and quiet
    clock.first.clear()

    async def send(name: str) -> None:
        async with HiveClient(daemon.host_socket) as op:
            body = rq.Send(cmd="send", to=name, body="hi", idempotency_key=new_idempotency_key())
            await op.call(body, rs.Sent)

    async def ended(name: str) -> None:
        async with HiveClient(daemon.harness_socket(name)) as harness:
            status = rq.TurnStatus(cmd="turn_status", after_turns=1, wait_seconds=TURN_BOUND)
            state = await harness.call(status, rs.HarnessState)
        if state.turns_run < 1:
            raise BenchError(f"{name} ran no turn within {TURN_BOUND:.0f}s")

    start = time.perf_counter()
    await asyncio.gather(*(send(n) for n in names))
    await asyncio.gather(*(ended(n) for n in names))
    done = time.perf_counter() - start
    reached = [clock.first[n] - start for n in names if n in clock.first]
    if len(reached) != len(names):
        raise BenchError(f"{len(names) - len(reached)} burst turns never reached the model")
    return min(reached), reached, done


def run(agents: int, rounds: int, starts: int | None = None) -> dict[str, Burst]:
    claude = real_turn.claude_bin()
    if claude is None:
        raise BenchError("no Claude Code CLI (./dev test installs it)")
    names = [f"u{i}" for i in range(agents)]
    results = {"admitted": Burst(), "unlimited": Burst()}
    clock = Clock()
    with FakeAnthropic(clock.script) as fake, tempfile.TemporaryDirectory(prefix="hb") as home:
        env = real_turn.hive_env(fake, Path(home), claude)
        admitted = {**env, "HIVE_TURN_STARTS": str(starts)} if starts else env
        for n in range(rounds):
            order = ["admitted", "unlimited"] if n % 2 == 0 else ["unlimited", "admitted"]
            for label in order:
                extra = admitted if label == "admitted" else {**env, **UNLIMITED}
                with running_daemon(extra) as daemon:
                    first, reached, done = asyncio.run(_one_burst(daemon, names, clock))
                got = results[label]
                got.first.append(first)
                got.model_p50.append(p50(reached))
                got.model_p99.append(p99(reached))
                got.ended.append(done)
                report.note(
                    f"burst {label}: first at the model {first:.2f}s, p50 {p50(reached):.2f}s, "
                    f"p99 {p99(reached):.2f}s, all ended {done:.2f}s"
                )
    return results


def emit(results: dict[str, Burst], agents: int) -> None:
    med = statistics.median
    ours, off = results["admitted"], results["unlimited"]
    report.emit(
        report.latency(
            f"burst_{agents}_first_at_model",
            med(ours.first),
            med(off.first),
            report.at_most(2.0, "≤ 2 s"),
        )
    )
    report.emit(
        report.latency(f"burst_{agents}_at_model_p99", med(ours.model_p99), med(off.model_p99))
    )
    report.emit(
        report.latency(
            f"burst_{agents}_all_ended",
            med(ours.ended),
            med(off.ended),
            report.ratio_at_most(1.0, "admission off"),
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.burst", description=__doc__)
    parser.add_argument("--agents", type=int, default=AGENTS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--starts", type=int, help="HIVE_TURN_STARTS (default: the hive's)")
    args = parser.parse_args(argv)
    emit(run(args.agents, args.rounds, args.starts), args.agents)
    return 0


if __name__ == "__main__":
    sys.exit(main())
