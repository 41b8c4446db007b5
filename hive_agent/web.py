"""The agent's own page: its live turn log and its turn controls, at the agent's web port.

Loopback by default. A one-time code that hive-core mints and hands over on `harness.sock`
(`web_code`) opens it: it sets a session cookie named for this agent and signed with a key
that lives only in this process, so no other page's cookie (the dashboard's, another
agent's) opens it. Same rules as the dashboard: Host checked, security headers on every
response, every state change a same-origin JSON POST with the `X-Hive-Request` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_agent import __version__
from hive_front import ASSETS as FRONT_ASSETS
from hive_front import SECURITY_HEADERS as HEADERS
from hive_front import csp, csrf_problem
from hive_share import pages
from hive_share.framing import INT64_MAX
from hive_share.sessions import SESSION_TTL, Credentials

if TYPE_CHECKING:
    from hive_agent.history import EventHistory
    from hive_agent.login_session import LoginSession
    from hive_agent.settings import HarnessSettings
    from hive_agent.turn import Harness

logger = logging.getLogger(__name__)

ASSETS = Path(__file__).parent / "web_assets"
MODEL_CHOICES = ["opus", "sonnet", "haiku"]
CONTEXT_WINDOW = 200_000
"""Tokens in the model's context window: what the context badge is a fraction of."""
HISTORY_PAGE = 200
HISTORY_MAX = 1000
"""Events one `/events/history` page may hold."""
INBOX_MESSAGES = 50
"""Received messages in the snapshot's inbox, newest last."""
INBOX_EVENTS = 50
MAX_STREAMS = 8
STREAM_QUEUE = 1024
PING_SECONDS = 15
SEND_TIMEOUT = 5.0
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
API_PATHS = ("/api/", "/events/", "/login/")
"""Routes a script reads: their errors stay JSON, whatever the request accepts."""
PAGE_PATHS = frozenset({"/", "/login"})
"""Routes a browser opens: their errors are pages."""


def cookie_name(agent: str) -> str:
    """Browsers share cookies across the ports of a host: each page's cookie is its own."""
    return f"hive_agent_{agent}"


class _Context:
    def __init__(
        self,
        settings: HarnessSettings,
        harness: Harness,
        history: EventHistory,
        login: LoginSession,
    ) -> None:
        self.settings = settings
        self.harness = harness
        self.history = history
        self.login = login
        self.creds = Credentials(secrets.token_bytes(32))
        self.cookie = cookie_name(settings.agent_name)
        port = settings.web_port
        self.hosts = frozenset(f"{h}:{port}" for h in LOOPBACK_NAMES)
        self.dashboard = _dashboard_at(settings.dashboard_url)
        self.streams: set[asyncio.Queue[dict[str, Any]]] = set()


def _dashboard_at(url: str | None) -> tuple[str, int] | None:
    """The dashboard's scheme and port: the page sends the operator's messages there."""
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.scheme, port) if parts.scheme in ("http", "https") else None


def _navigation(scope: Scope) -> bool:
    """A page route, or a GET of anything but an API route that prefers HTML."""
    return pages.is_navigation(
        str(scope.get("method", "")), str(scope.get("path", "")), scope["headers"],
        PAGE_PATHS, API_PATHS,
    )  # fmt: skip


def _error_page(status: int, title: str, paragraphs: list[str], style: bool = True) -> HTMLResponse:
    return HTMLResponse(pages.error_page(title, paragraphs, style), status_code=status)


def _wrong_host_page(got: list[str], hosts: frozenset[str]) -> HTMLResponse:
    """421 for a browser: the host it used, and the names the page answers to (loopback
    only: the page has no setting for others)."""
    shown = html.escape(got[0][:200]) if len(got) == 1 else f"{len(got)} Host headers"
    names = ", ".join(f"<code>{html.escape(h)}</code>" for h in sorted(hosts))
    return _error_page(
        421,
        "wrong host",
        [
            f"this agent page does not answer to the host <code>{shown}</code>.",
            f"it answers on this machine only, at {names}: open it there, with the link "
            "<code>hive-core login-link NAME</code> prints.",
        ],
        style=False,  # the stylesheet would come from the same wrong host
    )


class _Guard:
    """Host check and security headers around every response (no-store on all but assets).
    The page may fetch from the dashboard on the host it was loaded from (its send)."""

    def __init__(
        self, app: ASGIApp, hosts: frozenset[str], dashboard: tuple[str, int] | None
    ) -> None:
        self.app = app
        self.hosts = hosts
        self.dashboard = dashboard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = [v.decode("latin-1").lower() for k, v in scope["headers"] if k == b"host"]
        asset = str(scope.get("path", "")).startswith("/assets/")

        connect = ""
        if self.dashboard is not None and len(hosts) == 1 and hosts[0] in self.hosts:
            scheme, port = self.dashboard
            connect = f"{scheme}://{hosts[0].rpartition(':')[0]}:{port}"

        async def secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                headers["Content-Security-Policy"] = csp(connect)
                ok = 200 <= message["status"] < 400
                headers["Cache-Control"] = "no-cache" if asset and ok else "no-store"
            await send(message)

        if len(hosts) != 1 or hosts[0] not in self.hosts:
            response: Response = JSONResponse({"error": "unexpected Host header"}, status_code=421)
            if _navigation(scope):
                response = _wrong_host_page(hosts, self.hosts)
            await response(scope, receive, secured)
            return
        await self.app(scope, receive, secured)


class ModelBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    model: str


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, "code": code}, status_code=status)


router = APIRouter()


async def _invalid_parameter(request: Request, exc: RequestValidationError) -> Response:
    """A malformed path or query parameter: 400 and the usual error body."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or "request"
    return _error(400, f"{where}: {first['msg']}", "invalid_request")


def _ctx(request: Request) -> _Context:
    ctx: _Context = request.app.state.page
    return ctx


def _session(request: Request) -> bool:
    ctx = _ctx(request)
    return ctx.creds.valid_session(request.cookies.get(ctx.cookie))


def _unauthorized(request: Request) -> JSONResponse:
    name = _ctx(request).settings.agent_name
    return _error(401, f"open this page with `hive-core login-link {name}`", "forbidden")


async def _act(
    request: Request, run: Callable[[Any], Awaitable[str]], body: type[BaseModel] = EmptyBody
) -> Response:
    if not _session(request):
        return _unauthorized(request)
    if problem := csrf_problem(request.headers, _ctx(request).hosts):
        return _error(403, problem, "forbidden")
    try:
        parsed = body.model_validate_json(await request.body())
        detail = await run(parsed)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _error(400, f"{where}: {first['msg']}", "invalid_request")
    except ValueError as exc:  # a bad model, or a login that is not running
        return _error(400, str(exc), "invalid_request")
    return JSONResponse({"ok": True, "detail": detail})


@router.get("/login")
async def login(request: Request, code: str = "") -> Response:
    ctx = _ctx(request)
    token = ctx.creds.redeem(code)
    if token is None:
        return JSONResponse(
            {"error": "login code unknown, used or expired; run "
             f"`hive-core login-link {ctx.settings.agent_name}`"},
            status_code=403,
        )  # fmt: skip
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        ctx.cookie, token, max_age=SESSION_TTL, httponly=True, samesite="strict", path="/"
    )
    return response


def _needs_link_page(ctx: _Context) -> HTMLResponse:
    """401 for a browser without the page's cookie: how to open the page."""
    name = html.escape(ctx.settings.agent_name)
    paragraphs = [
        "this page needs a one-time link: open it from the dashboard's "
        f"<strong>page ↗</strong> button, or run <code>hive-core login-link {name}</code> "
        "on the host and open the link it prints (it works once, for 10 minutes)."
    ]
    if ctx.dashboard is not None and ctx.settings.dashboard_url:
        url = html.escape(ctx.settings.dashboard_url)
        paragraphs.append(f'<a href="{url}">open the dashboard</a>')
    return _error_page(401, f"agent {ctx.settings.agent_name}", paragraphs)


@router.get("/")
async def page(request: Request) -> Response:
    if not _session(request):
        return _needs_link_page(_ctx(request))
    return FileResponse(ASSETS / "index.html")


@router.get("/api/state")
async def state(request: Request) -> Response:
    if not _session(request):
        return _unauthorized(request)
    return JSONResponse(await _snapshot(_ctx(request)))


@router.get("/events/history")
async def history(
    request: Request, before: int | None = None, limit: int = HISTORY_PAGE
) -> Response:
    if not _session(request):
        return _unauthorized(request)
    if before is not None and not 0 < before <= INT64_MAX:
        return _error(400, f"before: a seq from 1 to {INT64_MAX}", "invalid_request")
    if not 0 < limit <= HISTORY_MAX:
        return _error(400, f"limit: 1 to {HISTORY_MAX}", "invalid_request")
    rows, more = await _ctx(request).history.before(before, limit)
    return JSONResponse({"events": [_row(r) for r in rows], "more": more})


@router.get("/events/stream")
async def stream(request: Request) -> Response:
    if not _session(request):
        return _unauthorized(request)
    ctx = _ctx(request)
    if len(ctx.streams) >= MAX_STREAMS:
        return _error(503, f"{MAX_STREAMS} event streams are open already", "busy")
    queue = ctx.history.subscribe(STREAM_QUEUE)
    ctx.streams.add(queue)
    return EventSourceResponse(_frames(ctx, queue), ping=PING_SECONDS, send_timeout=SEND_TIMEOUT)


@router.post("/api/cancel")
async def cancel(request: Request) -> Response:
    return await _act(request, lambda _: _ctx(request).harness.cancel())


@router.post("/api/compact")
async def compact(request: Request) -> Response:
    return await _act(request, lambda _: _now(_ctx(request).harness.request_compact()))


@router.post("/api/new-session")
async def new_session(request: Request) -> Response:
    return await _act(request, lambda _: _now(_ctx(request).harness.request_new_session()))


