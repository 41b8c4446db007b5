"""A stopped daemon leaves nothing running: once `Daemon.run` returns, every task it started
on its loop (sockets and their connections, the backend and its exit watchers, the loops,
the crash watch, the attention list, the watchdog, `STATUS=`, the dashboard) has ended.

A real daemon runs in-process on the local backend (the manager's harness starts as a
child process), is stopped once it tells systemd READY=1, and the loop's tasks are counted
before the loop closes.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop
from anyio.abc import TaskGroup

from hive_core import housekeeping
from hive_core.clock import Clock
from hive_core.daemon import Daemon
from hive_core.services import Services
from hive_core.settings import Settings
from tests.e2e.hive import AGENT_PORT_BASE, short_tmp

RUN_BOUND = 120.0
"""Seconds the daemon gets to start (its manager's harness included) and stop."""

LoopFactory = Callable[[], asyncio.AbstractEventLoop] | None
LOOPS: dict[str, LoopFactory] = {"asyncio": None, "uvloop": uvloop.new_event_loop}
"""`None`: asyncio's own loop (`asyncio.run`); uvloop's, as `run_forever` uses it."""


@pytest.fixture
def root() -> Iterator[Path]:
    path = short_tmp()  # short: the run dir holds unix sockets
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def _tasks_left_by_a_stopped_daemon(root: Path) -> list[str]:
    """Start a daemon in `root`, stop it as soon as it is ready, and name every task of
    the loop but this one that is still there when `Daemon.run` has returned."""
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(root / "notify"))
    notify.setblocking(False)
    settings = Settings(
        state_dir=root / "s",
        run_dir=root / "r",
        dashboard_port=0,
        agent_port_base=AGENT_PORT_BASE,
    )
    # Under systemd with a watchdog: the watchdog pings and the STATUS= line run too.
    env = {**os.environ, "NOTIFY_SOCKET": str(root / "notify"), "WATCHDOG_USEC": "2000000",
           "WATCHDOG_PID": str(os.getpid())}  # fmt: skip
    daemon = Daemon(settings, env)
    notes: list[bytes] = []

    def on_notify() -> None:  # a reader callback, not a task: nothing of the test's is left
        notes.extend(notify.recv(4096).split(b"\n"))
        if b"READY=1" in notes:
            daemon.stop()

    loop = asyncio.get_running_loop()
    loop.add_reader(notify.fileno(), on_notify)
    try:
        async with asyncio.timeout(RUN_BOUND):
            await daemon.run()
    finally:
        loop.remove_reader(notify.fileno())
        notify.close()
    assert b"READY=1" in notes and b"STOPPING=1" in notes
    left = asyncio.all_tasks() - {asyncio.current_task()}
    return sorted(f"{task.get_name()}: {task.get_coro()!r}" for task in left)


@pytest.mark.parametrize("loop_factory", LOOPS.values(), ids=LOOPS.keys())
def test_no_task_outlives_a_stopped_daemon(root: Path, loop_factory: LoopFactory) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        left = runner.run(_tasks_left_by_a_stopped_daemon(root))
    assert left == []


def test_a_loop_started_outside_the_task_group_is_found(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: one periodic loop started on the loop itself, beside the
    daemon's task group, is still there when the daemon has stopped."""
    start_loops = housekeeping.start_loops

    def and_a_stray_one(tg: TaskGroup, s: Services, clock: Clock) -> None:
        start_loops(tg, s, clock)
        stray = housekeeping.periodic(3600.0, s.db.checkpoint, "stray checkpoint")
        asyncio.get_running_loop().create_task(stray, name="stray")

    monkeypatch.setattr(housekeeping, "start_loops", and_a_stray_one)
    with asyncio.Runner() as runner:  # closing it cancels the stray loop
        left = runner.run(_tasks_left_by_a_stopped_daemon(root))
    assert [name.split(":")[0] for name in left] == ["stray"]
