"""Hosts the warm `hyperhive` MCP server inside the harness, one session per connection.

claude launches `hive-agent mcp` (a byte relay) each turn; the relay connects
here. The SDK is imported once, when the first turn needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


class _Lines:
    """The text-file shape the SDK's stdio transport reads: async iteration over lines."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def __aiter__(self) -> AsyncIterator[str]:
        while line := await self._reader.readline():
            yield line.decode("utf-8", errors="replace")


class _Out:
    """The text-file shape the SDK's stdio transport writes: write + flush."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer

    async def write(self, text: str) -> None:
        self._writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self._writer.drain()


class McpHost:
    def __init__(self, path: Path, role: str, core_socket: Path, on_status: Callable[[str], None]):
        self.path = path
        self._role = role
        self._core_socket = core_socket
        self._on_status = on_status
        self._server: Any = None
        self._listener: asyncio.Server | None = None
        self._starting = asyncio.Lock()
        self.sessions = 0

    async def start(self) -> None:
        """Import the SDK (off the loop), build the server and listen; once, however many
        callers (the harness starts it when it comes up, a turn makes sure of it)."""
        async with self._starting:
            if self._listener is None:
                await self._start()

    async def _start(self) -> None:
        self._server = await asyncio.to_thread(self._build)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._listener = await asyncio.start_unix_server(
            self._session, path=str(self.path), limit=64 * 1024 * 1024
        )
        os.chmod(self.path, 0o600)

    def _build(self) -> Any:
        from hive_agent.mcp_tools import Tools, build_server

        return build_server(self._role, Tools(self._core_socket, self._on_status))

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        from mcp.server.stdio import stdio_server

        self.sessions += 1
        low = self._server._lowlevel_server  # the SDK runs sessions on its low-level server
        try:
            async with stdio_server(_Lines(reader), _Out(writer)) as (read, write):  # type: ignore[arg-type]
                await low.run(read, write, low.create_initialization_options())
        except* (ConnectionError, BrokenPipeError):
            logger.debug("MCP session connection dropped")
        except* Exception:
            logger.exception("MCP session failed")
        finally:
            writer.close()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
