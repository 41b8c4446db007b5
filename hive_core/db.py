"""hive.sqlite through aiosqlite: one write connection with group commit, one read
connection, numbered migrations.

Each connection is an aiosqlite connection: a thread of its own that runs the calls
queued to it, one at a time, and answers each with one hand-off to the event loop. Every
write is a function run inside a shared transaction on the write connection: one call
takes every write queued when it starts and commits them together (one transaction, one
fsync), and the next call waits in the connection's queue meanwhile, so the writes that
come while a batch commits make the next batch. Each caller's future resolves only after
its commit. Each write runs under its own savepoint, so one failing write does not undo
the others; a write of one statement needs none (sqlite undoes a failed statement by
itself).

Under a steady stream of writes, a committed batch is answered just before the next
batch's COMMIT rather than right after its own (see `_commit_call`): its callers still
hear only after their commit, and the next batch's statements run while the event loop is
idle instead of competing with it for the GIL.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from hive_core.db_open import Connection, open_connections, start_quick_check
from hive_core.errors import StorageError

__all__ = [
    "HOLD_AT_MOST",
    "MAX_BATCH",
    "WAL_CHECKPOINT_AT",
    "Database",
    "start_quick_check",
    "wal_backlog",
]

logger = logging.getLogger(__name__)

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
    """What one call of the write connection hands back: every job's outcome and how many
    writes it committed."""

    outcomes: list[Outcome]
    writes: int


MAX_BATCH = 256
"""Most writes committed in one transaction."""
WAL_CHECKPOINT_AT = 16 * 1024 * 1024
"""A WAL this big is checkpointed and restarted on the write connection, between two
batches; it is also the size the WAL file is kept at (`journal_size_limit`) when it
restarts. A commit that overwrites blocks of a kept file costs about half of one that
grows the file (the size change is metadata the filesystem must sync too)."""


HOLD_AT_MOST = 0.001
"""Seconds a batch's writes may keep the last batch's answer held (`_commit_call`): a
batch's writes take about 0.1 ms; one slow write (a vacuum's delete) lets it go after it."""


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

    def __init__(
        self, path: Path, writer: Connection, reader: Connection, checkpoint_at: int
    ) -> None:
        self.path = path
        self._wal = f"{path}-wal"
        self._checkpoint_at = checkpoint_at
        self._writer = writer
        self._reader = reader
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        """Writes no call of the write connection has taken yet, oldest first."""
        self._call_waiting = False
        """A commit call is on its way to the write connection and has not started: it
        will take every write queued before it starts."""
        self._calls = 0
        """Commit calls queued and not answered yet."""
        self._answered: asyncio.Event | None = None
        """Set when the last commit call is answered, while `close` waits for it."""
        self._wal_full = False
        """The last batch left the WAL past `checkpoint_at` (set on the connection's thread)."""
        self._held: _Committed | None = None
        """A committed batch whose answer waits for the next call's writes to have run (on
        the connection's thread only; see `_commit_call`)."""
        self._writes_since_checkpoint = 0
        self._folded = True
        """Whether the last checkpoint folded every frame in (no reader held it back)."""
        self._closed = False
        self._reading = True
        """Until the read connection closes, the last step of `close`."""

    def wal_bytes(self) -> int:
        """The size of the WAL file now (0 when there is none)."""
        try:
            return os.stat(self._wal).st_size
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
        writer, reader = await open_connections(path, checkpoint_at, checked is not None)
        return cls(path, writer, reader, checkpoint_at)

    async def write(
        self, fn: Callable[[sqlite3.Connection], T], *, one_statement: bool = False
    ) -> T:
        """Run `fn` in a write transaction; return once it is committed to disk.

        `one_statement`: `fn` changes the database with at most one statement and
        raises only from it or before it (sqlite undoes a failed statement by itself; reads
        before it change nothing), so it runs without a savepoint of its own: two
        statements fewer on the write connection.

        Raises:
            StorageError: the commit failed (disk full, I/O error); nothing was stored.
            Exception: whatever `fn` raised (its changes are rolled back).
        """
        if self._closed:
            raise StorageError("the database is closed")
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._jobs.put(_Job(fn, fut, not one_statement))
        # Put, then look: the call clears the flag before it takes the queued writes, so
        # either it takes this one or the flag is down and a call is queued for it.
        if not self._call_waiting:
            self._queue_call()
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
        if self._calls:  # queued before the close, on the connection's thread: they finish
            self._answered = asyncio.Event()
            await self._answered.wait()
        await self._writer.close()
        self._reading = False
        await self._reader.call(lambda c: c.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone())
        await self._reader.close()

    def _queue_call(self) -> None:
        """Queue a commit call on the write connection. It waits behind the call committing
        now, if any, so the connection goes from one batch to the next without waiting for
        the event loop; the batch closes when the connection is free, not on a timer."""
        self._call_waiting = True
        self._calls += 1
        self._submit_call()

    def _submit_call(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._writer.submit(partial(self._commit_call, loop), self._call_ended)
        except ValueError:  # the connection is gone (never while `close` waits for calls)
            logger.exception("could not queue a commit on %s", self.path)
            failure = StorageError(f"could not commit to {self.path}: the connection is closed")
            outcomes: list[Outcome] = []
            while not self._jobs.empty():
                outcomes.append((self._jobs.get_nowait(), None, failure))
            self._answer(_Committed(outcomes, 0))

    def _commit_call(self, loop: asyncio.AbstractEventLoop, conn: sqlite3.Connection) -> None:
        """On the write connection's thread: commit a batch and answer it on the loop, in
        one hand-off (no future of the call's own to wake a task).

        When another call is already queued behind this one, the answer is held until that
        call's writes have run, and handed off just before its COMMIT. An answer wakes the
        event loop, and the loop's handling of a batch's answers holds the GIL that each
        statement of the next batch gives up and must take back: answered at once, the
        next batch's statements wait on the loop (three times their own time under the
        delivered load of `./dev bench`). Held, they run while the loop is idle, and the
        loop handles the answers while the COMMIT waits on the disk. A caller still hears
        only after its own commit; a held answer goes out in every outcome of the next call
        (an empty batch, a failure), waits at most `HOLD_AT_MOST` plus one write, and never
        waits on a WAL checkpoint.
        """
        hand_held = partial(self._hand_held, loop)
        try:
            done = self._commit_queued(conn, hand_held)
        finally:
            hand_held()  # the batch was empty, or failed before its COMMIT
        if done.outcomes and self._call_waiting and not self._wal_full:
            self._held = done
        else:
            loop.call_soon_threadsafe(self._answer, done)

    def _hand_held(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the write connection's thread: answer the held batch, if any."""
        held, self._held = self._held, None
        if held is not None:
            loop.call_soon_threadsafe(self._answer, held)

    def _call_ended(self, call: asyncio.Future[None]) -> None:
        """A call that raised (nothing does: `_commit_queued` answers every failure)."""
        if not call.cancelled() and call.exception() is not None:
            logger.error("a commit call on %s failed", self.path, exc_info=call.exception())
            self._answer(_Committed([], 0))

    def _answer(self, done: _Committed) -> None:
        """On the event loop, once per call: resolve the futures of its batch, and queue one
        more call if writes are left over (more than one batch takes) and none is on its
        way."""
        self._calls -= 1
        self._writes_since_checkpoint += done.writes
        _resolve(done.outcomes)
        if not self._jobs.empty() and not self._call_waiting:
            self._queue_call()
        if self._calls == 0 and self._answered is not None:
            self._answered.set()

    def _commit_queued(self, conn: sqlite3.Connection, hand_held: Callable[[], None]) -> _Committed:
        """On the write connection's thread: one transaction for the writes queued now (at
        most `MAX_BATCH`); `hand_held` runs once they have, just before the COMMIT, or
        earlier once they have taken `HOLD_AT_MOST`."""
        self._call_waiting = False  # writes queued from here on need a call of their own
        if self._wal_full:
            # Under a steady stream of writes a passive checkpoint never catches up and the
            # WAL never restarts; stop writing for one restarting checkpoint, between two
            # batches (the last one's callers are answered already).
            self._wal_full = False
            try:
                _checkpoint_restart(conn)
            except sqlite3.Error:
                logger.exception("the WAL checkpoint of %s failed", self.path)
        batch: list[_Job] = []
        while len(batch) < MAX_BATCH:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if not job.future.cancelled():  # else its caller gave up before it started
                batch.append(job)
        if not batch:
            return _Committed([], 0)
        try:
            if len(batch) == 1:
                outcomes, writes = self._commit_one(conn, batch[0], hand_held)
            else:
                outcomes, writes = self._commit_many(conn, batch, hand_held)
        except Exception as exc:  # not sqlite's (those are answered): every caller hears
            logger.exception("commit of %d writes to %s failed", len(batch), self.path)
            failure = StorageError(f"could not commit to {self.path}: {exc}")
            return _Committed([(job, None, failure) for job in batch], 0)
        self._wal_full = writes > 0 and self.wal_bytes() > self._checkpoint_at
        return _Committed(outcomes, writes)

    def _commit_many(
        self, conn: sqlite3.Connection, batch: list[_Job], hand_held: Callable[[], None]
    ) -> tuple[list[Outcome], int]:
        outcomes: list[Outcome] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            started = time.perf_counter()
            for job in batch:
                if job.future.cancelled():
                    continue  # the caller gave up before the job started
                outcomes.append(_run(conn, job))
                if time.perf_counter() - started > HOLD_AT_MOST:
                    hand_held()  # slow writes: the last batch's callers need not wait on them
            hand_held()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            logger.exception("commit of %d writes to %s failed", len(batch), self.path)
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            failure = StorageError(f"could not commit to {self.path}: {exc}")
            # Jobs not yet started (BEGIN itself failed) are answered too.
            return [(job, None, failure) for job in batch], 0
        return outcomes, len(outcomes)

    def _commit_one(
        self, conn: sqlite3.Connection, job: _Job, hand_held: Callable[[], None]
    ) -> tuple[list[Outcome], int]:
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
            hand_held()
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
