"""One bounded subprocess: output capped as it is read, killed when cancelled, dying with
its parent."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path

import pytest

from hive_core import proc
from tests.e2e.hive import wait_until_dead

ENV = {"PATH": "/usr/bin:/bin"}
ROOT = Path(__file__).resolve().parents[2]


def _sleeper(report: Path) -> str:
    """A child that sends its pid to the datagram socket `report`, then sleeps."""
    return (
        "import os, signal, socket\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\n"
        f"s.sendto(str(os.getpid()).encode(), {str(report)!r})\n"
        "signal.pause()"
    )


async def _reported(sock: socket.socket) -> int:
    async with asyncio.timeout(30):
        return int(await asyncio.get_running_loop().sock_recv(sock, 64))


def _listener(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


async def test_output_past_the_cap_kills_the_child_and_keeps_its_head(tmp_path: Path) -> None:
    argv = [sys.executable, "-c", "import sys\nwhile True: sys.stdout.write('x' * 65536)"]
    with pytest.raises(proc.OutputTooLarge) as info:
        await proc.communicate(argv, env=ENV, cwd=tmp_path, stdin=None, limit=30,
                               max_output=100_000)  # fmt: skip
    assert info.value.head == b"x" * 100_000


async def test_stderr_keeps_its_last_bytes(tmp_path: Path) -> None:
    script = "import sys\nsys.stderr.write('a' * 200000 + 'the error')"
    code, out, err = await proc.communicate(
        [sys.executable, "-c", script], env=ENV, cwd=tmp_path, stdin=b"", limit=30
    )
    assert (code, out) == (0, b"")
    assert len(err) == proc.STDERR_KEPT and err.endswith(b"the error")


async def test_a_cancelled_run_kills_its_child(tmp_path: Path) -> None:
    with _listener(tmp_path / "r") as sock:
        script = _sleeper(tmp_path / "r")
        run = asyncio.create_task(
            proc.communicate(
                [sys.executable, "-c", script], env=ENV, cwd=tmp_path, stdin=None, limit=600
            )
        )
        pid = await _reported(sock)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    await wait_until_dead(pid, bound=5.0)


@pytest.mark.skipif(not proc.death_guard(), reason="setpriv (util-linux) is not installed")
async def test_a_child_dies_with_its_parent(tmp_path: Path) -> None:
    """A parent SIGKILLed while its child runs: the child goes too."""
    child = _sleeper(tmp_path / "r")
    parent = (
        "import asyncio, sys\n"
        "from hive_core import proc\n"
        f"asyncio.run(proc.communicate([sys.executable, '-c', {child!r}], env={ENV!r}, "
        "cwd='/', stdin=None, limit=600))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with _listener(tmp_path / "r") as sock:
        runner = await asyncio.create_subprocess_exec(sys.executable, "-c", parent, env=env)
        pid = await _reported(sock)
    runner.kill()
    await runner.wait()
    await wait_until_dead(pid, bound=5.0)
