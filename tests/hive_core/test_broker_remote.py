"""The broker in a hive that spans hosts: sends to another host's agent are committed with a
`forwards` row; another host's messages are taken once by their key."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import Conflict, UnknownAgent
from tests.hive_core.conftest import FakeClock

LOCAL = {"alice", "operator"}
ELSEWHERE = {"zed": "beta"}
DAY = 24 * 3600.0


@pytest.fixture
def pokes() -> list[int]:
    """One entry per time the broker told the outbox a forward was committed."""
    return []


@pytest.fixture
async def broker(
    db: Database, bus: EventBus, clock: FakeClock, pokes: list[int]
) -> AsyncIterator[Broker]:
    b = Broker(db, bus, clock, lambda name: name in LOCAL)
    b.route_remote(ELSEWHERE.get, lambda: pokes.append(1))
    yield b
    b.close()


def _forwards(db_path: Path) -> list[tuple[int, str, float | None]]:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute("SELECT message_id, host, forwarded_at FROM forwards").fetchall()
    return [tuple(r) for r in rows]


async def test_a_send_to_another_hosts_agent_is_committed_for_its_host(
    broker: Broker, db_path: Path, pokes: list[int]
) -> None:
    first, dup = await broker.send("alice", "zed", "hello", "k1")
    again, dup_again = await broker.send("alice", "zed", "hello", "k1")
    local, _ = await broker.send("alice", "operator", "here", None)
    assert (dup, again, dup_again) == (False, first, True)
    assert _forwards(db_path) == [(first, "beta", None)]  # once; the local one has none
    assert pokes == [1]
    assert local != first
    with pytest.raises(UnknownAgent):
        await broker.send("alice", "nobody", "lost?", None)


async def test_another_hosts_message_is_taken_once_by_its_key(broker: Broker) -> None:
    assert await broker.accept("zed", "alice", "from beta", "host:beta:7") is False
    assert await broker.accept("zed", "alice", "from beta", "host:beta:7") is True
    with pytest.raises(Conflict):
        await broker.accept("zed", "alice", "something else", "host:beta:7")
    with pytest.raises(UnknownAgent, match="on this host"):
        await broker.accept("zed", "zed", "not here", "host:beta:8")
    got = await broker.recv("alice", owner=1, wait_seconds=0, limit=10)
    assert [(m.sender, m.body) for m in got] == [("zed", "from beta")]


async def test_the_vacuum_forgets_forwards_with_their_messages(
    broker: Broker, db: Database, clock: FakeClock, db_path: Path
) -> None:
    sent, _ = await broker.send("alice", "zed", "old", None)
    await db.write(
        lambda c: c.execute("UPDATE forwards SET forwarded_at = ?", (clock.now(),)).rowcount
    )
    await db.write(
        lambda c: c.execute("UPDATE messages SET delivered_at = ?", (clock.now(),)).rowcount
    )
    pending, _ = await broker.send("alice", "zed", "not yet out", None)
    await broker.vacuum(clock.now() + 31 * DAY)
    assert _forwards(db_path) == [(pending, "beta", None)]
    assert sent != pending
