"""hive-core's sweep of the agents' own history files: rows past their retention go from
every agent whose harness does not run (stopped, tombstones), never from a running one, and
never through a link or from a file another process keeps locked."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from pathlib import Path
from typing import Literal

import pytest

from hive_agent import history, turn_stats
from hive_core import events_vacuum
from hive_core.containers.backend import ContainerStatus
from hive_core.db import Database
from hive_share.retention import DAY, EVENTS, TURNS
from tests.hive_core.conftest import T0, FakeClock
from tests.hive_core.test_crash_watch import FakeBackend
from tests.hive_core.test_login_notes import Daemon, running

OLD_EVENT = T0 - 8 * DAY
NEW_EVENT = T0 - 6 * DAY
OLD_TURN = T0 - 91 * DAY
NEW_TURN = T0 - 89 * DAY


def _state(root: Path, name: str) -> Path:
    state = root / "s" / "agents" / name / "state"
    state.mkdir(parents=True, exist_ok=True)
    return state


def _fill(state: Path) -> None:
    """The harness's two files, as its own schemas make them, one row each side of the
    retention."""
    with contextlib.closing(sqlite3.connect(state / EVENTS.file)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.executescript(history.SCHEMA)
        conn.executemany("INSERT INTO events (ts, kind, data) VALUES (?, 'note', '{}')",
                         [(OLD_EVENT,), (NEW_EVENT,)])  # fmt: skip
        conn.commit()
    with contextlib.closing(sqlite3.connect(state / TURNS.file)) as conn:
        conn.executescript(turn_stats.SCHEMA)
        for i, ended in enumerate((OLD_TURN, NEW_TURN)):
            conn.execute(
                "INSERT INTO turns (turn_id, model, wake_from, result_kind, result_detail, "
                "started_at, ended_at, duration_ms, new_session, attempts, input_tokens, "
                "output_tokens, cache_creation_input_tokens, cache_read_input_tokens, "
                "context_tokens, cost_usd, tool_call_count, tools, permission_denials, "
                "permission_denial_count) VALUES (?, 'm', '', 'success', '', ?, ?, 0, 0, 1, "
                "0, 0, 0, 0, 0, 0, 0, '{}', '[]', 0)",
                (f"t{i}", ended - 1, ended),
            )
        conn.commit()


def _times(state: Path) -> tuple[list[float], list[float]]:
    with contextlib.closing(sqlite3.connect(state / EVENTS.file)) as conn:
        events = [r[0] for r in conn.execute("SELECT ts FROM events ORDER BY ts")]
    with contextlib.closing(sqlite3.connect(state / TURNS.file)) as conn:
        turns = [r[0] for r in conn.execute("SELECT ended_at FROM turns ORDER BY ended_at")]
    return events, turns


FULL = ([OLD_EVENT, NEW_EVENT], [OLD_TURN, NEW_TURN])
PRUNED = ([NEW_EVENT], [NEW_TURN])


def _backend(d: Daemon) -> FakeBackend:
    backend = d.s.backend
    assert isinstance(backend, FakeBackend)
    return backend


async def test_idle_agents_and_tombstones_are_swept_and_running_ones_left_alone(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """hm1nd and alice are registered; alice runs, hm1nd is stopped, bob is a tombstone."""
    async with running(db, clock, tmp_path) as d:
        states = {name: _state(tmp_path, name) for name in ("hm1nd", "alice", "bob")}
        for state in states.values():
            _fill(state)
        _backend(d).statuses["alice"] = ContainerStatus(running=True, pid=7)
        swept = await events_vacuum.sweep(d.s, clock.now())
        assert (swept.agents, swept.rows) == (2, 4)
        assert _times(states["hm1nd"]) == PRUNED
        assert _times(states["bob"]) == PRUNED
        assert _times(states["alice"]) == FULL
        # The next sweep finds nothing more; alice's turn comes once it stops.
        _backend(d).statuses["alice"] = ContainerStatus(running=False)
        swept = await events_vacuum.sweep(d.s, clock.now())
        assert (swept.agents, swept.rows) == (3, 2)
        assert _times(states["alice"]) == PRUNED


async def test_nothing_is_created_where_the_harness_never_wrote(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        state = _state(tmp_path, "alice")
        (state / EVENTS.file).write_bytes(b"")  # an empty file: a database without tables
        swept = await events_vacuum.sweep(d.s, clock.now())
        assert swept.rows == 0
        assert sorted(p.name for p in state.iterdir()) == [EVENTS.file]
        assert (state / EVENTS.file).read_bytes() == b""


@pytest.mark.parametrize("how", ["symlink", "hardlink", "symlinked wal"])
async def test_a_link_in_the_state_dir_is_never_followed(
    db: Database, clock: FakeClock, tmp_path: Path, how: str
) -> None:
    """A file the agent's state dir names by a link may be any file of the host's: its rows
    stay, and so does the agent's own file when one of its companions is a link."""
    async with running(db, clock, tmp_path) as d:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _fill(elsewhere)
        state = _state(tmp_path, "alice")
        if how == "symlink":
            (state / EVENTS.file).symlink_to(elsewhere / EVENTS.file)
        elif how == "hardlink":
            os.link(elsewhere / EVENTS.file, state / EVENTS.file)
        else:
            _fill(state)
            (state / (EVENTS.file + "-wal")).symlink_to(elsewhere / "precious")
        await events_vacuum.sweep(d.s, clock.now())
        assert _times(elsewhere)[0] == FULL[0]
        assert not (elsewhere / "precious").exists()
        if how == "symlinked wal":
            (state / (EVENTS.file + "-wal")).unlink()
            assert _times(state) == ([OLD_EVENT, NEW_EVENT], [NEW_TURN])  # turns still swept


