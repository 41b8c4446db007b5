"""The per-agent sockets: opened when an agent is spawned, removed when it is destroyed."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable

from hive_core.sockets.server import SocketServer

DRAIN_TIMEOUT = 5.0


class AgentSockets:
    def __init__(self, make_server: Callable[[str], SocketServer]) -> None:
        self._make_server = make_server
        self._servers: dict[str, SocketServer] = {}

    def is_open(self, name: str) -> bool:
        return name in self._servers

    async def open(self, name: str) -> None:
        """Listen on `<run>/agents/<name>/agent.sock` (no-op if already open)."""
        if name in self._servers:
            return
        server = self._make_server(name)
        await server.start()
        self._servers[name] = server

    async def close(self, name: str, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        """Stop listening and remove the socket and its (now empty) directory."""
        server = self._servers.pop(name, None)
        if server is None:
            return
        await server.close(drain_timeout)
        with contextlib.suppress(OSError):
            os.rmdir(server.path.parent)

    async def close_all(self, drain_timeout: float = DRAIN_TIMEOUT) -> None:
        await asyncio.gather(*(self.close(n, drain_timeout) for n in list(self._servers)))
