"""Batches on the writer thread: one-statement writes without savepoints, cancelled callers."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from hive_core.db import Database
from tests.hive_core.test_db import _bodies


def _keyed(body: str, key: str) -> Callable[[sqlite3.Connection], int]:
    def fn(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "INSERT INTO messages (sender, recipient, body, idempotency_key, sent_at) "
            "VALUES ('a', 'bob', ?, ?, 0) RETURNING id",
            (body, key),
        ).fetchone()
        return int(row[0])

    return fn


async def _one_batch(db: Database, *writes: Callable[[], Coroutine[Any, Any, Any]]) -> list[Any]:
    """Run `writes` as one batch: the writer is held until all of them are queued."""
    gate = threading.Event()

    def blocker(conn: sqlite3.Connection) -> None:
        assert gate.wait(10), "the test never opened the gate"

    held = asyncio.create_task(db.write(blocker))
    queued: list[asyncio.Task[Any]] = [asyncio.create_task(w()) for w in writes]
    await asyncio.sleep(0)  # every task runs up to its await: all jobs are queued
    gate.set()
    await held
    return await asyncio.gather(*queued, return_exceptions=True)


async def test_a_failing_one_statement_write_undoes_only_itself(db: Database) -> None:
    results = await _one_batch(
        db,
        lambda: db.write(_keyed("first", "k1"), one_statement=True),
        lambda: db.write(_keyed("clash", "k1"), one_statement=True),
        lambda: db.write(_keyed("second", "k2"), one_statement=True),
    )
    assert isinstance(results[0], int)
    assert isinstance(results[1], sqlite3.IntegrityError)
    assert isinstance(results[2], int)
    assert await _bodies(db) == {"first": results[0], "second": results[2]}


async def test_each_caller_of_a_batch_gets_its_own_result(db: Database) -> None:
    bodies = [f"m{i}" for i in range(40)]
    results = await _one_batch(
        db,
        *(
            (lambda b=b, odd=i % 2: db.write(_keyed(b, f"key-{b}"), one_statement=not odd))
            for i, b in enumerate(bodies)
        ),
    )
    assert await _bodies(db) == dict(zip(bodies, results, strict=True))


async def test_a_caller_that_gave_up_before_its_batch_ran_stores_nothing(db: Database) -> None:
    gate = threading.Event()

    def blocker(conn: sqlite3.Connection) -> None:
        assert gate.wait(10), "the test never opened the gate"

    held = asyncio.create_task(db.write(blocker))
    gone = asyncio.create_task(db.write(_keyed("abandoned", "k1"), one_statement=True))
    kept = asyncio.create_task(db.write(_keyed("kept", "k2"), one_statement=True))
    await asyncio.sleep(0)  # both jobs are queued behind the blocker
    gone.cancel()
    gate.set()
    await held
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await _bodies(db) == {"kept": await kept}
