"""The agent's own page: its live turn log and its turn controls, at the agent's web port;
this module builds the application and runs its server (`AgentPage`), on the socket
web_start.py bound when the harness started; it is imported only once the page is first
needed (web_start.py).

It listens where the dashboard listens (loopback by default) and answers the host names the
dashboard answers to. A one-time code that hive-core mints and hands over on `harness.sock`
(`web_code`) opens it: the login page's script trades it for a session token signed with a
key that lives only in this process, keeps it in this origin's own storage and sends it as
`Authorization: Bearer` (hive_share/sessions.py: no cookies, so nothing of this page's
reaches another port, nor another page's credential this one). With the code comes a send
token, which lets the page send the operator's messages to this agent through the
dashboard. Same rules as the dashboard: Host checked, security headers on every response
(web_guard.py), every state change a JSON POST with the `X-Hive-Request` header
(web_context.py). The routes: web_login.py, web_state.py, web_events.py, web_controls.py.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from typing import TYPE_CHECKING, Any

import uvicorn
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp

from hive_agent import web_controls, web_events, web_login, web_state
from hive_agent.web_context import PageContext, invalid_parameter
from hive_agent.web_guard import Guard
from hive_front import ASSETS as FRONT_ASSETS

if TYPE_CHECKING:
    from hive_agent.history import EventHistory
    from hive_agent.login_session import LoginSession
    from hive_agent.settings import HarnessSettings
    from hive_agent.turn import Harness

logger = logging.getLogger(__name__)

ROUTERS = (web_login.router, web_state.router, web_events.router, web_controls.router)


def build_app(ctx: PageContext) -> ASGIApp:
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers={RequestValidationError: invalid_parameter},
    )
    app.state.page = ctx
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/assets/front", StaticFiles(directory=FRONT_ASSETS), name="front")
    app.mount("/assets", StaticFiles(directory=web_state.ASSETS), name="assets")
    return Guard(app, ctx.hosts, ctx.dashboard)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the harness owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class AgentPage:
    """The page's server, on the listening socket it is given (None: no port to serve)."""

    def __init__(
        self,
        settings: HarnessSettings,
        harness: Harness,
        history: EventHistory,
        login: LoginSession,
        sock: socket.socket | None,
    ) -> None:
        self.ctx = PageContext(settings, harness, history, login)
        self._server: _Server | None = None
        self._sock = sock
        self._stopped = False

    def add_code(self, code: str, send_token: str | None) -> str:
        """Accept `code` once as a login; `send_token` replaces the page's send token.
        Returns the link on loopback (hive-core puts the operator's host name in it)."""
        self.ctx.creds.add_code(code)
        if send_token:
            self.ctx.send_token = send_token
        return f"http://127.0.0.1:{self.ctx.settings.web_port}/login?code={code}"

    async def serve(self) -> None:
        """Serve the page until `stop`; a page that fails is logged, and the agent goes on."""
        try:
            await self._serve()
        except Exception:
            logger.exception("the agent page stopped")

    async def _serve(self) -> None:
        if self._sock is None or self._stopped:  # stopped before it began: nothing to serve
            return
        config = uvicorn.Config(
            build_app(self.ctx), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = _Server(config)
        await self._server.serve(sockets=[self._sock])

    def stop(self) -> None:
        self._stopped = True
        web_events.end_streams(self.ctx)
        if self._server is not None:
            self._server.should_exit = True
