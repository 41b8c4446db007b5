"""The dashboard's HTTP routes. Every read needs a session; Host is checked on every request.

The web UI itself arrives with the dashboard work; today the routes are the
login exchange and the state snapshot the UI will build on. `build_app` wraps
the routes in two ASGI layers, outside FastAPI's own error handling, so that
no response escapes them: the Host check (421) and the security headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_core import actions
from hive_core.dashboard.auth import SESSION_COOKIE, Credentials
from hive_core.services import Services
from hive_share.models import dump
from hive_share.names import OPERATOR

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")

SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
"""On every response, errors included; no-referrer keeps a login code out of Referer."""


def allowed_hosts(bind_host: str, names: tuple[str, ...], port: int) -> frozenset[str]:
    """Host header values accepted (DNS-rebinding defence), lowercase.

    Loopback names, the configured allowed host names, and the bind address itself unless
    it is the any-address (0.0.0.0 or ::), which no browser sends.
    """
    accepted = {*LOOPBACK_NAMES, *names}
    if bind_host not in ("0.0.0.0", "::"):
        accepted.add(f"[{bind_host}]" if ":" in bind_host else bind_host)
    return frozenset(f"{name.lower()}:{port}" for name in accepted)


class HostCheck:
    """Answers 421 to a request whose Host header is not one of ours."""

    def __init__(self, app: ASGIApp, hosts: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [v.decode("latin-1").lower() for k, v in scope["headers"] if k == b"host"]
            if len(hosts) != 1 or hosts[0] not in self.hosts():
                response = JSONResponse({"error": "unexpected Host header"}, status_code=421)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Sets SECURITY_HEADERS on every HTTP response that passes through, replacing any."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_secured)


def build_app(s: Services, creds: Credentials, hosts: Callable[[], frozenset[str]]) -> ASGIApp:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.get("/login")
    async def login(code: str = "") -> Response:
        session = creds.redeem(code)
        if session is None:
            return JSONResponse(
                {"error": "login code unknown, used or expired; run `hive-core login-link`"},
                status_code=403,
            )
        response = RedirectResponse("/api/state", status_code=303)
        response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
        return response

    @app.get("/api/state")
    async def state(request: Request) -> Response:
        if not creds.valid_session(request.cookies.get(SESSION_COOKIE)):
            return JSONResponse({"error": "log in with `hive-core login-link`"}, status_code=401)
        return JSONResponse(await snapshot(s))

    return SecurityHeaders(HostCheck(app, hosts))


async def snapshot(s: Services) -> dict[str, Any]:
    """Everything the dashboard shows, with the event `seq` it reflects."""
    seq = s.bus.seq
    agents = await actions.list_agents(s, tombstones=True)
    pending = await s.approvals.pending()
    inbox = await s.broker.recent(OPERATOR, limit=50)
    return {
        "seq": seq,
        "agents": [dump(a) for a in agents],
        "approvals": [dump(a) for a in pending],
        "inbox": [dump(m) for m in inbox],
    }
