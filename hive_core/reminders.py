"""Reminders: an agent schedules a prompt to itself, optionally with a file's content.

The scheduler's `tick(now)` (every 5 s, injected clock) drains due reminders:
it reads the file (inside that agent's state dir only), stores the payload with
the reminder, and puts a short `ReminderDue` pointer into the agent's inbox.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import anyio

from hive_core.broker import Broker
from hive_core.clock import Clock
from hive_core.db import Database
from hive_core.errors import Busy, Conflict, InvalidRequest, NotFound
from hive_core.rows import decode
from hive_core.state_files import parse_state_path, read_state_file
from hive_share import helper
from hive_share.models import Reminder

logger = logging.getLogger(__name__)

MAX_PENDING_PER_AGENT = 100
MAX_AHEAD = 366 * 24 * 3600.0


def _reminder(row: sqlite3.Row) -> Reminder:
    return decode(Reminder, "reminders", row)


class Reminders:
    def __init__(self, db: Database, clock: Clock, broker: Broker, agents_dir: Path) -> None:
        self._db = db
        self._clock = clock
        self._broker = broker
        self._agents_dir = agents_dir

    async def add(
        self,
        agent: str,
        message: str,
        at: float | None,
        in_seconds: float | None,
        file_path: str | None,
    ) -> Reminder:
        """Raises: InvalidRequest (time or path), Busy (too many pending)."""
        now = self._clock.now()
        if (at is None) == (in_seconds is None):
            raise InvalidRequest("give exactly one of `at` (epoch seconds) or `in_seconds`")
        due = at if at is not None else now + (in_seconds or 0.0)
        if due > now + MAX_AHEAD:
            raise InvalidRequest("a reminder may be at most a year ahead")
        if at is not None and at < now - 60:
            raise InvalidRequest(f"`at` {at:.0f} is in the past (now is {now:.0f})")
        if file_path is not None:
            parse_state_path(file_path)

        def insert(conn: sqlite3.Connection) -> sqlite3.Row:
            pending = conn.execute(
                "SELECT count(*) FROM reminders WHERE agent = ? AND status = 'pending'", (agent,)
            ).fetchone()[0]
            if pending >= MAX_PENDING_PER_AGENT:
                raise Busy(
                    f"{agent} has {pending} pending reminders (the limit is "
                    f"{MAX_PENDING_PER_AGENT}); cancel some first"
                )
            row: sqlite3.Row = conn.execute(
                "INSERT INTO reminders (agent, message, due_at, file_path, created_at) "
                "VALUES (?, ?, ?, ?, ?) RETURNING *",
                (agent, message, due, file_path, now),
            ).fetchone()
            return row

        return _reminder(await self._db.write(insert))

    async def listing(self, agent: str | None, reminder_id: int | None = None) -> list[Reminder]:
        """Pending reminders and the 20 most recently delivered, or one by id."""
        if reminder_id is not None:
            row = await self._db.read(
                lambda c: c.execute(
                    "SELECT * FROM reminders WHERE id = ?", (reminder_id,)
                ).fetchone()
            )
            if row is None or (agent is not None and row["agent"] != agent):
                raise NotFound(f"no reminder {reminder_id} of yours")
            return [_reminder(row)]
        who, args = ("agent = ? AND ", [agent]) if agent is not None else ("", [])

        def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            pending = conn.execute(
                f"SELECT * FROM reminders WHERE {who}status = 'pending' ORDER BY due_at, id", args
            ).fetchall()
            recent = conn.execute(
                f"SELECT * FROM reminders WHERE {who}status = 'delivered' "
                "ORDER BY delivered_at DESC LIMIT 20",
                args,
            ).fetchall()
            return [*pending, *recent]

        # Payloads (up to 64 KiB each) only with `id`; a listing must fit one reply.
        return [
            _reminder(r).model_copy(update={"payload": None}) for r in await self._db.read(select)
        ]

    async def pending_total(self) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM reminders WHERE status = 'pending'"
            ).fetchone()
        )
        return int(row[0])

    async def pending_count(self, agent: str) -> int:
        row = await self._db.read(
            lambda c: c.execute(
                "SELECT count(*) FROM reminders WHERE agent = ? AND status = 'pending'", (agent,)
            ).fetchone()
        )
        return int(row[0])

    async def cancel(self, agent: str, reminder_id: int) -> Reminder:
        """Raises: NotFound (not yours), Conflict (no longer pending)."""

        def update(conn: sqlite3.Connection) -> sqlite3.Row:
            row: sqlite3.Row | None = conn.execute(
                "UPDATE reminders SET status = 'cancelled' "
                "WHERE id = ? AND agent = ? AND status = 'pending' RETURNING *",
                (reminder_id, agent),
            ).fetchone()
            if row is None:
                current = conn.execute(
                    "SELECT status, agent FROM reminders WHERE id = ?", (reminder_id,)
                ).fetchone()
                if current is None or current["agent"] != agent:
                    raise NotFound(f"no reminder {reminder_id} of yours")
                raise Conflict(f"reminder {reminder_id} is already {current['status']}")
            return row

        return _reminder(await self._db.write(update))

    async def tick(self, now: float) -> list[int]:
        """Deliver every pending reminder due at `now`; returns their ids."""
        rows = await self._db.read(
            lambda c: c.execute(
                "SELECT * FROM reminders WHERE status = 'pending' AND due_at <= ? "
                "ORDER BY due_at, id",
                (now,),
            ).fetchall()
        )
        fired = []
        for row in rows:
            try:
                if await self._fire(_reminder(row), now):
                    fired.append(row["id"])
            except Exception:
                logger.exception("delivering reminder %d of %s failed", row["id"], row["agent"])
        return fired

    async def _fire(self, reminder: Reminder, now: float) -> bool:
        """Deliver one reminder; False when it was cancelled meanwhile."""
        payload, note = None, None
        if reminder.file_path is not None:
            payload, note = await anyio.to_thread.run_sync(
                read_state_file, self._agents_dir, reminder.agent, reminder.file_path
            )

        def mark(conn: sqlite3.Connection) -> bool:
            cur = conn.execute(
                "UPDATE reminders SET status = 'delivered', delivered_at = ?, payload = ?, "
                "payload_note = ? WHERE id = ? AND status = 'pending'",
                (now, payload, note, reminder.id),
            )
            return cur.rowcount == 1

        if not self._broker.knows(reminder.agent):
            logger.info("reminder %d is for %s, which is gone", reminder.id, reminder.agent)
            return await self._db.write(mark)
        size = len(payload.encode("utf-8")) if payload is not None else None
        event = helper.ReminderDue(
            id=reminder.id, message=reminder.message, payload_bytes=size, payload_note=note
        )
        # Marked delivered and put in the inbox in one transaction: never one without the other.
        return await self._broker.notify(reminder.agent, event, together=mark) is not None
