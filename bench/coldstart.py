"""Cold start of a big hive: `hive-core serve` → the first `list` answered.

The state dir (agents registered and stopped, delivered messages) is built once and
kept under `/tmp`, keyed by the schema version and the sizes; every run restarts the
daemon on it in place, as an operator restarts a hive (a copy would cost more than the
run: tens of thousands of files in the agents' config repos).
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench.broker import BenchError
from bench.daemon import Daemon, DaemonError, launched, wait_ready
from bench.report import note
from hive_core import agent_dirs, config_repos, git
from hive_core.clock import SystemClock
from hive_core.db import Database
from hive_core.errors import HiveError
from hive_core.migrations import MIGRATIONS
from hive_core.registry import Registry
from hive_share import blocking

CACHE_DIR = Path("/tmp")
CACHE_MAX_AGE = 14 * 24 * 3600.0
"""A cached state dir older than this is rebuilt: hive-core vacuums delivered messages after
30 days, at start, which would turn the measurement into a vacuum."""
SEED_CONCURRENCY = 8
ROWS_PER_CHUNK = 100_000
LIST_POLL = 0.005
"""Seconds between two `list` attempts while the daemon starts."""
LIST_TIMEOUT = 30.0
STAMP = "built-at"


def cache_path(agents: int, messages: int) -> Path:
    """The root (its `state/` the hive's, `run/` its sockets) kept for these sizes and this
    schema."""
    return CACHE_DIR / f"hive-bench-cold-v{len(MIGRATIONS)}-{agents}a-{messages}m"


def agent_names(count: int) -> list[str]:
    return [f"c{i:03d}" for i in range(count)]


def _fresh(path: Path) -> bool:
    try:
        built = float((path / "state" / STAMP).read_text())
    except (OSError, ValueError):
        return False
    return time.time() - built < CACHE_MAX_AGE


async def _register(state: Path, names: list[str]) -> None:
    """Create each agent as `spawn` would (dirs, seeded config repos, the registry row with
    its deployed commit), stopped: no harness runs for it."""
    git.use("git")
    logging.getLogger("hive_core").setLevel(logging.WARNING)  # one INFO line per seeded repo
    agents_dir = state / "agents"
    db = await Database.open(state / "hive.sqlite")
    registry = Registry(db, SystemClock())
    await registry.load()
    gate = asyncio.Semaphore(SEED_CONCURRENCY)

    async def one(name: str) -> None:
        async with gate:
            await agent_dirs.create_dirs(agents_dir, name)
            sha, _ = await config_repos.seed(agents_dir, name)
        await registry.add(name, "agent")
        await registry.set_deployed(name, sha)
        await registry.set_desired(name, "stopped")

    try:
        await asyncio.gather(*(one(n) for n in names))
    finally:
        await db.close()


def _fill(db_path: Path, names: list[str], count: int) -> None:
    """`count` delivered messages between `names`, in one transaction, from the last day."""
    now = time.time()
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for first in range(0, count, ROWS_PER_CHUNK):
            rows = (
                (
                    names[i % len(names)],
                    names[(i + 1) % len(names)],
                    f"message {i}",
                    now - 86400 + 86400 * i / count,
                    now - 86400 + 86400 * i / count + 0.001,
                )
                for i in range(first, min(count, first + ROWS_PER_CHUNK))
            )
            conn.executemany(
                "INSERT INTO messages (sender, recipient, body, sent_at, delivered_at) "
                "VALUES (?, ?, ?, ?, ?)",
                rows,
            )
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def build(env: Mapping[str, str], agents: int, messages: int) -> Path:
    """The cached root for these sizes, built first if missing or stale: one daemon
    start (the schema, the manager), then the agents and the messages written offline."""
    path = cache_path(agents, messages)
    if _fresh(path):
        return path
    started = time.monotonic()
    note(f"building {path} ({agents} agents, {messages} messages); kept for later runs")
    root = Path(tempfile.mkdtemp(dir=CACHE_DIR, prefix="hb"))
    try:
        with launched(root, env) as (daemon, notify):
            wait_ready(daemon, notify)
        state = root / "state"
        names = agent_names(agents)
        try:
            asyncio.run(_register(state, names))
            _fill(state / "hive.sqlite", names, messages)
        except (sqlite3.Error, HiveError) as exc:
            raise BenchError(f"could not build the cold-start hive in {root}: {exc}") from exc
        (state / STAMP).write_text(f"{time.time()}\n")
        shutil.rmtree(path, ignore_errors=True)
        shutil.rmtree(root / "run", ignore_errors=True)
        os.rename(root, path)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    note(f"built {path} in {time.monotonic() - started:.1f}s")
    return path


def _first_list(daemon: Daemon) -> list[dict[str, Any]]:
    """Poll `list` on the host socket (bounded) until it answers; the agents it lists.

    Raises:
        DaemonError: the daemon exited, or nothing answered within `LIST_TIMEOUT`.
    """
    deadline = time.monotonic() + LIST_TIMEOUT
    while True:
        try:
            got = blocking.call(daemon.host_socket, {"cmd": "list"}, "agents")
        except blocking.NotRunning:
            if daemon.proc.poll() is not None:
                raise DaemonError(
                    f"hive-core exited while starting:\n{daemon.log_tail()}"
                ) from None
            if time.monotonic() > deadline:
                raise DaemonError(
                    f"`list` got no answer within {LIST_TIMEOUT:.0f}s:\n{daemon.log_tail()}"
                ) from None
            time.sleep(LIST_POLL)
            continue
        agents: list[dict[str, Any]] = got["agents"]
        return agents


def cold_start(root: Path, env: Mapping[str, str], agents: int) -> float:
    """Seconds from spawning `hive-core serve` on `root` until `list` answers, checking it
    lists the `agents` registered agents (the manager aside); then READY=1 and a stop."""
    with launched(root, env) as (daemon, notify):
        listed = _first_list(daemon)
        took = time.perf_counter() - daemon.started
        wait_ready(daemon, notify)
    others = [a for a in listed if a.get("role") != "manager"]
    if len(others) != agents:
        raise BenchError(f"the first `list` showed {len(others)} agents, expected {agents}")
    return took


def rounds(
    cached: Path, env: Mapping[str, str], agents: int, count: int
) -> tuple[list[float], list[float]]:
    """`count` cold starts on `cached` and on an empty state dir, interleaved."""
    empty = Path(tempfile.mkdtemp(dir="/tmp", prefix="hb"))
    try:
        value: list[float] = []
        baseline: list[float] = []
        for _ in range(count):
            value.append(cold_start(cached, env, agents))
            shutil.rmtree(empty / "state", ignore_errors=True)
            shutil.rmtree(empty / "run", ignore_errors=True)
            baseline.append(cold_start(empty, env, 0))
        return value, baseline
    finally:
        shutil.rmtree(empty, ignore_errors=True)
