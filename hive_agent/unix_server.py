"""The harness's own Unix sockets (`harness.sock`, `mcp.sock`), served under anyio.

`serve` is one task of the harness's task group: the listener and every connection's task
live in a task group of its own, so cancelling the harness's scope ends them all, closes
the listener and removes the socket file. A connection that fails ends alone: its error
is logged, and the listener and the other connections go on.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import anyio.abc

logger = logging.getLogger(__name__)

ACCEPT_RETRY = 1.0
"""Seconds before accepting again after `accept` failed (out of file descriptors)."""
DROPPED = (
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    ConnectionError,
)
"""What a peer that went away mid-answer raises."""

Handler = Callable[[anyio.abc.SocketStream], Awaitable[None]]


async def serve(
    path: Path,
    handler: Handler,
    *,
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Listen on `path` (mode 0600, replacing a socket left there) and run `handler` on
    each connection until cancelled; started once it listens. The handler need not close
    its stream."""
    listener = await anyio.create_unix_listener(path, mode=0o600)
    try:
        async with listener, anyio.create_task_group() as connections:
            task_status.started()
            while True:
                try:
                    stream = await listener.accept()
                except anyio.BrokenResourceError as exc:
                    logger.warning(
                        "%s: accept failed (%s); accepting again in %.0fs",
                        path.name, exc.__cause__, ACCEPT_RETRY,
                    )  # fmt: skip
                    await anyio.sleep(ACCEPT_RETRY)
                    continue
                connections.start_soon(_connection, handler, stream, path.name)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _connection(handler: Handler, stream: anyio.abc.SocketStream, name: str) -> None:
    async with stream:
        try:
            await handler(stream)
        except DROPPED:
            logger.debug("%s: connection dropped", name)
        except Exception:  # one connection's failure is logged, and ends only it
            logger.exception("%s: a connection failed", name)
