"""Reminders over a real database and broker; the scheduler is driven by explicit ticks."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hive_core.broker import Broker
from hive_core.bus import EventBus
from hive_core.db import Database
from hive_core.errors import Busy, Conflict, InvalidRequest, NotFound
from hive_core.reminders import MAX_AHEAD, MAX_PENDING_PER_AGENT, Reminders
from hive_core.state_files import read_state_file
from hive_share import helper
from hive_share.names import MANAGER_NAME, OPERATOR
from tests.hive_core.conftest import T0, FakeClock

DAY = 24 * 3600.0

_owners = itertools.count(1)


@pytest.fixture
def recipients() -> set[str]:
    """Who has an inbox; a test may remove a name to model an agent that is gone."""
    return {"alice", "bob", MANAGER_NAME, OPERATOR}


@pytest.fixture
def agents_dir(tmp_path: Path) -> Path:
    return tmp_path / "agents"


@pytest.fixture
def state(agents_dir: Path) -> Path:
    """alice's state dir, which she sees as /state."""
    path = agents_dir / "alice" / "state"
    path.mkdir(parents=True)
    return path


@pytest.fixture
async def broker(
    db: Database, bus: EventBus, clock: FakeClock, recipients: set[str]
) -> AsyncIterator[Broker]:
    b = Broker(db, bus, clock, lambda name: name in recipients)
    yield b
    b.close()


@pytest.fixture
def reminders(
    db: Database, clock: FakeClock, broker: Broker, agents_dir: Path, state: Path
) -> Reminders:
    return Reminders(db, clock, broker, agents_dir)


async def _due(broker: Broker, who: str) -> list[helper.ReminderDue]:
    """The ReminderDue events new in `who`'s inbox; anything else fails the test."""
    found = []
    for m in await broker.recv(who, next(_owners), 0, 100):
        assert m.sender == "hive", m
        assert isinstance(m.event, helper.ReminderDue), m
        found.append(m.event)
    return found


async def _message_count(db: Database) -> int:
    row = await db.read(lambda c: c.execute("SELECT count(*) FROM messages").fetchone())
    return int(row[0])


# --- adding -------------------------------------------------------------------------


async def test_in_seconds_sets_the_due_time_from_now(
    reminders: Reminders, clock: FakeClock
) -> None:
    clock.advance(5)
    r = await reminders.add("alice", "stand up", None, 90.0, None)
    assert (r.agent, r.message, r.due_at, r.created_at) == ("alice", "stand up", T0 + 95, T0 + 5)
    assert (r.status, r.file_path, r.delivered_at, r.payload, r.payload_note) == (
        "pending",
        None,
        None,
        None,
        None,
    )
    assert await reminders.listing("alice", r.id) == [r]
    assert await reminders.pending_count("alice") == 1


async def test_at_sets_the_due_time_itself(reminders: Reminders) -> None:
    r = await reminders.add("alice", "call", T0 + 3600.5, None, None)
    assert (r.due_at, r.created_at) == (T0 + 3600.5, T0)


async def test_in_seconds_zero_is_due_at_once(reminders: Reminders, broker: Broker) -> None:
    r = await reminders.add("alice", "now", None, 0.0, None)
    assert r.due_at == T0
    assert await reminders.tick(T0) == [r.id]
    assert [e.id for e in await _due(broker, "alice")] == [r.id]


BAD_PATHS = (
    "/etc/passwd",
    "/state",
    "/state/",
    "/state/../x",
    "/state/a/../b",
    "/state//x",
    "/state/./x",
    "/state/x/",
    "state/x",
    "/proc/self/environ",
    "/state/x\x00",
    "/state/../../bob/state/x",
    "",
)
"""Each refused by its own check; the database fixture is shared to keep the run short."""


async def test_exactly_one_of_at_and_in_seconds(reminders: Reminders) -> None:
    for at, in_seconds in [(None, None), (T0 + 60, 60.0), (T0 + 60, 0.0)]:
        with pytest.raises(InvalidRequest, match="exactly one"):
            await reminders.add("alice", "x", at, in_seconds, None)
    assert await reminders.pending_count("alice") == 0


async def test_at_in_the_past_is_refused(reminders: Reminders) -> None:
    for ago in (61.0, 3600.0, T0 - 1):
        with pytest.raises(InvalidRequest, match="in the past"):
            await reminders.add("alice", "too late", T0 - ago, None, None)
    assert await reminders.pending_count("alice") == 0


