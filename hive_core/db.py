"""hive.sqlite through aiosqlite: one write connection with group commit, one read
connection, numbered migrations.

Each connection is an aiosqlite connection: a thread of its own that runs the calls
queued to it, one at a time, and answers each with one hand-off to the event loop. Every
write is a function run inside a shared transaction on the write connection; the writes
that wait while a batch commits go to it together as the next call (one transaction, one
fsync) and each caller's future resolves only after that commit. Each write runs under
its own savepoint, so one failing write does not undo the others; a write of one statement
needs none (sqlite undoes a failed statement by itself).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar, cast

import aiosqlite

from hive_core.errors import StartupError, StorageError
from hive_core.migrations import APPLICATION_ID, MIGRATIONS

logger = logging.getLogger(__name__)
# aiosqlite logs two debug lines per call, each with the call's repr (a whole batch).
logging.getLogger("aiosqlite").setLevel(logging.INFO)

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    """One write: its function and its caller's future."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    savepoint: bool


Outcome = tuple[_Job, Any, BaseException | None]


@dataclass(slots=True)
class _Committed:
    """What one call of the write connection hands back: every job's outcome, how many
    writes it committed, and whether the WAL has passed its bound."""

    outcomes: list[Outcome]
    writes: int
    wal_full: bool


