"""Turn admission: how many claude turns run at once across the hive, and how many of them
may be starting at once.

A harness asks for a place (`turn_slot take`) on a connection of its own before it starts a
turn, and holds it until it gives it back (`give_back`) or that connection closes. A place is
granted while fewer than `slots` turns hold one and fewer than `starts` of them are still
starting: a turn counts as starting from its grant until its harness says its claude is up
(`started`, at claude's `system/init`), the part of a turn that costs a core, or for at
most `START_HOLD` seconds: a claude that waits on something slow (an extra MCP server's
start, say) does not hold every other turn back.
Waiting turns are granted oldest message first (message ids grow with time), then in the
order they asked; a waiter whose connection closed is skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import anyio

from hive_core.errors import ShuttingDown
from hive_core.inbox_cache import LeaseOwner


@dataclass
class _Waiter:
    agent: str
    oldest: float
    """The id of the oldest message its turn is for (`inf` when unknown)."""
    seq: int
    is_open: Callable[[], bool]
    granted: asyncio.Event = field(default_factory=asyncio.Event)

    def rank(self) -> tuple[float, int]:
        return (self.oldest, self.seq)


START_HOLD = 2.0
"""Seconds a turn counts as starting at most (its claude may not have said `system/init`)."""


@dataclass
class _Holder:
    agent: str
    since: float
    """The loop's time of the grant."""
    starting: bool = True


class TurnSlots:
    """The hive's turn places; every method runs on the event loop."""

    def __init__(self, slots: int, starts: int) -> None:
        self.slots = slots
        self.starts = starts
        self._holders: dict[LeaseOwner, _Holder] = {}
        self._waiting: dict[LeaseOwner, _Waiter] = {}
        self._seq = itertools.count()
        self._closing = False

    @property
    def running(self) -> int:
        return len(self._holders)

    def _starting(self) -> int:
        cutoff = asyncio.get_running_loop().time() - START_HOLD
        return sum(1 for h in self._holders.values() if h.starting and h.since > cutoff)

    def _free(self) -> bool:
        return len(self._holders) < self.slots and self._starting() < self.starts

    def ahead_of(self, owner: LeaseOwner) -> int:
        """How many waiting turns come before `owner`'s."""
        me = self._waiting.get(owner)
        if me is None:
            return 0
        return sum(1 for w in self._waiting.values() if w.rank() < me.rank())

    def waiting_agents(self) -> list[str]:
        """The agents whose turns wait, next first."""
        return [w.agent for w in sorted(self._waiting.values(), key=_Waiter.rank)]

    async def take(
        self,
        agent: str,
        owner: LeaseOwner,
        oldest: int | None,
        is_open: Callable[[], bool],
        wait_seconds: float,
    ) -> bool:
        """Wait up to `wait_seconds` for a place for `owner`'s turn; True once it holds one
        (at once when it holds one already).

        Raises:
            ShuttingDown: the daemon began shutting down.
        """
        if self._closing:
            raise ShuttingDown("hive-core is shutting down; retry after it restarts")
        if owner in self._holders:
            return True
        waiter = self._waiting.get(owner)
        if waiter is None:
            rank = math.inf if oldest is None else float(oldest)
            waiter = self._waiting[owner] = _Waiter(agent, rank, next(self._seq), is_open)
            self._grant()
        with anyio.move_on_after(wait_seconds):
            await waiter.granted.wait()
        if self._closing:
            raise ShuttingDown("hive-core is shutting down; retry after it restarts")
        return waiter.granted.is_set()  # if not, its place in line is kept for the next `take`

    def started(self, owner: LeaseOwner) -> None:
        """`owner`'s claude is up: its start place goes to the next turn."""
        holder = self._holders.get(owner)
        if holder is not None and holder.starting:
            holder.starting = False
            self._grant()

    def give_back(self, owner: LeaseOwner) -> None:
        """`owner`'s turn ended (or it stopped waiting): its place goes to the next turn."""
        self._waiting.pop(owner, None)
        if self._holders.pop(owner, None) is not None:
            self._grant()

    def close(self) -> None:
        """Answer every waiting `take` with a shutting-down error."""
        self._closing = True
        for waiter in self._waiting.values():
            waiter.granted.set()

    def _grant(self) -> None:
        while self._waiting and self._free():
            owner, waiter = min(self._waiting.items(), key=lambda item: item[1].rank())
            del self._waiting[owner]
            if not waiter.is_open():
                continue  # its harness is gone; the connection's close gives nothing back
            loop = asyncio.get_running_loop()
            self._holders[owner] = _Holder(waiter.agent, loop.time())
            loop.call_later(START_HOLD, self._grant)  # its start place frees by then at most
            waiter.granted.set()
