"""Messages as read back: rows decoded into Messages, answers packed under RESPONSE_BUDGET
(`fit`), and the reads that deliver nothing (the message flow, an inbox page, whether an
`inbox` wait is over, the undelivered count)."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from hive_core.db import Database
from hive_core.rows import decode
from hive_share.helper import HELPER_EVENT
from hive_share.models import Message
from hive_share.names import OPERATOR

RESPONSE_BUDGET = 900 * 1024
"""Bytes of message bodies one `recv`/`inbox` answer may carry (lines are capped at 1 MiB)."""

NO_ID_ABOVE = 2**63 - 1
"""An id bound above every message id (a page with no `before`)."""


MESSAGE_OVERHEAD = 200
"""Bytes a message counts beyond its body (and its helper event) in `fit`."""
MOST_PER_CHAR = 6
"""The most bytes one character of a body takes as JSON (a control character, escaped as
backslash-u and four hex digits), so `MOST_PER_CHAR` times its length, plus the quotes,
bounds a body's size without encoding it."""


def fit(messages: list[Message], newest_first: bool = False) -> list[Message]:
    """The longest run of `messages` whose bodies fit the response budget (at least one)."""
    bound = 0
    for m in messages:
        if m.event is not None:
            break
        bound += MOST_PER_CHAR * len(m.body) + 2 + MESSAGE_OVERHEAD
    else:
        if bound <= RESPONSE_BUDGET:
            return list(messages)  # all of them, even counted at their largest
    order = reversed(messages) if newest_first else iter(messages)
    kept: list[Message] = []
    used = 0
    for m in order:
        size = len(json.dumps(m.body, ensure_ascii=False).encode("utf-8")) + MESSAGE_OVERHEAD
        if m.event is not None:
            size += len(m.event.model_dump_json())
        if kept and used + size > RESPONSE_BUDGET:
            break
        kept.append(m)
        used += size
    return list(reversed(kept)) if newest_first else kept


def _wire_message(data: dict[str, Any]) -> dict[str, Any]:
    data.pop("idempotency_key")
    raw = data["event"]
    return {**data, "event": HELPER_EVENT.validate_json(raw) if raw else None}


def message_from_row(row: sqlite3.Row) -> Message:
    """A `messages` row as its wire model (the idempotency key left out).

    Raises:
        ValueError: the row does not decode.
    """
    return decode(Message, "messages", row, _wire_message)


async def flow(db: Database, limit: int, before: int | None) -> tuple[list[Message], bool]:
    """The newest `limit` messages hive-wide (below id `before`), oldest first, and whether
    older ones exist."""
    below = before if before is not None else NO_ID_ABOVE

    def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(
            "SELECT * FROM messages WHERE id < ? ORDER BY id DESC LIMIT ?",
            (below, limit + 1),
        ).fetchall()

    rows = await db.read(select)
    kept = fit([message_from_row(r) for r in reversed(rows[:limit])], newest_first=True)
    return kept, len(rows) > len(kept)


async def flow_after(db: Database, limit: int, after: int) -> tuple[list[Message], bool]:
    """The oldest `limit` messages hive-wide above id `after`, oldest first, and whether
    newer ones exist: the dashboard's flow paging forward."""

    def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(
            "SELECT * FROM messages WHERE id > ? ORDER BY id LIMIT ?", (after, limit + 1)
        ).fetchall()

    rows = await db.read(select)
    kept = fit([message_from_row(r) for r in rows[:limit]])
    return kept, len(rows) > len(kept)


OPERATOR_PAGE_AFTER = (
    "SELECT * FROM messages WHERE recipient = 'operator' AND id > ? AND id < ? ORDER BY id LIMIT ?"
)
OPERATOR_PAGE = (
    "SELECT * FROM (SELECT * FROM messages WHERE recipient = 'operator' AND id < ? "
    "ORDER BY id DESC LIMIT ?) ORDER BY id"
)
OPERATOR_NEWER = "SELECT 1 FROM messages WHERE recipient = 'operator' AND id > ? AND id < ? LIMIT 1"
OPERATOR_READS = (OPERATOR_PAGE_AFTER, OPERATOR_PAGE, OPERATOR_NEWER)
"""The reads of the operator's inbox, read or not: its recipient is written out, so
sqlite takes them from `messages_to_operator` (an index of the operator's messages
alone, which a send to an agent does not touch)."""


async def operator_recent(
    db: Database, limit: int, before: int | None, after: int | None
) -> list[Message]:
    """The newest `limit` messages to the operator (below id `before`) that fit one reply,
    oldest first; with `after`, the oldest `limit` above that id instead."""
    below = before if before is not None else NO_ID_ABOVE
    if after is not None:

        def select_after(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(OPERATOR_PAGE_AFTER, (after, below, limit)).fetchall()

        return fit([message_from_row(r) for r in await db.read(select_after)])

    def select(conn: sqlite3.Connection) -> list[sqlite3.Row]:
        return conn.execute(OPERATOR_PAGE, (below, limit)).fetchall()

    return fit([message_from_row(r) for r in await db.read(select)], newest_first=True)


async def operator_has_news(db: Database, before: int | None, after: int | None) -> bool:
    """What ends an `inbox` wait: an unread message, or one between `after` and `before`."""
    if after is None:
        return await undelivered_count(db, OPERATOR) > 0
    below = before if before is not None else NO_ID_ABOVE

    def newer(conn: sqlite3.Connection) -> bool:
        return conn.execute(OPERATOR_NEWER, (after, below)).fetchone() is not None

    return await db.read(newer)


async def unread(db: Database, recipient: str) -> tuple[int, float | None]:
    """How many messages to `recipient` are not delivered yet, and when the oldest was
    sent (None: none)."""

    def select(conn: sqlite3.Connection) -> tuple[int, float | None]:
        row = conn.execute(
            "SELECT count(*), min(sent_at) FROM messages "
            "WHERE recipient = ? AND delivered_at IS NULL",
            (recipient,),
        ).fetchone()
        return int(row[0]), row[1]

    return await db.read(select)


async def undelivered_count(db: Database, recipient: str) -> int:
    """How many messages to `recipient` are not delivered yet."""

    def count(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT count(*) FROM messages WHERE recipient = ? AND delivered_at IS NULL",
            (recipient,),
        ).fetchone()
        return int(row[0])

    return await db.read(count)
