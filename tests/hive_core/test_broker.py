from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_core import message_vacuum
from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import Conflict, ShuttingDown, UnknownAgent
from hive_core.message_vacuum import RETENTION_SECONDS
from hive_share import events
from tests.hive_core.conftest import FakeClock, drain

RECIPIENTS = {"alice", "bob", "operator"}
DAY = 24 * 3600.0


@pytest.fixture
async def broker(db: Database, bus: EventBus, clock: FakeClock) -> AsyncIterator[Broker]:
    b = Broker(db, bus, clock, lambda name: name in RECIPIENTS)
    yield b
    b.close()


async def _barrier(db: Database) -> None:
    """Return once reads queued before this call have finished and their callers resumed.

    The reader is one thread taking jobs in order, and the loop runs callbacks
    in order, so a task that queued a read before us has run past it by now.
    """
    await db.read(lambda c: None)
    await db.read(lambda c: None)


def _rows(db_path: Path) -> list[tuple[int, str, str, str, float | None]]:
    """The messages table through a separate connection: only committed rows show."""
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        rows = conn.execute(
            "SELECT id, sender, recipient, body, delivered_at FROM messages ORDER BY id"
        ).fetchall()
    return [tuple(r) for r in rows]


async def test_send_returns_after_the_message_is_committed(
    broker: Broker, db_path: Path, clock: FakeClock
) -> None:
    msg_id, duplicate = await broker.send("alice", "bob", "hello", None)
    assert duplicate is False
    assert _rows(db_path) == [(msg_id, "alice", "bob", "hello", None)]


async def test_send_publishes_the_message_on_the_bus(
    broker: Broker, bus: EventBus, clock: FakeClock
) -> None:
    sub = bus.subscribe()
    msg_id, _ = await broker.send("alice", "bob", "hello", None)
    frames = await drain(sub)
    assert len(frames) == 1
    event = frames[0].event
    assert isinstance(event, events.Sent)
    assert (event.message.id, event.message.sender, event.message.recipient) == (
        msg_id,
        "alice",
        "bob",
    )
    assert event.message.sent_at == clock.now()


async def test_a_retried_send_with_the_same_key_is_stored_once(
    broker: Broker, db_path: Path, bus: EventBus
) -> None:
    sub = bus.subscribe()
    first = await broker.send("alice", "bob", "hello", "key-1")
    second = await broker.send("alice", "bob", "hello", "key-1")
    assert first == (first[0], False)
    assert second == (first[0], True)
    assert len(_rows(db_path)) == 1
    assert len(await drain(sub)) == 1


async def test_the_same_key_from_another_sender_is_a_different_message(
    broker: Broker, db_path: Path
) -> None:
    a, _ = await broker.send("alice", "bob", "hello", "key-1")
    b, dup = await broker.send("operator", "bob", "hello", "key-1")
    assert a != b
    assert dup is False
    assert len(_rows(db_path)) == 2


@pytest.mark.parametrize(("to", "body"), [("bob", "changed"), ("operator", "hello")])
async def test_reusing_a_key_for_a_different_message_is_a_conflict(
    broker: Broker, db_path: Path, to: str, body: str
) -> None:
    await broker.send("alice", "bob", "hello", "key-1")
    with pytest.raises(Conflict, match="key-1"):
        await broker.send("alice", to, body, "key-1")
    assert len(_rows(db_path)) == 1


async def test_sending_to_an_unknown_recipient_is_refused_and_stores_nothing(
    broker: Broker, db_path: Path
) -> None:
    with pytest.raises(UnknownAgent, match="zed"):
        await broker.send("alice", "zed", "hello", None)
    assert _rows(db_path) == []


async def test_recv_with_no_wait_on_an_empty_inbox_returns_nothing(broker: Broker) -> None:
    async with asyncio.timeout(5):
        assert await broker.recv("bob", owner=1, wait_seconds=0, limit=10) == []


async def test_recv_returns_undelivered_messages_oldest_first_up_to_the_limit(
    broker: Broker,
) -> None:
    ids = [(await broker.send("alice", "bob", f"m{i}", None))[0] for i in range(5)]
    await broker.send("alice", "operator", "not for bob", None)
    got = await broker.recv("bob", owner=1, wait_seconds=0, limit=3)
    assert [m.id for m in got] == ids[:3]
    assert [m.body for m in got] == ["m0", "m1", "m2"]
    rest = await broker.recv("bob", owner=1, wait_seconds=0, limit=10)
    assert [m.id for m in rest] == ids[3:]


