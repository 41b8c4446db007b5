"""The journald log format of `hive-core serve` (hive_core/journal.py)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from hive_core.journal import JournalFormatter, is_journal, priority


def _record(level: int, msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = sys.exc_info() if exc else None
    return logging.LogRecord("hive_core.x", level, __file__, 1, msg, args, exc_info)


@pytest.mark.parametrize(
    ("level", "prefix"),
    [
        (logging.CRITICAL, "<2>"),
        (logging.ERROR, "<3>"),
        (logging.WARNING, "<4>"),
        (logging.INFO, "<6>"),
        (logging.DEBUG, "<7>"),
        (logging.INFO + 5, "<6>"),
        (logging.ERROR + 1, "<3>"),
        (1, "<7>"),
    ],
)
def test_the_level_becomes_a_syslog_priority_prefix(level: int, prefix: str) -> None:
    line = JournalFormatter().format(_record(level, "hello %s", "there"))
    assert line == f"{prefix}hive_core.x: hello there"
    assert f"<{priority(level)}>" == prefix


def test_a_traceback_and_control_characters_stay_on_one_line() -> None:
    try:
        raise ValueError("bad\nvalue")
    except ValueError:
        record = _record(logging.ERROR, "it failed:\r\n%s\x00", "here\x1b[2J", exc=True)
    line = JournalFormatter().format(record)
    assert "\n" not in line and "\r" not in line and "\x00" not in line and "\x1b" not in line
    assert line.startswith("<3>hive_core.x: it failed:\\r\\nhere\\x1b[2J\\x00\\nTraceback ")
    assert line.endswith("ValueError: bad\\nvalue")
    assert "\\n  File " in line and "\t" not in line


def test_no_timestamp_of_its_own() -> None:
    record = _record(logging.INFO, "m")
    assert JournalFormatter().format(record) == "<6>hive_core.x: m"


def test_the_journal_is_recognised_only_by_stderrs_device_and_inode(tmp_path: Path) -> None:
    path = tmp_path / "stream"
    path.touch()
    fd = os.open(path, os.O_RDONLY)
    try:
        st = os.fstat(fd)
        assert is_journal(f"{st.st_dev}:{st.st_ino}", fd)
        assert not is_journal(f"{st.st_dev}:{st.st_ino + 1}", fd)
        assert not is_journal(f"{st.st_dev + 1}:{st.st_ino}", fd)
        for malformed in ("", None, "garbage", f"{st.st_dev}", f":{st.st_ino}", "1:2:3"):
            assert not is_journal(malformed, fd)
    finally:
        os.close(fd)
    assert not is_journal(f"{st.st_dev}:{st.st_ino}", fd), "a closed descriptor is no journal"
