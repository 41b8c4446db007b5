"""The dashboard's HTTP routes. Every read needs a session; Host is checked on every request.

The web UI itself arrives with the dashboard work; today the routes are the
login exchange and the state snapshot the UI will build on.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from hive_core import actions
from hive_core.dashboard.auth import SESSION_COOKIE, Credentials
from hive_core.services import Services
from hive_share.models import dump
from hive_share.names import OPERATOR

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(bind_host: str, port: int) -> frozenset[str]:
    """Host header values accepted (DNS-rebinding defence)."""
    names = {*LOOPBACK_NAMES, bind_host if ":" not in bind_host else f"[{bind_host}]"}
    return frozenset(f"{name}:{port}" for name in names)


def build_app(s: Services, creds: Credentials, hosts: Callable[[], frozenset[str]]) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def check_host(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.headers.get("host", "") not in hosts():
            return JSONResponse({"error": "unexpected Host header"}, status_code=421)
        response = await call_next(request)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'none'"
        return response

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

    return app


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
