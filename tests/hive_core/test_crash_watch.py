"""The crash watch, driven tick by tick over real services and a fake container backend: a
crash seen and told once, the restart at the backoff, the crash window and giving up, who hears
of a crash, and the state changes each scan publishes."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskStatus

from hive_core import lifecycle, specs
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.containers.backend import AgentSpec, ContainerStatus
from hive_core.containers.logfile import Tail
from hive_core.crash_watch import CrashWatch, backoff
from hive_core.db import Database
from hive_core.registry import Registry
from hive_core.services import Services
from hive_share import events, helper
from hive_share.models import Role
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock, drain, services

AGENTS: tuple[tuple[str, Role], ...] = (
    (MANAGER_NAME, "manager"),
    ("alice", "agent"),
    ("bob", "agent"),
)


class FakeBackend:
    """Keeps a status per agent; exits go through `lifecycle.on_exit` like the real backend's."""

    def __init__(self) -> None:
        self.services: Services | None = None
        self.statuses: dict[str, ContainerStatus] = {}
        self.starts: list[str] = []
        self.fail_next_start = False
        """The next harness dies during start-up, before reporting itself alive."""
        self._next_pid = 1000

    def _s(self) -> Services:
        assert self.services is not None, "wire the backend to its services first"
        return self.services

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()

    async def start(self, spec: AgentSpec) -> ContainerStatus:
        current = self.status(spec.name)
        if current.running:
            return current
        self._next_pid += 1
        status = ContainerStatus(running=True, pid=self._next_pid)
        self.statuses[spec.name] = status
        self.starts.append(spec.name)
        if self.fail_next_start:
            self.fail_next_start = False
            self.crash(spec.name, 1)
        else:
            self._s().liveness.report_alive(spec.name, self._next_pid)
        return status

    def _end(self, name: str, code: int, expected: bool) -> None:
        status = self.status(name)
        if not status.running:
            return
        assert status.pid is not None
        self.statuses[name] = ContainerStatus(running=False)
        lifecycle.on_exit(self._s(), name, status.pid, code, expected=expected)

    async def stop(self, name: str) -> None:
        self._end(name, -15, expected=True)

    async def kill(self, name: str) -> None:
        self._end(name, -9, expected=True)

    def crash(self, name: str, code: int) -> None:
        """The harness dies on its own."""
        assert self.status(name).running, f"{name} is not running"
        self._end(name, code, expected=False)

    def vanish(self, name: str) -> None:
        """The process is gone and nobody told anyone (no exit hook, no publish)."""
        self.statuses[name] = ContainerStatus(running=False)

    def status(self, name: str) -> ContainerStatus:
        return self.statuses.get(name, ContainerStatus(running=False))

    async def shutdown(self) -> None:
        for name in list(self.statuses):
            self._end(name, -15, expected=True)

    async def destroy(self, name: str) -> None:
        await self.stop(name)

    async def build(self, spec: AgentSpec, commit: str) -> None:
        pass

    async def finalize(self, spec: AgentSpec) -> None:
        pass

    async def log_tail(self, spec: AgentSpec, lines: int) -> Tail:
        return Tail([], False, 0)

    async def log_read(self, spec: AgentSpec, offset: int) -> tuple[bytes, int]:
        return b"", offset


class Hive:
    """Services, the fake backend, the watch, and a clock that each tick sets."""

    def __init__(self, s: Services, fake: FakeBackend, clock: FakeClock) -> None:
        self.s = s
        self.fake = fake
        self.clock = clock
        self.watch = CrashWatch(s, clock)
        self.nudges: list[str] = []

    def at(self, t: float) -> float:
        """Move the clock to T0 + t; returns the absolute time."""
        self.clock.t = T0 + t
        return self.clock.t

    async def tick(self, t: float) -> list[str]:
        """A scan at T0 + t, with the clock there too."""
        return await self.watch.tick(self.at(t))

    async def crashes(self, recipient: str) -> list[helper.ContainerCrash]:
        """The messages new in `recipient`'s inbox, each checked to be a ContainerCrash."""
        messages = await self.s.broker.recv(recipient, owner=1, wait_seconds=0, limit=10)
        found = []
        for m in messages:
            assert m.sender == "hive"
            assert isinstance(m.event, helper.ContainerCrash), m
            found.append(m.event)
        return found

    def pid(self, name: str) -> int | None:
        status = self.fake.status(name)
        return status.pid if status.running else None


