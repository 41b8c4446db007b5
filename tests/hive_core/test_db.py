from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from hive_core.db import Database, start_quick_check, wal_backlog
from hive_core.errors import StartupError, StorageError
from hive_core.migrations import APPLICATION_ID, MIGRATIONS


def _pragmas(path: Path) -> tuple[str, int, int]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    return mode, version, app_id


def _insert(sender: str, body: str) -> Callable[[sqlite3.Connection], int]:
    def fn(conn: sqlite3.Connection) -> int:
        row = conn.execute(
            "INSERT INTO messages (sender, recipient, body, sent_at) VALUES (?, 'bob', ?, 0) "
            "RETURNING id",
            (sender, body),
        ).fetchone()
        return int(row[0])

    return fn


async def _bodies(db: Database) -> dict[str, int]:
    rows = await db.read(lambda c: c.execute("SELECT id, body FROM messages").fetchall())
    return {r["body"]: r["id"] for r in rows}


async def test_a_fresh_file_is_migrated_to_wal_with_our_application_id(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    assert _pragmas(db_path) == ("wal", len(MIGRATIONS), APPLICATION_ID)


async def test_reopening_a_database_keeps_its_schema_and_rows(db_path: Path) -> None:
    first = await Database.open(db_path)
    await first.write(
        lambda c: c.execute(
            "INSERT INTO messages (sender, recipient, body, sent_at) VALUES ('a', 'b', 'kept', 1)"
        )
    )
    await first.close()

    second = await Database.open(db_path)
    try:
        bodies = await second.read(lambda c: c.execute("SELECT body FROM messages").fetchall())
        assert [r["body"] for r in bodies] == ["kept"]
    finally:
        await second.close()
    assert _pragmas(db_path) == ("wal", len(MIGRATIONS), APPLICATION_ID)


def _write_foreign_database(path: Path) -> bytes:
    """Another program's sqlite file (application_id 0, its own table); returns its bytes."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT)")
        conn.execute("INSERT INTO notes (text) VALUES ('mine')")
        conn.commit()
    return path.read_bytes()


async def test_a_file_of_garbage_bytes_stops_startup_naming_the_path(db_path: Path) -> None:
    await asyncio.to_thread(db_path.write_bytes, os.urandom(8192))
    with pytest.raises(StartupError) as info:
        await Database.open(db_path)
    assert str(db_path) in str(info.value)


async def test_garbage_found_by_the_early_check_stops_startup_naming_the_path(
    db_path: Path,
) -> None:
    await asyncio.to_thread(db_path.write_bytes, os.urandom(8192))
    checked = start_quick_check(db_path)
    assert checked is not None
    with pytest.raises(StartupError, match="unreadable or corrupt") as info:
        await Database.open(db_path, checked=checked)
    assert str(db_path) in str(info.value)


def test_the_early_check_of_a_missing_file_creates_nothing(db_path: Path) -> None:
    assert start_quick_check(db_path) is None
    assert not db_path.exists()


async def test_a_database_that_passed_the_early_check_opens_with_its_rows(
    db_path: Path,
) -> None:
    first = await Database.open(db_path)
    await first.write(_insert("a", "kept"))
    await first.close()
    checked = start_quick_check(db_path)
    assert checked is not None
    second = await Database.open(db_path, checked=checked)
    try:
        assert list(await _bodies(second)) == ["kept"]
    finally:
        await second.close()


async def test_a_foreign_sqlite_database_is_refused_and_left_alone(db_path: Path) -> None:
    before = _write_foreign_database(db_path)

    with pytest.raises(StartupError, match="not a hyperhive database") as info:
        await Database.open(db_path)

    assert str(db_path) in str(info.value)
    assert await asyncio.to_thread(db_path.read_bytes) == before


async def test_a_database_with_another_application_id_is_refused(db_path: Path) -> None:
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute("PRAGMA application_id = 1234")
    with pytest.raises(StartupError, match="not a hyperhive database"):
        await Database.open(db_path)


async def test_a_database_from_a_newer_hive_core_is_refused(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    with contextlib.closing(sqlite3.connect(db_path)) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")

    with pytest.raises(StartupError, match="newer") as info:
        await Database.open(db_path)
    assert str(db_path) in str(info.value)


async def test_concurrent_writes_all_commit_and_each_caller_gets_its_own_result(
    db: Database,
) -> None:
    bodies = [f"m{i}" for i in range(200)]
    ids = await asyncio.gather(*(db.write(_insert("a", b)) for b in bodies))

    assert len(set(ids)) == 200
    assert await _bodies(db) == dict(zip(bodies, ids, strict=True))


class Refused(Exception):
    pass


async def test_a_failing_write_raises_to_its_caller_only_and_the_others_commit(
    db: Database,
) -> None:
    gate = threading.Event()

    def blocker(conn: sqlite3.Connection) -> str:
        # Holds the writer thread so the writes queued meanwhile share one batch.
        assert gate.wait(10), "the test never opened the gate"
        return "blocker"

    def failing(conn: sqlite3.Connection) -> None:
        conn.execute(
            "INSERT INTO messages (sender, recipient, body, sent_at) VALUES ('x', 'y', 'bad', 0)"
        )
        raise Refused("no")

    async def open_gate() -> None:
        gate.set()

    results = await asyncio.gather(
        db.write(blocker),
        db.write(_insert("a", "before")),
        db.write(failing),
        db.write(_insert("a", "after")),
        open_gate(),
        return_exceptions=True,
    )

    assert results[0] == "blocker"
    assert isinstance(results[1], int)
    assert isinstance(results[2], Refused)
    assert isinstance(results[3], int)
    assert await _bodies(db) == {"before": results[1], "after": results[3]}


async def test_writes_are_committed_before_they_return(db: Database, db_path: Path) -> None:
    new_id = await db.write(_insert("a", "durable"))
    with contextlib.closing(sqlite3.connect(db_path)) as other:
        row = other.execute("SELECT body FROM messages WHERE id = ?", (new_id,)).fetchone()
    assert row == ("durable",)


async def test_the_writer_connection_syncs_fully(db: Database) -> None:
    level = await db.write(lambda c: c.execute("PRAGMA synchronous").fetchone()[0])
    assert level == 2  # FULL


async def test_a_closed_database_refuses_writes(db_path: Path) -> None:
    db = await Database.open(db_path)
    await db.close()
    with pytest.raises(StorageError, match="closed"):
        await db.write(lambda c: None)


async def test_the_wal_stays_bounded_under_sustained_writes(db_path: Path) -> None:
    limit = 512 * 1024
    db = await Database.open(db_path, checkpoint_at=limit)
    biggest = 0
    try:
        for round_ in range(40):
            await asyncio.gather(*(db.write(_insert("a", f"{round_}-{i}" + "x" * 4000))
                                   for i in range(50)))  # fmt: skip
            biggest = max(biggest, db.wal_bytes())
        assert len(await _bodies(db)) == 2000
        # 2,000 writes of ~4 KiB leave ~16 MiB of WAL when nothing checkpoints it.
        assert biggest <= limit + 2 * 1024 * 1024
    finally:
        await db.close()


async def test_an_idle_checkpoint_folds_every_frame_in(db_path: Path) -> None:
    db = await Database.open(db_path)
    try:
        await asyncio.gather(*(db.write(_insert("a", f"m{i}")) for i in range(20)))
        assert wal_backlog(db_path) > 0
        await db.checkpoint()
        assert wal_backlog(db_path) == 0
        await db.checkpoint()  # nothing new and nothing left over: a no-op
        assert wal_backlog(db_path) == 0
        assert len(await _bodies(db)) == 20
    finally:
        await db.close()


async def test_after_a_fold_commits_overwrite_the_kept_wal_instead_of_growing_it(
    db_path: Path,
) -> None:
    db = await Database.open(db_path)
    try:
        for i in range(30):
            await db.write(_insert("a", f"m{i}"))
        size = db.wal_bytes()
        await db.checkpoint()
        await db.checkpoint()  # an idle tick too: the file is not cut back to nothing
        await db.write(_insert("a", "after the fold"))
        assert db.wal_bytes() == size  # started over at the top of the same file
        assert 0 < wal_backlog(db_path) < 10
    finally:
        await db.close()
