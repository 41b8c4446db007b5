"""Run one subprocess to completion: an argv list, never a shell, bounded in time and in
the output kept, and never outliving hive-core.

Every child is started through util-linux's `setpriv --pdeathsig KILL` where it is
installed, so the kernel kills it when hive-core dies (a SIGKILLed daemon leaves no git
behind to write into a repo the next daemon reconciles). A child that is cancelled, runs
past its time or prints more than it may is killed and reaped before the caller goes on.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
from anyio.abc import ByteReceiveStream, ByteSendStream, Process

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
    proc = await anyio.open_process(
        [*death_guard(), *argv],
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        pass_fds=tuple(pass_fds),
    )
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    try:
        with anyio.fail_after(limit):
            # The pipes are read and fed together: a child blocked writing one of them
            # while nobody reads it would never exit.
            async with anyio.create_task_group() as tg:
                tg.start_soon(_read_err, proc.stderr, err)
                if stdin is not None:
                    assert proc.stdin is not None
                    tg.start_soon(_feed, proc.stdin, stdin)
                over = await _read_out(proc.stdout, max_output, out)
                if over:
                    tg.cancel_scope.cancel()
            if over:
                raise OutputTooLarge(bytes(out))
            code = await proc.wait()
    except BaseException:  # timed out, too much output, or cancelled: it must not go on
        with anyio.CancelScope(shield=True):
            await _end(proc)
        raise
    await proc.aclose()
    return code, bytes(out), bytes(err)


async def _end(proc: Process) -> None:
    """Kill the child, drop what it left in its pipes, and reap it."""
    with contextlib.suppress(ProcessLookupError):
        proc.kill()
    await proc.aclose()


async def _read_out(stream: ByteReceiveStream, cap: int | None, buf: bytearray) -> bool:
    """Read `stream` to its end into `buf`; True (and `buf` cut at `cap`) past the cap."""
    async for chunk in stream:
        if cap is not None and len(buf) + len(chunk) > cap:
            buf += chunk[: cap - len(buf)]
            return True
        buf += chunk
    return False


async def _read_err(stream: ByteReceiveStream, buf: bytearray) -> None:
    async for chunk in stream:
        buf += chunk
        if len(buf) > STDERR_KEPT:
            del buf[: len(buf) - STDERR_KEPT]


async def _feed(stream: ByteSendStream, data: bytes) -> None:
    with contextlib.suppress(
        anyio.BrokenResourceError, anyio.ClosedResourceError, BrokenPipeError, ConnectionResetError
    ):
        await stream.send(data)
    await stream.aclose()
