"""The messages vacuum: delivered messages older than RETENTION_SECONDS (30 days) are
deleted, VACUUM_CHUNK per write (hive-core runs it at start, then hourly)."""

from __future__ import annotations

import logging
import sqlite3

from hive_core.db import Database

logger = logging.getLogger(__name__)

RETENTION_SECONDS = 30 * 24 * 3600
"""Delivered messages older than this are vacuumed."""

VACUUM_CHUNK = 2000
"""Messages the vacuum deletes per write: the sends and acks queued meanwhile are committed
between two chunks instead of waiting for a month of deletes."""


async def vacuum(db: Database, now: float) -> int:
    """Delete delivered messages older than the retention window, `VACUUM_CHUNK` per write;
    returns how many went."""
    cutoff = now - RETENTION_SECONDS
    chunk_size = VACUUM_CHUNK

    def delete(conn: sqlite3.Connection) -> int:
        cur = conn.execute(
            "DELETE FROM messages WHERE id IN (SELECT id FROM messages "
            "WHERE delivered_at IS NOT NULL AND delivered_at < ? LIMIT ?)",
            (cutoff, chunk_size),
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
