"""Send → wake across hosts against the same within one host, in one run.

`python -m bench multihost [--quick]` (`./dev bench multihost`): a three-server JetStream
cluster (`nats-server` from the `test` extra) on loopback and two hive-cores joined over it,
`alpha` and `beta`, on fresh directories. Each round, alternately, the operator on alpha
sends to an agent of alpha and to an agent of beta, each parked in its `recv` on its own
host; the time from just before the send until that `recv` returns is the figure. Both
kinds share the daemons, the pacing and the client code, so their ratio is what crossing
hosts costs: the local commit, the outbox's publish and JetStream's acknowledgement, the
consumer's delivery, the destination's commit and wake-up.
"""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench import fleet, report, turn
from bench.broker import BenchError, Receiver, timed_wake
from bench.daemon import Daemon, launched, wait_ready
from bench.stats import p50, p99
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.multihost.nats_cluster import NatsCluster

NATS_PORT_BASE = 21000
"""The bench's NATS servers: away from the tests' (22000 up) and the hives' pages."""
HIVE = "bench"
STATUS = re.compile(r"; NATS up, (\d+) hosts?, (\d+) agents? elsewhere$")
READY_BOUND = 60.0
GOAL = 3.0
"""Cross-host send → wake p50 at most this many times the same-host p50."""


@dataclass(frozen=True)
class Pacing:
    rounds: int
    warmup: int
    burst: int
    """Messages sent back to back to the other host's agent, for the rate line."""


FULL = Pacing(rounds=200, warmup=20, burst=500)
QUICK = Pacing(rounds=30, warmup=5, burst=100)


def wait_status(daemon: Daemon, notify: socket.socket, holds: Callable[[int, int], bool]) -> None:
    """Read `daemon`'s notifications until its STATUS= line shows the link up with
    `holds(hosts, agents elsewhere)` (bounded)."""
    notify.settimeout(READY_BOUND)
    while True:
        try:
            data = notify.recv(4096).decode(errors="replace")
        except TimeoutError:
            raise BenchError(f"hive-core (pid {daemon.pid}) never joined the hive") from None
        for line in data.split("\n"):
            found = STATUS.search(line) if line.startswith("STATUS=") else None
            if found and holds(int(found[1]), int(found[2])):
                return


@contextmanager
def joined(cluster: NatsCluster, env: dict[str, str]) -> Iterator[tuple[Daemon, Daemon]]:
    """alpha and beta, ready, linked, each with one agent whose harness is stopped (the
    bench speaks as it), each seeing the other's."""
    with ExitStack() as stack:
        started = []
        for host in ("alpha", "beta"):
            root = Path(stack.enter_context(tempfile.TemporaryDirectory(dir="/tmp", prefix="hb")))
            host_env = {
                **env,
                "HIVE_NATS_URL": ",".join(cluster.urls),
                "HIVE_HIVE_ID": HIVE,
                "HIVE_HOST_ID": host,
            }
            daemon, notify = stack.enter_context(launched(root, host_env))
            wait_ready(daemon, notify)
            started.append((daemon, notify))
        (alpha, a_notify), (beta, b_notify) = started

        async def prepare() -> None:
            async with asyncio.timeout(fleet.bound(2)):
                await fleet.spawn(alpha, ["near"])
                await fleet.stop(alpha, ["near"])
                await fleet.spawn(beta, ["far"])
                await fleet.stop(beta, ["far"])

        asyncio.run(prepare())
        # alpha sees far and beta's side of the manager question settled: at least `far`.
        wait_status(alpha, a_notify, lambda hosts, elsewhere: hosts == 2 and elsewhere >= 1)
        wait_status(beta, b_notify, lambda hosts, elsewhere: hosts == 2 and elsewhere >= 1)
        yield alpha, beta


async def burst_rate(alpha: Daemon, beta: Daemon, count: int) -> float:
    """Messages a second from alpha's operator to beta's agent: `count` sent back to back
    (each answered once committed on alpha), until the last is received on beta."""
    got = 0
    async with (
        HiveClient(alpha.host_socket) as operator,
        HiveClient(beta.agent_socket("far")) as far,
    ):
        start = time.perf_counter()
        for i in range(count):
            await operator.call(rq.Send(cmd="send", to="far", body=f"burst {i}"), rs.Sent)
        while got < count:
            answer = await far.call(rq.Recv(cmd="recv", wait_seconds=10, max=100), rs.Messages)
            if not answer.messages:
                raise BenchError(f"far received {got} of {count} burst messages")
            got += len(answer.messages)
            await far.call(rq.Ack(cmd="ack", ids=[m.id for m in answer.messages]), rs.Acked)
        return count / (time.perf_counter() - start)


async def measure(alpha: Daemon, beta: Daemon, pacing: Pacing) -> tuple[list[float], list[float]]:
    """(same-host samples, cross-host samples), alternating round by round."""
    near, far = Receiver(alpha.agent_socket("near")), Receiver(beta.agent_socket("far"))
    same: list[float] = []
    cross: list[float] = []
    async with HiveClient(alpha.host_socket) as operator:
        try:
            for receiver in (near, far):
                await receiver.client.connect()
                receiver.arm()
            for i in range(2 * (pacing.warmup + pacing.rounds)):
                to, receiver, into = ("near", near, same) if i % 2 == 0 else ("far", far, cross)
                request = rq.Send(cmd="send", to=to, body=f"wake {i}")
                elapsed = await timed_wake(receiver, operator, request)
                if i >= 2 * pacing.warmup:
                    into.append(elapsed)
        finally:
            await near.close()
            await far.close()
    return same, cross


def run(pacing: Pacing) -> None:
    """Measure and print the lines."""
    with tempfile.TemporaryDirectory(dir="/tmp", prefix="hb") as tmp:
        directory = Path(tmp)
        fake = turn.write_fake_claude(directory)
        env = {"HIVE_CLAUDE_BIN": str(fake), "ANTHROPIC_API_KEY": "bench-not-a-key"}
        with (
            NatsCluster(directory / "nats", port_base=NATS_PORT_BASE) as cluster,
            joined(cluster, env) as (alpha, beta),
        ):
            same, cross = asyncio.run(measure(alpha, beta, pacing))
            rate = asyncio.run(burst_rate(alpha, beta, pacing.burst))
    goal = report.ratio_at_most(GOAL, "same host")
    report.emit(report.latency("multihost_send_to_wake_p50", p50(cross), p50(same), goal))
    report.emit(report.latency("multihost_send_to_wake_p99", p99(cross), p99(same)))
    report.emit(report.duration("same_host_send_to_wake_p50", p50(same)))
    line = report.rate(f"multihost_burst_{pacing.burst}_msgs_per_s", rate, 1 / p50(cross))
    report.emit(line)
