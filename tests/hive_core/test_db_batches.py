"""Batches on the write connection: one commit for the writes that wait, one-statement writes
without savepoints, cancelled callers; each connection on its own thread."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from hive_core.db import HOLD_AT_MOST, MAX_BATCH, Database, wal_backlog
from hive_core.errors import StorageError
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


async def test_writes_that_wait_while_one_commits_share_the_next_commit(
    db: Database, db_path: Path
) -> None:
    await db.write(_keyed("first", "k0"), one_statement=True)
    await db.checkpoint()
    assert wal_backlog(db_path) == 0
    # Each commit of a message writes several pages (the table, its indexes, the
    # sequence); fifty separate commits would leave at least fifty frames.
    await _one_batch(
        db,
        *(
            (lambda i=i: db.write(_keyed(f"m{i}", f"k{i + 1}"), one_statement=True))
            for i in range(50)
        ),
    )
    assert len(await _bodies(db)) == 51
    assert 0 < wal_backlog(db_path) < 20


async def test_more_writes_than_one_batch_takes_are_all_committed(db: Database) -> None:
    count = MAX_BATCH + 44
    results = await _one_batch(
        db,
        *(
            (lambda i=i: db.write(_keyed(f"m{i}", f"k{i}"), one_statement=True))
            for i in range(count)
        ),
    )
    assert await _bodies(db) == {f"m{i}": results[i] for i in range(count)}


async def test_a_write_whose_caller_gave_up_while_its_batch_ran_still_commits(
    db: Database,
) -> None:
    started = threading.Event()
    gate = threading.Event()

    def slow(conn: sqlite3.Connection) -> int:
        started.set()
        assert gate.wait(10), "the test never opened the gate"
        return _keyed("stands", "k1")(conn)

    gone = asyncio.create_task(db.write(slow))
    assert await asyncio.to_thread(started.wait, 10)
    gone.cancel()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await gone
    await db.write(lambda c: None)  # committed after the batch the abandoned write was in
    assert list(await _bodies(db)) == ["stands"]


async def test_sqlite_runs_on_each_connections_own_thread_never_on_the_loop(
    db: Database,
) -> None:
    here = threading.get_ident()
    writers = await asyncio.gather(*(db.write(lambda c: threading.get_ident()) for _ in range(5)))
    readers = await asyncio.gather(*(db.read(lambda c: threading.get_ident()) for _ in range(5)))
    assert len(set(writers)) == 1 and len(set(readers)) == 1
    assert len({here, writers[0], readers[0]}) == 3


async def test_a_closed_database_refuses_reads(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    with pytest.raises(StorageError, match="closed"):
        await db.read(lambda c: None)


def test_a_database_left_open_does_not_hold_up_the_exit(db_path: Path) -> None:
    script = (
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        "from hive_core.db import Database\n"
        "async def main():\n"
        "    global db\n"
        "    db = await Database.open(Path(sys.argv[1]))\n"
        "    await db.write(lambda c: c.execute('SELECT 1'))\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(db_path)], capture_output=True, timeout=30
    )
    assert done.returncode == 0, done.stderr


async def _answered(db: Database, fn: Callable[[sqlite3.Connection], Any]) -> threading.Event:
    """Queue `fn`; the event is set on the loop once its caller has been answered."""
    answered = threading.Event()

    async def write() -> None:
        try:
            await db.write(fn)
        finally:
            answered.set()

    asyncio.get_running_loop().create_task(write())
    await asyncio.sleep(0)  # the write is queued
    return answered


async def test_a_batch_is_answered_once_the_next_queued_batch_has_run_its_writes(
    db: Database,
) -> None:
    started, gate = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first(conn: sqlite3.Connection) -> None:
        started.set()
        assert gate.wait(10), "the test never opened the gate"

    def second(conn: sqlite3.Connection) -> None:
        seen.append(first_answered.is_set())

    first_answered = await _answered(db, first)
    assert await asyncio.to_thread(started.wait, 10)  # the first batch runs alone
    second_answered = await _answered(db, second)  # queued while the first batch runs
    gate.set()
    assert await asyncio.to_thread(second_answered.wait, 10)
    assert first_answered.is_set()
    # The first batch committed before the second's writes ran, and its answer went out
    # only after them: they ran without the loop handling that answer meanwhile.
    assert seen == [False]


async def test_a_held_answer_goes_out_when_the_next_batch_has_nothing_to_run(
    db: Database,
) -> None:
    started, gate = threading.Event(), threading.Event()

    def first(conn: sqlite3.Connection) -> int:
        started.set()
        assert gate.wait(10), "the test never opened the gate"
        return _keyed("first", "k1")(conn)

    first_write = asyncio.create_task(db.write(first))
    assert await asyncio.to_thread(started.wait, 10)  # the first batch runs alone
    gone = asyncio.create_task(db.write(_keyed("abandoned", "k2"), one_statement=True))
    await asyncio.sleep(0)  # queued behind the first batch, with a call of its own
    gone.cancel()
    gate.set()
    async with asyncio.timeout(10):
        first_id = await first_write
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await _bodies(db) == {"first": first_id}


async def test_slow_writes_of_the_next_batch_do_not_keep_an_answer_held(db: Database) -> None:
    started, gate = threading.Event(), threading.Event()
    seen: list[bool] = []

    def first(conn: sqlite3.Connection) -> None:
        started.set()
        assert gate.wait(10), "the test never opened the gate"

    def slow(conn: sqlite3.Connection) -> None:
        end = time.perf_counter() + 2 * HOLD_AT_MOST  # a write that takes this long
        while time.perf_counter() < end:
            conn.execute("SELECT count(*) FROM messages").fetchone()

    def after(conn: sqlite3.Connection) -> None:
        seen.append(first_answered.wait(10))

    first_answered = await _answered(db, first)
    assert await asyncio.to_thread(started.wait, 10)  # the first batch runs alone
    await _answered(db, slow)
    last = await _answered(db, after)
    gate.set()
    assert await asyncio.to_thread(last.wait, 20)
    assert seen == [True]
