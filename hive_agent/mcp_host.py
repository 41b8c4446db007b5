"""Hosts the warm `hyperhive` MCP server inside the harness, one session per connection.

claude launches `hive-agent mcp` (a byte relay) each turn; the relay connects
here. The SDK is imported once, when the harness starts (or the first turn needs it).
The listener and its sessions are tasks of the task group the host is given (the
harness's): cancelling its scope ends them and removes the socket.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from hive_agent import unix_server

logger = logging.getLogger(__name__)

MAX_MESSAGE = 64 * 1024 * 1024
"""The longest JSON-RPC line a session reads; a longer one ends the session."""


class _Lines:
    """The text-file shape the SDK's stdio transport reads: async iteration over lines."""

    def __init__(self, stream: anyio.abc.ByteReceiveStream) -> None:
        self._lines = BufferedByteReceiveStream(stream)

    async def __aiter__(self) -> AsyncIterator[str]:
        while True:
            try:
                line = await self._lines.receive_until(b"\n", MAX_MESSAGE)
            except anyio.IncompleteRead:  # the relay closed; a last unterminated line counts
                if rest := self._lines.buffer:
                    yield rest.decode("utf-8", errors="replace")
                return
            yield line.decode("utf-8", errors="replace")


class _Out:
    """The text-file shape the SDK's stdio transport writes: write + flush."""

    def __init__(self, stream: anyio.abc.ByteSendStream) -> None:
        self._stream = stream

    async def write(self, text: str) -> None:
        await self._stream.send(text.encode("utf-8"))

    async def flush(self) -> None:
        pass  # every write is sent whole


class McpHost:
    def __init__(
        self,
        path: Path,
        role: str,
        core_socket: Path,
        on_status: Callable[[str], None],
        tasks: anyio.abc.TaskGroup,
    ) -> None:
        self.path = path
        self._role = role
        self._core_socket = core_socket
        self._on_status = on_status
        self._tasks = tasks
        """Where the listener runs (with its sessions, in a task group of its own)."""
        self._server: Any = None
        self._listening = False
        self._starting = anyio.Lock()
        self.sessions = 0

    async def start(self) -> None:
        """Import the SDK (off the loop), build the server and listen; once, however many
        callers (the harness starts it when it comes up, a turn makes sure of it)."""
        async with self._starting:
            if not self._listening:
                await self._start()

    async def _start(self) -> None:
        if self._server is None:
            self._server = await anyio.to_thread.run_sync(self._build)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        await self._tasks.start(self._listen)
        self._listening = True

    async def _listen(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await unix_server.serve(self.path, self._session, task_status=task_status)
        finally:
            self._listening = False

    def _build(self) -> Any:
        from hive_agent.mcp_tools import Tools, build_server

        return build_server(self._role, Tools(self._core_socket, self._on_status))

    async def _session(self, stream: anyio.abc.ByteStream) -> None:
        from mcp.server.stdio import stdio_server

        self.sessions += 1
        low = self._server._lowlevel_server  # the SDK runs sessions on its low-level server
        try:
            async with stdio_server(_Lines(stream), _Out(stream)) as (read, write):  # type: ignore[arg-type]
                await low.run(read, write, low.create_initialization_options())
        except* unix_server.DROPPED:
            logger.debug("MCP session connection dropped")
        except* Exception:
            logger.exception("MCP session failed")
