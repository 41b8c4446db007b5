"""`GET /api/state` under load: 40 agents whose claude turns start at once.

    .venv/bin/python -m tests.e2e.state_load [--agents 40] [--rounds 3]

A real daemon (local backend) runs `--agents` agents on the real Claude Code CLI against
the scripted fake API (tests/fake_anthropic.py). A thread fetches the snapshot back to back
with a logged-in session, as the page does, while the agents idle, and then while the
operator sends each agent a message at once, round after round: every agent starts a claude
turn together. Prints the latencies of both phases (nearest-rank percentiles, milliseconds).
`test_dashboard_scale.py` runs the same measurement with a bound.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient
from tests.e2e.dashboard import dashboard_port, login_url
from tests.e2e.hive import Hive
from tests.e2e.turns import hive_with
from tests.fake_anthropic import Reply, Seen, text

SPAWN_CONCURRENCY = 4
CALL_TIMEOUT = 60.0
ROUND_BOUND = 180.0
"""Seconds one round (every agent's turn) may take."""
IDLE_SAMPLES = 200


def answer(seen: Seen) -> Reply:
    return text("ok")


def names(count: int) -> list[str]:
    return [f"a{i:02d}" for i in range(count)]


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


@dataclass
class Latencies:
    values: list[float]

    def line(self, label: str) -> str:
        v = self.values
        return (
            f"{label}: n={len(v)} p50={percentile(v, 50) * 1000:.1f} ms "
            f"p90={percentile(v, 90) * 1000:.1f} ms p99={percentile(v, 99) * 1000:.1f} ms "
            f"max={max(v) * 1000:.1f} ms"
        )


class Fetcher:
    """`GET /api/state` over one kept-open connection, as a logged-in page."""

    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.headers = {"Host": f"127.0.0.1:{port}", "Authorization": f"Bearer {token}"}
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def fetch(self) -> tuple[float, dict[str, object]]:
        started = time.perf_counter()
        self.conn.request("GET", "/api/state", headers=self.headers)
        response = self.conn.getresponse()
        body = response.read()
        took = time.perf_counter() - started
        if response.status != 200:
            raise RuntimeError(f"/api/state answered {response.status}: {body[:200]!r}")
        state: dict[str, object] = json.loads(body)
        return took, state

    def until(self, stop: threading.Event, into: list[float]) -> None:
        while not stop.is_set():
            into.append(self.fetch()[0])

    def close(self) -> None:
        self.conn.close()


def log_in(hive: Hive) -> str:
    port = dashboard_port(hive)
    code = login_url(hive).partition("code=")[2]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", "/api/session", body=json.dumps({"code": code}),
            headers={"Host": f"127.0.0.1:{port}", "X-Hive-Request": "1",
                     "Content-Type": "application/json"},
        )  # fmt: skip
        response = conn.getresponse()
        token: str = json.loads(response.read())["token"]
    finally:
        conn.close()
    return token


async def spawn_all(hive: Hive, agents: Sequence[str]) -> None:
    gate = asyncio.Semaphore(SPAWN_CONCURRENCY)

    async def one(name: str) -> None:
        async with gate, HiveClient(hive.host_sock) as host:
            async with asyncio.timeout(CALL_TIMEOUT):
                await host.call(rq.Spawn(cmd="spawn", name=name), rs.Done)

    await asyncio.gather(*(one(n) for n in agents))


async def turns_run(hive: Hive, name: str) -> int:
    async with HiveClient(hive.harness_sock(name)) as h:
        got = await h.call(rq.TurnStatus(cmd="turn_status"), rs.HarnessState)
    return got.turns_run


async def one_round(hive: Hive, agents: Sequence[str]) -> None:
    """The operator sends every agent a message at once; returns when each finished a
    turn more (bounded)."""
    before = await asyncio.gather(*(turns_run(hive, n) for n in agents))
    async with HiveClient(hive.host_sock) as op:
        await asyncio.gather(
            *(op.call(rq.Send(cmd="send", to=n, body=f"round for {n}"), rs.Sent) for n in agents)
        )

    async def done(name: str, count: int) -> None:
        async with HiveClient(hive.harness_sock(name)) as h:
            got = await h.call(
                rq.TurnStatus(cmd="turn_status", after_turns=count + 1, wait_seconds=ROUND_BOUND),
                rs.HarnessState,
            )
        if got.turns_run <= count:
            raise RuntimeError(f"{name} ran no turn within {ROUND_BOUND:.0f}s")

    async with asyncio.timeout(ROUND_BOUND + 10):
        await asyncio.gather(*(done(n, c) for n, c in zip(agents, before, strict=True)))


async def measure(hive: Hive, agents: Sequence[str], rounds: int) -> tuple[Latencies, Latencies]:
    """The snapshot's latency idle and while every agent's turn starts at once."""
    await spawn_all(hive, agents)
    fetcher = Fetcher(dashboard_port(hive), log_in(hive))
    try:
        _, state = fetcher.fetch()
        rows: list[dict[str, object]] = state["agents"]  # type: ignore[assignment]
        shown = {row["name"] for row in rows}
        missing = set(agents) - shown
        if missing:
            raise RuntimeError(f"the snapshot lacks {sorted(missing)[:5]}")
        idle = [(await asyncio.to_thread(fetcher.fetch))[0] for _ in range(IDLE_SAMPLES)]
        loaded: list[float] = []
        for _ in range(rounds):
            stop = threading.Event()
            sampler = threading.Thread(target=fetcher.until, args=(stop, loaded))
            sampler.start()
            try:
                await one_round(hive, agents)
            finally:
                stop.set()
                sampler.join(timeout=60)
    finally:
        fetcher.close()
    return Latencies(idle), Latencies(loaded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with hive_with(answer) as (hive, _fake):
        idle, loaded = asyncio.run(measure(hive, names(args.agents), args.rounds))
    print(idle.line(f"/api/state idle, {args.agents} agents"))
    print(loaded.line(f"/api/state while {args.agents} turns start at once"))


if __name__ == "__main__":
    main()