async def test_more_than_a_year_ahead_is_refused(reminders: Reminders) -> None:
    for at, in_seconds in [
        (None, MAX_AHEAD + 1),
        (T0 + MAX_AHEAD + 1, None),
        (None, 400 * DAY),
        (T0 + 10 * 366 * DAY, None),
    ]:
        with pytest.raises(InvalidRequest, match="year"):
            await reminders.add("alice", "far", at, in_seconds, None)
    assert await reminders.pending_count("alice") == 0


async def test_a_year_ahead_is_accepted(reminders: Reminders) -> None:
    assert (await reminders.add("alice", "a", None, 365 * DAY, None)).due_at == T0 + 365 * DAY
    assert (await reminders.add("alice", "b", T0 + MAX_AHEAD, None, None)).due_at == T0 + MAX_AHEAD


async def test_a_bad_file_path_is_refused_when_adding(reminders: Reminders) -> None:
    for path in BAD_PATHS:
        with pytest.raises(InvalidRequest, match="file_path"):
            await reminders.add("alice", "x", None, 60.0, path)
    assert await reminders.pending_count("alice") == 0
    assert await reminders.listing(None) == []


async def test_an_agent_may_have_only_so_many_pending_reminders(
    reminders: Reminders, clock: FakeClock
) -> None:
    added = await asyncio.gather(
        *(
            reminders.add("alice", f"r{i}", None, 60.0 + i, None)
            for i in range(MAX_PENDING_PER_AGENT)
        )
    )
    assert len({r.id for r in added}) == MAX_PENDING_PER_AGENT
    with pytest.raises(Busy, match=rf"{MAX_PENDING_PER_AGENT}"):
        await reminders.add("alice", "one more", None, 60.0, None)
    assert await reminders.pending_count("alice") == MAX_PENDING_PER_AGENT

    # bob is not held back by alice's backlog.
    assert (await reminders.add("bob", "mine", None, 60.0, None)).status == "pending"

    # Cancelling one frees its place.
    await reminders.cancel("alice", added[0].id)
    assert (await reminders.add("alice", "now", None, 60.0, None)).status == "pending"
    with pytest.raises(Busy):
        await reminders.add("alice", "and now", None, 60.0, None)


# --- firing -------------------------------------------------------------------------


async def test_a_reminder_fires_once_at_its_due_time(
    reminders: Reminders, broker: Broker, db: Database
) -> None:
    r = await reminders.add("alice", "check the build", None, 60.0, None)

    assert await reminders.tick(T0 + 59.999) == []
    assert await _due(broker, "alice") == []
    assert (await reminders.listing("alice", r.id))[0].status == "pending"

    assert await reminders.tick(T0 + 60) == [r.id]
    assert await _due(broker, "alice") == [
        helper.ReminderDue(
            id=r.id, message="check the build", payload_bytes=None, payload_note=None
        )
    ]
    [fired] = await reminders.listing("alice", r.id)
    assert (fired.status, fired.delivered_at, fired.payload) == ("delivered", T0 + 60, None)
    assert await reminders.pending_count("alice") == 0

    assert await reminders.tick(T0 + 61) == []
    assert await reminders.tick(T0 + 10 * DAY) == []
    assert await _due(broker, "alice") == []
    assert await _message_count(db) == 1
    for other in ("bob", MANAGER_NAME, OPERATOR):
        assert await _due(broker, other) == []


async def test_the_file_is_read_when_the_reminder_fires(
    reminders: Reminders, broker: Broker, state: Path
) -> None:
    (state / "notes").mkdir()
    notes = state / "notes" / "todo.md"
    notes.write_text("old text")
    r = await reminders.add("alice", "read your notes", None, 30.0, "/state/notes/todo.md")
    assert r.file_path == "/state/notes/todo.md"
    assert r.payload is None

    text = "- ship it ✓\n- café\n"
    notes.write_text(text, encoding="utf-8")
    size = len(text.encode("utf-8"))
    assert await reminders.tick(T0 + 30) == [r.id]

    assert await _due(broker, "alice") == [
        helper.ReminderDue(
            id=r.id,
            message="read your notes",
            payload_bytes=size,
            payload_note=f"/state/notes/todo.md: {size} bytes",
        )
    ]
    [fired] = await reminders.listing("alice", r.id)
    assert fired.payload == text
    assert fired.payload_note == f"/state/notes/todo.md: {size} bytes"
    # The stored payload does not follow later edits of the file.
    notes.write_text("changed")
    assert (await reminders.listing("alice", r.id))[0].payload == text
    assert (await reminders.listing(None, r.id))[0].payload == text