async def test_a_waiting_recv_is_woken_by_a_send(broker: Broker, db: Database) -> None:
    waiting = asyncio.create_task(broker.recv("bob", owner=1, wait_seconds=30, limit=10))
    await _barrier(db)
    assert not waiting.done()  # it found nothing and is waiting

    msg_id, _ = await broker.send("alice", "bob", "wake up", None)

    async with asyncio.timeout(5):
        got = await waiting
    assert [(m.id, m.body) for m in got] == [(msg_id, "wake up")]


async def test_a_send_to_someone_else_does_not_end_a_waiting_recv(
    broker: Broker, db: Database
) -> None:
    waiting = asyncio.create_task(broker.recv("bob", owner=1, wait_seconds=30, limit=10))
    await _barrier(db)
    await broker.send("alice", "operator", "not for bob", None)
    await _barrier(db)
    assert not waiting.done()

    await broker.send("alice", "bob", "for bob", None)
    async with asyncio.timeout(5):
        got = await waiting
    assert [m.body for m in got] == ["for bob"]


async def test_leased_messages_go_to_nobody_else_until_their_lease_is_released(
    broker: Broker,
) -> None:
    ids = [(await broker.send("alice", "bob", f"m{i}", None))[0] for i in range(2)]
    first = await broker.recv("bob", owner=1, wait_seconds=0, limit=10)
    assert [m.id for m in first] == ids

    assert await broker.recv("bob", owner=2, wait_seconds=0, limit=10) == []

    broker.release(1)
    again = await broker.recv("bob", owner=2, wait_seconds=0, limit=10)
    assert [m.id for m in again] == ids


async def test_release_wakes_a_waiting_receiver_with_the_released_messages(
    broker: Broker, db: Database
) -> None:
    msg_id, _ = await broker.send("alice", "bob", "m", None)
    await broker.recv("bob", owner=1, wait_seconds=0, limit=10)
    waiting = asyncio.create_task(broker.recv("bob", owner=2, wait_seconds=30, limit=10))
    await _barrier(db)
    assert not waiting.done()

    broker.release(1)

    async with asyncio.timeout(5):
        got = await waiting
    assert [m.id for m in got] == [msg_id]


async def test_ack_by_a_connection_that_does_not_hold_the_lease_is_a_conflict(
    broker: Broker, db_path: Path
) -> None:
    msg_id, _ = await broker.send("alice", "bob", "m", None)
    await broker.recv("bob", owner=1, wait_seconds=0, limit=10)
    with pytest.raises(Conflict):
        await broker.ack("bob", owner=2, ids=[msg_id])
    with pytest.raises(Conflict):
        await broker.ack("bob", owner=1, ids=[msg_id + 1000])
    assert _rows(db_path)[0][4] is None


async def test_marking_delivered_counts_and_announces_only_what_it_marked(
    broker: Broker, bus: EventBus, clock: FakeClock
) -> None:
    """Two readers of one inbox (the operator's, twice at once): what the first marked
    delivered, the second neither counts nor announces again."""
    first, _ = await broker.send("alice", "operator", "read by the first", None)
    await broker.operator_inbox(limit=10, wait_seconds=0)
    second, _ = await broker.send("alice", "operator", "new", None)
    clock.advance(5)
    sub = bus.subscribe(kinds=("delivered",))

    assert await broker._mark_delivered("operator", [first, second, second]) == 1

    frames = await drain(sub)
    assert [f.event for f in frames] == [
        events.Delivered(recipient="operator", ids=[second], delivered_at=clock.now())
    ]


async def test_ack_of_a_message_never_received_is_a_conflict(broker: Broker) -> None:
    msg_id, _ = await broker.send("alice", "bob", "m", None)
    with pytest.raises(Conflict):
        await broker.ack("bob", owner=1, ids=[msg_id])


async def test_ack_marks_messages_delivered_and_publishes_delivered(
    broker: Broker, bus: EventBus, clock: FakeClock, db_path: Path
) -> None:
    ids = [(await broker.send("alice", "bob", f"m{i}", None))[0] for i in range(3)]
    await broker.recv("bob", owner=1, wait_seconds=0, limit=10)
    clock.advance(5)
    sub = bus.subscribe()

    assert await broker.ack("bob", owner=1, ids=ids[:2]) == 2

    assert [r[4] for r in _rows(db_path)] == [clock.now(), clock.now(), None]
    frames = await drain(sub)
    assert [f.event for f in frames] == [
        events.Delivered(recipient="bob", ids=ids[:2], delivered_at=clock.now())
    ]
    # Acked messages are gone even after the lease holder disconnects.
    broker.release(1)
    again = await broker.recv("bob", owner=2, wait_seconds=0, limit=10)
    assert [m.id for m in again] == ids[2:]


