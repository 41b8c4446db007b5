"""What the operator does around the crash watch: a kill, a stop, a restart or a start is no
crash, even one spanning a scan, landing between two or failing during start-up, and an agent
destroyed, stopped or started during its backoff is left as the operator put it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from hive_core import lifecycle, specs
from hive_core.errors import BackendError
from hive_core.services import Services
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.test_crash_watch import Hive, _populate, hive

__all__ = ["hive"]  # the fixture, from the crash watch's tests


@pytest.mark.parametrize("halt", [lifecycle.kill, lifecycle.stop])
async def test_an_operator_kill_or_stop_is_no_crash(
    hive: Hive, halt: Callable[[Services, str, str], Awaitable[str]]
) -> None:
    await _populate(hive)
    hive.at(15)
    assert (await halt(hive.s, "alice", "operator")).endswith("alice")
    assert not hive.fake.status("alice").running
    assert hive.nudges == []
    starts = len(hive.fake.starts)

    for t in (20, 30, 100, 1000):
        assert await hive.tick(t) == []
    assert await hive.crashes(MANAGER_NAME) == []
    assert await hive.crashes(OPERATOR) == []
    assert not hive.fake.status("alice").running
    assert len(hive.fake.starts) == starts


async def test_an_operator_restart_spanning_a_tick_is_no_crash(hive: Hive) -> None:
    await _populate(hive)
    hive.at(12)
    async with hive.s.transients.recording("alice", "restart", "operator"):
        await hive.s.backend.stop("alice")
        assert await hive.tick(15) == []
        await hive.s.backend.start(specs.spec_for(hive.s, hive.s.registry.get("alice")))
    pid = hive.pid("alice")
    assert pid is not None
    starts = len(hive.fake.starts)

    for t in (20, 30, 100):
        assert await hive.tick(t) == []
    assert await hive.crashes(MANAGER_NAME) == []
    assert await hive.crashes(OPERATOR) == []
    assert hive.pid("alice") == pid
    assert len(hive.fake.starts) == starts


async def test_an_operator_restart_between_ticks_is_no_crash(hive: Hive) -> None:
    await _populate(hive)
    before = hive.pid("alice")
    hive.at(15)
    assert await lifecycle.restart(hive.s, "alice", "operator") == "restarted alice"
    assert await hive.tick(20) == []
    assert hive.pid("alice") not in (None, before)
    assert await hive.crashes(MANAGER_NAME) == []


async def test_a_slow_operator_restart_that_began_before_the_last_scan_is_no_crash(
    hive: Hive,
) -> None:
    await _populate(hive)
    hive.at(12)
    async with hive.s.transients.recording("alice", "restart", "operator"):
        # Its graceful stop is slow: a scan still sees the old harness running...
        assert await hive.tick(15) == []
        await hive.s.backend.stop("alice")
        # ...and the next one lands between the old harness's exit and the new one's start.
        assert await hive.tick(25) == []
        await hive.s.backend.start(specs.spec_for(hive.s, hive.s.registry.get("alice")))
    assert await hive.crashes(MANAGER_NAME) == []


async def test_a_vanish_while_a_start_is_under_way_is_no_crash(hive: Hive) -> None:
    await _populate(hive)
    hive.at(12)
    await lifecycle.stop(hive.s, "alice", "operator")
    assert await hive.tick(15) == []
    hive.at(16)
    async with hive.s.transients.recording("alice", "start", "operator"):
        await hive.s.registry.set_desired("alice", "running")
        await hive.s.backend.start(specs.spec_for(hive.s, hive.s.registry.get("alice")))
        hive.fake.crash("alice", 1)  # dies in start-up; the operator's start reports it
        assert await hive.tick(18) == []
    assert await hive.tick(20) == []
    assert await hive.tick(100) == []
    assert await hive.crashes(MANAGER_NAME) == []
    assert not hive.fake.status("alice").running


async def test_an_operator_transition_before_the_last_scan_excuses_no_later_crash(
    hive: Hive,
) -> None:
    await _populate(hive)
    hive.at(12)
    assert await lifecycle.restart(hive.s, "alice", "operator") == "restarted alice"
    assert await hive.tick(15) == []
    hive.at(17)
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    assert len(await hive.crashes(MANAGER_NAME)) == 1


async def test_an_operator_restart_that_fails_to_start_is_no_crash(hive: Hive) -> None:
    await _populate(hive)
    hive.at(12)
    hive.fake.fail_next_start = True
    with pytest.raises(BackendError, match="exited during start-up"):
        await lifecycle.restart(hive.s, "alice", "operator")
    assert hive.nudges == ["alice"]
    starts = len(hive.fake.starts)
    for t in (15, 30, 100):
        assert await hive.tick(t) == []
    assert await hive.crashes(MANAGER_NAME) == []
    assert len(hive.fake.starts) == starts


async def test_a_destroyed_agent_that_vanishes_is_not_reported(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    await hive.s.registry.remove("alice")
    hive.fake.crash("alice", 1)
    starts = len(hive.fake.starts)
    for t in (20, 25, 100):
        assert await hive.tick(t) == []
    assert await hive.crashes(MANAGER_NAME) == []
    assert await hive.crashes(OPERATOR) == []
    assert len(hive.fake.starts) == starts


async def test_an_agent_destroyed_during_its_backoff_is_not_restarted(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    await hive.s.registry.remove("alice")
    starts = len(hive.fake.starts)
    assert await hive.tick(25) == []
    assert await hive.tick(100) == []
    assert len(hive.fake.starts) == starts
    assert not hive.fake.status("alice").running


async def test_an_agent_stopped_during_its_backoff_is_not_restarted(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    hive.at(22)
    assert await lifecycle.stop(hive.s, "alice", "operator") == "alice is not running"
    starts = len(hive.fake.starts)
    assert await hive.tick(25) == []
    assert await hive.tick(100) == []
    assert len(hive.fake.starts) == starts
    assert not hive.fake.status("alice").running


async def test_an_agent_started_during_its_backoff_is_not_started_twice(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    hive.at(22)
    assert await lifecycle.start(hive.s, "alice", "operator") == "started alice"
    pid = hive.pid("alice")
    starts = len(hive.fake.starts)
    assert await hive.tick(25) == []
    assert hive.pid("alice") == pid
    assert len(hive.fake.starts) == starts
