"""Reading a harness log file (`harness.log` on the `local` backend): a bounded tail, and
what was appended since an offset. The log lies in the core-owned agent dir and is opened
without following links."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import anyio

from hive_core.errors import NotFound

LINES_MAX = 2000
TAIL_BYTES = 256 * 1024
"""At most this much of the log's end is read for a tail."""
CHUNK = 64 * 1024
"""At most this much is read past an offset at once."""


@dataclass(frozen=True)
class Tail:
    lines: list[str]
    truncated: bool
    """Older lines exist that are not shown."""
    offset: int
    """Where a follower continues: the log's size when it was read (a journal position on
    the nixos backend)."""


def _open(path: Path) -> int:
    """Raises: NotFound (no log yet, or not a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise NotFound(f"there is no log at {path} yet") from None
    except OSError as exc:
        raise NotFound(f"cannot open the log at {path}: {exc.strerror}") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotFound(f"{path} is not a regular file")
    return fd


def lines_of(data: bytes) -> list[str]:
    return data.decode("utf-8", errors="replace").splitlines()


def _tail(path: Path, lines: int) -> Tail:
    fd = _open(path)
    try:
        size = os.fstat(fd).st_size
        start = max(0, size - TAIL_BYTES)
        data = os.pread(fd, size - start, start)
    finally:
        os.close(fd)
    got = lines_of(data)
    if start > 0 and got:
        got = got[1:]  # the first line was cut
    return Tail(got[-lines:], start > 0 or len(got) > lines, size)


async def tail(path: Path, lines: int) -> Tail:
    """The last `lines` lines. Raises: NotFound."""
    return await anyio.to_thread.run_sync(_tail, path, lines)


def _read_from(path: Path, offset: int) -> tuple[bytes, int]:
    try:
        fd = _open(path)
    except NotFound:
        return b"", 0
    try:
        size = os.fstat(fd).st_size
        if size < offset:  # rotated: the new file starts over
            offset = 0
        data = os.pread(fd, min(size - offset, CHUNK), offset)
    finally:
        os.close(fd)
    return data, offset + len(data)


async def read_from(path: Path, offset: int) -> tuple[bytes, int]:
    """What was appended past `offset` (at most CHUNK), and the new offset; a rotated log
    is read from its start."""
    return await anyio.to_thread.run_sync(_read_from, path, offset)
