"""Runs the dashboard under uvicorn on a socket bound up front, so the port is known at once."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_core.bus import Subscription
from hive_core.dashboard.app import Operator, allowed_hosts, build_app
from hive_core.dashboard.auth import Credentials, load_key
from hive_core.errors import StartupError
from hive_core.services import Services
from hive_core.settings import Settings, is_loopback

logger = logging.getLogger(__name__)

PORT_FILE = "dashboard.port"
KEY_FILE = "dashboard.key"
SEND_BUFFER = 256 * 1024
"""Kernel send buffer of each dashboard connection (the kernel doubles it)."""


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
        self._ended = asyncio.Event()

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
            left = asyncio.ensure_future(receive())
            ended = asyncio.ensure_future(self._ended.wait())
            try:
                await asyncio.wait({left, ended}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                left.cancel()
                ended.cancel()
            return left.result() if left.done() and not left.cancelled() else _LEFT

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


def _bind(host: str, port: int) -> socket.socket:
    """Raises: StartupError (address in use, bad host)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a client that stops reading holds at most this much
    # in the kernel, and its event stream blocks soon enough to be cut off.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StartupError(
            f"cannot bind the dashboard to {host}:{port}: {exc.strerror}; "
            "set HIVE_DASHBOARD_PORT (0 picks a free port)"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


def link_host(st: Settings) -> str:
    """The host of the printed links: the bind address on loopback, else the first allowed host.

    Never the any-address: `http://0.0.0.0:…` reaches nobody from another machine.
    """
    if is_loopback(st.dashboard_host):
        host = st.dashboard_host
        return f"[{host}]" if ":" in host else host
    return st.dashboard_allowed_hosts[0]


class Dashboard:
    def __init__(self, s: Services, operator: Operator) -> None:
        """`operator` runs one host-socket request as the operator (the dashboard's actions)."""
        self.s = s
        st = s.settings
        self.creds = Credentials(load_key(st.state_dir / KEY_FILE))
        self.streams: set[Subscription] = set()
        self.sock = _bind(st.dashboard_host, st.dashboard_port)
        self.port: int = self.sock.getsockname()[1]
        self.port_file: Path = st.run_dir / PORT_FILE
        tmp = self.port_file.with_suffix(".tmp")
        tmp.write_text(f"{self.port}\n")
        os.replace(tmp, self.port_file)
        hosts = allowed_hosts(st.dashboard_host, st.dashboard_allowed_hosts, self.port)
        self._app = _Ending(build_app(s, self.creds, lambda: hosts, operator, self.streams))
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

    @property
    def url(self) -> str:
        return f"http://{link_host(self.s.settings)}:{self.port}/"

    def login_link(self) -> str:
        return f"{self.url}login?code={self.creds.new_code()}"

    async def serve(self) -> None:
        await self._server.serve(sockets=[self.sock])

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
