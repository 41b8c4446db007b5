from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_core.bus import EventBus, Subscription
from hive_core.db import Database
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
