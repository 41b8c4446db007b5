"""Runs the dashboard under uvicorn on a socket bound up front, so the port is known at once;
a port still held by a previous daemon is retried for a few seconds (`bind`)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_core.bus import Subscription
from hive_core.dashboard.app import Operator, allowed_hosts, build_app
from hive_core.dashboard.auth import Credentials, load_key
from hive_core.dashboard.snapshot import Snapshot
from hive_core.errors import StartupError
from hive_core.services import Services
from hive_core.settings import Settings, is_loopback

logger = logging.getLogger(__name__)

PORT_FILE = "dashboard.port"
KEY_FILE = "dashboard.key"
SEND_BUFFER = 256 * 1024
"""Kernel send buffer of each dashboard connection (the kernel doubles it)."""
CUT_WAIT = 1.0
"""Seconds the response tasks uvicorn leaves behind get to end once cancelled."""


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: hive-core owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _Ending:
    """ASGI layer that lets `end()` finish every response still streaming at once.

    Such a response (a harness log follow) never ends on its own, and uvicorn would wait
    out its graceful shutdown for it, then cancel it with a traceback. Once ended, a
    response's wait for its client to leave returns as if the client had left, and the
    body it leaves unfinished is ended cleanly here, so the connection closes at once.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._ended = anyio.Event()

    def end(self) -> None:
        self._ended.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_read = started = complete = False

        async def receiving() -> Message:
            nonlocal body_read
            if not body_read:
                message = await receive()
                body_read = message["type"] != "http.request" or not message.get("more_body")
                return message
            # The body is read: what comes now is the client leaving, or the end.
            message = _LEFT
            async with anyio.create_task_group() as tg:

                async def client_leaves() -> None:
                    nonlocal message
                    message = await receive()
                    tg.cancel_scope.cancel()

                async def ending() -> None:
                    await self._ended.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(client_leaves)
                tg.start_soon(ending)
            return message

        async def sending(message: Message) -> None:
            nonlocal started, complete
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
            await send(message)

        await self.app(scope, receiving, sending)
        if started and not complete and self._ended.is_set():
            await send({"type": "http.response.body", "body": b"", "more_body": False})


_LEFT: Message = {"type": "http.disconnect"}


BIND_WAIT = 5.0
"""Seconds a dashboard port another socket holds is retried before start-up fails: the
previous daemon may still be closing its listener (a slow exit, a restart racing it)."""
BIND_POLL = 0.1