async def test_close_answers_a_waiting_recv_with_shutting_down(
    broker: Broker, db: Database
) -> None:
    waiting = asyncio.create_task(broker.recv("bob", owner=1, wait_seconds=30, limit=10))
    await _barrier(db)
    assert not waiting.done()

    broker.close()

    async with asyncio.timeout(5):
        with pytest.raises(ShuttingDown):
            await waiting
    with pytest.raises(ShuttingDown):
        await broker.recv("bob", owner=1, wait_seconds=0, limit=10)


async def test_vacuum_removes_only_delivered_messages_past_retention(
    broker: Broker, clock: FakeClock, db_path: Path
) -> None:
    old_read, _ = await broker.send("alice", "bob", "old read", None)
    old_unread, _ = await broker.send("alice", "bob", "old unread", None)
    await broker.recv("bob", owner=1, wait_seconds=0, limit=1)
    await broker.ack("bob", owner=1, ids=[old_read])

    clock.advance(29 * DAY)
    recent_read, _ = await broker.send("alice", "operator", "recent read", None)
    await broker.recv("operator", owner=1, wait_seconds=0, limit=1)
    await broker.ack("operator", owner=1, ids=[recent_read])

    assert RETENTION_SECONDS == 30 * DAY
    removed = await broker.vacuum(clock.now() + 2 * DAY)

    assert removed == 1
    assert [r[0] for r in _rows(db_path)] == [old_unread, recent_read]


async def test_vacuum_deletes_in_chunks_until_every_old_message_is_gone(
    broker: Broker, clock: FakeClock, db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_vacuum, "VACUUM_CHUNK", 3)
    ids = [(await broker.send("alice", "bob", f"m{i}", None))[0] for i in range(10)]
    got = await broker.recv("bob", owner=1, wait_seconds=0, limit=10)
    await broker.ack("bob", owner=1, ids=[m.id for m in got])
    kept, _ = await broker.send("alice", "bob", "unread", None)

    removed = await broker.vacuum(clock.now() + 31 * DAY)

    assert removed == len(ids) == 10
    assert [r[0] for r in _rows(db_path)] == [kept]


async def test_vacuum_keeps_an_old_message_delivered_within_the_window(
    broker: Broker, clock: FakeClock, db_path: Path
) -> None:
    gone, _ = await broker.send("alice", "bob", "read at once", None)
    late, _ = await broker.send("alice", "bob", "read a month later", None)
    await broker.recv("bob", owner=1, wait_seconds=0, limit=1)
    await broker.ack("bob", owner=1, ids=[gone])
    clock.advance(29 * DAY)
    await broker.recv("bob", owner=1, wait_seconds=0, limit=1)
    await broker.ack("bob", owner=1, ids=[late])
    clock.advance(2 * DAY)
    recent, _ = await broker.send("alice", "bob", "sent since the cutoff", None)

    assert await broker.vacuum(clock.now()) == 1

    assert [r[0] for r in _rows(db_path)] == [late, recent]
    clock.advance(29 * DAY)
    assert await broker.vacuum(clock.now()) == 1  # 30 days after it was read
    assert [r[0] for r in _rows(db_path)] == [recent]


async def test_inbox_returns_the_newest_messages_oldest_first_and_marks_them_delivered(
    broker: Broker, db_path: Path
) -> None:
    ids = [(await broker.send("alice", "operator", f"m{i}", None))[0] for i in range(5)]
    await broker.send("alice", "bob", "not for the operator", None)

    got = await broker.operator_inbox(limit=3, wait_seconds=0)

    assert [m.id for m in got] == ids[2:]
    assert [m.body for m in got] == ["m2", "m3", "m4"]
    delivered = {r[0]: r[4] for r in _rows(db_path)}
    assert all(delivered[i] is not None for i in ids[2:])
    assert await broker.undelivered_count("bob") == 1


async def test_inbox_of_an_empty_inbox_returns_nothing_without_waiting(broker: Broker) -> None:
    async with asyncio.timeout(5):
        assert await broker.operator_inbox(limit=10, wait_seconds=0) == []


async def test_a_waiting_inbox_is_woken_by_a_send(broker: Broker, db: Database) -> None:
    waiting = asyncio.create_task(broker.operator_inbox(limit=10, wait_seconds=30))
    await _barrier(db)
    assert not waiting.done()

    await broker.send("alice", "operator", "hi", None)

    async with asyncio.timeout(5):
        got = await waiting
    assert [m.body for m in got] == ["hi"]


