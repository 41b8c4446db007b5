"""Run one subprocess to completion: an argv list, never a shell, bounded in time."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path


async def communicate(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | str,
    stdin: bytes | None,
    limit: float,
) -> tuple[int, bytes, bytes]:
    """Run `argv` with `stdin` (or /dev/null) and return (exit code, stdout, stderr).

    Raises:
        OSError: it could not be started.
        TimeoutError: it ran past `limit` seconds; it has been killed and reaped.
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env),
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate(stdin)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    code = proc.returncode
    assert code is not None
    return code, out, err
