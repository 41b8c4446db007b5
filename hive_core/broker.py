"""The message broker: durable sends with idempotency keys, leased long-poll receives.

Delivery is at-least-once with an explicit ack. `recv` leases undelivered
messages to the asking connection; `ack` (or the `ack` ids a later `recv` of
that connection carries, committed before it leases) marks them delivered. A lease lives
in memory and ends when its connection closes (or the daemon restarts), so a
receiver that dies before reading a reply gets the same messages again on its
next `recv`. See docs/persistence.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import Busy, Conflict, ShuttingDown, UnknownAgent
from hive_core.rows import decode
from hive_share import events
from hive_share.helper import HELPER_EVENT, HIVE_SENDER, HelperEvent, summary
from hive_share.models import Message
from hive_share.names import OPERATOR

FlowState = Literal["queued", "leased", "delivered"]

logger = logging.getLogger(__name__)

RETENTION_SECONDS = 30 * 24 * 3600
"""Delivered messages older than this are vacuumed."""

SEND_RATE = 20.0
"""Messages per second an agent may send, sustained."""
SEND_BURST = 200.0
"""Messages an agent may send in a burst before the rate applies."""

PENDING_CACHE_MAX = 1000
"""Undelivered messages kept in memory per recipient; past this, reads go to the database."""

VACUUM_CHUNK = 2000
"""Messages the vacuum deletes per write: the sends and acks queued meanwhile are committed
between two chunks instead of waiting for a month of deletes."""

RESPONSE_BUDGET = 900 * 1024
"""Bytes of message bodies one `recv`/`inbox` answer may carry (lines are capped at 1 MiB)."""


def fit(messages: list[Message], newest_first: bool = False) -> list[Message]:
    """The longest run of `messages` whose bodies fit the response budget (at least one)."""
    order = reversed(messages) if newest_first else iter(messages)
    kept: list[Message] = []
    used = 0
    for m in order:
        size = len(json.dumps(m.body, ensure_ascii=False).encode("utf-8")) + 200
        if m.event is not None:
            size += len(m.event.model_dump_json())
        if kept and used + size > RESPONSE_BUDGET:
            break
        kept.append(m)
        used += size
    return list(reversed(kept)) if newest_first else kept


LeaseOwner = int
"""Identifies one connection; its leases end when it closes."""


def _wire_message(data: dict[str, Any]) -> dict[str, Any]:
    data.pop("idempotency_key")
    raw = data["event"]
    return {**data, "event": HELPER_EVENT.validate_json(raw) if raw else None}


def _message(row: sqlite3.Row) -> Message:
    return decode(Message, "messages", row, _wire_message)


@dataclass
class _Inbox:
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


@dataclass
class _Bucket:
    tokens: float = SEND_BURST
    at: float = 0.0

    def take(self, now: float) -> bool:
        # A wall clock stepped backwards refills nothing rather than taking tokens away.
        self.tokens = min(SEND_BURST, self.tokens + max(0.0, now - self.at) * SEND_RATE)
        self.at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True


class Broker:
    """Messages between agents, the manager and the operator."""

    def __init__(
        self, db: Database, bus: EventBus, clock: Clock, is_recipient: Callable[[str], bool]
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._is_recipient = is_recipient
        self._inboxes: dict[str, _Inbox] = {}
        self._held: dict[LeaseOwner, int] = {}
        """How many leases each connection holds (asked before every request line)."""
        self._buckets: dict[str, _Bucket] = {}
        self._closing = asyncio.Event()

    def _inbox(self, recipient: str) -> _Inbox:
        inbox = self._inboxes.get(recipient)
        if inbox is None:
            inbox = self._inboxes[recipient] = _Inbox()
        return inbox

    def _wake(self, recipient: str) -> None:
        inbox = self._inboxes.get(recipient)
        if inbox is not None:
            inbox.wake.set()

    async def send(
        self, sender: str, to: str, body: str, idempotency_key: str | None
    ) -> tuple[int, bool]:
        """Store a message and wake its recipient. Returns `(id, duplicate)`.

        The id is returned only after the message is committed to disk. A key
        already used by this sender returns the original id with
        `duplicate=True`.

        Raises:
            UnknownAgent: nobody by that name has an inbox.
            Conflict: the key was used before for a different message.
            StorageError: the commit failed; nothing was stored.
        """
        if not self._is_recipient(to):
            raise UnknownAgent(f"no agent named {to!r}; `hive-core list` shows who exists")
        now = self._clock.now()
        if sender != OPERATOR:
            bucket = self._buckets.setdefault(sender, _Bucket(at=now))
            if not bucket.take(now) and not await self._key_used(sender, idempotency_key):
                raise Busy(
                    f"{sender} is sending faster than {SEND_RATE:.0f} messages/s after a burst "
                    f"of {SEND_BURST:.0f}; slow down and retry"
                )

        def insert(conn: sqlite3.Connection) -> tuple[sqlite3.Row, bool]:
            row = conn.execute(
                "INSERT INTO messages (sender, recipient, body, idempotency_key, sent_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (sender, idempotency_key) "
                "WHERE idempotency_key IS NOT NULL DO NOTHING RETURNING *",
                (sender, to, body, idempotency_key, now),
            ).fetchone()
            if row is not None:
                return row, False
            dup = conn.execute(
                "SELECT * FROM messages WHERE sender = ? AND idempotency_key = ?",
                (sender, idempotency_key),
            ).fetchone()
            return dup, True

        row, duplicate = await self._db.write(insert, one_statement=True)
        message = _message(row)
        if duplicate:
            if message.recipient != to or message.body != body:
                raise Conflict(
                    f"idempotency key {idempotency_key!r} was already used for message "
                    f"{message.id} with a different recipient or body"
                )
            return message.id, True
        self._delivered_to_inbox(message)
        return message.id, False

    def knows(self, name: str) -> bool:
        """Whether `name` has an inbox."""
        return self._is_recipient(name)

    async def notify(
        self,
        to: str,
        event: HelperEvent,
        together: Callable[[sqlite3.Connection], bool] | None = None,
    ) -> int | None:
        """Put a helper event into `to`'s inbox (sender `hive`); returns the message id.

        `together` runs in the same transaction first; when it returns False nothing is
        stored and None is returned (e.g. the reminder was cancelled meanwhile).

        Raises:
            UnknownAgent: nobody by that name has an inbox.
        """
        if not self._is_recipient(to):
            raise UnknownAgent(f"no agent named {to!r} to tell: {summary(event)}")
        now = self._clock.now()
        body = summary(event)
        payload = event.model_dump_json()

        def insert(conn: sqlite3.Connection) -> sqlite3.Row | None:
            if together is not None and not together(conn):
                return None
            row: sqlite3.Row = conn.execute(
                "INSERT INTO messages (sender, recipient, body, sent_at, event) "
                "VALUES (?, ?, ?, ?, ?) RETURNING *",
                (HIVE_SENDER, to, body, now, payload),
            ).fetchone()
            return row

        stored = await self._db.write(insert)
        if stored is None:
            return None
        message = _message(stored)
        self._delivered_to_inbox(message)
        return message.id

    def _delivered_to_inbox(self, message: Message) -> None:
        box = self._inboxes.get(message.recipient)
        if box is not None:
            box.remember(message)
            box.wake.set()
        # After the wake: a parked receiver is scheduled before the event-stream writers.
        if self._bus.watched:
            self._bus.publish(events.Sent(message=message))

    async def _key_used(self, sender: str, key: str | None) -> bool:
        """Whether `key` already stored a message (a retry is answered, never throttled)."""
        if key is None:
            return False
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT 1 FROM messages WHERE sender = ? AND idempotency_key = ?", (sender, key)
            ).fetchone()
        )
        return row is not None

    async def recv(
        self,
        recipient: str,
        owner: LeaseOwner,
        wait_seconds: float,
        limit: int,
        is_open: Callable[[], bool] = lambda: True,
    ) -> list[Message]:
        """Lease up to `limit` undelivered messages, waiting up to `wait_seconds` for one.

        Raises:
            ShuttingDown: the daemon began shutting down while waiting.
        """
        inbox = self._inbox(recipient)
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            if self._closing.is_set():
                raise ShuttingDown("hive-core is shutting down; retry after it restarts")
            # Subscribe before looking, so a send landing in between still wakes us.
            inbox.wake.clear()
            if not is_open():
                return []  # the receiver hung up while waiting: lease nothing to it
            messages = await self._fetch(recipient, inbox, limit)
            if messages:
                for m in messages:
                    self._lease(inbox, m.id, owner)
                if self._bus.watched:
                    ids = [m.id for m in messages]
                    self._bus.publish(events.Leased(recipient=recipient, ids=ids))
                return messages
            if not await self._wait(inbox, deadline):
                return []

    async def _wait(self, inbox: _Inbox, deadline: float) -> bool:
        """Wait for a wake-up until `deadline` (loop time); False when time ran out.

        Raises:
            ShuttingDown: the daemon began shutting down.
        """
        if self._closing.is_set():
            raise ShuttingDown("hive-core is shutting down; retry after it restarts")
        if deadline <= asyncio.get_running_loop().time():
            return False
        try:
            # In the caller's own task: no helper tasks per wait. `close` sets every
            # inbox's event, so shutting down wakes this too.
            async with asyncio.timeout_at(deadline):
                await inbox.wake.wait()
            woken = True
        except TimeoutError:
            woken = False
        if self._closing.is_set():
            raise ShuttingDown("hive-core is shutting down; retry after it restarts")
        return woken

    async def _fetch(self, recipient: str, inbox: _Inbox, limit: int) -> list[Message]:
        if inbox.pending is None:
            await self._load_pending(recipient, inbox, limit)
        if inbox.pending is not None:
            free = sorted(i for i in inbox.pending if i not in inbox.leases)[:limit]
            return fit([inbox.pending[i] for i in free])
        return await self._select_unleased(recipient, inbox, limit)

    async def _load_pending(self, recipient: str, inbox: _Inbox, limit: int) -> None:
        """Read every undelivered message into memory if there are few enough."""
        before = inbox.version

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM messages WHERE recipient = ? AND delivered_at IS NULL "
                "ORDER BY id LIMIT ?",
                (recipient, PENDING_CACHE_MAX),
            ).fetchall()

        rows = await self._db.read(select)
        if len(rows) < PENDING_CACHE_MAX and inbox.version == before:
            inbox.pending = {r["id"]: _message(r) for r in rows}

    async def _select_unleased(self, recipient: str, inbox: _Inbox, limit: int) -> list[Message]:
        leased = len(inbox.leases)

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM messages WHERE recipient = ? AND delivered_at IS NULL "
                "ORDER BY id LIMIT ?",
                (recipient, limit + leased),
            ).fetchall()

        rows = await self._db.read(select)
        return fit([_message(r) for r in rows if r["id"] not in inbox.leases][:limit])

    async def ack(self, recipient: str, owner: LeaseOwner, ids: list[int]) -> int:
        """Mark messages delivered. Only messages leased to `owner` count.

        Raises:
            Conflict: an id is not leased to this connection.
        """
        inbox = self._inbox(recipient)
        foreign = [i for i in ids if inbox.leases.get(i) != owner]
        if foreign:
            raise Conflict(
                f"messages {foreign[:10]} are not leased to this connection; "
                "ack only ids returned by your own recv"
            )
        return await self._mark_delivered(recipient, ids)

    async def _mark_delivered(self, recipient: str, ids: list[int]) -> int:
        if not ids:
            return 0
        now = self._clock.now()

        def update(conn: sqlite3.Connection) -> list[int]:
            marks = ",".join("?" * len(ids))
            rows = conn.execute(
                f"UPDATE messages SET delivered_at = ? WHERE recipient = ? "
                f"AND delivered_at IS NULL AND id IN ({marks}) RETURNING id",
                (now, recipient, *ids),
            ).fetchall()
            return sorted(r[0] for r in rows)

        done = await self._db.write(update, one_statement=True)
        inbox = self._inbox(recipient)
        inbox.forget(done)
        for i in ids:
            self._unlease(inbox, i)
        if done and self._bus.watched:
            self._bus.publish(events.Delivered(recipient=recipient, ids=done, delivered_at=now))
        return len(done)

    def _lease(self, inbox: _Inbox, message_id: int, owner: LeaseOwner) -> None:
        if (before := inbox.leases.get(message_id)) is not None:
            self._drop_held(before)
        inbox.leases[message_id] = owner
        self._held[owner] = self._held.get(owner, 0) + 1

    def _unlease(self, inbox: _Inbox, message_id: int) -> None:
        owner = inbox.leases.pop(message_id, None)
        if owner is not None:
            self._drop_held(owner)

    def _drop_held(self, owner: LeaseOwner) -> None:
        left = self._held[owner] - 1
        if left:
            self._held[owner] = left
        else:
            del self._held[owner]

    def holds_leases(self, owner: LeaseOwner) -> bool:
        """Whether this connection holds leased messages it has not acked yet."""
        return owner in self._held

    def release(self, owner: LeaseOwner) -> None:
        """End every lease held by a closed connection and wake the recipients."""
        for recipient, inbox in self._inboxes.items():
            mine = [i for i, o in inbox.leases.items() if o == owner]
            for i in mine:
                self._unlease(inbox, i)
            if mine:
                logger.info("released %d unacked messages to %s", len(mine), recipient)
                self._bus.publish(events.Released(recipient=recipient, ids=mine))
                inbox.wake.set()

    def flow_state(self, message: Message) -> FlowState:
        """Where a message is on its way: queued, leased to a `recv`, or delivered."""
        if message.delivered_at is not None:
            return "delivered"
        inbox = self._inboxes.get(message.recipient)
        return "leased" if inbox is not None and message.id in inbox.leases else "queued"

    async def flow(self, limit: int, before: int | None = None) -> tuple[list[Message], bool]:
        """The newest `limit` messages hive-wide (below id `before`), oldest first, and
        whether older ones exist: the dashboard's message flow."""
        below = before if before is not None else 2**63 - 1

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM messages WHERE id < ? ORDER BY id DESC LIMIT ?",
                (below, limit + 1),
            ).fetchall()

        rows = await self._db.read(select)
        kept = fit([_message(r) for r in reversed(rows[:limit])], newest_first=True)
        return kept, len(rows) > len(kept)

    async def recent(
        self, recipient: str, limit: int, before: int | None = None, after: int | None = None
    ) -> list[Message]:
        """The newest `limit` messages to `recipient` (below id `before`, when given) that fit
        one reply, oldest first; with `after`, the oldest `limit` above that id instead, so
        a reader following the inbox skips none."""
        below = before if before is not None else 2**63 - 1
        if after is not None:

            def select_after(conn: sqlite3.Connection) -> list[sqlite3.Row]:
                return conn.execute(
                    "SELECT * FROM messages WHERE recipient = ? AND id > ? AND id < ? "
                    "ORDER BY id LIMIT ?",
                    (recipient, after, below, limit),
                ).fetchall()

            return fit([_message(r) for r in await self._db.read(select_after)])

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(
                "SELECT * FROM (SELECT * FROM messages WHERE recipient = ? AND id < ? "
                "ORDER BY id DESC LIMIT ?) ORDER BY id",
                (recipient, below, limit),
            ).fetchall()

        return fit([_message(r) for r in await self._db.read(select)], newest_first=True)

    async def inbox(
        self,
        recipient: str,
        limit: int,
        wait_seconds: float,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Message]:
        """The newest `limit` messages to `recipient` (below id `before` to page back), or the
        oldest `limit` above id `after` (to follow it), oldest first; marks the unread ones
        among them delivered.

        Waits up to `wait_seconds` while there is nothing unread, or, with `after`, nothing
        above `after`.
        """
        box = self._inbox(recipient)
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            box.wake.clear()
            if await self._has_news(recipient, before, after):
                break
            if not await self._wait(box, deadline):
                break

        messages = await self.recent(recipient, limit, before, after)
        await self._mark_delivered(recipient, [m.id for m in messages if m.delivered_at is None])
        return messages

    async def _has_news(self, recipient: str, before: int | None, after: int | None) -> bool:
        """What ends an `inbox` wait: an unread message, or one between `after` and `before`."""
        if after is None:
            return await self.undelivered_count(recipient) > 0
        below = before if before is not None else 2**63 - 1

        def newer(conn: sqlite3.Connection) -> bool:
            return (
                conn.execute(
                    "SELECT 1 FROM messages WHERE recipient = ? AND id > ? AND id < ? LIMIT 1",
                    (recipient, after, below),
                ).fetchone()
                is not None
            )

        return await self._db.read(newer)

    async def undelivered_count(self, recipient: str) -> int:
        def count(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM messages WHERE recipient = ? AND delivered_at IS NULL",
                (recipient,),
            ).fetchone()
            return int(row[0])

        return await self._db.read(count)

    async def vacuum(self, now: float) -> int:
        """Delete delivered messages older than the retention window, `VACUUM_CHUNK` per
        write."""
        cutoff = now - RETENTION_SECONDS

        def delete(conn: sqlite3.Connection) -> int:
            cur = conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages "
                "WHERE delivered_at IS NOT NULL AND delivered_at < ? LIMIT ?)",
                (cutoff, VACUUM_CHUNK),
            )
            return cur.rowcount

        removed = 0
        while (chunk := await self._db.write(delete, one_statement=True)) > 0:
            removed += chunk
            if chunk < VACUUM_CHUNK:
                break
        if removed:
            logger.info("vacuumed %d delivered messages older than 30 days", removed)
        return removed

    def close(self) -> None:
        """Answer every waiting `recv` with a shutting-down error."""
        self._closing.set()
        for inbox in self._inboxes.values():
            inbox.wake.set()
