from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from hive_agent.history import EVENTS_FILE, KEEP_SECONDS, SCHEMA, EventHistory
from hive_share import live

T0 = 1_700_000_000.0
DAY = 24 * 3600.0


class FakeClock:
    """A wall clock that moves only when a test moves it."""

    def __init__(self, now: float = T0) -> None:
        self.t = now

    def now(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def history(tmp_path: Path, clock: FakeClock) -> AsyncIterator[EventHistory]:
    conn = await aiosqlite.connect(tmp_path / EVENTS_FILE)
    await conn.executescript(SCHEMA)
    await conn.commit()
    hist = EventHistory(conn, clock=clock.now)
    try:
        yield hist
    finally:
        await hist.close()


def _text(n: int) -> live.Text:
    return live.Text(text=f"t{n}")


async def test_publish_returns_an_increasing_seq(history: EventHistory) -> None:
    seqs = [await history.publish(_text(i), "turn-1") for i in range(4)]
    assert seqs == [1, 2, 3, 4]


async def test_published_events_survive_a_reopen(tmp_path: Path) -> None:
    first = await EventHistory.open(tmp_path)
    try:
        await first.publish(live.Note(text="hello"), None)
        await first.publish(live.TurnStateChanged(state="tool"), "turn-1")
    finally:
        await first.close()
    second = await EventHistory.open(tmp_path)
    try:
        rows = await second.recent()
        seq = await second.publish(_text(3), None)
    finally:
        await second.close()
    assert [(r["seq"], r["turn_id"], r["event"]) for r in rows] == [
        (1, None, live.Note(text="hello")),
        (2, "turn-1", live.TurnStateChanged(state="tool")),
    ]
    assert seq == 3


async def test_every_subscriber_receives_each_event_with_its_seq(history: EventHistory) -> None:
    a = history.subscribe()
    b = history.subscribe()
    event = live.ToolUse(id="toolu_1", name="Bash", input={"command": "ls"})
    seq = await history.publish(event, "turn-1")
    for got in (a.get_nowait(), b.get_nowait()):
        assert (got["seq"], got["turn_id"], got["event"]) == (seq, "turn-1", event)
        assert isinstance(got["ts"], float)


async def test_an_unsubscribed_queue_receives_nothing(history: EventHistory) -> None:
    queue = history.subscribe()
    history.unsubscribe(queue)
    await history.publish(_text(1), None)
    assert queue.empty()


async def test_a_subscriber_with_a_full_queue_is_dropped_without_blocking_the_others(
    history: EventHistory,
) -> None:
    slow = history.subscribe(maxsize=1)
    fast = history.subscribe(maxsize=100)
    async with asyncio.timeout(5):
        for i in range(5):
            await history.publish(_text(i), None)
    assert slow.qsize() == 1
    assert _seq_event(slow.get_nowait()) == (1, _text(0))
    async with asyncio.timeout(5):
        await history.publish(_text(5), None)
    assert slow.empty()  # dropped for good: it resyncs from recent()
    got = [_seq_event(fast.get_nowait()) for _ in range(6)]
    assert got == [(i + 1, _text(i)) for i in range(6)]


def _seq_event(row: dict[str, Any]) -> tuple[int, Any]:
    return row["seq"], row["event"]


async def test_recent_returns_the_newest_events_oldest_first(
    history: EventHistory, clock: FakeClock
) -> None:
    for i in range(5):
        clock.t = T0 + i
        await history.publish(_text(i), f"turn-{i % 2}")
    rows = await history.recent(limit=3)
    assert [r["seq"] for r in rows] == [3, 4, 5]
    assert [r["event"] for r in rows] == [_text(2), _text(3), _text(4)]
    assert [r["turn_id"] for r in rows] == ["turn-0", "turn-1", "turn-0"]
    assert [r["ts"] for r in rows] == [T0 + 2, T0 + 3, T0 + 4]


async def test_recent_can_be_limited_to_one_turn(history: EventHistory) -> None:
    for i in range(5):
        await history.publish(_text(i), f"turn-{i % 2}")
    rows = await history.recent(turn_id="turn-1")
    assert [(r["seq"], r["event"]) for r in rows] == [(2, _text(1)), (4, _text(3))]


async def test_prune_deletes_only_events_older_than_seven_days(
    history: EventHistory, clock: FakeClock
) -> None:
    for age_days in (10, 8, 7, 6, 0):
        clock.t = T0 - age_days * DAY
        await history.publish(live.Note(text=f"{age_days} days old"), None)
    deleted = await history.prune(T0)
    assert deleted == 2
    rows = await history.recent()
    assert [r["event"] for r in rows] == [
        live.Note(text="7 days old"),
        live.Note(text="6 days old"),
        live.Note(text="0 days old"),
    ]
    assert KEEP_SECONDS == 7 * DAY


async def test_prune_with_nothing_old_deletes_nothing(
    history: EventHistory, clock: FakeClock
) -> None:
    await history.publish(_text(1), None)
    assert await history.prune(clock.now() + DAY) == 0
    assert len(await history.recent()) == 1


@pytest.mark.parametrize(
    "data",
    ["not json", '{"kind": "no_such_kind"}', '{"kind": "text"}', '{"kind": "text", "text": 1}'],
)
async def test_a_row_that_does_not_decode_makes_recent_fail_naming_its_id(
    tmp_path: Path, clock: FakeClock, data: str
) -> None:
    conn = await aiosqlite.connect(tmp_path / EVENTS_FILE)
    try:
        await conn.executescript(SCHEMA)
        history = EventHistory(conn, clock=clock.now)
        await history.publish(_text(1), None)
        await conn.execute(
            "INSERT INTO events (ts, turn_id, kind, data) VALUES (?, NULL, 'text', ?)", (T0, data)
        )
        await conn.commit()
        with pytest.raises(ValueError, match=r"events row id=2 does not decode"):
            await history.recent()
    finally:
        await conn.close()