async def test_a_missing_file_still_fires_with_a_note(reminders: Reminders, broker: Broker) -> None:
    r = await reminders.add("alice", "look", None, 1.0, "/state/gone.txt")
    assert await reminders.tick(T0 + 1) == [r.id]
    [event] = await _due(broker, "alice")
    assert event.payload_bytes is None
    assert event.payload_note is not None
    assert "did not exist" in event.payload_note
    [fired] = await reminders.listing("alice", r.id)
    assert (fired.status, fired.payload) == ("delivered", None)
    assert fired.payload_note == event.payload_note


async def test_a_file_outside_the_state_dir_is_not_attached(
    reminders: Reminders, broker: Broker, state: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("host secret")
    (state / "link").symlink_to(secret)
    r = await reminders.add("alice", "peek", None, 1.0, "/state/link")
    assert await reminders.tick(T0 + 1) == [r.id]
    [event] = await _due(broker, "alice")
    assert event.payload_bytes is None
    assert event.payload_note is not None
    assert "symlink" in event.payload_note
    [fired] = await reminders.listing("alice", r.id)
    assert fired.payload is None
    assert "host secret" not in fired.model_dump_json()


async def test_due_reminders_fire_in_due_order_for_each_agent(
    reminders: Reminders, broker: Broker
) -> None:
    late = await reminders.add("alice", "late", None, 50.0, None)
    bobs = await reminders.add("bob", "bob's", None, 20.0, None)
    early = await reminders.add("alice", "early", None, 10.0, None)
    future = await reminders.add("alice", "future", None, 500.0, None)
    assert await reminders.tick(T0 + 100) == [early.id, bobs.id, late.id]
    assert [e.id for e in await _due(broker, "alice")] == [early.id, late.id]
    assert [e.id for e in await _due(broker, "bob")] == [bobs.id]
    assert await reminders.pending_count("alice") == 1
    assert await reminders.tick(T0 + 500) == [future.id]


async def test_a_reminder_cancelled_while_its_file_is_read_is_not_delivered(
    reminders: Reminders,
    broker: Broker,
    db: Database,
    state: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (state / "f").write_text("x")
    entered, release = threading.Event(), threading.Event()

    def held_read(agents_dir: Path, agent: str, path: str) -> tuple[str | None, str]:
        entered.set()
        release.wait(5)
        return read_state_file(agents_dir, agent, path)

    monkeypatch.setattr("hive_core.reminders.read_state_file", held_read)
    r = await reminders.add("alice", "racy", None, 10.0, "/state/f")
    tick = asyncio.create_task(reminders.tick(T0 + 10))
    try:
        assert await asyncio.to_thread(entered.wait, 5)
        assert (await reminders.cancel("alice", r.id)).status == "cancelled"
    finally:
        release.set()
        await tick
    [kept] = await reminders.listing("alice", r.id)
    assert (kept.status, kept.delivered_at, kept.payload) == ("cancelled", None, None)
    assert await _due(broker, "alice") == []
    assert await _message_count(db) == 0


# --- cancelling ---------------------------------------------------------------------


async def test_a_cancelled_reminder_never_fires(
    reminders: Reminders, broker: Broker, db: Database
) -> None:
    r = await reminders.add("alice", "never mind", None, 10.0, None)
    cancelled = await reminders.cancel("alice", r.id)
    assert cancelled.status == "cancelled"
    assert await reminders.tick(T0 + 10) == []
    assert await reminders.tick(T0 + 10 * DAY) == []
    assert await _due(broker, "alice") == []
    assert await _message_count(db) == 0
    assert (await reminders.listing("alice", r.id))[0].status == "cancelled"
    assert await reminders.listing("alice") == []
    with pytest.raises(Conflict, match="already cancelled"):
        await reminders.cancel("alice", r.id)


async def test_cancelling_someone_elses_reminder_is_not_found(
    reminders: Reminders, broker: Broker
) -> None:
    r = await reminders.add("bob", "mine", None, 10.0, None)
    with pytest.raises(NotFound, match=str(r.id)):
        await reminders.cancel("alice", r.id)
    with pytest.raises(NotFound):
        await reminders.cancel("alice", 999_999)
    # bob's reminder is untouched and still fires.
    assert await reminders.tick(T0 + 10) == [r.id]
    assert [e.id for e in await _due(broker, "bob")] == [r.id]


async def test_cancelling_a_delivered_reminder_is_a_conflict(reminders: Reminders) -> None:
    r = await reminders.add("alice", "done", None, 10.0, None)
    assert await reminders.tick(T0 + 10) == [r.id]
    with pytest.raises(Conflict, match="already delivered"):
        await reminders.cancel("alice", r.id)
    assert (await reminders.listing("alice", r.id))[0].status == "delivered"
    # Someone else still hears "not found", not what state it is in.
    with pytest.raises(NotFound):
        await reminders.cancel("bob", r.id)


# --- listing ------------------------------------------------------------------------


async def test_listing_is_per_agent_or_hive_wide(reminders: Reminders) -> None:
    a_late = await reminders.add("alice", "a late", None, 300.0, None)
    b_one = await reminders.add("bob", "b", None, 100.0, None)
    a_soon = await reminders.add("alice", "a soon", None, 50.0, None)
    a_done = await reminders.add("alice", "a done", None, 10.0, None)
    assert await reminders.tick(T0 + 10) == [a_done.id]

    assert [r.id for r in await reminders.listing("alice")] == [a_soon.id, a_late.id, a_done.id]
    assert [r.id for r in await reminders.listing("bob")] == [b_one.id]
    assert [r.id for r in await reminders.listing(None)] == [
        a_soon.id,
        b_one.id,
        a_late.id,
        a_done.id,
    ]
    assert await reminders.listing("carol") == []

    assert [r.id for r in await reminders.listing(None, b_one.id)] == [b_one.id]
    with pytest.raises(NotFound):
        await reminders.listing("alice", b_one.id)
    with pytest.raises(NotFound):
        await reminders.listing(None, 999_999)


async def test_listing_keeps_only_the_twenty_latest_delivered(reminders: Reminders) -> None:
    added = await asyncio.gather(
        *(reminders.add("alice", f"r{i}", None, float(i + 1), None) for i in range(25))
    )
    for i in range(25):  # one tick each, so delivered_at orders them
        assert await reminders.tick(T0 + i + 1) == [added[i].id]
    listed = await reminders.listing("alice")
    assert [r.id for r in listed] == [r.id for r in reversed(added)][:20]


# --- restarts and departures ----------------------------------------------------------


async def test_a_reminder_survives_a_restart_and_fires_once(
    db: Database,
    db_path: Path,
    bus: EventBus,
    clock: FakeClock,
    recipients: set[str],
    agents_dir: Path,
    state: Path,
) -> None:
    (state / "plan.txt").write_text("step 2")
    first_broker = Broker(db, bus, clock, lambda name: name in recipients)
    first = Reminders(db, clock, first_broker, agents_dir)
    r = await first.add("alice", "resume", None, 120.0, "/state/plan.txt")
    first_broker.close()
    await db.close()

    reopened = await Database.open(db_path)
    try:
        broker = Broker(reopened, bus, clock, lambda name: name in recipients)
        again = Reminders(reopened, clock, broker, agents_dir)
        assert await again.listing("alice", r.id) == [r]
        assert await again.tick(T0 + 119) == []
        assert await again.tick(T0 + 120) == [r.id]
        assert await again.tick(T0 + 121) == []
        assert await _due(broker, "alice") == [
            helper.ReminderDue(
                id=r.id, message="resume", payload_bytes=6, payload_note="/state/plan.txt: 6 bytes"
            )
        ]
        assert await _message_count(reopened) == 1
        broker.close()
    finally:
        await reopened.close()


async def test_a_reminder_for_an_agent_without_an_inbox_is_marked_delivered(
    reminders: Reminders, db: Database, recipients: set[str], caplog: pytest.LogCaptureFixture
) -> None:
    gone = await reminders.add("alice", "for nobody", None, 10.0, None)
    kept = await reminders.add("bob", "for bob", None, 10.0, None)
    recipients.discard("alice")
    with caplog.at_level(logging.INFO, logger="hive_core.reminders"):
        assert await reminders.tick(T0 + 10) == [gone.id, kept.id]
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]
    assert (await reminders.listing(None, gone.id))[0].status == "delivered"
    assert await reminders.tick(T0 + 20) == []

    def recipients_of(conn: sqlite3.Connection) -> list[str]:
        return [row[0] for row in conn.execute("SELECT recipient FROM messages ORDER BY id")]

    assert await db.read(recipients_of) == ["bob"]


async def test_a_row_that_does_not_decode_fails_the_listing(
    reminders: Reminders, db: Database
) -> None:
    def insert(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "INSERT INTO reminders (agent, message, due_at, status, created_at) "
            "VALUES ('alice', 'raw', ?, 'bogus', ?) RETURNING id",
            (T0 + 10, T0),
        ).fetchone()
        return int(row[0])

    await reminders.add("alice", "fine", None, 5.0, None)
    bad_id = await db.write(insert)
    with pytest.raises(ValueError, match=rf"reminders row id={bad_id}\b"):
        await reminders.listing("alice", bad_id)
