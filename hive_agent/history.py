"""The agent's live-event bus and its sqlite history (`hyperhive-events.sqlite`).

The harness prunes its own history by age while it runs (`prune`); hive-core prunes the
file of an agent whose harness does not run (`hive_core/events_vacuum.py`), with the same
retention (`hive_share.retention.EVENTS`).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import anyio

from hive_share.framing import INT64_MAX
from hive_share.live import LIVE_EVENT, LiveEvent
from hive_share.models import dump
from hive_share.retention import EVENTS

EVENTS_FILE = EVENTS.file
KEEP_SECONDS = EVENTS.keep_seconds

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    ts REAL NOT NULL,
    turn_id TEXT,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
"""


class EventHistory:
    """Every live event, persisted, then fanned out to in-process subscribers."""

    def __init__(self, conn: aiosqlite.Connection, clock: Callable[[], float] = time.time):
        self._conn = conn
        self._clock = clock
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()

    @classmethod
    async def open(cls, state_dir: Path) -> EventHistory:
        conn = await aiosqlite.connect(state_dir / EVENTS_FILE)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.executescript(SCHEMA)
        await conn.commit()
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def publish(self, event: LiveEvent, turn_id: str | None) -> int:
        data = dump(event)
        now = self._clock()
        cursor = await self._conn.execute(
            "INSERT INTO events (ts, turn_id, kind, data) VALUES (?, ?, ?, ?)",
            (now, turn_id, event.kind, json.dumps(data, ensure_ascii=False)),
        )
        await self._conn.commit()
        seq = cursor.lastrowid or 0
        row = {"seq": seq, "ts": now, "turn_id": turn_id, "event": event}
        for queue in list(self._subscribers):
            if queue.full():
                self._subscribers.discard(queue)  # a slow reader resyncs from history
            else:
                queue.put_nowait(row)
        return seq

    def subscribe(self, maxsize: int = 1024) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    async def recent(self, limit: int = 500, turn_id: str | None = None) -> list[dict[str, Any]]:
        """The newest events, oldest first, each with its `seq`, `ts` and `turn_id`."""
        where, args = ("WHERE turn_id = ?", [turn_id]) if turn_id else ("", [])
        cursor = await self._conn.execute(
            f"SELECT id, ts, turn_id, data FROM events {where} ORDER BY id DESC LIMIT ?",
            (*args, limit),
        )
        rows = await cursor.fetchall()
        return [self._row(*row) for row in reversed(list(rows))]

    async def events(self, after: int, limit: int, wait_seconds: float) -> list[dict[str, Any]]:
        """Events with a `seq` above `after`, oldest first, at most `limit` (with `after` 0:
        the newest `limit`); with `wait_seconds`, wait that long for one to come."""
        queue = self.subscribe(maxsize=1) if wait_seconds > 0 else None
        try:
            got = await self._above(after, limit)
            if got or queue is None:
                return got
            with anyio.move_on_after(wait_seconds) as waiting:
                await queue.get()
            if waiting.cancelled_caught:
                return []
            return await self._above(after, limit)
        finally:
            if queue is not None:
                self.unsubscribe(queue)

    async def _above(self, after: int, limit: int) -> list[dict[str, Any]]:
        if after == 0:
            return await self.recent(limit)
        cursor = await self._conn.execute(
            "SELECT id, ts, turn_id, data FROM events WHERE id > ? ORDER BY id LIMIT ?",
            (after, limit),
        )
        return [self._row(*row) for row in await cursor.fetchall()]

    @staticmethod
    def _row(row_id: int, ts: float, turn_id: str | None, data: str) -> dict[str, Any]:
        try:
            event = LIVE_EVENT.validate_json(data)
        except ValueError as exc:
            raise ValueError(f"events row id={row_id} does not decode: {exc}") from exc
        return {"seq": row_id, "ts": ts, "turn_id": turn_id, "event": event}

    async def before(self, before: int | None, limit: int) -> tuple[list[dict[str, Any]], bool]:
        """The `limit` events below seq `before` (the newest without it), oldest first, and
        whether older ones exist."""
        cursor = await self._conn.execute(
            "SELECT id, ts, turn_id, data FROM events WHERE id < ? ORDER BY id DESC LIMIT ?",
            (before if before is not None else INT64_MAX, limit + 1),
        )
        rows = list(await cursor.fetchall())
        return [self._row(*row) for row in reversed(rows[:limit])], len(rows) > limit

    async def last_seq(self) -> int:
        cursor = await self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM events")
        row = await cursor.fetchone()
        return int(row[0]) if row else 0

    async def latest(self, kind: str) -> dict[str, Any] | None:
        """The newest stored event of `kind`, as its JSON object."""
        got = await self.latest_all(kind, 1)
        return got[0] if got else None

    async def latest_all(self, kind: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` stored events of `kind`, oldest first, as JSON objects."""
        cursor = await self._conn.execute(
            "SELECT data FROM events WHERE kind = ? ORDER BY id DESC LIMIT ?", (kind, limit)
        )
        return [json.loads(row[0]) for row in reversed(list(await cursor.fetchall()))]

    async def prune(self, now: float) -> int:
        """Delete events older than the retention window (age only)."""
        cursor = await self._conn.execute(EVENTS.delete, (now - KEEP_SECONDS,))
        await self._conn.commit()
        return cursor.rowcount
