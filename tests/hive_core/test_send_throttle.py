"""Per-sender send throttling: a token bucket of SEND_BURST refilled at SEND_RATE per second."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator

import pytest

from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import Busy, UnknownAgent
from hive_core.send_throttle import SEND_BURST, SEND_RATE, _Bucket
from hive_share import helper
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock

RECIPIENTS = {"alice", "bob", MANAGER_NAME, OPERATOR}
BURST = int(SEND_BURST)
RATE = int(SEND_RATE)


@pytest.fixture
async def broker(db: Database, bus: EventBus, clock: FakeClock) -> AsyncIterator[Broker]:
    b = Broker(db, bus, clock, lambda name: name in RECIPIENTS)
    yield b
    b.close()


async def _send(broker: Broker, sender: str, n: int, to: str = "bob") -> list[int]:
    """`n` sends started together (one group commit); all must succeed."""
    results = await asyncio.gather(
        *(broker.send(sender, to, f"{sender} #{i}", None) for i in range(n))
    )
    assert all(duplicate is False for _, duplicate in results)
    return [msg_id for msg_id, _ in results]


async def _stored(db: Database, sender: str) -> int:
    def count(conn: sqlite3.Connection) -> int:
        return int(
            conn.execute("SELECT count(*) FROM messages WHERE sender = ?", (sender,)).fetchone()[0]
        )

    return await db.read(count)


async def _throttled(broker: Broker, sender: str) -> Busy:
    with pytest.raises(Busy) as info:
        await broker.send(sender, "bob", "one too many", None)
    return info.value


def test_the_limits_are_whole_numbers_the_tests_can_count() -> None:
    assert (BURST, RATE) == (SEND_BURST, SEND_RATE)
    assert RATE >= 2
    assert BURST > RATE


async def test_a_burst_is_allowed_then_the_sender_is_told_to_slow_down(
    broker: Broker, db: Database
) -> None:
    assert len(set(await _send(broker, "alice", BURST))) == BURST
    busy = await _throttled(broker, "alice")
    assert busy.code == "busy"
    assert busy.message == (
        f"alice is sending faster than {RATE} messages/s after a burst of {BURST}; "
        "slow down and retry"
    )
    # Refused sends are not stored, and refusing again does not let one through.
    await _throttled(broker, "alice")
    assert await _stored(db, "alice") == BURST


async def test_the_burst_refills_at_the_rate(
    broker: Broker, db: Database, clock: FakeClock
) -> None:
    await _send(broker, "alice", BURST)
    await _throttled(broker, "alice")

    clock.advance(1.0)
    await _send(broker, "alice", RATE)
    await _throttled(broker, "alice")

    clock.advance(0.5)
    await _send(broker, "alice", RATE // 2)
    await _throttled(broker, "alice")

    clock.advance(0.9 / SEND_RATE)  # not yet one whole token
    await _throttled(broker, "alice")
    clock.advance(0.2 / SEND_RATE)
    await _send(broker, "alice", 1)
    await _throttled(broker, "alice")

    assert await _stored(db, "alice") == BURST + RATE + RATE // 2 + 1


async def test_a_long_pause_refills_only_up_to_the_burst(broker: Broker, clock: FakeClock) -> None:
    await _send(broker, "alice", 1)
    clock.advance(3600.0)
    await _send(broker, "alice", BURST)
    await _throttled(broker, "alice")


async def test_sustained_sending_at_the_rate_is_never_refused(
    broker: Broker, clock: FakeClock
) -> None:
    await _send(broker, "alice", BURST)
    for _ in range(5):
        clock.advance(1.0)
        await _send(broker, "alice", RATE)
    await _throttled(broker, "alice")


async def test_others_are_unaffected_while_one_sender_is_throttled(
    broker: Broker, db: Database
) -> None:
    await _send(broker, "alice", BURST)
    await _throttled(broker, "alice")

    await _send(broker, "bob", BURST, to="alice")
    await _send(broker, MANAGER_NAME, 10, to="alice")
    await _send(broker, OPERATOR, 10, to="alice")
    await _throttled(broker, "alice")
    await _throttled(broker, "bob")

    # alice still receives what others send her while she may not send.
    messages = await broker.recv("alice", 1, 0, 1000)
    assert len(messages) == BURST + 20


async def test_the_operator_is_never_throttled(
    broker: Broker, db: Database, clock: FakeClock
) -> None:
    await _send(broker, OPERATOR, 2 * BURST + 1, to="alice")
    await _send(broker, OPERATOR, BURST, to="bob")
    assert await _stored(db, OPERATOR) == 3 * BURST + 1
    # ...and the operator's volume leaves the agents' buckets alone.
    await _send(broker, "alice", BURST)
    await _throttled(broker, "alice")


async def test_a_send_to_nobody_costs_no_token(broker: Broker) -> None:
    for _ in range(5):
        with pytest.raises(UnknownAgent):
            await broker.send("alice", "carol", "hello?", None)
    await _send(broker, "alice", BURST)
    await _throttled(broker, "alice")


async def test_helper_events_from_the_hive_are_not_throttled(broker: Broker, db: Database) -> None:
    event = helper.LoggedIn(agent="alice")
    ids = await asyncio.gather(*(broker.notify("alice", event) for _ in range(BURST + 1)))
    assert len(set(ids)) == BURST + 1
    await _send(broker, "alice", BURST)


def test_the_bucket_directly() -> None:
    bucket = _Bucket(at=T0)
    assert all(bucket.take(T0) for _ in range(BURST))
    assert not bucket.take(T0)
    assert not bucket.take(T0 + 0.5 / SEND_RATE)
    assert bucket.take(T0 + 1.5 / SEND_RATE)
    assert not bucket.take(T0 + 1.5 / SEND_RATE)
    assert bucket.take(T0 + 1_000_000)
    assert bucket.tokens == SEND_BURST - 1


async def test_a_wall_clock_step_backwards_does_not_block_a_sender(
    broker: Broker, clock: FakeClock
) -> None:
    await _send(broker, "alice", 1)
    clock.advance(-60.0)  # NTP steps the clock back a minute
    await _send(broker, "alice", 1)
