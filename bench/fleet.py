"""Many real harnesses at once: spawned through `host.sock` with a bound, left idle (each
parked in its `recv`), measured, then stopped."""

from __future__ import annotations

import asyncio
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import proc
from bench.broker import PHASE_TIMEOUT, BenchError
from bench.daemon import Daemon
from hive_share import requests as rq
from hive_share import responses as rs
from hive_share.client import HiveClient

SPAWN_CONCURRENCY = 4
"""Spawns in flight at once: each starts a harness (an interpreter, the MCP SDK), and the
machine may have two cores."""
CALL_TIMEOUT = 30.0
"""Bound on one `spawn` or `stop` request."""
QUIET_STEP = 0.5
"""Seconds per sample while waiting for the harnesses to finish starting."""
QUIET_CPU = 0.05
"""The harnesses count as started when, together, they use less than this share of one
core per harness over one `QUIET_STEP`."""


@dataclass(frozen=True)
class Idle:
    daemon_cpu: float
    """% of one core."""
    harness_cpu: float
    """% of one core, every harness of the daemon together (the manager's included)."""
    harnesses: int
    harness_rss: int
    """Bytes: the median `VmRSS` over those harnesses."""
    harness_anon: int
    """Bytes: the median `RssAnon` over those harnesses: their private memory, without the
    shared libraries' pages that every harness maps from the same files."""


def anon_bytes(pid: int) -> int:
    """`RssAnon` of process `pid` from `/proc/<pid>/status`: its resident anonymous pages
    (the Python heap, malloc's arenas, thread stacks), which no other process shares.

    Raises:
        RuntimeError: the status has no `RssAnon` line (a zombie).
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024  # in kB
    raise RuntimeError(f"/proc/{pid}/status has no RssAnon")


async def harness_rss(daemon: Daemon, name: str) -> int:
    """`VmRSS` of agent `name`'s harness (its pid from `list`).

    Raises:
        BenchError: it is not running.
    """
    async with HiveClient(daemon.host_socket) as client:
        listed = await client.call(rq.List(cmd="list"), rs.Agents)
    pid = next((a.pid for a in listed.agents if a.name == name), None)
    if pid is None:
        raise BenchError(f"{name} has no running harness")
    return proc.rss_bytes(pid)


def bound(count: int) -> float:
    """Seconds `count` spawns (or stops) may take in all: every batch at its bound."""
    return CALL_TIMEOUT * math.ceil(count / SPAWN_CONCURRENCY)


async def _each(
    host: Path, names: Sequence[str], make: Callable[[str], rq.Spawn | rq.Stop]
) -> None:
    gate = asyncio.Semaphore(SPAWN_CONCURRENCY)

    async def one(name: str) -> None:
        async with gate, HiveClient(host) as client:
            async with asyncio.timeout(CALL_TIMEOUT):
                await client.call(make(name), rs.Done)

    await asyncio.gather(*(one(n) for n in names))


async def spawn(daemon: Daemon, names: Sequence[str]) -> None:
    """Spawn `names`, `SPAWN_CONCURRENCY` at a time; each spawn bounded by `CALL_TIMEOUT`."""
    await _each(daemon.host_socket, names, lambda n: rq.Spawn(cmd="spawn", name=n))


async def stop(daemon: Daemon, names: Sequence[str]) -> None:
    """Stop their harnesses (their sockets and inboxes stay)."""
    await _each(daemon.host_socket, names, lambda n: rq.Stop(cmd="stop", name=n))


def harness_pids(daemon: Daemon) -> list[int]:
    """Every harness the daemon runs: its direct children under the local backend."""
    return proc.children(daemon.pid)


async def _quiet(daemon: Daemon, expected: int) -> list[int]:
    """Wait (bounded by `PHASE_TIMEOUT`) until `expected` harnesses run and have finished
    starting.

    Raises:
        BenchError: they did not, in time.
    """
    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        pids = harness_pids(daemon)
        before, started = proc.total_cpu(pids), time.monotonic()
        await asyncio.sleep(QUIET_STEP)
        used = (proc.total_cpu(pids) - before) / (time.monotonic() - started)
        if len(pids) == expected and used < QUIET_CPU * expected:
            return pids
        if time.monotonic() > deadline:
            raise BenchError(
                f"{len(pids)} of {expected} harnesses running after {PHASE_TIMEOUT:.0f}s, "
                f"together at {100 * used:.0f} % of a core"
            )


async def idle(daemon: Daemon, names: Sequence[str], settle: float, window: float) -> Idle:
    """CPU of the daemon and of its harnesses over `window` once `names` have started."""
    pids = await _quiet(daemon, len(names) + 1)  # the manager's harness too
    await asyncio.sleep(settle)
    daemon_start, harness_start = daemon.cpu_seconds(), proc.total_cpu(pids)
    wall_start = time.monotonic()
    await asyncio.sleep(window)
    daemon_end, harness_end = daemon.cpu_seconds(), proc.total_cpu(pids)
    wall = time.monotonic() - wall_start
    now = harness_pids(daemon)
    if sorted(now) != sorted(pids):
        raise BenchError(f"harnesses came or went during the idle window: {len(pids)} → {len(now)}")
    rss = [proc.rss_bytes(p) for p in pids]
    anon = [anon_bytes(p) for p in pids]
    return Idle(
        daemon_cpu=100 * (daemon_end - daemon_start) / wall,
        harness_cpu=100 * (harness_end - harness_start) / wall,
        harnesses=len(pids),
        harness_rss=int(statistics.median(rss)),
        harness_anon=int(statistics.median(anon)),
    )
