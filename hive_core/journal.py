"""`hive-core serve`'s log lines: plain on a terminal or a file, journald-ready under systemd.

When stderr is the journal (`$JOURNAL_STREAM` names stderr's device and inode, as
sd-daemon(3) says to check), each record is one line: a syslog `<N>` priority
prefix, no timestamp (the journal stamps it), and the record's newlines
(tracebacks) escaped so it stays one journal entry.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JOURNAL_FORMAT = "%(name)s: %(message)s"

PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
"""The syslog priority of a record at or above each level; below INFO it is 7 (debug)."""

ESCAPES = {
    **{code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F) if code != 0x09},
    0x0A: "\\n",
    0x0D: "\\r",
}
"""Every control character but tab: journald splits entries at newlines (and NULs)."""


def priority(levelno: int) -> int:
    """The syslog priority of a logging level: `<2>` critical … `<7>` debug."""
    for level, value in PRIORITIES:
        if levelno >= level:
            return value
    return 7


class JournalFormatter(logging.Formatter):
    """`<N>logger: message` on one line, traceback included."""

    def __init__(self) -> None:
        super().__init__(JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        return f"<{priority(record.levelno)}>{super().format(record).translate(ESCAPES)}"


def is_journal(journal_stream: str | None, fd: int) -> bool:
    """True when `journal_stream` (`$JOURNAL_STREAM`, `<device>:<inode>`) is `fd`'s file."""
    if not journal_stream:
        return False
    device, _, inode = journal_stream.partition(":")
    try:
        st = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def configure(env: Mapping[str, str], level: int) -> None:
    """Send the root logger's records to stderr, formatted for the journal when it is one."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        fd = -1
    handler = logging.StreamHandler(sys.stderr)
    if fd >= 0 and is_journal(env.get("JOURNAL_STREAM"), fd):
        handler.setFormatter(JournalFormatter())
    else:
        handler.setFormatter(logging.Formatter(PLAIN_FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
