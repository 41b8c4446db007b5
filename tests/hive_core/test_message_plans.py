"""The reads of messages take an index, never a scan of every message: the operator's inbox
from `messages_to_operator`, an agent's undelivered messages from `messages_undelivered`."""

from __future__ import annotations

import sqlite3

import pytest

from hive_core import message_reads
from hive_core.db import Database

UNDELIVERED = (
    "SELECT * FROM messages WHERE recipient = ? AND delivered_at IS NULL ORDER BY id LIMIT ?",
    "SELECT count(*), min(sent_at) FROM messages WHERE recipient = ? AND delivered_at IS NULL",
)


async def _plan(db: Database, sql: str, args: tuple[object, ...]) -> str:
    def explain(conn: sqlite3.Connection) -> str:
        return " | ".join(row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args))

    return await db.read(explain)


@pytest.mark.parametrize("sql", message_reads.OPERATOR_READS)
async def test_the_operators_inbox_is_read_from_its_own_index(db: Database, sql: str) -> None:
    def fill(conn: sqlite3.Connection) -> None:  # mostly to agents, as in a working hive
        conn.executemany(
            "INSERT INTO messages (sender, recipient, body, sent_at) VALUES ('a', ?, 'm', 1)",
            [("operator" if i % 30 == 0 else f"a{i % 7}",) for i in range(300)],
        )
        conn.execute("ANALYZE")

    await db.write(fill)
    args = (0, 2**62, 10)[: sql.count("?")]
    plan = await _plan(db, sql, args)
    assert "USING INDEX messages_to_operator" in plan, plan


@pytest.mark.parametrize("sql", UNDELIVERED)
async def test_an_agents_undelivered_messages_are_read_from_their_index(
    db: Database, sql: str
) -> None:
    plan = await _plan(db, sql, ("bob", 10)[: sql.count("?")])
    assert "USING INDEX messages_undelivered" in plan, plan
