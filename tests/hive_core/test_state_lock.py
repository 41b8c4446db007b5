"""The state dir's lock: refused at once while another hive-core holds it, waited for
while only a process a previous one left behind (a git) holds it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hive_core.errors import StartupError
from hive_core.startup_checks import lock_state_dir

HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
os.ftruncate(fd, 0)
os.pwrite(fd, (sys.argv[2] if sys.argv[2] != "self" else str(os.getpid())).encode(), 0)
print("locked", flush=True)
sys.stdin.read()
"""


def _holder(state: Path, pid: str, name: str) -> subprocess.Popen[str]:
    """A process holding `state/hive.lock` with `pid` written in it, until its stdin
    closes; `name` goes on its command line."""
    child = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(state / "hive.lock"), pid, name], text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "locked\n"
    return child


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.wait(timeout=30)
        for pipe in (child.stdin, child.stdout):
            if pipe is not None:
                pipe.close()


def _gone_pid() -> str:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=30)  # fmt: skip
    return done.stdout.strip()


async def test_a_lock_left_to_a_child_of_a_dead_hive_core_is_waited_for(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    git = _holder(tmp_path, _gone_pid(), "git")
    children.append(git)

    with pytest.raises(StartupError, match=r"still holds hive\.lock after 0s"):
        await lock_state_dir(tmp_path, wait=0)
    waiting = asyncio.create_task(lock_state_dir(tmp_path, wait=30))
    assert git.stdin is not None
    git.stdin.close()  # the git ends
    fd = await waiting

    assert int((tmp_path / "hive.lock").read_text()) == os.getpid()
    os.close(fd)


async def test_a_lock_held_by_a_live_hive_core_is_refused_at_once(
    tmp_path: Path, children: list[subprocess.Popen[str]]
) -> None:
    other = _holder(tmp_path, "self", "hive-core")
    children.append(other)

    with pytest.raises(StartupError) as info:
        async with asyncio.timeout(30):  # refused at once, not after the wait
            await lock_state_dir(tmp_path, wait=600)

    assert f"another hive-core (pid {other.pid}) is already using {tmp_path}" in str(info.value)
