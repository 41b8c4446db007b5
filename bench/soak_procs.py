"""The soak's view of processes through /proc: which harness is whose, a harness's claude,
the daemon's memory, descriptors and CPU over time, and what is left after the run."""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench import proc

SAMPLE_EVERY = 1.0
"""Seconds between samples of the daemon."""
HARNESS_EVERY = 5
"""Every this many daemon samples, the harnesses' memory too."""
MiB = 2**20


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:  # gone, or not ours to read
        return b""


def environ(pid: int) -> dict[str, str]:
    pairs = (e.partition(b"=") for e in _read(f"/proc/{pid}/environ").split(b"\0") if e)
    return {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}


def cmdline(pid: int) -> str:
    return _read(f"/proc/{pid}/cmdline").replace(b"\0", b" ").decode(errors="replace").strip()


def children(pid: int) -> list[int]:
    try:
        return proc.children(pid)
    except FileNotFoundError:
        return []


def harnesses(daemon_pid: int) -> dict[str, int]:
    """Agent name → its harness's pid: the daemon's children (local backend), named by the
    `HIVE_AGENT_NAME` in their environment."""
    found: dict[str, int] = {}
    for pid in children(daemon_pid):
        name = environ(pid).get("HIVE_AGENT_NAME")
        if name:
            found[name] = pid
    return found


def claudes(harness_pid: int) -> list[int]:
    """The harness's claude processes (its children running the CLI, not the login probe)."""
    return [p for p in children(harness_pid) if "claude" in cmdline(p) and "auth" not in cmdline(p)]


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


@dataclass(frozen=True)
class Leftover:
    pid: int
    cmdline: str


def leftovers(root: str, skip: Iterable[int]) -> list[Leftover]:
    """Every process (but `skip`) whose command line or environment names `root`."""
    skipped = set(skip)
    found: list[Leftover] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skipped:
            continue
        pid = int(entry.name)
        line = cmdline(pid)
        if root in line or any(root in v for v in environ(pid).values()):
            found.append(Leftover(pid, line[:300]))
    return found


async def still_alive(pids: Iterable[int], bound: float) -> list[int]:
    """Wait (up to `bound` in all) for each of `pids` to exit; those that did not."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + bound
    alive: list[int] = []
    for pid in pids:
        try:
            fd = os.pidfd_open(pid)
        except ProcessLookupError:
            continue
        gone = asyncio.Event()
        loop.add_reader(fd, gone.set)
        try:
            async with asyncio.timeout(max(0.0, deadline - loop.time())):
                await gone.wait()
        except TimeoutError:
            alive.append(pid)
        finally:
            loop.remove_reader(fd)
            os.close(fd)
    return alive


@dataclass
class Series:
    """(time, value) samples; times are `time.time()`."""

    rss_mb: list[tuple[float, float]] = field(default_factory=list)
    fds: list[tuple[float, float]] = field(default_factory=list)
    cpu_pct: list[tuple[float, float]] = field(default_factory=list)
    """The daemon's CPU over the last interval, % of one core."""
    harness_rss_mb: list[tuple[float, float, float, int]] = field(default_factory=list)
    """(time, median, max, count) over the running harnesses."""


class Sampler:
    """Samples the daemon (`pid()` names the current one; None while it is down) every
    `SAMPLE_EVERY` seconds, the harnesses every `HARNESS_EVERY` samples."""

    def __init__(self, pid: Callable[[], int | None]) -> None:
        self.pid = pid
        self.series = Series()

    async def run(self) -> None:
        last: tuple[int, float, float] | None = None  # pid, cpu seconds, wall
        n = 0
        while True:
            await asyncio.sleep(SAMPLE_EVERY)  # the sampling pace
            pid = self.pid()
            if pid is None:
                last = None
                continue
            now = time.time()
            with contextlib.suppress(OSError, RuntimeError):
                cpu = proc.cpu_seconds(pid)
                self.series.rss_mb.append((now, proc.rss_bytes(pid) / MiB))
                self.series.fds.append((now, fd_count(pid)))
                if last is not None and last[0] == pid and now > last[2]:
                    self.series.cpu_pct.append((now, 100 * (cpu - last[1]) / (now - last[2])))
                last = (pid, cpu, now)
            n += 1
            if n % HARNESS_EVERY == 0:
                self._harnesses(pid, now)

    def _harnesses(self, daemon: int, now: float) -> None:
        sizes: list[float] = []
        for pid in children(daemon):
            with contextlib.suppress(OSError, RuntimeError):
                sizes.append(proc.rss_bytes(pid) / MiB)
        if sizes:
            self.series.harness_rss_mb.append(
                (now, statistics.median(sizes), max(sizes), len(sizes))
            )


QUIET_STEP = 0.5
QUIET_CPU = 0.05
"""The harnesses count as settled when, together, they use less than this share of one core
per harness over one `QUIET_STEP`."""


async def quiet(daemon_pid: int, bound: float) -> bool:
    """Wait (up to `bound`) until the daemon's harnesses are settled; whether they did."""
    deadline = time.monotonic() + bound
    while time.monotonic() < deadline:
        pids = children(daemon_pid)
        before, started = proc.total_cpu(pids), time.monotonic()
        await asyncio.sleep(QUIET_STEP)  # one sampling window
        used = (proc.total_cpu(pids) - before) / (time.monotonic() - started)
        if pids and used < QUIET_CPU * len(pids):
            return True
    return False