@pytest.fixture
async def hive(
    db: Database, bus: EventBus, clock: FakeClock, tmp_path: Path
) -> AsyncIterator[Hive]:
    with tempfile.TemporaryDirectory(prefix="hh-") as run_dir:
        registry = Registry(db, clock)
        await registry.load()
        broker = Broker(db, bus, clock, registry.is_recipient)
        fake = FakeBackend()
        s = services(db, bus, clock, registry, broker, fake, tmp_path / "s", Path(run_dir))
        fake.services = s
        h = Hive(s, fake, clock)

        def nudge(name: str) -> None:
            h.nudges.append(name)
            h.watch.nudge(name)

        s.on_unexpected_exit = nudge  # as the daemon wires it
        try:
            yield h
        finally:
            broker.close()


async def _populate(h: Hive, agents: tuple[tuple[str, Role], ...] = AGENTS) -> None:
    """Register and start the agents at T0, then take the first scan at T0 + 10."""
    h.at(0)
    for name, role in agents:
        await h.s.registry.add(name, role)
        assert await lifecycle.start(h.s, name, "operator") == f"started {name}"
        assert h.fake.status(name).running
    assert await h.tick(10) == []


async def test_a_vanished_agent_yields_one_crash_event_to_the_manager(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    hive.fake.crash("alice", 3)
    assert hive.nudges == ["alice"]

    assert await hive.tick(20) == ["alice"]
    [event] = await hive.crashes(MANAGER_NAME)
    assert event.agent == "alice"
    assert event.restart_in_seconds == 5.0
    assert "code 3" in event.detail
    assert await hive.crashes(OPERATOR) == []

    assert await hive.tick(21) == []
    assert await hive.crashes(MANAGER_NAME) == []


async def test_a_crash_without_a_known_exit_code_says_it_vanished(hive: Hive) -> None:
    await _populate(hive)
    hive.fake.vanish("bob")
    assert await hive.tick(20) == ["bob"]
    [event] = await hive.crashes(MANAGER_NAME)
    assert event.agent == "bob"
    assert "vanished" in event.detail


async def test_the_crashed_agent_is_restarted_at_the_backoff(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    old_pid = hive.pid("alice")
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    starts = len(hive.fake.starts)

    assert await hive.tick(24.9) == []
    assert not hive.fake.status("alice").running
    assert len(hive.fake.starts) == starts

    assert await hive.tick(25.0) == []
    new_pid = hive.pid("alice")
    assert new_pid is not None
    assert new_pid != old_pid
    assert hive.fake.starts[starts:] == ["alice"]
    found = hive.s.registry.find("alice")
    assert found is not None
    assert found.desired == "running"
    assert [a for a, _, _ in await hive.s.transients.since("alice", T0 + 25.0)] == ["start"]

    assert await hive.tick(40) == []
    assert hive.pid("alice") == new_pid
    assert await hive.crashes(MANAGER_NAME) == [
        helper.ContainerCrash(
            agent="alice", detail="the harness exited with code 1", restart_in_seconds=5.0
        )
    ]


async def _crash_cycle(h: Hive, crash_at: float, expected_delay: float) -> None:
    """alice crashes at crash_at, is seen by a scan then, and is restarted at the backoff."""
    h.at(crash_at)
    h.fake.crash("alice", 2)
    assert await h.tick(crash_at) == ["alice"]
    [event] = await h.crashes(MANAGER_NAME)
    assert event.restart_in_seconds == expected_delay
    assert await h.tick(crash_at + expected_delay) == []
    assert h.fake.status("alice").running


async def test_backoff_doubles_and_the_fifth_crash_in_ten_minutes_gives_up(hive: Hive) -> None:
    await _populate(hive)
    for crash_at, delay in ((100, 5.0), (110, 10.0), (130, 20.0), (160, 40.0)):
        await _crash_cycle(hive, crash_at, delay)

    hive.at(210)
    hive.fake.crash("alice", 2)
    assert await hive.tick(210) == ["alice"]
    [event] = await hive.crashes(MANAGER_NAME)
    assert event.agent == "alice"
    assert event.restart_in_seconds is None
    assert "stays stopped" in event.detail
    # Giving up needs a person: the operator hears it too, but not of each crash before.
    assert await hive.crashes(OPERATOR) == [event]
    found = hive.s.registry.find("alice")
    assert found is not None
    assert found.desired == "stopped"

    starts = len(hive.fake.starts)
    for t in (215, 250, 600, 2000):
        assert await hive.tick(t) == []
    assert not hive.fake.status("alice").running
    assert len(hive.fake.starts) == starts
    assert await hive.crashes(MANAGER_NAME) == []

    # The operator starts it again; a crash more than ten minutes later starts over at 5 s.
    hive.at(2000)
    assert await lifecycle.start(hive.s, "alice", "operator") == "started alice"
    assert await hive.tick(2001) == []
    await _crash_cycle(hive, 2100, 5.0)


async def test_the_crash_window_slides(hive: Hive) -> None:
    await _populate(hive)
    for crash_at, delay in ((100, 5.0), (200, 10.0), (300, 20.0), (400, 40.0)):
        await _crash_cycle(hive, crash_at, delay)
    # The crash at 100 is over ten minutes old: four in the window, so no giving up.
    await _crash_cycle(hive, 750, 40.0)
    # Only the crash at 750 is still in the window.
    await _crash_cycle(hive, 1300, 10.0)


async def test_a_crash_long_after_the_last_one_starts_again_at_five_seconds(hive: Hive) -> None:
    await _populate(hive)
    await _crash_cycle(hive, 100, 5.0)
    await _crash_cycle(hive, 701, 5.0)


async def test_a_crash_right_after_an_automatic_restart_is_still_a_crash(hive: Hive) -> None:
    await _populate(hive)
    hive.at(100)
    hive.fake.crash("alice", 2)
    assert await hive.tick(100) == ["alice"]
    assert await hive.tick(105) == []
    assert hive.fake.status("alice").running
    # A crash loop: the restarted harness dies again before the next periodic scan.
    hive.at(107)
    hive.fake.crash("alice", 2)
    assert await hive.tick(107) == ["alice"]
    assert [e.restart_in_seconds for e in await hive.crashes(MANAGER_NAME)] == [5.0, 10.0]


async def test_an_agent_started_and_crashed_between_scans_is_reported(hive: Hive) -> None:
    await _populate(hive)
    hive.at(12)
    await lifecycle.stop(hive.s, "alice", "operator")
    assert await hive.tick(15) == []
    hive.at(16)
    assert await lifecycle.start(hive.s, "alice", "operator") == "started alice"
    hive.at(17)
    hive.fake.crash("alice", 4)
    # No scan saw it running; the backend's report of the exit is enough.
    assert await hive.tick(20) == ["alice"]
    [event] = await hive.crashes(MANAGER_NAME)
    assert event.restart_in_seconds == 5.0
    assert "code 4" in event.detail
    assert await hive.tick(25) == []
    assert hive.fake.status("alice").running


async def test_a_restart_that_dies_during_start_up_counts_as_the_next_crash(
    hive: Hive, caplog: pytest.LogCaptureFixture
) -> None:
    await _populate(hive)
    hive.at(15)
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    hive.fake.fail_next_start = True
    assert await hive.tick(25) == []
    assert "restarting alice failed" in caplog.text
    assert not hive.fake.status("alice").running
    assert await hive.tick(26) == ["alice"]
    assert [e.restart_in_seconds for e in await hive.crashes(MANAGER_NAME)] == [5.0, 10.0]
    assert await hive.tick(35.9) == []
    assert not hive.fake.status("alice").running
    assert await hive.tick(36) == []
    assert hive.fake.status("alice").running


async def test_a_crash_of_the_manager_goes_to_the_operator(hive: Hive) -> None:
    await _populate(hive)
    hive.at(15)
    hive.fake.crash(MANAGER_NAME, 137)
    assert await hive.tick(20) == [MANAGER_NAME]
    [event] = await hive.crashes(OPERATOR)
    assert event.agent == MANAGER_NAME
    assert event.restart_in_seconds == 5.0
    assert "code 137" in event.detail
    assert await hive.crashes(MANAGER_NAME) == []

    assert await hive.tick(25) == []
    assert hive.fake.status(MANAGER_NAME).running


async def test_without_a_manager_an_agent_crash_goes_to_the_operator(hive: Hive) -> None:
    await _populate(hive, (("alice", "agent"),))
    hive.at(15)
    hive.fake.crash("alice", 1)
    assert await hive.tick(20) == ["alice"]
    [event] = await hive.crashes(OPERATOR)
    assert event.agent == "alice"


async def test_the_scan_publishes_state_changes_and_removals(hive: Hive) -> None:
    sub = hive.s.bus.subscribe()
    hive.at(0)
    for name, role in AGENTS:
        await hive.s.registry.add(name, role)
        await hive.s.backend.start(specs.spec_for(hive.s, hive.s.registry.get(name)))
    assert await drain(sub) == []

    # The first scan tells about everyone.
    assert await hive.tick(10) == []
    seen = set()
    for frame in await drain(sub):
        assert isinstance(frame.event, events.ContainerStateChanged)
        seen.add((frame.event.agent.name, frame.event.agent.state))
    assert seen == {(name, "running") for name, _ in AGENTS}

    # Nothing changed, nothing said.
    assert await hive.tick(20) == []
    assert await drain(sub) == []

    # alice stops (on purpose, so no crash) without anyone publishing it: the scan does.
    await hive.s.registry.set_desired("alice", "stopped")
    hive.fake.vanish("alice")
    assert await drain(sub) == []
    assert await hive.tick(30) == []
    [frame] = await drain(sub)
    assert isinstance(frame.event, events.ContainerStateChanged)
    assert frame.event.agent.name == "alice"
    assert frame.event.agent.state == "stopped"
    assert frame.event.agent.pid is None

    # The manager comes back under a new pid between scans: a change too.
    hive.fake.vanish(MANAGER_NAME)
    await hive.s.backend.start(specs.spec_for(hive.s, hive.s.registry.get(MANAGER_NAME)))
    new_pid = hive.pid(MANAGER_NAME)
    assert await hive.tick(40) == []
    [frame] = await drain(sub)
    assert isinstance(frame.event, events.ContainerStateChanged)
    assert frame.event.agent.name == MANAGER_NAME
    assert frame.event.agent.state == "running"
    assert frame.event.agent.pid == new_pid

    # bob leaves the registry: the scan says he is removed, once.
    await hive.s.registry.remove("bob")
    assert await hive.tick(50) == []
    assert [f.event for f in await drain(sub)] == [events.ContainerRemoved(name="bob")]
    assert await hive.tick(60) == []
    assert await drain(sub) == []
    sub.close()


def test_backoff_doubles_from_five_seconds_to_at_most_five_minutes() -> None:
    assert [backoff(n) for n in range(1, 9)] == [5, 10, 20, 40, 80, 160, 300, 300]
    assert all(isinstance(backoff(n), float) for n in range(1, 9))
