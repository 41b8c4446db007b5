"""One recipient's inbox as the broker holds it in memory: the wake-up event its waiting
receivers park on, the leases of its messages, and its undelivered messages cached (up to
PENDING_CACHE_MAX) so a woken `recv` answers without a database round trip."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from dataclasses import dataclass, field

from hive_core.db import Database
from hive_core.message_reads import fit, message_from_row
from hive_share.models import Message

PENDING_CACHE_MAX = 1000
"""Undelivered messages kept in memory per recipient; past this, reads go to the database."""

LeaseOwner = int
"""Identifies one connection; its leases end when it closes."""


class Wake:
    """A recipient's wake-up, with `asyncio.Event`'s contract (`set`, `clear`, and a wait
    that returns at once while it is set) and a deadline of its own: one future and one
    timer per wait, instead of an event's wait inside an `asyncio.timeout_at`."""

    __slots__ = ("_is_set", "_waiters")

    def __init__(self) -> None:
        self._is_set = False
        self._waiters: list[asyncio.Future[bool]] = []

    def set(self) -> None:
        """Wake every waiter; a wait from now until `clear` returns at once."""
        self._is_set = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(True)

    def clear(self) -> None:
        self._is_set = False

    def is_set(self) -> bool:
        return self._is_set

    async def wait_until(self, deadline: float) -> bool:
        """True once set (at once if it is), False at `deadline` (the loop's time)."""
        if self._is_set:
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(waiter)
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            woken = await waiter
        except BaseException:  # cancelled: a later `set` must not find it
            timer.cancel()
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            raise
        timer.cancel()
        if not woken:
            self._waiters.remove(waiter)  # `set` takes the waiters it wakes along
        return woken


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


@dataclass
class Inbox:
    """One recipient's inbox in memory; `wake` is set by every send to it, a release and
    the shutdown."""

    wake: Wake = field(default_factory=Wake)
    leases: dict[int, LeaseOwner] = field(default_factory=dict)
    pending: dict[int, Message] | None = None
    """Every undelivered message of this recipient, when known, in id order; None means ask
    the database. Lets a woken `recv` answer without a database round trip."""
    version: int = 0
    """Bumped on every send and ack, so a database read that raced either is not cached."""

    def remember(self, message: Message) -> None:
        self.version += 1
        pending = self.pending
        if pending is not None:
            if len(pending) >= PENDING_CACHE_MAX:
                self.pending = None
                return
            newest = next(reversed(pending), 0)
            pending[message.id] = message
            if message.id < newest:  # rare: kept in id order, so `unleased` need not sort
                self.pending = dict(sorted(pending.items()))

    def unleased(self, limit: int) -> list[Message]:
        """The oldest `limit` cached messages not leased (`pending` must be known)."""
        assert self.pending is not None
        leases = self.leases
        free: list[Message] = []
        for i, m in self.pending.items():
            if i not in leases:
                free.append(m)
                if len(free) == limit:
                    break
        return free

    def forget(self, ids: list[int]) -> None:
        self.version += 1
        if self.pending is not None:
            for i in ids:
                self.pending.pop(i, None)

    async def load_pending(self, db: Database, recipient: str) -> None:
        """Read every undelivered message into memory if there are few enough."""
        before = self.version

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM messages WHERE recipient = ? AND delivered_at IS NULL "
                "ORDER BY id LIMIT ?",
                (recipient, PENDING_CACHE_MAX),
            ).fetchall()

        rows = await db.read(select)
        if len(rows) < PENDING_CACHE_MAX and self.version == before:
            self.pending = {r["id"]: message_from_row(r) for r in rows}

    async def select_unleased(self, db: Database, recipient: str, limit: int) -> list[Message]:
        """Up to `limit` unleased undelivered messages, from the database (too many to cache),
        packed to fit one answer."""
        leased = len(self.leases)

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM messages WHERE recipient = ? AND delivered_at IS NULL "
                "ORDER BY id LIMIT ?",
                (recipient, limit + leased),
            ).fetchall()

        rows = await db.read(select)
        return fit([message_from_row(r) for r in rows if r["id"] not in self.leases][:limit])
