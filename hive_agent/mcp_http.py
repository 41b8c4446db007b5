"""The `hyperhive` MCP server as claude reaches it: streamable HTTP on a loopback port of the
harness, every request carrying the harness's bearer secret.

A stdio server costs claude about 45 ms at the end of every run: it sends the server
SIGINT and looks again only 50 ms later. Over HTTP there is no server process to wait for.
The port is bound when the harness starts (stdlib only, so the MCP config names it before
the first turn); the SDK's app and uvicorn come with the server's build, and until they
serve, a connection waits in the socket's backlog.

Loopback is not a trust boundary (another agent's processes on the `local` backend, or a
page in a browser, can reach the port): a request without `Authorization: Bearer
<secret>` gets 401 before the SDK sees it, the secret is random per harness start and
lives only in the harness and in the MCP config file (0600, in the agent's state), and the
SDK's transport security refuses a `Host` or `Origin` other than the loopback's (DNS
rebinding).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import secrets
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import anyio

PATH = "/mcp"
BACKLOG = 64

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class Endpoint:
    """Where claude reaches the server, and the header that lets it in."""

    url: str
    secret: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}


def bind() -> tuple[socket.socket, Endpoint]:
    """A listening socket on a free loopback port, and its endpoint with a fresh secret.

    Raises:
        OSError: no port could be bound.
    """
    sock = socket.create_server(("127.0.0.1", 0), backlog=BACKLOG)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    return sock, Endpoint(f"http://127.0.0.1:{port}{PATH}", secrets.token_urlsafe(32))


class Bearer:
    """ASGI: lets a request through only with the endpoint's bearer secret (compared in
    constant time); lifespan events pass."""

    def __init__(self, app: App, secret: str) -> None:
        self._app = app
        self._expected = f"Bearer {secret}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan" and not self._admitted(scope):
            await _refuse(send)
            return
        await self._app(scope, receive, send)

    def _admitted(self, scope: Scope) -> bool:
        given = [v for k, v in scope.get("headers", []) if k == b"authorization"]
        return len(given) == 1 and hmac.compare_digest(given[0], self._expected)


class InFlight:
    """ASGI: runs each request in a cancel scope of its own, so that `cancel` ends every
    request under way. A tool call whose claude has exited must not go on: its `recv`
    would take, and ack, the next turn's messages. (Over stdio, the session ends with
    claude's pipe; over HTTP nothing tells the server that claude is gone.)"""

    def __init__(self, app: App) -> None:
        self._app = app
        self._scopes: set[anyio.CancelScope] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = False

        async def sending(message: MutableMapping[str, Any]) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        with anyio.CancelScope() as request:
            self._scopes.add(request)
            try:
                await self._app(scope, receive, sending)
            finally:
                self._scopes.discard(request)
        if request.cancelled_caught and not started:
            await _answer(send, 503, "the claude run this request belonged to has ended")

    def cancel(self) -> None:
        """End every request under way (on the event loop)."""
        for request in list(self._scopes):
            request.cancel()


async def _refuse(send: Send) -> None:
    await _answer(send, 401, "a bearer secret is required", [(b"www-authenticate", b"Bearer")])


async def _answer(
    send: Send, status: int, error: str, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def build_app(server: Any, secret: str) -> InFlight:
    """The SDK's stateless streamable-HTTP app of `server` (JSON answers, loopback `Host`
    and `Origin` only) behind the bearer check, its requests cancellable. Imports the SDK's
    web stack."""
    app = server.streamable_http_app(
        streamable_http_path=PATH, json_response=True, stateless_http=True, host="127.0.0.1"
    )
    return InFlight(Bearer(app, secret))


class HttpServer:
    """uvicorn serving `app` on the bound socket, without its own signal handling (the
    harness owns SIGTERM). Imports uvicorn."""

    def __init__(self, app: App, sock: socket.socket) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Any:
                yield

        config = uvicorn.Config(
            app, lifespan="on", log_level="warning", log_config=None, timeout_graceful_shutdown=1
        )
        self._server = _Server(config)
        self._sock = sock

    async def serve(self) -> None:
        try:
            await self._server.serve(sockets=[self._sock])
        finally:
            self._sock.close()  # uvicorn's own, unless it failed before it took it

    def stop(self) -> None:
        self._server.should_exit = True
