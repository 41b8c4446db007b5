"""hive.sqlite: one writer thread with group commit, one reader thread, numbered migrations.

Every write is a function run inside a shared transaction on the writer thread;
concurrent writes are committed together (one fsync for the batch) and each
caller's future resolves only after that commit. Each write runs under its own
savepoint, so one failing write does not undo the others; a write of one
statement needs none (sqlite undoes a failed statement by itself). The batch's
callers are answered with one hand-off to the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hive_core.errors import StartupError, StorageError
from hive_core.migrations import APPLICATION_ID, MIGRATIONS

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(slots=True)
class _Job:
    """One write: its function, its caller's future and that caller's event loop."""

    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    savepoint: bool


Outcome = tuple[_Job, Any, BaseException | None]

MAX_BATCH = 256
"""Most writes committed in one transaction."""
WAL_CHECKPOINT_AT = 16 * 1024 * 1024
"""A WAL this big is checkpointed and restarted by the writer, between two batches; it is
also the size the WAL file is kept at (`journal_size_limit`) when it restarts. A commit
that overwrites blocks of a kept file costs about half of one that grows the file (the
size change is metadata the filesystem must sync too)."""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


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
    start); `Database.open(path, checked=…)` waits for it. None when there is no regular
    file there yet (`open` deals with that).

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


def _check_and_migrate(path: Path, checked: bool = False) -> None:
    """Open, verify and migrate the database (runs in a worker thread); `checked`: its
    quick_check already passed (`start_quick_check`).

    Raises:
        StartupError: corrupt, foreign, or newer-than-us database.
    """
    _refuse_links(path)
    existed = path.exists() and path.stat().st_size > 0
    try:
        conn = _connect(path)
        try:
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
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StartupError(f"{path} is unreadable or corrupt: {exc}") from None


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


class Database:
    """The hive database. Create with `await Database.open(path)`."""

    def __init__(self, path: Path, checkpoint_at: int = WAL_CHECKPOINT_AT) -> None:
        self.path = path
        self._wal = Path(f"{path}-wal")
        self._checkpoint_at = checkpoint_at
        self._queue: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._writer_conn = _connect(path)
        self._writer_conn.execute("PRAGMA synchronous = FULL")
        self._writer_conn.execute("PRAGMA foreign_keys = ON")
        # Checkpoints run off the commit path: from the reader thread every few seconds,
        # and from the writer between batches only when the WAL has grown large.
        self._writer_conn.execute("PRAGMA wal_autocheckpoint = 0")
        self._writer_conn.execute(f"PRAGMA journal_size_limit = {checkpoint_at}")
        self._reader_conn = _connect(path)
        self._reader_conn.execute("PRAGMA query_only = ON")
        self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hive-db-read")
        self._writer = threading.Thread(target=self._write_loop, name="hive-db-write", daemon=True)
        self._writes_since_checkpoint = 0
        self._folded = True
        """Whether the last checkpoint folded every frame in (no reader held it back)."""
        self._closed = False
        self._writer.start()

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
        await asyncio.to_thread(_check_and_migrate, path, checked is not None)
        return await asyncio.to_thread(cls, path, checkpoint_at)

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, one_statement: bool = False
    ) -> T:
        """Run `fn` in a write transaction; return once it is committed to disk.

        `one_statement`: `fn` changes the database with at most one statement and
        raises only from it (sqlite undoes a failed statement by itself), so it runs
        without a savepoint of its own: two statements fewer on the writer thread.

        Raises:
            StorageError: the commit failed (disk full, I/O error); nothing was stored.
            Exception: whatever `fn` raised (its changes are rolled back).
        """
        if self._closed:
            raise StorageError("the database is closed")
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[T] = loop.create_future()
        self._queue.put(_Job(fn, fut, loop, not one_statement))
        return await fut

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` on the reader connection (sees every committed write)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._reader, fn, self._reader_conn)

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
        """Finish queued writes, checkpoint and close both connections."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        await asyncio.to_thread(self._writer.join)
        await self.read(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        self._reader.shutdown(wait=True)
        self._reader_conn.close()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            stop = False
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._commit_batch(batch)
            if self.wal_bytes() > self._checkpoint_at:
                # Under a steady stream of writes a passive checkpoint never catches up and
                # the WAL never restarts; stop writing for one restarting checkpoint.
                _checkpoint_restart(self._writer_conn)
            if stop:
                break
        self._writer_conn.close()

    def _commit_batch(self, batch: list[_Job]) -> None:
        if len(batch) == 1:
            self._commit_one(batch[0])
            return
        conn = self._writer_conn
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
            _settle([(job, None, failure) for job in batch])
            return
        self._writes_since_checkpoint += len(outcomes)
        _settle(outcomes)

    def _commit_one(self, job: _Job) -> None:
        """A batch of one needs no savepoint: its transaction is its own."""
        if job.future.cancelled():
            return
        conn = self._writer_conn
        outcome: Outcome
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                outcome = (job, job.fn(conn), None)
            except Exception as exc:  # noqa: BLE001 - handed to the caller, who re-raises it
                conn.execute("ROLLBACK")
                _settle([(job, None, exc)])
                return
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.exception("commit to %s failed", self.path)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StorageError(f"could not commit to {self.path}: {exc}")
            _settle([(job, None, failure)])
            return
        self._writes_since_checkpoint += 1
        _settle([outcome])


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


def _settle(outcomes: list[Outcome]) -> None:
    """Answer every caller of a batch with one hand-off per event loop (normally one)."""
    loops: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
    for outcome in outcomes:
        loops.setdefault(outcome[0].loop, []).append(outcome)
    for loop, mine in loops.items():
        try:
            loop.call_soon_threadsafe(_resolve, mine)
        except RuntimeError:  # that loop is closed: nobody is left to answer
            logger.warning("dropped %d write results for a closed event loop", len(mine))


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
