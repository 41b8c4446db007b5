"""Opening hive.sqlite: its aiosqlite connections, the checks and the migrations.

The checks and migrations run on the write connection as its first call, before its
settings; the early `quick_check` (`start_quick_check`) runs before any event loop exists,
on a plain thread.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import threading
from collections.abc import Callable
from concurrent.futures import Future
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

import aiosqlite

from hive_core.errors import StartupError
from hive_core.migrations import APPLICATION_ID, MIGRATIONS

logger = logging.getLogger(__name__)
# aiosqlite logs two debug lines per call, each with the call's repr (a whole batch).
logging.getLogger("aiosqlite").setLevel(logging.INFO)

T = TypeVar("T")


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class Connection(aiosqlite.Connection):
    """An aiosqlite connection that also runs a function of its sqlite3 connection as one
    call on its thread: a read, or a whole batch of writes with its BEGIN and COMMIT.

    aiosqlite's own methods queue one statement (or one fetch) per call, each a hop to the
    thread and back; the callers here hand in functions of a `sqlite3.Connection`, and a
    batch must run as one call for its commit to be one. `_execute` is the queue every
    aiosqlite method goes through.
    """

    def __init__(self, path: Path) -> None:
        super().__init__(partial(_connect, path), 64)
        # A daemon thread (aiosqlite's are not): a process that never closed its database
        # still exits. Before aiosqlite 0.22 the connection is the thread itself.
        cast(threading.Thread, getattr(self, "_thread", self)).daemon = True

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(connection)` on this connection's thread, after the calls queued before."""
        result: T = await self._execute(fn, self._conn)  # type: ignore[no-untyped-call]
        return result

    def submit(
        self, fn: Callable[[sqlite3.Connection], T], answer: Callable[[asyncio.Future[T]], None]
    ) -> None:
        """Queue `fn(connection)` on this connection's thread, after the calls queued before,
        now (no task, no loop iteration first); `answer` gets its future, done, on the loop.

        Raises:
            ValueError: the connection is closed.
        """
        if not self._running or self._connection is None:
            raise ValueError("Connection closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        future.add_done_callback(answer)
        self._tx.put_nowait((future, partial(fn, self._connection)))


def _refuse_links(path: Path) -> None:
    """sqlite follows symlinks: refuse one at the database or its journal files.

    Raises:
        StartupError: a symlink or a non-regular file is in the way.
    """
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            st = os.lstat(candidate)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise StartupError(
                f"{candidate} is a symlink; refusing to open it (its target is left untouched)"
            )
        if not stat.S_ISREG(st.st_mode):
            raise StartupError(f"{candidate} is not a regular file; move it away")


def start_quick_check(path: Path) -> Future[None] | None:
    """Begin sqlite's `quick_check` of the database at `path` in a thread of its own, so it
    runs while hive-core is still importing (on a big hive it is most of the database's
    start; no event loop exists yet); `Database.open(path, checked=…)` waits for it. None
    when there is no regular file there yet (`open` deals with that).

    The check only reads; it never creates the file.
    """
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
    except OSError:
        return None
    done: Future[None] = Future()

    def run() -> None:
        try:
            _quick_check(path)
        except BaseException as exc:  # noqa: BLE001 - handed to open(), which re-raises it
            done.set_exception(exc)
        else:
            done.set_result(None)

    threading.Thread(target=run, name="hive-db-check", daemon=True).start()
    return done


def _quick_check(path: Path) -> None:
    """`PRAGMA quick_check` on a connection that may not create the file.

    Raises:
        StartupError: the file is unreadable, or sqlite finds it damaged.
    """
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=10.0)
        try:
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StartupError(f"{path} is unreadable or corrupt: {exc}") from None
    if check != "ok":
        raise StartupError(f"{path} failed its integrity check: {check}")


def _existing(path: Path) -> bool:
    """Whether a database is there already (before any connection creates the file).

    Raises:
        StartupError: a symlink or a non-regular file is in the way.
    """
    _refuse_links(path)
    return path.exists() and path.stat().st_size > 0


def _verify_and_migrate(conn: sqlite3.Connection, path: Path, existed: bool, checked: bool) -> None:
    """Verify and migrate the database (on the write connection, before its settings);
    `checked`: its quick_check already passed (`start_quick_check`).

    Raises:
        StartupError: corrupt, foreign, or newer-than-us database.
    """
    app_id = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if existed and app_id != APPLICATION_ID and (app_id != 0 or tables > 0):
        raise StartupError(
            f"{path} is not a hyperhive database (application_id={app_id}, "
            f"{tables} schema objects); move it away or point HIVE_STATE_DIR elsewhere"
        )
    if version > len(MIGRATIONS):
        raise StartupError(
            f"{path} has schema version {version}, newer than this hive-core "
            f"understands ({len(MIGRATIONS)}); run a newer hive-core"
        )
    if not checked:
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise StartupError(f"{path} failed its integrity check: {check}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StartupError(f"{path} could not be switched to WAL mode (got {mode})")
    for number, script in enumerate(MIGRATIONS, start=1):
        if number <= version:
            continue
        conn.execute("BEGIN IMMEDIATE")
        for statement in script:
            conn.execute(statement)
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {number}")
        conn.execute("COMMIT")
        logger.info("applied migration %d to %s", number, path)


def _writer_settings(conn: sqlite3.Connection, checkpoint_at: int) -> None:
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Checkpoints run off the commit path: from the read connection every few seconds, and
    # on the write connection between batches only when the WAL has grown large.
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute(f"PRAGMA journal_size_limit = {checkpoint_at}")


def _reader_settings(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA query_only = ON")


async def open_connections(
    path: Path, checkpoint_at: int, checked: bool
) -> tuple[Connection, Connection]:
    """The write connection (the database verified and migrated on it first) and the read
    connection; neither is left open when this raises.

    Raises:
        StartupError: the file is corrupt, foreign, or from a newer hive-core.
    """
    existed = await asyncio.to_thread(_existing, path)
    opened: list[Connection] = []
    try:
        writer = Connection(path)
        opened.append(writer)
        await writer  # its thread starts and connects
        await writer.call(partial(_verify_and_migrate, path=path, existed=existed, checked=checked))
        await writer.call(partial(_writer_settings, checkpoint_at=checkpoint_at))
        reader = Connection(path)
        opened.append(reader)
        await reader
        await reader.call(_reader_settings)
    except BaseException as exc:
        for conn in opened:
            await conn.close()
        if isinstance(exc, sqlite3.DatabaseError):
            raise StartupError(f"{path} is unreadable or corrupt: {exc}") from None
        raise
    return writer, reader
