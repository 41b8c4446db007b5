"""A claude started through the death guard dies when the harness is SIGKILLed."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hive_agent import claude

BOUND = 10.0

PARENT = """
import os, subprocess, sys
prefix = sys.argv[1].split("\\x1f") if sys.argv[1] else []
prefix = [str(os.getpid()) if part == "PID" else part for part in prefix]
argv = [*prefix, "sh", "-c", "echo up; exec sleep 300"]
child = subprocess.Popen(argv, stdout=subprocess.PIPE, start_new_session=True)
child.stdout.readline()  # the guard has exec'd sh: the signal is armed
print(child.pid, flush=True)
sys.stdin.read()
"""


def _orphan_after_parent_killed(prefix: list[str], tmp_path: Path) -> int:
    """Start `sleep` through `prefix` in a session of its own from a parent process, SIGKILL
    the parent, and return the sleep's pid once the parent is gone."""
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, "\x1f".join(prefix)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=BOUND)
    parent.stdout.close()
    assert parent.stdin is not None
    parent.stdin.close()
    return child


def _gone_within_bound(pid: int, bound: float = BOUND) -> bool:
    """Whether `pid` exits within `bound` seconds (its pidfd turns readable); a survivor is
    killed."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True  # gone and reaped already
    try:
        readable, _, _ = select.select([fd], [], [], bound)
        if not readable:
            signal.pidfd_send_signal(fd, signal.SIGKILL)
        return bool(readable)
    finally:
        os.close(fd)


def test_the_guard_in_use_kills_the_child_with_its_parent(tmp_path: Path) -> None:
    claude.death_guard.cache_clear()
    prefix = ["PID" if part == str(os.getpid()) else part for part in claude.death_guard()]
    assert _gone_within_bound(_orphan_after_parent_killed(prefix, tmp_path))


def test_setpriv_is_used_when_it_is_on_path() -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("util-linux's setpriv is not on PATH here")
    claude.death_guard.cache_clear()
    assert claude.death_guard()[1:] == ("--pdeathsig", "KILL", "--")


def test_the_python_guard_kills_the_child_with_its_parent(tmp_path: Path) -> None:
    prefix = [sys.executable, "-m", "hive_agent.guard", "PID", "--"]
    assert _gone_within_bound(_orphan_after_parent_killed(prefix, tmp_path))


def test_without_a_guard_the_child_outlives_its_parent(tmp_path: Path) -> None:
    """The check above can fail: a child in its own session survives its parent's SIGKILL."""
    child = _orphan_after_parent_killed([], tmp_path)
    assert not _gone_within_bound(child, bound=1.0)  # a guarded one goes in milliseconds
