"""Operator-initiated transitions (kill, stop, restart, ...), recorded durably.

The crash watcher reads these to tell an operator's kill from a crash.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hive_core.bus import EventBus
from hive_core.clock import Clock
from hive_core.db import Database
from hive_share import events


class Transients:
    def __init__(self, db: Database, bus: EventBus, clock: Clock) -> None:
        self._db = db
        self._bus = bus
        self._clock = clock
        self.active: dict[int, dict[str, object]] = {}
        """The transitions under way, by id: what the dashboard shows as spinners."""

    @asynccontextmanager
    async def recording(self, agent: str, action: str, actor: str) -> AsyncIterator[int]:
        """Record a transition for the duration of the block, with its outcome."""
        started = self._clock.now()

        def insert(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "INSERT INTO transients (agent, action, actor, started_at) VALUES (?, ?, ?, ?) "
                "RETURNING id",
                (agent, action, actor, started),
            ).fetchone()
            return int(row[0])

        tid = await self._db.write(insert)
        self.active[tid] = {"id": tid, "agent": agent, "action": action, "actor": actor,
                            "started_at": started}  # fmt: skip
        self._bus.publish(events.TransientSet(id=tid, agent=agent, action=action, actor=actor))
        outcome = "failed"
        try:
            yield tid
            outcome = "done"
        finally:
            self.active.pop(tid, None)
            ended = self._clock.now()

            def finish(conn: sqlite3.Connection) -> None:
                conn.execute(
                    "UPDATE transients SET ended_at = ?, outcome = ? WHERE id = ?",
                    (ended, outcome, tid),
                )

            await self._db.write(finish)
            self._bus.publish(
                events.TransientCleared(id=tid, agent=agent, action=action, outcome=outcome)
            )

    async def close_dangling(self) -> int:
        """Mark transitions a previous daemon never finished as `interrupted` (at start-up),
        so an open one does not mask a later crash forever."""
        now = self._clock.now()

        def close(conn: sqlite3.Connection) -> int:
            return conn.execute(
                "UPDATE transients SET ended_at = ?, outcome = 'interrupted' "
                "WHERE ended_at IS NULL",
                (now,),
            ).rowcount

        return await self._db.write(close)

    async def since(self, agent: str, since: float) -> list[tuple[str, float, bool]]:
        """`(action, started_at, still_open)` of the transitions of `agent` that started at
        or after `since`, or are still under way."""

        def select(conn: sqlite3.Connection) -> list[tuple[str, float, bool]]:
            rows = conn.execute(
                "SELECT action, started_at, ended_at IS NULL FROM transients "
                "WHERE agent = ? AND (started_at >= ? OR ended_at IS NULL) ORDER BY id",
                (agent, since),
            ).fetchall()
            return [(r[0], r[1], bool(r[2])) for r in rows]

        return await self._db.read(select)
