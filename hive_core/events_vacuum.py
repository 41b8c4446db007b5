"""hive-core's hourly sweep of the agents' own history files for agents whose harness does
not run.

A harness prunes its event history (`hyperhive-events.sqlite`, 7 days) and its turn
statistics (`hyperhive-turn-stats.sqlite`, 90 days) hourly while it runs
(`hive_share.retention`). A stopped agent, a destroyed one whose dirs are kept (a
tombstone) or a prepared one would keep every row for as long as it stays so; this sweep
deletes the same rows with the same retention, agent by agent.

Safety, since the files sit in a directory the agent writes:

- an agent the backend reports running is skipped, and each agent is swept under its
  lifecycle lock (`Services.lock`), so no harness of it starts while its files are open;
- the state dir is reached fd-relative without following a link, and each file and its
  sqlite companions (`-wal`, `-shm`, `-journal`) must be absent or a regular file with one
  link: the agent's own file, never one a link or a hard link in its state dir points at;
- sqlite opens the file read-write without creating it, waits out a lock for
  `BUSY_TIMEOUT` seconds, and a file without the table is left as it is.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

import anyio

from hive_core import agent_dirs
from hive_core.services import Services
from hive_share.retention import PRUNED, Retention

logger = logging.getLogger(__name__)

INTERVAL = 3600.0
"""Seconds between two sweeps."""
FIRST_DELAY = 600.0
"""Seconds after start-up before the first sweep: the restore of the agents comes first."""
BUSY_TIMEOUT = 5.0
"""Seconds sqlite waits for a lock on one file before that file is left for the next sweep."""
COMPANIONS = ("-wal", "-shm", "-journal")


class Unsafe(Exception):
    """A file of the sweep is not the agent's own regular file; it is not opened."""


@dataclass
class Swept:
    """What one sweep did."""

    agents: int = 0
    """Agents whose files were looked at."""
    rows: int = 0
    """Rows deleted across them."""


def _open_state_dir(agents_dir: Path, name: str) -> int:
    """An fd of `<agents_dir>/<name>/state`, reached without following a link.
    Raises: OSError (ELOOP or ENOTDIR for a link; FileNotFoundError)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(agents_dir, flags)
    try:
        for component in (name, "state"):
            inner = os.open(component, flags, dir_fd=fd)
            os.close(fd)
            fd = inner
    except BaseException:
        os.close(fd)
        raise
    return fd


def _check(dir_fd: int, file: str) -> bool:
    """Whether `file` exists in the directory, after checking that it and its companions are
    regular files with one link each. Raises: Unsafe."""
    exists = False
    for name in (file, *(file + suffix for suffix in COMPANIONS)):
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            raise Unsafe(f"{name} is not a regular file")
        if st.st_nlink != 1:
            raise Unsafe(f"{name} has {st.st_nlink} links")
        exists = exists or name == file
    return exists


def _delete(path: Path, retention: Retention, cutoff: float) -> int:
    """Delete `retention`'s rows older than `cutoff` from the existing file `path`.
    Raises: sqlite3.Error."""
    uri = "file:" + urllib.parse.quote(str(path)) + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (retention.table,)
        ).fetchone()
        if found is None:
            return 0
        return conn.execute(retention.delete, (cutoff,)).rowcount
    finally:
        conn.close()


def prune_agent(agents_dir: Path, name: str, now: float) -> int:
    """Prune every retained file of `name`'s state dir; returns the rows deleted. A file
    that is unsafe, locked past the busy timeout or not a database is logged and skipped."""
    try:
        dir_fd = _open_state_dir(agents_dir, name)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            logger.warning("not sweeping %s: its state dir is reached through a link", name)
            return 0
        raise
    removed = 0
    try:
        for retention in PRUNED:
            try:
                if not _check(dir_fd, retention.file):
                    continue
                path = agents_dir / name / "state" / retention.file
                removed += _delete(path, retention, now - retention.keep_seconds)
            except Unsafe as exc:
                logger.warning("not sweeping %s's %s: %s", name, retention.file, exc)
            except sqlite3.Error as exc:
                logger.warning("could not sweep %s's %s: %s", name, retention.file, exc)
    finally:
        os.close(dir_fd)
    return removed


def _idle(s: Services, name: str) -> bool:
    """No harness of `name` runs (a registered agent the backend reports stopped, or a dir
    with no agent: a tombstone or a prepared config)."""
    return s.registry.find(name) is None or not s.backend.status(name).running


async def sweep(s: Services, now: float) -> Swept:
    """Prune the history files of every agent whose harness does not run."""
    agents_dir = s.settings.agents_dir
    done = Swept()
    for name in await anyio.to_thread.run_sync(agent_dirs.list_dirs, agents_dir):
        if not _idle(s, name):
            continue
        async with s.lock(name):
            if s.stopping or not _idle(s, name):  # it started while we waited for the lock
                continue
            done.rows += await anyio.to_thread.run_sync(prune_agent, agents_dir, name, now)
            done.agents += 1
    if done.rows:
        logger.info("swept %d rows past their retention from %d idle agents' history files",
                    done.rows, done.agents)  # fmt: skip
    return done


async def run(s: Services, first_delay: float = FIRST_DELAY, interval: float = INTERVAL) -> None:
    """Sweep `first_delay` seconds after start-up, then every `interval`; a failed sweep is
    logged, not fatal."""
    await anyio.sleep(first_delay)
    while True:
        try:
            await sweep(s, s.clock.now())
        except Exception:
            logger.exception("sweeping the idle agents' history failed; retrying in %.0fs",
                             interval)  # fmt: skip
        await anyio.sleep(interval)
