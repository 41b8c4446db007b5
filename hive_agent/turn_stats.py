"""One row per turn in `hyperhive-turn-stats.sqlite`: what ran, how it ended, what it cost.

Rows are kept 90 days (`hive_share.retention.TURNS`): the harness prunes them hourly while it
runs (`prune`), hive-core when it does not (`hive_core/events_vacuum.py`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiosqlite

from hive_share.retention import TURNS

STATS_FILE = TURNS.file
KEEP_SECONDS = TURNS.keep_seconds

SCHEMA = """
CREATE TABLE IF NOT EXISTS turns (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    turn_id TEXT NOT NULL UNIQUE,
    model TEXT NOT NULL,
    wake_from TEXT NOT NULL,
    result_kind TEXT NOT NULL,
    result_detail TEXT NOT NULL,
    started_at REAL NOT NULL,
    ended_at REAL NOT NULL,
    duration_ms INTEGER NOT NULL,
    session_id TEXT,
    new_session INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_creation_input_tokens INTEGER NOT NULL,
    cache_read_input_tokens INTEGER NOT NULL,
    context_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    tool_call_count INTEGER NOT NULL,
    tools TEXT NOT NULL,
    permission_denials TEXT NOT NULL,
    permission_denial_count INTEGER NOT NULL,
    open_threads_count INTEGER,
    open_reminders_count INTEGER
);
CREATE INDEX IF NOT EXISTS turns_ended_at ON turns(ended_at);
"""


@dataclass
class TurnRow:
    turn_id: str
    model: str
    wake_from: list[str]
    result_kind: str
    result_detail: str
    started_at: float
    ended_at: float
    session_id: str | None
    new_session: bool
    attempts: int
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    context_tokens: int = 0
    cost_usd: float = 0.0
    tools: dict[str, int] = field(default_factory=dict)
    permission_denials: list[dict[str, Any]] = field(default_factory=list)
    open_threads_count: int | None = None
    open_reminders_count: int | None = None

    @property
    def duration_ms(self) -> int:
        return int((self.ended_at - self.started_at) * 1000)


class TurnStats:
    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    @classmethod
    async def open(cls, state_dir: Path) -> TurnStats:
        conn = await aiosqlite.connect(state_dir / STATS_FILE)
        await conn.execute("PRAGMA journal_mode = WAL")
        await conn.executescript(SCHEMA)
        await conn.commit()
        return cls(conn)

    async def close(self) -> None:
        await self._conn.close()

    async def record(self, row: TurnRow) -> None:
        values = asdict(row)
        values["wake_from"] = ",".join(row.wake_from)
        values["tools"] = json.dumps(row.tools, sort_keys=True)
        values["permission_denials"] = json.dumps(row.permission_denials)
        values["permission_denial_count"] = len(row.permission_denials)
        values["tool_call_count"] = sum(row.tools.values())
        values["new_session"] = int(row.new_session)
        values["duration_ms"] = row.duration_ms
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        await self._conn.execute(f"INSERT INTO turns ({columns}) VALUES ({marks})", values)
        await self._conn.commit()

    async def prune(self, now: float) -> int:
        """Delete the turns that ended before the retention window; returns how many."""
        cursor = await self._conn.execute(TURNS.delete, (now - KEEP_SECONDS,))
        await self._conn.commit()
        return cursor.rowcount
