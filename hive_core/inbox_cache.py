"""One recipient's inbox as the broker holds it in memory: the wake-up event its waiting
receivers park on, the leases of its messages, and its undelivered messages cached (up to
PENDING_CACHE_MAX) so a woken `recv` answers without a database round trip."""

from __future__ import annotations

import asyncio
import sqlite3
from dataclasses import dataclass, field

from hive_core.db import Database
from hive_core.message_reads import fit, message_from_row
from hive_share.models import Message

PENDING_CACHE_MAX = 1000
"""Undelivered messages kept in memory per recipient; past this, reads go to the database."""

LeaseOwner = int
"""Identifies one connection; its leases end when it closes."""


@dataclass
class Inbox:
    """One recipient's inbox in memory; `wake` is set by every send to it, a release and
    the shutdown."""

    wake: asyncio.Event = field(default_factory=asyncio.Event)
    leases: dict[int, LeaseOwner] = field(default_factory=dict)
    pending: dict[int, Message] | None = None
    """Every undelivered message of this recipient, when known; None means ask the database.
    Lets a woken `recv` answer without a database round trip."""
    version: int = 0
    """Bumped on every send and ack, so a database read that raced either is not cached."""

    def remember(self, message: Message) -> None:
        self.version += 1
        if self.pending is not None:
            if len(self.pending) >= PENDING_CACHE_MAX:
                self.pending = None
            else:
                self.pending[message.id] = message

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