MAX_BATCH = 256
"""Most writes committed in one transaction."""
WAL_CHECKPOINT_AT = 16 * 1024 * 1024
"""A WAL this big is checkpointed and restarted on the write connection, between two
batches; it is also the size the WAL file is kept at (`journal_size_limit`) when it
restarts. A commit that overwrites blocks of a kept file costs about half of one that
grows the file (the size change is metadata the filesystem must sync too)."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


class _Connection(aiosqlite.Connection):
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


def _checkpoint_restart(conn: sqlite3.Connection) -> None:
    """Fold every frame in and make the next commit start the WAL over (the file keeps its
    blocks, up to `journal_size_limit`)."""
    busy, _, _ = conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
    if busy:
        logger.info("the WAL checkpoint could not finish (a reader held it); will retry")


WAL_INDEX_HEADER = 136
"""Bytes of the `-shm` file that hold the WAL-index header and the checkpoint info."""


def wal_backlog(path: Path) -> int:
    """Frames of `path`'s WAL not yet folded into the database file, read from the shared
    WAL index (`-shm`, native byte order: `mxFrame` at byte 16, `nBackfill` at 96); 0 when
    there is no WAL index. Read-only, from any process."""
    try:
        with open(f"{path}-shm", "rb") as f:
            header = f.read(WAL_INDEX_HEADER)
    except FileNotFoundError:
        return 0
    if len(header) < WAL_INDEX_HEADER:
        return 0
    frames = int.from_bytes(header[16:20], sys.byteorder)
    folded = int.from_bytes(header[96:100], sys.byteorder)
    return max(frames - folded, 0)


async def _open_connections(
    path: Path, checkpoint_at: int, checked: bool
) -> tuple[_Connection, _Connection]:
    """The write connection (the database verified and migrated on it first) and the read
    connection; neither is left open when this raises.

    Raises:
        StartupError: the file is corrupt, foreign, or from a newer hive-core.
    """
    existed = await asyncio.to_thread(_existing, path)
    opened: list[_Connection] = []
    try:
        writer = _Connection(path)
        opened.append(writer)
        await writer  # its thread starts and connects
        await writer.call(partial(_verify_and_migrate, path=path, existed=existed, checked=checked))
        await writer.call(partial(_writer_settings, checkpoint_at=checkpoint_at))
        reader = _Connection(path)
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


class Database:
    """The hive database. Create with `await Database.open(path)`."""

    def __init__(
        self, path: Path, writer: _Connection, reader: _Connection, checkpoint_at: int
    ) -> None:
        self.path = path
        self._wal = Path(f"{path}-wal")
        self._checkpoint_at = checkpoint_at
        self._writer = writer
        self._reader = reader
        self._waiting: list[_Job] = []
        """Writes not yet handed to the write connection, oldest first."""
        self._committer: asyncio.Task[None] | None = None
        """Hands the waiting writes over, a batch at a time, while there are any."""
        self._writes_since_checkpoint = 0
        self._folded = True
        """Whether the last checkpoint folded every frame in (no reader held it back)."""
        self._closed = False
        self._reading = True
        """Until the read connection closes, the last step of `close`."""

    def wal_bytes(self) -> int:
        """The size of the WAL file now (0 when there is none)."""
        try:
            return self._wal.stat().st_size
        except FileNotFoundError:
            return 0

    @classmethod
    async def open(
        cls,
        path: Path,
        checkpoint_at: int = WAL_CHECKPOINT_AT,
        checked: Future[None] | None = None,
    ) -> Database:
        """Verify, migrate and open the database; `checked` is the `start_quick_check` of
        this path begun earlier, if any.

        Raises:
            StartupError: the file is corrupt, foreign, or from a newer hive-core.
        """
        if checked is not None:
            await asyncio.wrap_future(checked)
        writer, reader = await _open_connections(path, checkpoint_at, checked is not None)
        return cls(path, writer, reader, checkpoint_at)

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, one_statement: bool = False
    ) -> T:
        """Run `fn` in a write transaction; return once it is committed to disk.

        `one_statement`: `fn` changes the database with at most one statement and
        raises only from it (sqlite undoes a failed statement by itself), so it runs
        without a savepoint of its own: two statements fewer on the write connection.

        Raises:
            StorageError: the commit failed (disk full, I/O error); nothing was stored.
            Exception: whatever `fn` raised (its changes are rolled back).
        """
        if self._closed:
            raise StorageError("the database is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Job(fn, fut, not one_statement))
        if self._committer is None:
            self._committer = asyncio.create_task(self._commit_waiting())
        return await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the read connection (sees every committed write).

        Raises:
            StorageError: the database is closed.
        """
        if not self._reading:
            raise StorageError("the database is closed")
        return await self._reader.call(fn)

    async def checkpoint(self) -> None:
        """Fold the WAL back into the database file, passively (writers carry on): after
        any write since the last one, and again while frames were left over. A fully
        folded WAL starts over at the next commit; its file stays allocated."""
        if self._writes_since_checkpoint == 0 and self._folded:
            return
        self._writes_since_checkpoint = 0
        _, frames, folded = await self.read(
            lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        )
        self._folded = frames == folded

    async def close(self) -> None:
        """Finish the waiting writes, checkpoint and close both connections."""
        if self._closed:
            return
        self._closed = True
        if self._committer is not None:
            await asyncio.wait([self._committer])  # this close cancelled: it still finishes
        await self._writer.close()
        self._reading = False
        await self._reader.call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        await self._reader.close()

    async def _commit_waiting(self) -> None:
        """On the event loop: hand the waiting writes to the write connection, up to
        `MAX_BATCH` per call, until none wait. The batch closes when the connection is
        free, not on a timer: what came while one batch committed goes into the next."""
        batch: list[_Job] = []
        try:
            while self._waiting:
                batch = [job for job in self._waiting[:MAX_BATCH] if not job.future.done()]
                del self._waiting[:MAX_BATCH]
                if not batch:
                    continue  # every caller gave up before its write started
                try:
                    done = await self._writer.call(partial(self._commit, batch))
                except Exception as exc:  # not sqlite's (those are answered): storage too
                    logger.exception("commit of %d writes to %s failed", len(batch), self.path)
                    failure = StorageError(f"could not commit to {self.path}: {exc}")
                    _resolve([(job, None, failure) for job in batch])
                    continue
                self._writes_since_checkpoint += done.writes
                _resolve(done.outcomes)
                if done.wal_full:
                    # Under a steady stream of writes a passive checkpoint never catches up
                    # and the WAL never restarts; stop writing for one restarting checkpoint.
                    try:
                        await self._writer.call(_checkpoint_restart)
                    except sqlite3.Error:
                        logger.exception("the WAL checkpoint of %s failed", self.path)
                batch = []
        except BaseException:
            # Cancelled (the event loop is going away): nobody is left to hand writes over.
            for job in [*batch, *self._waiting]:
                job.future.cancel()
            self._waiting.clear()
            raise
        finally:
            self._committer = None

    def _commit(self, batch: list[_Job], conn: sqlite3.Connection) -> _Committed:
        """On the write connection's thread: one transaction for the batch."""
        if len(batch) == 1:
            outcomes, writes = self._commit_one(conn, batch[0])
        else:
            outcomes, writes = self._commit_many(conn, batch)
        return _Committed(outcomes, writes, writes > 0 and self.wal_bytes() > self._checkpoint_at)

    def _commit_many(
        self, conn: sqlite3.Connection, batch: list[_Job]
    ) -> tuple[list[Outcome], int]:
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                if job.future.cancelled():
                    continue  # the caller gave up before the job started
                outcomes.append(_run(conn, job))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.exception("commit of %d writes to %s failed", len(batch), self.path)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StorageError(f"could not commit to {self.path}: {exc}")
            # Jobs not yet started (BEGIN itself failed) are answered too.
            return [(job, None, failure) for job in batch], 0
        return outcomes, len(outcomes)

    def _commit_one(self, conn: sqlite3.Connection, job: _Job) -> tuple[list[Outcome], int]:
        """A batch of one needs no savepoint: its transaction is its own."""
        if job.future.cancelled():
            return [], 0
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                value = job.fn(conn)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                conn.execute("ROLLBACK")
                return [(job, None, exc)], 0
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.exception("commit to %s failed", self.path)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return [(job, None, StorageError(f"could not commit to {self.path}: {exc}"))], 0
        return [(job, value, None)], 1


def _run(conn: sqlite3.Connection, job: _Job) -> Outcome:
    """Run one job of a batch, under a savepoint unless it is one statement."""
    if not job.savepoint:
        try:
            return job, job.fn(conn), None
        except Exception as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
            return job, None, exc
    conn.execute("SAVEPOINT job")
    try:
        value = job.fn(conn)
    except Exception as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
        conn.execute("ROLLBACK TO job")
        conn.execute("RELEASE job")
        return job, None, exc
    conn.execute("RELEASE job")
    return job, value, None


def _resolve(outcomes: list[Outcome]) -> None:
    """On the event loop: resolve the futures of a committed (or failed) batch."""
    for job, value, error in outcomes:
        future = job.future
        if future.done():
            continue  # cancelled while the batch ran: the write stands, nobody waits
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)
