"""Turn admission: places granted up to the limits, oldest message first, freed by a
`started`, a give-back or a closed connection, refused at shutdown."""

from __future__ import annotations

import asyncio

import pytest

from hive_core import turn_slots
from hive_core.errors import ShuttingDown
from hive_core.turn_slots import TurnSlots

BOUND = 5.0


def _open() -> bool:
    return True


async def _waiting(slots: TurnSlots, count: int) -> None:
    """Let the `take` tasks just created run to their wait (one turn of the loop runs each),
    and check that `count` turns wait."""
    await asyncio.sleep(0)
    assert len(slots.waiting_agents()) == count


async def test_turns_beyond_the_limit_wait_and_the_oldest_message_goes_first() -> None:
    slots = TurnSlots(slots=1, starts=1)
    assert await slots.take("a", 1, 10, _open, 0)
    assert not await slots.take("b", 2, 30, _open, 0)  # waits; keeps its place in line
    late = asyncio.create_task(slots.take("c", 3, 20, _open, BOUND))
    await _waiting(slots, 2)
    assert slots.waiting_agents() == ["c", "b"]  # message 20 is older than 30
    assert slots.ahead_of(2) == 1

    slots.give_back(1)
    assert await late  # c first
    assert slots.waiting_agents() == ["b"]
    assert not await slots.take("b", 2, 30, _open, 0)
    slots.give_back(3)
    assert await slots.take("b", 2, 30, _open, 0)


async def test_a_start_place_frees_when_claude_is_up() -> None:
    slots = TurnSlots(slots=10, starts=1)
    assert await slots.take("a", 1, None, _open, 0)
    second = asyncio.create_task(slots.take("b", 2, None, _open, BOUND))
    await _waiting(slots, 1)
    assert not second.done()
    slots.started(1)  # a's claude is up: b may start while a still runs
    assert await second
    assert slots.running == 2


async def test_a_start_place_frees_by_itself_after_the_start_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(turn_slots, "START_HOLD", 0.05)  # a claude slow to say system/init
    slots = TurnSlots(slots=10, starts=1)
    assert await slots.take("slow", 1, None, _open, 0)
    loop = asyncio.get_running_loop()
    asked = loop.time()
    assert await slots.take("next", 2, None, _open, BOUND)
    assert loop.time() - asked >= 0.05
    assert slots.running == 2


async def test_a_waiter_whose_connection_closed_is_skipped() -> None:
    slots = TurnSlots(slots=1, starts=1)
    assert await slots.take("a", 1, 1, _open, 0)
    assert not await slots.take("gone", 2, 2, lambda: False, 0)
    third = asyncio.create_task(slots.take("c", 3, 3, _open, BOUND))
    await _waiting(slots, 2)
    slots.give_back(1)
    assert await third
    assert slots.waiting_agents() == []


async def test_a_closed_connection_gives_its_place_or_its_wait_back() -> None:
    slots = TurnSlots(slots=1, starts=1)
    assert await slots.take("a", 1, 1, _open, 0)
    assert not await slots.take("b", 2, 2, _open, 0)
    slots.give_back(2)  # b's connection closed while it waited
    assert slots.waiting_agents() == []
    slots.give_back(1)
    assert slots.running == 0


async def test_holding_a_place_already_is_granted_at_once() -> None:
    slots = TurnSlots(slots=1, starts=1)
    assert await slots.take("a", 1, 1, _open, 0)
    assert await slots.take("a", 1, 1, _open, 0)
    assert slots.running == 1


async def test_shutdown_answers_every_wait() -> None:
    slots = TurnSlots(slots=1, starts=1)
    assert await slots.take("a", 1, 1, _open, 0)
    waiting = asyncio.create_task(slots.take("b", 2, 2, _open, BOUND))
    await _waiting(slots, 1)
    slots.close()
    with pytest.raises(ShuttingDown):
        await waiting
    with pytest.raises(ShuttingDown):
        await slots.take("c", 3, 3, _open, 0)
