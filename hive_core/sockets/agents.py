"""The per-agent sockets: opened when an agent is spawned, removed when it is destroyed.

Each is served in this holder's own task group (`serve`, a task of the daemon's group), so
a socket opened by a request outlives the request, and none outlives the daemon.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable

import anyio
from anyio.abc import TaskGroup, TaskStatus

from hive_core.sockets.server import SocketServer

logger = logging.getLogger(__name__)

DRAIN_TIMEOUT = 5.0


class AgentSockets:
    def __init__(self, make_server: Callable[[str], SocketServer]) -> None:
        self._make_server = make_server
        self._servers: dict[str, SocketServer] = {}
        self._tg: TaskGroup | None = None

    async def serve(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Hold the group the agent sockets are served in, until cancelled (which cuts
        every connection still open; `close_all` drains them first)."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            self._servers.clear()

    def is_open(self, name: str) -> bool:
        return name in self._servers

    async def open(self, name: str) -> None:
        """Listen on `<run>/agents/<name>/agent.sock` (no-op if already open).

        Raises: StartupError (the path is taken), RuntimeError (`serve` is not running).
        """
        if name in self._servers:
            return
        if self._tg is None:
            raise RuntimeError("the agent sockets are not being served")
        server = self._make_server(name)
        await self._tg.start(server.serve, name=f"agent socket {name}")
        self._servers[name] = server

    async def close(self, name: str, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """Stop listening and remove the socket and its (now empty) directory."""
        server = self._servers.pop(name, None)
        if server is None:
            return
        await server.close(drain_timeout)
        try:
            os.rmdir(server.path.parent)
        except OSError as exc:  # gone, or the harness's sockets are still in it: both fine
            if exc.errno not in (errno.ENOENT, errno.ENOTEMPTY):
                logger.warning("could not remove %s: %s", server.path.parent, exc.strerror)

    async def close_all(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        async with anyio.create_task_group() as tg:
            for name in list(self._servers):
                tg.start_soon(self.close, name, drain_timeout)