async def test_a_state_dir_that_is_a_link_is_not_swept(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    async with running(db, clock, tmp_path) as d:
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        _fill(elsewhere)
        (tmp_path / "s" / "agents" / "alice").mkdir(parents=True)
        (tmp_path / "s" / "agents" / "alice" / "state").symlink_to(elsewhere)
        swept = await events_vacuum.sweep(d.s, clock.now())
        assert swept.rows == 0
        assert _times(elsewhere) == FULL


async def test_a_file_locked_by_another_process_is_left_for_the_next_sweep(
    db: Database, clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_vacuum, "BUSY_TIMEOUT", 0.05)
    async with running(db, clock, tmp_path) as d:
        state = _state(tmp_path, "alice")
        _fill(state)
        holder = sqlite3.connect(state / EVENTS.file, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")  # a writer that does not let go
            swept = await events_vacuum.sweep(d.s, clock.now())
            assert swept.rows == 1  # the turn stats only
            holder.execute("ROLLBACK")
        finally:
            holder.close()
        assert _times(state) == ([OLD_EVENT, NEW_EVENT], [NEW_TURN])
        swept = await events_vacuum.sweep(d.s, clock.now())
        assert swept.rows == 1
        assert _times(state) == PRUNED


class WatchedLock(asyncio.Lock):
    """A lock that says when someone asks for it."""

    def __init__(self) -> None:
        super().__init__()
        self.asked = asyncio.Event()

    async def acquire(self) -> Literal[True]:
        self.asked.set()
        return await super().acquire()


async def test_an_agent_started_while_the_sweep_waited_for_its_lock_is_left_alone(
    db: Database, clock: FakeClock, tmp_path: Path
) -> None:
    """The sweep takes the agent's lifecycle lock, then reads its state again."""
    async with running(db, clock, tmp_path) as d:
        state = _state(tmp_path, "alice")
        _fill(state)
        lock = d.s.locks["alice"] = WatchedLock()
        async with lock:  # a start under way
            lock.asked.clear()
            sweeping = asyncio.create_task(events_vacuum.sweep(d.s, clock.now()))
            async with asyncio.timeout(10):
                await lock.asked.wait()
            _backend(d).statuses["alice"] = ContainerStatus(running=True, pid=9)
        swept = await sweeping
        assert swept.rows == 0
        assert _times(state) == FULL
