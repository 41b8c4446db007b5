"""Run one subprocess to completion: an argv list, never a shell, bounded in time and in
the output kept, and never outliving hive-core.

Every child is started through util-linux's `setpriv --pdeathsig KILL` where it is
installed, so the kernel kills it when hive-core dies (a SIGKILLed daemon leaves no git
behind to write into a repo the next daemon reconciles). A child that is cancelled, runs
past its time or prints more than it may is killed and reaped before the caller goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

GUARD_PATH = "/usr/bin:/bin:/run/current-system/sw/bin"
"""Where `setpriv` is looked up: fixed, not the daemon's PATH."""
STDERR_KEPT = 64 * 1024
"""Bytes of a child's stderr kept: the last ones, where the error usually is."""
_CHUNK = 64 * 1024


class OutputTooLarge(Exception):
    """The child printed more than `max_output` bytes; it has been killed.

    `head` holds the first `max_output` bytes.
    """

    def __init__(self, head: bytes) -> None:
        super().__init__(f"more than {len(head)} bytes of output")
        self.head = head


@functools.cache
def death_guard() -> tuple[str, ...]:
    """The argv prefix that makes a child die with this process, or () without setpriv."""
    setpriv = shutil.which("setpriv", path=GUARD_PATH)
    return (setpriv, "--pdeathsig", "KILL", "--") if setpriv is not None else ()


async def communicate(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    stdin: bytes | None,
    limit: float,
    max_output: int | None = None,
    pass_fds: Sequence[int] = (),
) -> tuple[int, bytes, bytes]:
    """Run `argv` with `stdin` (or /dev/null) and return (exit code, stdout, stderr); of
    stderr only the last `STDERR_KEPT` bytes. `pass_fds` stay open in the child.

    Raises:
        OSError: it could not be started.
        TimeoutError: it ran past `limit` seconds; it has been killed and reaped.
        OutputTooLarge: it printed more than `max_output` bytes on stdout; likewise.
    """
    proc = await asyncio.create_subprocess_exec(
        *death_guard(),
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        pass_fds=tuple(pass_fds),
    )
    read_out = asyncio.ensure_future(_read_out(proc, max_output))
    read_err = asyncio.ensure_future(_read_err(proc))
    feed = asyncio.ensure_future(_feed(proc, stdin))
    readers: list[asyncio.Future[Any]] = [read_out, read_err, feed]
    try:
        async with asyncio.timeout(limit):
            out, err, _ = await asyncio.gather(read_out, read_err, feed)
            code = await proc.wait()
    except BaseException:  # timed out, too much output, or cancelled: it must not go on
        await asyncio.shield(_end(proc, readers))
        raise
    return code, out, err


async def _end(proc: asyncio.subprocess.Process, readers: list[asyncio.Future[Any]]) -> None:
    """Kill the child, stop reading, drop what it left in its pipes, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    for reader in readers:
        reader.cancel()
    await asyncio.gather(*readers, return_exceptions=True)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            while await stream.read(_CHUNK):
                pass
    await proc.wait()


async def _read_out(proc: asyncio.subprocess.Process, cap: int | None) -> bytes:
    assert proc.stdout is not None
    buf = bytearray()
    while chunk := await proc.stdout.read(_CHUNK):
        if cap is not None and len(buf) + len(chunk) > cap:
            buf += chunk[: cap - len(buf)]
            raise OutputTooLarge(bytes(buf))
        buf += chunk
    return bytes(buf)


async def _read_err(proc: asyncio.subprocess.Process) -> bytes:
    assert proc.stderr is not None
    buf = bytearray()
    while chunk := await proc.stderr.read(_CHUNK):
        buf += chunk
        if len(buf) > STDERR_KEPT:
            del buf[: len(buf) - STDERR_KEPT]
    return bytes(buf)


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if data is None:
        return
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        proc.stdin.write(data)
        await proc.stdin.drain()
    proc.stdin.close()
