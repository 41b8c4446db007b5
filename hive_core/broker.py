"""The message broker: durable sends with idempotency keys, leased long-poll receives.

Delivery is at-least-once with an explicit ack. `recv` leases undelivered
messages to the asking connection; `ack` (or the `ack` ids a later `recv` of
that connection carries, committed before it leases) marks them delivered. A lease lives
in memory and ends when its connection closes (or the daemon restarts), so a
receiver that dies before reading a reply gets the same messages again on its
next `recv`. A recipient held by its budget (`hold_while`) leases nothing until the hold
lifts; its messages stay queued. See docs/persistence.md.

Beside it: each recipient's in-memory inbox (wake-up, leases, cached undelivered messages)
is `inbox_cache.py`, decoding and packing answers and the reads that deliver nothing
`message_reads.py`, the per-sender throttle `send_throttle.py`, the 30-day vacuum
`message_vacuum.py`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Literal

from hive_core import message_reads, message_vacuum
from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import Conflict, ShuttingDown, UnknownAgent
from hive_core.inbox_cache import Inbox, LeaseOwner
from hive_core.message_reads import fit, message_from_row
from hive_core.send_throttle import SendThrottle, too_fast
from hive_share import events
from hive_share.helper import HIVE_SENDER, HelperEvent, summary
from hive_share.models import Message
from hive_share.names import OPERATOR

FlowState = Literal["queued", "leased", "delivered"]
HoldCheck = Callable[[str], Awaitable[bool]]
"""Whether a recipient is held (over its budget): its `recv` leases nothing meanwhile."""

logger = logging.getLogger(__name__)


class Broker:
    """Messages between agents, the manager and the operator."""

    def __init__(
        self, db: Database, bus: EventBus, clock: Clock, is_recipient: Callable[[str], bool]
    ) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self._is_recipient = is_recipient
        self._inboxes: dict[str, Inbox] = {}
        self._held: dict[LeaseOwner, int] = {}
        """How many leases each connection holds (asked before every request line)."""
        self._throttle = SendThrottle()
        self._closing = asyncio.Event()
        self._hold: HoldCheck | None = None
        self._host_of: Callable[[str], str | None] = lambda name: None
        self._forwarded: Callable[[], None] = lambda: None

    def hold_while(self, held: HoldCheck) -> None:
        """Ask `held(recipient)` before every lease: while it answers True, `recv` leases
        nothing and waits as if the inbox were empty (the messages stay queued, undelivered);
        `wake` makes a parked `recv` ask again."""
        self._hold = held

    def route_remote(
        self, host_of: Callable[[str], str | None], forwarded: Callable[[], None]
    ) -> None:
        """Accept sends to other hosts' agents (the hive spans hosts): `host_of(name)` names
        the host of an agent not here; such a message is committed with a `forwards` row,
        and `forwarded()` is called after the commit (the outbox takes it from there)."""
        self._host_of = host_of
        self._forwarded = forwarded

    def _inbox(self, recipient: str) -> Inbox:
        inbox = self._inboxes.get(recipient)
        if inbox is None:
            inbox = self._inboxes[recipient] = Inbox()
        return inbox

    def wake(self, recipient: str) -> None:
        """Wake `recipient`'s parked `recv` so it looks again (a hold was lifted)."""
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

        A message to another host's agent is committed here with a `forwards` row; the
        outbox hands it on.

        Raises:
            UnknownAgent: nobody by that name has an inbox.
            Conflict: the key was used before for a different message.
            StorageError: the commit failed; nothing was stored.
        """
        remote = None
        if not self._is_recipient(to):
            remote = self._host_of(to)  # an agent of another host of the hive, or nobody
            if remote is None:
                raise UnknownAgent(f"no agent named {to!r}; `hive-core list` shows who exists")
        now = self._clock.now()
        if not self._throttle.admits(sender, now) and not await self._key_used(
            sender, idempotency_key
        ):
            raise too_fast(sender)
        return await self._store(sender, to, body, idempotency_key, now, remote)

    async def accept(
        self, sender: str, to: str, body: str, key: str, event: HelperEvent | None = None
    ) -> bool:
        """Commit a message another host forwarded (its sender was held to its own host's
        throttle; `event`: a helper event that host's hive-core sent); returns whether it
        was here already (the same key).

        Raises:
            UnknownAgent: `to` is not an agent of this host.
            Conflict: the key was used before for a different message.
            StorageError: the commit failed; nothing was stored.
        """
        if not self._is_recipient(to):
            raise UnknownAgent(f"no agent named {to!r} on this host")
        _, duplicate = await self._store(sender, to, body, key, self._clock.now(), None, event)
        return duplicate

    async def _store(
        self,
        sender: str,
        to: str,
        body: str,
        key: str | None,
        now: float,
        remote: str | None,
        event: HelperEvent | None = None,
    ) -> tuple[int, bool]:
        """Commit one message (with its `forwards` row when `remote` names its host), or find
        the one its key stored; `(id, duplicate)`."""
        payload = None if event is None else event.model_dump_json()

        def insert(conn: sqlite3.Connection) -> tuple[int, sqlite3.Row | None]:
            cursor = conn.execute(
                "INSERT INTO messages (sender, recipient, body, idempotency_key, sent_at, event) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (sender, idempotency_key) "
                "WHERE idempotency_key IS NOT NULL DO NOTHING",
                (sender, to, body, key, now, payload),
            )
            if cursor.rowcount == 1 and cursor.lastrowid is not None:
                if remote is not None:
                    conn.execute(
                        "INSERT INTO forwards (message_id, host) VALUES (?, ?)",
                        (cursor.lastrowid, remote),
                    )
                return cursor.lastrowid, None
            dup: sqlite3.Row = conn.execute(
                "SELECT * FROM messages WHERE sender = ? AND idempotency_key = ?",
                (sender, key),
            ).fetchone()
            return int(dup["id"]), dup

        msg_id, dup = await self._db.write(insert, one_statement=remote is None)
        if dup is not None:
            original = message_from_row(dup)
            if original.recipient != to or original.body != body:
                raise Conflict(
                    f"idempotency key {key!r} was already used for message "
                    f"{msg_id} with a different recipient or body"
                )
            return msg_id, True
        # The row as stored, from what was stored: no read back, no decoding.
        self._delivered_to_inbox(
            Message(id=msg_id, sender=sender, recipient=to, body=body, sent_at=now, event=event)
        )
        if remote is not None:
            self._forwarded()
        return msg_id, False

    def knows(self, name: str) -> bool:
        """Whether `name` has an inbox on this host."""
        return self._is_recipient(name)

    def reaches(self, name: str) -> bool:
        """Whether `name` has an inbox on this host or is another host's agent."""
        return self._is_recipient(name) or self._host_of(name) is not None

    async def notify(
        self,
        to: str,
        event: HelperEvent,
        together: Callable[[sqlite3.Connection], bool] | None = None,
    ) -> int | None:
        """Put a helper event into `to`'s inbox (sender `hive`); returns the message id.

        `together` runs in the same transaction first; when it returns False nothing is
        stored and None is returned (e.g. the reminder was cancelled meanwhile).

        Another host's agent is told through the outbox, as a message to it would be.

        Raises:
            UnknownAgent: nobody by that name has an inbox.
        """
        remote = None
        if not self._is_recipient(to):
            remote = self._host_of(to)
            if remote is None:
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
            if remote is not None:
                conn.execute(
                    "INSERT INTO forwards (message_id, host) VALUES (?, ?)", (row["id"], remote)
                )
            return row

        stored = await self._db.write(insert)
        if stored is None:
            return None
        if remote is not None:
            self._forwarded()
        message = message_from_row(stored)
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
        """Lease up to `limit` undelivered messages, waiting up to `wait_seconds` for one
        (and, while the recipient is held, for the hold to lift).

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
            if self._hold is not None and await self._hold(recipient):
                if not await self._wait(inbox, deadline):
                    return []  # held all along: nothing leased, everything stays queued
                continue
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

    async def _wait(self, inbox: Inbox, deadline: float) -> bool:
        """Wait for a wake-up until `deadline` (loop time); False when time ran out.

        Raises:
            ShuttingDown: the daemon began shutting down.
        """
        if self._closing.is_set():
            raise ShuttingDown("hive-core is shutting down; retry after it restarts")
        if deadline <= asyncio.get_running_loop().time():
            return False
        # In the caller's own task: no helper tasks per wait. `close` sets every inbox's
        # wake-up, so shutting down wakes this too.
        woken = await inbox.wake.wait_until(deadline)
        if self._closing.is_set():
            raise ShuttingDown("hive-core is shutting down; retry after it restarts")
        return woken

    async def _fetch(self, recipient: str, inbox: Inbox, limit: int) -> list[Message]:
        if inbox.pending is None:
            await inbox.load_pending(self._db, recipient)
        if inbox.pending is not None:
            return fit(inbox.unleased(limit))
        return await inbox.select_unleased(self._db, recipient, limit)

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
        unique = sorted(set(ids))
        marks = ",".join("?" * len(unique))
        # Found by id: `+recipient` keeps sqlite off the undelivered index, which the UPDATE
        # changes (a search of it costs three times the rowid lookups).
        where = f"id IN ({marks}) AND +recipient = ? AND delivered_at IS NULL"

        def update(conn: sqlite3.Connection) -> int:
            sql = f"UPDATE messages SET delivered_at = ? WHERE {where}"
            return conn.execute(sql, (now, *unique, recipient)).rowcount

        def marked(conn: sqlite3.Connection) -> list[int]:
            sql = f"SELECT id FROM messages WHERE id IN ({marks}) AND delivered_at = ?"
            return sorted(r[0] for r in conn.execute(sql, (*unique, now)))

        # One statement: every id is undelivered as a rule (leased to the acking connection,
        # or shown unread by the operator's inbox), so the count says they all were; when it
        # says fewer (another reader delivered some first), the ones marked now are read back.
        count = await self._db.write(update, one_statement=True)
        done = unique if count == len(unique) else await self._db.read(marked)
        inbox = self._inbox(recipient)
        inbox.forget(done)
        for i in ids:
            self._unlease(inbox, i)
        if done and self._bus.watched:
            self._bus.publish(events.Delivered(recipient=recipient, ids=done, delivered_at=now))
        return len(done)

    def _lease(self, inbox: Inbox, message_id: int, owner: LeaseOwner) -> None:
        if (before := inbox.leases.get(message_id)) is not None:
            self._drop_held(before)
        inbox.leases[message_id] = owner
        self._held[owner] = self._held.get(owner, 0) + 1

    def _unlease(self, inbox: Inbox, message_id: int) -> None:
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

    def is_leased(self, recipient: str, message_id: int) -> bool:
        """Whether the message to `recipient` is leased to one of its receivers now."""
        inbox = self._inboxes.get(recipient)
        return inbox is not None and message_id in inbox.leases

    def release(self, owner: LeaseOwner) -> None:
        """End every lease held by a closed connection and wake the recipients."""
        if owner not in self._held:
            return  # it holds none (a sender's connection): no inbox to look through
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
        return await message_reads.flow(self._db, limit, before)

    async def operator_recent(
        self, limit: int, before: int | None = None, after: int | None = None
    ) -> list[Message]:
        """The newest `limit` messages to the operator (below id `before`, when given) that
        fit one reply, oldest first; with `after`, the oldest `limit` above that id instead,
        so a reader following the inbox skips none."""
        return await message_reads.operator_recent(self._db, limit, before, after)

    async def operator_inbox(
        self,
        limit: int,
        wait_seconds: float,
        before: int | None = None,
        after: int | None = None,
    ) -> list[Message]:
        """The newest `limit` messages to the operator (below id `before` to page back), or
        the oldest `limit` above id `after` (to follow it), oldest first; marks the unread
        ones among them delivered.

        Waits up to `wait_seconds` while there is nothing unread, or, with `after`, nothing
        above `after`.
        """
        box = self._inbox(OPERATOR)
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while True:
            box.wake.clear()
            if await message_reads.operator_has_news(self._db, before, after):
                break
            if not await self._wait(box, deadline):
                break

        messages = await self.operator_recent(limit, before, after)
        await self._mark_delivered(OPERATOR, [m.id for m in messages if m.delivered_at is None])
        return messages

    async def undelivered_count(self, recipient: str) -> int:
        """How many messages to `recipient` are not delivered yet."""
        return await message_reads.undelivered_count(self._db, recipient)

    async def vacuum(self, now: float) -> int:
        """Delete delivered messages older than the retention window (30 days)."""
        return await message_vacuum.vacuum(self._db, now)

    def close(self) -> None:
        """Answer every waiting `recv` with a shutting-down error."""
        self._closing.set()
        for inbox in self._inboxes.values():
            inbox.wake.set()
