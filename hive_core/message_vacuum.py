"""The messages vacuum: delivered messages older than RETENTION_SECONDS (30 days) are
deleted, VACUUM_CHUNK per write (hive-core runs it at start, then hourly)."""

from __future__ import annotations

import logging
import sqlite3

from hive_core.db import Database
from hive_core.message_reads import NO_ID_ABOVE

logger = logging.getLogger(__name__)

RETENTION_SECONDS = 30 * 24 * 3600
"""Delivered messages older than this are vacuumed."""

VACUUM_CHUNK = 2000
"""Messages the vacuum deletes per write: the sends and acks queued meanwhile are committed
between two chunks instead of waiting for a month of deletes."""


async def vacuum(db: Database, now: float) -> int:
    """Delete delivered messages older than the retention window, `VACUUM_CHUNK` per write;
    returns how many went.

    No index orders messages by delivery (an ack would keep one up to date for the vacuum
    alone): ids grow with time, and a message is delivered after it is sent, so every
    message to delete comes before the first one sent since the cutoff. The vacuum finds
    that id on the read connection, then deletes in id order below it.
    """
    cutoff = now - RETENTION_SECONDS
    chunk_size = VACUUM_CHUNK

    def first_recent(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "SELECT id FROM messages WHERE sent_at >= ? ORDER BY id LIMIT 1", (cutoff,)
        ).fetchone()
        return NO_ID_ABOVE if row is None else int(row[0])

    below = await db.read(first_recent)

    def delete(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE id < ? "
            "AND delivered_at IS NOT NULL AND delivered_at < ? ORDER BY id LIMIT ?)",
            (below, cutoff, chunk_size),
        )
        return cur.rowcount

    def forgotten(conn: sqlite3.Connection) -> int:
        """The forwards of messages handed to another host as long ago (a hive that spans
        hosts): their messages went with the chunks above."""
        cur = conn.execute(
            "DELETE FROM forwards WHERE forwarded_at IS NOT NULL AND forwarded_at < ?", (cutoff,)
        )
        return cur.rowcount

    removed = 0
    while (chunk := await db.write(delete, one_statement=True)) > 0:
        removed += chunk
        if chunk < chunk_size:
            break
    await db.write(forgotten, one_statement=True)
    if removed:
        logger.info("vacuumed %d delivered messages older than 30 days", removed)
    return removed
