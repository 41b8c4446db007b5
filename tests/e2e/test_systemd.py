"""`hive-core serve` as systemd sees it: the notify protocol, the watchdog, journald lines."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.hive import EXIT_TIMEOUT, READY_TIMEOUT, Hive

SUMMARY = re.compile(r"\d+ agents? running, \d+ approvals? pending, \d+ questions? open")
END = "hyperhive-test-end"


class NotifySocket:
    """A `NOTIFY_SOCKET` that keeps reading: systemd never lets datagrams pile up, and a
    full queue (net.unix.max_dgram_qlen) would drop the daemon's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            for line in self._sock.recv(65536).decode(errors="replace").split("\n"):
                if line == END:
                    return
                self._lines.put(line)

    def wait_for(self, wanted: Callable[[str], bool], what: str) -> str:
        """The next line that is `wanted`, within READY_TIMEOUT."""
        deadline = time.monotonic() + READY_TIMEOUT
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                raise AssertionError(
                    f"no {what} within {READY_TIMEOUT}s; got {self.seen}"
                ) from None
            self.seen.append(line)
            if wanted(line):
                return line

    def close(self) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as poke:
            poke.sendto(END.encode(), str(self.path))
        self._reader.join(timeout=EXIT_TIMEOUT)
        self._sock.close()


@pytest.fixture
def notify(idle_hive: Hive) -> Iterator[NotifySocket]:
    sock = NotifySocket(idle_hive.root / "sd")
    try:
        yield sock
    finally:
        sock.close()


def start(hive: Hive, notify: NotifySocket, **env: str) -> subprocess.Popen[bytes]:
    """`hive-core serve` with systemd's variables; its stdout and stderr go to the log."""
    with open(hive.log_path, "ab") as log:
        hive.proc = subprocess.Popen(
            [sys.executable, "-m", "hive_core", "serve"],
            env={**hive.env, "NOTIFY_SOCKET": str(notify.path), **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    return hive.proc


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as f:
        items = f.read().decode(errors="replace").split("\0")
    return dict(item.split("=", 1) for item in items if "=" in item)


def test_the_daemon_says_ready_its_status_pings_the_watchdog_and_says_stopping(
    idle_hive: Hive, notify: NotifySocket
) -> None:
    proc = start(idle_hive, notify, WATCHDOG_USEC="200000")
    notify.wait_for(lambda line: line == "READY=1", "READY=1")
    assert any(SUMMARY.fullmatch(line.removeprefix("STATUS=")) for line in notify.seen)

    queued = idle_hive.cli("request-spawn", "bob")
    assert queued.returncode == 0, queued.stderr
    notify.wait_for(
        lambda line: line.startswith("STATUS=") and "1 approval pending" in line,
        "STATUS= with the queued approval",
    )
    assert re.fullmatch(rf"STATUS={SUMMARY.pattern}", notify.seen[-1])
    for _ in range(3):
        notify.wait_for(lambda line: line == "WATCHDOG=1", "WATCHDOG=1")

    agents = json.loads(idle_hive.cli("list", "--json").stdout)
    manager = environ(next(a["pid"] for a in agents if a["name"] == "hm1nd"))
    assert "WATCHDOG_USEC" not in manager, "the watchdog is hive-core's alone"

    proc.send_signal(signal.SIGTERM)
    notify.wait_for(lambda line: line == "STOPPING=1", "STOPPING=1")
    assert proc.wait(timeout=EXIT_TIMEOUT) == 0


def test_no_watchdog_pings_for_another_process(idle_hive: Hive, notify: NotifySocket) -> None:
    proc = start(idle_hive, notify, WATCHDOG_USEC="200000", WATCHDOG_PID="1")
    notify.wait_for(lambda line: line == "READY=1", "READY=1")
    proc.send_signal(signal.SIGTERM)
    notify.wait_for(lambda line: line == "STOPPING=1", "STOPPING=1")
    assert proc.wait(timeout=EXIT_TIMEOUT) == 0
    assert "WATCHDOG=1" not in notify.seen


def test_under_journald_a_logged_traceback_is_one_line_with_its_priority(
    idle_hive: Hive, notify: NotifySocket
) -> None:
    idle_hive.root.joinpath("daemon.log").touch()
    st = os.stat(idle_hive.log_path)
    proc = start(idle_hive, notify, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    notify.wait_for(lambda line: line == "READY=1", "READY=1")
    # Another writer holds hive.sqlite: the daemon's commit fails after its busy timeout
    # and is logged with its traceback (logger.exception in db.py).
    holder = sqlite3.connect(idle_hive.state_dir / "hive.sqlite", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")
        refused = idle_hive.cli("request-spawn", "bob")
    finally:
        holder.close()
    assert refused.returncode == 1 and "[storage]" in refused.stderr
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=EXIT_TIMEOUT) == 0

    lines = idle_hive.log().splitlines()
    failed = [line for line in lines if line.startswith("<3>hive_core.db: commit to ")]
    assert failed, lines
    assert "\\nTraceback (most recent call last):\\n" in failed[0]
    assert "sqlite3.OperationalError: database is locked" in failed[0]
    assert not [line for line in lines if line.startswith(("Traceback", "  File ", "sqlite3."))]
    assert any(line.startswith("<6>hive_core.daemon: shutting down") for line in lines)
    assert not re.search(r"^\d{4}-\d\d-\d\d ", "\n".join(lines), re.MULTILINE), "a timestamp"


def test_a_journal_stream_of_another_file_keeps_the_plain_format(
    idle_hive: Hive, notify: NotifySocket
) -> None:
    other = os.stat(idle_hive.root)
    proc = start(idle_hive, notify, JOURNAL_STREAM=f"{other.st_dev}:{other.st_ino}")
    notify.wait_for(lambda line: line == "READY=1", "READY=1")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=EXIT_TIMEOUT) == 0
    assert re.search(
        r"^\d{4}-\d\d-\d\d .* INFO hive_core.daemon: shutting down$", idle_hive.log(), re.MULTILINE
    )
    assert "<6>" not in idle_hive.log()
