"""One row per turn in `hyperhive-turn-stats.sqlite`: what ran, how it ended, what it cost.

Rows are kept 90 days (`hive_share.retention.TURNS`): the harness prunes them hourly while it
runs (`prune`), hive-core when it does not (`hive_core/events_vacuum.py`).

`reported` says whether hive-core has the row's figures (`turn_usage`, `usage_report.py`):
`PENDING` until it answered, then `REPORTED`, or `REFUSED` when it refused the row as
invalid (never resent). A file from before the column gets it with every existing row
`REPORTED`: an upgrade does not send hive-core its history.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import aiosqlite

from hive_share.retention import TURNS

STATS_FILE = TURNS.file
KEEP_SECONDS = TURNS.keep_seconds

Reported = Literal[0, 1, 2]
"""The values of `reported`: hive-core has not got the row yet, has it, refused it."""
PENDING: Final = 0
REPORTED: Final = 1
REFUSED: Final = 2

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
    open_reminders_count INTEGER,
    reported INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS turns_ended_at ON turns(ended_at);
"""
ADD_REPORTED = "ALTER TABLE turns ADD COLUMN reported INTEGER NOT NULL DEFAULT 1"
"""A file from before the column: its rows count as reported (new rows say otherwise)."""
UNREPORTED_INDEX = "CREATE INDEX IF NOT EXISTS turns_unreported ON turns(id) WHERE reported = 0"
USAGE_COLUMNS = (
    "turn_id", "started_at", "ended_at", "model", "result_kind", "input_tokens",
    "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "cost_usd",
    "tools",
)  # fmt: skip
"""What hive-core hears of a turn (`turn_usage`)."""


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
        columns = {row[1] async for row in await conn.execute("PRAGMA table_info(turns)")}
        if "reported" not in columns:
            await conn.execute(ADD_REPORTED)
        await conn.execute(UNREPORTED_INDEX)
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
        values["reported"] = PENDING
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        await self._conn.execute(f"INSERT INTO turns ({columns}) VALUES ({marks})", values)
        await self._conn.commit()

    async def prune(self, now: float) -> int:
        """Delete the turns that ended before the retention window; returns how many."""
        cursor = await self._conn.execute(TURNS.delete, (now - KEEP_SECONDS,))
        await self._conn.commit()
        return cursor.rowcount

    async def unreported(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` rows hive-core has not got yet, oldest first: their `USAGE_COLUMNS`,
        `tools` decoded."""
        cursor = await self._conn.execute(
            f"SELECT {', '.join(USAGE_COLUMNS)} FROM turns WHERE reported = ? ORDER BY id LIMIT ?",
            (PENDING, limit),
        )
        rows = [dict(zip(USAGE_COLUMNS, values, strict=True)) for values in await cursor.fetchall()]
        for row in rows:
            try:
                tools = json.loads(row["tools"])
            except ValueError:
                tools = {}
            row["tools"] = tools if isinstance(tools, dict) else {}
        return rows

    async def mark(self, turn_id: str, reported: Reported) -> None:
        """Record what hive-core made of the turn's figures."""
        await self._conn.execute(
            "UPDATE turns SET reported = ? WHERE turn_id = ?", (reported, turn_id)
        )
        await self._conn.commit()
