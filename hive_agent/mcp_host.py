"""Hosts the warm `hyperhive` MCP server inside the harness.

claude reaches it over streamable HTTP on a loopback port with the harness's bearer secret
(`mcp_http.py`); `hive-agent mcp` (a stdio byte relay, for any other MCP client, and for
claude when no port could be bound) reaches it on `mcp.sock`, one session per connection.
The harness binds both as it starts, but imports the SDK and builds the server only when a
turn first needs it (`start`, called before claude is spawned), in a thread while claude
starts; a request or session that comes first waits for it. The SDK is about 25 MiB of a
harness's memory, so a harness that has not run a turn does without it. The listeners,
the sessions and the build are tasks of the task group the host is given (the harness's):
cancelling its scope ends them and removes the socket; `stop` ends the HTTP server first.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.buffered import BufferedByteReceiveStream

from hive_agent import mcp_http, unix_server
from hive_share import gil

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


class McpUnavailable(RuntimeError):
    """The server could not be built (the cause is logged); the next turn tries again."""


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
        """Where the listener and the build run (the sessions in a task group of their own)."""
        self._server: Any = None
        self._http: mcp_http.HttpServer | None = None
        self._requests: mcp_http.InFlight | None = None
        self._sock: socket.socket | None = None
        """The HTTP port's listening socket until its server takes it."""
        self.endpoint: mcp_http.Endpoint | None = None
        """Where claude reaches the server over HTTP; None until bound, or if no port could
        be bound (claude then gets the relay)."""
        self._stopped = False
        self.http_ended = anyio.Event()
        """Set once the HTTP server has stopped serving (after `stop`, or a failure)."""
        self._listening = False
        self._starting = anyio.Lock()
        self._building: anyio.Event | None = None
        """Set when the build under way ends, built or not; None while none is under way."""
        self.sessions = 0

    @property
    def built(self) -> bool:
        """Whether the server is built (the SDK imported)."""
        return self._server is not None

    async def listen(self) -> None:
        """Listen on the socket, without the SDK (once, however many callers): the harness
        does it as it starts; a session that comes before the server is built waits for
        it."""
        async with self._starting:
            if not self._listening:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
                await self._tasks.start(self._listen)
                self._listening = True
            if self.endpoint is None and not self._stopped:
                try:
                    self._sock, self.endpoint = mcp_http.bind()
                except OSError:
                    logger.exception("no loopback port for the MCP server; claude gets the relay")

    async def start(self) -> None:
        """Listen, and have the server built: a turn calls it before it spawns claude.

        The first turn starts the build in the background, so the SDK's import overlaps
        claude's own start (claude's relay connects a while later, and its session waits
        for the server). A turn that finds a build under way (its turn before ended
        while the SDK was still coming in) waits for it: its claude would wait for it
        anyway, and spawned meanwhile it would only compete with the import for the CPU.
        """
        await self.listen()
        if self._building is not None:
            await self._building.wait()  # built, or failed (logged): then built again
        self._build_soon()

    def _build_soon(self) -> None:
        if self._server is None and self._building is None:
            self._building = anyio.Event()
            self._tasks.start_soon(self._build_server, self._building)

    async def _build_server(self, done: anyio.Event) -> None:
        try:
            with gil.responsive():  # the loop answers meanwhile (pings, claude's output)
                server, served = await anyio.to_thread.run_sync(self._build)
            self._server = server
            if served is not None and not self._stopped:
                self._requests, self._http = served
                self._sock = None
                self._tasks.start_soon(self._serve_http, self._http)
        except Exception:
            logger.exception("the MCP server could not be built; the next turn tries again")
        finally:
            self._building = None
            done.set()

    async def _serve_http(self, http: mcp_http.HttpServer) -> None:
        try:
            await http.serve()
        except Exception:
            # Its port is gone: from the next run on, claude gets the relay.
            logger.exception("the MCP server's HTTP listener failed; claude gets the relay")
            self.endpoint, self._http, self._requests = None, None, None
        finally:
            self.http_ended.set()

    async def wind_down(self, seconds: float) -> bool:
        """`stop`, then wait up to `seconds` for the HTTP server to end; whether it did."""
        self.stop()
        if self._http is None:
            return True
        with anyio.move_on_after(seconds):
            await self.http_ended.wait()
        return self.http_ended.is_set()

    def stop(self) -> None:
        """End the HTTP server (its open requests get a second); the relay's sessions end
        with the task group."""
        self._stopped = True
        if self._http is not None:
            self._http.stop()
        self._close_port()

    def _close_port(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def _built_server(self) -> Any:
        if self._server is None:
            self._build_soon()
            assert self._building is not None
            await self._building.wait()
            if self._server is None:
                raise McpUnavailable("the MCP server could not be built")
        return self._server

    async def _listen(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        try:
            await unix_server.serve(self.path, self._session, task_status=task_status)
        finally:
            self._listening = False
            self._close_port()  # bound, and never handed to the HTTP server

    def _build(self) -> tuple[Any, tuple[mcp_http.InFlight, mcp_http.HttpServer] | None]:
        """In a thread: the server, and its HTTP app and the server of it on the bound port
        (if any)."""
        from hive_agent.mcp_tools import Tools, build_server

        server = build_server(self._role, Tools(self._core_socket, self._on_status))
        if self._sock is None or self.endpoint is None:
            return server, None
        app = mcp_http.build_app(server, self.endpoint.secret)
        return server, (app, mcp_http.HttpServer(app, self._sock))

    def end_requests(self) -> None:
        """End the HTTP requests under way: called once a claude run has exited, whose tool
        calls must not go on (a `recv` would take the next turn's messages)."""
        if self._requests is not None:
            self._requests.cancel()

    async def _session(self, stream: anyio.abc.ByteStream) -> None:
        self.sessions += 1
        try:
            server = await self._built_server()
        except McpUnavailable:
            return  # logged by the build; claude sees the server fail, the turn goes on
        from mcp.server.stdio import stdio_server

        low = server._lowlevel_server  # the SDK runs sessions on its low-level server
        try:
            async with stdio_server(_Lines(stream), _Out(stream)) as (read, write):  # type: ignore[arg-type]
                await low.run(read, write, low.create_initialization_options())
        except* unix_server.DROPPED:
            logger.debug("MCP session connection dropped")
        except* Exception:
            logger.exception("MCP session failed")