def _bind(host: str, port: int) -> socket.socket:
    """One attempt. Raises: OSError (its errno says why; the socket is closed)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # A previous daemon's connections in TIME_WAIT do not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted connections inherit it: a client that stops reading holds at most this
        # much in the kernel, and its event stream blocks soon enough to be cut off.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        sock.bind((host, port))
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


async def bind(
    host: str,
    port: int,
    wait: float = BIND_WAIT,
    poll: float = BIND_POLL,
    on_busy: Callable[[], None] | None = None,
) -> socket.socket:
    """The dashboard's listening socket. A port in use is retried every `poll` seconds for
    up to `wait` (`on_busy` is called at each failed attempt); any other error fails at once.

    Raises:
        StartupError: the port stayed in use, or the address cannot be bound.
    """
    deadline = anyio.current_time() + wait
    told = False
    while True:
        try:
            return _bind(host, port)
        except OSError as exc:
            busy = exc.errno == errno.EADDRINUSE
            if not busy or anyio.current_time() >= deadline:
                raise StartupError(_bind_error(host, port, exc, wait if busy else None)) from None
        if on_busy is not None:
            on_busy()
        if not told:
            logger.warning("dashboard port %s:%d is in use; retrying for up to %.0fs",
                           host, port, wait)  # fmt: skip
            told = True
        await anyio.sleep(poll)


def _bind_error(host: str, port: int, exc: OSError, waited: float | None) -> str:
    """Why the dashboard cannot listen, and what to do about it."""
    what = f"cannot bind the dashboard to {host}:{port}: {exc.strerror}"
    if waited is not None:
        what += (f" (still after {waited:.0f}s: another program listens there, "
                 f"`ss -ltnp 'sport = :{port}'` names it)")  # fmt: skip
    return what + "; set HIVE_DASHBOARD_PORT to another port (0 picks a free one)"


def link_host(st: Settings) -> str:
    """The host of the printed links: the bind address on loopback, else the first allowed host.

    Never the any-address: `http://0.0.0.0:…` reaches nobody from another machine.
    """
    if is_loopback(st.dashboard_host):
        host = st.dashboard_host
        return f"[{host}]" if ":" in host else host
    return st.dashboard_allowed_hosts[0]


class Dashboard:
    def __init__(self, s: Services, operator: Operator, sock: socket.socket) -> None:
        """`operator` runs one host-socket request as the operator (the dashboard's actions);
        `sock` is the bound listener (`open` binds it)."""
        self.s = s
        st = s.settings
        self.creds = Credentials(load_key(st.state_dir / KEY_FILE))
        self.streams: set[Subscription] = set()
        self.sock = sock
        self.port: int = self.sock.getsockname()[1]
        self.port_file: Path = st.run_dir / PORT_FILE
        tmp = self.port_file.with_suffix(".tmp")
        tmp.write_text(f"{self.port}\n")
        os.replace(tmp, self.port_file)
        hosts = allowed_hosts(st.dashboard_host, st.dashboard_allowed_hosts, self.port)
        self.snapshot = Snapshot(s)
        self._app = _Ending(
            build_app(s, self.creds, lambda: hosts, operator, self.streams, self.snapshot)
        )
        config = uvicorn.Config(
            self._app,
            log_level="warning",
            log_config=None,  # uvicorn's records go through the daemon's handler (journal.py)
            lifespan="off",
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        if not is_loopback(st.dashboard_host):
            logger.warning(
                "the dashboard listens on %s, beyond loopback, for %s; every request still "
                "needs a login",
                st.dashboard_host,
                ", ".join(st.dashboard_allowed_hosts),
            )

    @classmethod
    async def open(cls, s: Services, operator: Operator) -> Dashboard:
        """Bind the port (retried while in use, `bind`) and build the dashboard on it.
        Raises: StartupError."""
        sock = await bind(s.settings.dashboard_host, s.settings.dashboard_port)
        try:
            return cls(s, operator, sock)
        except BaseException:
            sock.close()
            raise

    @property
    def url(self) -> str:
        return f"http://{link_host(self.s.settings)}:{self.port}/"

    def login_link(self) -> str:
        return f"{self.url}login?code={self.creds.new_code()}"

    async def serve(self) -> None:
        """Run uvicorn until `stop`, and beside it the snapshot's tasks (following the bus,
        pinging the harnesses after a fetch). uvicorn runs each response as a task of its
        own and does not wait for those it cancels (its graceful shutdown timed out, or this
        task was cancelled): they are cancelled and waited for here, so none outlives it."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.snapshot.follow, name="dashboard snapshot")
            tg.start_soon(self.snapshot.probe, name="dashboard probe")
            try:
                await self._serve()
            finally:
                tg.cancel_scope.cancel()

    async def _serve(self) -> None:
        try:
            await self._server.serve(sockets=[self.sock])
        finally:
            left = set(self._server.server_state.tasks)
            for task in left:
                task.cancel()
            if left:
                with anyio.CancelScope(shield=True), anyio.move_on_after(CUT_WAIT):
                    await asyncio.wait(left)

    async def stop(self) -> None:
        """End every open response at once and let uvicorn shut down."""
        for sub in list(self.streams):  # each open page is told, and reconnects later
            sub.cut()
        self._app.end()  # and what still streams (a log follow) ends as if its client left
        self._server.should_exit = True

    def close(self) -> None:
        self.sock.close()
        try:
            self.port_file.unlink()
        except FileNotFoundError:
            logger.debug("dashboard port file already gone")