async def test_concurrent_sends_reach_a_looping_receiver_exactly_once_in_order(
    broker: Broker,
) -> None:
    senders = ["alice", "operator"]
    per_sender = 150
    total = per_sender * len(senders)

    async def send_all(who: str) -> list[int]:
        ids = []
        for i in range(per_sender):
            msg_id, _ = await broker.send(who, "bob", f"{who}-{i}", f"{who}-{i}")
            ids.append(msg_id)
        return ids

    async def receive_all() -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        while len(got) < total:
            batch = await broker.recv("bob", owner=7, wait_seconds=5, limit=17)
            assert batch, "a receive timed out with messages outstanding"
            got += [(m.id, m.body) for m in batch]
            await broker.ack("bob", 7, [m.id for m in batch])
        return got

    async with asyncio.timeout(30):
        receiver = asyncio.create_task(receive_all())
        sent = await asyncio.gather(*(send_all(who) for who in senders))
        received = await receiver
    ids = [i for i, _ in received]
    assert len(ids) == len(set(ids)) == total
    assert sorted(ids) == sorted(i for batch in sent for i in batch)
    for who in senders:
        mine = [body for _, body in received if body.startswith(who)]
        assert mine == [f"{who}-{i}" for i in range(per_sender)]
    assert await broker.recv("bob", owner=7, wait_seconds=0, limit=10) == []


async def test_a_long_poll_whose_client_hung_up_leases_nothing(
    broker: Broker, db: Database
) -> None:
    open_ = True
    abandoned = asyncio.create_task(
        broker.recv("bob", owner=1, wait_seconds=30, limit=10, is_open=lambda: open_)
    )
    await _barrier(db)  # it has looked at the empty inbox and parked on its wake-up
    assert not abandoned.done()
    open_ = False  # the client hangs up; the daemon has not noticed through a write yet
    msg_id, _ = await broker.send("alice", "bob", "for the living", None)
    async with asyncio.timeout(5):
        assert await abandoned == []
    got = await broker.recv("bob", owner=2, wait_seconds=0, limit=10)
    assert [m.id for m in got] == [msg_id]


async def test_the_operator_pages_back_through_an_inbox_too_big_for_one_reply(
    broker: Broker,
) -> None:
    bodies = [f"{i:02d}" + "x" * 200_000 for i in range(9)]  # ~1.8 MB: two replies at least
    for body in bodies:
        await broker.send("alice", "operator", body, None)
    seen: list[str] = []
    before: int | None = None
    while True:
        page = await broker.operator_inbox(limit=50, wait_seconds=0, before=before)
        if not page:
            break
        assert len(page) < len(bodies), "one reply held more than its byte budget"
        seen = [m.body for m in page] + seen
        before = page[0].id
    assert seen == bodies
    assert await broker.undelivered_count("operator") == 0


async def test_inbox_after_an_id_returns_the_oldest_above_it_so_a_follower_skips_none(
    broker: Broker,
) -> None:
    ids = [(await broker.send("alice", "operator", f"m{i}", None))[0] for i in range(7)]
    seen: list[int] = []
    after = 0
    while page := await broker.operator_inbox(limit=3, wait_seconds=0, after=after):
        seen += [m.id for m in page]
        after = page[-1].id
    assert seen == ids
    assert [m.id for m in await broker.operator_inbox(10, 0, after=ids[4])] == ids[5:]
    assert await broker.undelivered_count("operator") == 0


async def test_inbox_after_waits_past_older_unread_messages_until_a_newer_one(
    broker: Broker, db: Database
) -> None:
    old, _ = await broker.send("alice", "operator", "old and unread", None)
    waiting = asyncio.create_task(broker.operator_inbox(10, wait_seconds=30, after=old))
    await _barrier(db)
    assert not waiting.done(), "an unread message at or below `after` ended the wait"

    new, _ = await broker.send("alice", "operator", "new", None)

    async with asyncio.timeout(5):
        got = await waiting
    assert [m.id for m in got] == [new]
    assert await broker.undelivered_count("operator") == 1  # the old one was not shown


async def test_inbox_after_with_nothing_newer_times_out_empty(broker: Broker) -> None:
    last, _ = await broker.send("alice", "operator", "seen", None)
    async with asyncio.timeout(5):
        assert await broker.operator_inbox(10, wait_seconds=0.05, after=last) == []
