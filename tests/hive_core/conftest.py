from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_core.action_links import ActionLinks
from hive_core.approvals import Approvals
from hive_core.broker import Broker
from hive_core.bus import EventBus, Subscription
from hive_core.containers.backend import ContainerBackend
from hive_core.db import Database
from hive_core.deployed_config import DeployedConfigs
from hive_core.liveness import Liveness
from hive_core.notify import Notifications
from hive_core.questions import Questions
from hive_core.registry import Registry
from hive_core.reminders import Reminders
from hive_core.services import Services
from hive_core.settings import Settings
from hive_core.sockets.agents import AgentSockets
from hive_core.sockets.server import SocketServer
from hive_core.stuck import StuckWatch
from hive_core.transients import Transients
from hive_core.usage import Usage
from hive_share.events import Frame

T0 = 1_700_000_000.0


class FakeClock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


async def drain(sub: Subscription) -> list[Frame]:
    """Every frame already queued for `sub`, in order; never waits for a new one."""
    frames = []
    while True:
        try:
            # A zero timeout cancels the get only if it has to suspend: the queue is empty.
            async with asyncio.timeout(0):
                frames.append(await sub.get())
        except TimeoutError:
            return frames


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "hive.sqlite"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    database = await Database.open(db_path)
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def no_agent_sockets(name: str) -> SocketServer:
    raise AssertionError(f"agent sockets are not opened in these tests (asked for {name!r})")


def services(
    db: Database,
    bus: EventBus,
    clock: FakeClock,
    registry: Registry,
    broker: Broker,
    backend: ContainerBackend,
    state_dir: Path,
    run_dir: Path,
) -> Services:
    """A daemon's services over real stores, with `backend` and no agent sockets."""
    s = Services(
        settings=Settings(state_dir=state_dir, run_dir=run_dir),
        clock=clock,
        db=db,
        bus=bus,
        registry=registry,
        broker=broker,
        approvals=Approvals(db, bus, clock),
        transients=Transients(db, bus, clock),
        questions=Questions(db, bus, clock, broker, "here"),
        reminders=Reminders(db, clock, broker, state_dir / "agents"),
        backend=backend,
        liveness=Liveness(),
        agent_sockets=AgentSockets(no_agent_sockets),
    )
    s.configs = DeployedConfigs(s.settings.agents_dir)
    s.stuck = StuckWatch(s)
    s.usage = Usage(s)
    s.links = ActionLinks(b"k" * 32, db, clock, s.settings.notify_link_hours)
    s.notifier = Notifications(s, [])
    return s