@router.post("/api/model")
async def model(request: Request) -> Response:
    return await _act(request, lambda body: _ctx(request).harness.set_model(body.model), ModelBody)


class CodeBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: str


@router.post("/login/start")
async def login_start(request: Request) -> Response:
    return await _act(request, lambda _: _ctx(request).login.start())


@router.post("/login/code")
async def login_code(request: Request) -> Response:
    async def send(body: CodeBody) -> str:
        code = body.code.strip()
        if not code or "\n" in code or len(code) > 2000:
            raise ValueError("the code is one line of at most 2000 characters")
        return await _ctx(request).login.code(code)

    return await _act(request, send, CodeBody)


@router.post("/login/cancel")
async def login_cancel(request: Request) -> Response:
    return await _act(request, lambda _: _ctx(request).login.cancel())


def build_app(ctx: _Context) -> ASGIApp:
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers={RequestValidationError: _invalid_parameter},
    )
    app.state.page = ctx
    app.include_router(router)
    app.mount("/assets/front", StaticFiles(directory=FRONT_ASSETS), name="front")
    app.mount("/assets", StaticFiles(directory=ASSETS), name="assets")
    return _Guard(app, ctx.hosts, ctx.dashboard)


async def _now(value: str) -> str:
    return value


def _row(row: dict[str, Any]) -> dict[str, Any]:
    return {**row, "event": row["event"].model_dump(mode="json")}


async def _snapshot(ctx: _Context) -> dict[str, Any]:
    harness, settings = ctx.harness, ctx.settings
    await harness.probe_login()  # the login panel needs to know before the first turn
    seq = await ctx.history.last_seq()
    usage = await ctx.history.latest("token_usage_changed")
    ended = await ctx.history.latest("turn_ended")
    started = await ctx.history.latest("turn_started")
    status = await asyncio.to_thread(harness.status_text)
    model = harness.current_model()
    return {
        "seq": seq,
        "agent": settings.agent_name,
        "role": settings.role,
        "model": model,
        "models": MODEL_CHOICES if model in MODEL_CHOICES else [*MODEL_CHOICES, model],
        "model_source": harness.model_source(),
        "status": status,
        "turn_state": harness.state,
        "turns_run": harness.turns_run,
        "login": harness.login,
        "context_tokens": usage["context_tokens"] if usage else 0,
        "context_window": CONTEXT_WINDOW,
        "usage": usage["usage"] if usage else {},
        "last_turn": {
            "result": ended["result"], "detail": ended["detail"],
            "duration_ms": ended["duration_ms"],
            "model": started["model"] if started else model, "ended_at": None,
        } if ended else None,
        "inbox": [
            m for event in await ctx.history.latest_all("messages_received", INBOX_EVENTS)
            for m in event["messages"]
        ][-INBOX_MESSAGES:],
        "login_session": (await ctx.login.status(0, 0)).model_dump(
            mode="json", exclude={"ok", "result"}
        ),
        "dashboard_url": settings.dashboard_url,
        "version": __version__,
    }  # fmt: skip


async def _frames(ctx: _Context, queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[Any]:
    try:
        while True:
            row = await queue.get()
            if row.get("event") is None:  # the harness is stopping
                yield ServerSentEvent(data=json.dumps({"seq": 0, "event": {"kind": "resync"}}))
                return
            yield ServerSentEvent(data=json.dumps(_row(row)), id=str(row["seq"]))
    finally:
        ctx.history.unsubscribe(queue)
        ctx.streams.discard(queue)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the harness owns SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


class AgentPage:
    """The page's server: bound up front (a taken port is logged, not fatal)."""

    def __init__(
        self,
        settings: HarnessSettings,
        harness: Harness,
        history: EventHistory,
        login: LoginSession,
    ) -> None:
        self.ctx = _Context(settings, harness, history, login)
        self._server: _Server | None = None
        self._sock: socket.socket | None = None
        self._stopped = False

    def add_code(self, code: str) -> str:
        self.ctx.creds.add_code(code)
        return f"http://127.0.0.1:{self.ctx.settings.web_port}/login?code={code}"

    async def serve(self) -> None:
        """Serve the page until `stop`; a page that fails is logged, and the agent goes on."""
        try:
            await self._serve()
        except Exception:
            logger.exception("the agent page stopped")

    async def _serve(self) -> None:
        port = self.ctx.settings.web_port
        if not port or self._stopped:  # stopped before it began: nothing to serve
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.ctx.settings.web_host, port))
        except OSError as exc:
            sock.close()
            logger.warning("the agent page cannot listen on port %d: %s", port, exc.strerror)
            return
        sock.listen(64)
        sock.setblocking(False)
        self._sock = sock
        config = uvicorn.Config(
            build_app(self.ctx), log_level="warning", lifespan="off", timeout_graceful_shutdown=1
        )
        self._server = _Server(config)
        await self._server.serve(sockets=[sock])

    def stop(self) -> None:
        self._stopped = True
        for queue in list(self.ctx.streams):
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait({"seq": 0, "event": None})
        if self._server is not None:
            self._server.should_exit = True
