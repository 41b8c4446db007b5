"""The agent's own page: its live turn log and its turn controls, at the agent's web port.

It listens where the dashboard listens (loopback by default) and answers the host names the
dashboard answers to. A one-time code that hive-core mints and hands over on `harness.sock`
(`web_code`) opens it: the login page's script trades it for a session token signed with a
key that lives only in this process, keeps it in this origin's own storage and sends it as
`Authorization: Bearer` (hive_share/sessions.py: no cookies, so nothing of this page's
reaches another port, nor another page's credential this one). With the code comes a send
token, which lets the page send the operator's messages to this agent through the
dashboard. Same rules as the dashboard: Host checked, security headers on every response,
every state change a JSON POST with the `X-Hive-Request` header.
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
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_agent import __version__
from hive_front import ASSETS as FRONT_ASSETS
from hive_front import allowed_hosts, csp, csrf_problem, security_headers
from hive_share import pages
from hive_share.framing import INT64_MAX
from hive_share.sessions import Credentials, Tickets, bearer

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
API_PATHS = ("/api/", "/events/", "/login/")
"""Routes a script reads: their errors stay JSON, whatever the request accepts."""
PAGE_PATHS = frozenset({"/", "/login"})
"""Routes a browser opens: their errors are pages."""


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
        self.tickets = Tickets()
        self.send_token = ""
        """The latest send token hive-core handed over with a login code."""
        self.hosts = allowed_hosts(settings.web_host, settings.web_allowed_hosts, settings.web_port)
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
    """421 for a browser: the host it used, the names the page answers to, and the setting
    that adds one (agent pages answer the dashboard's host names)."""
    shown = html.escape(got[0][:200]) if len(got) == 1 else f"{len(got)} Host headers"
    names = ", ".join(f"<code>{html.escape(h)}</code>" for h in sorted(hosts))
    return _error_page(
        421,
        "wrong host",
        [
            f"this agent page does not answer to the host <code>{shown}</code>.",
            f"it answers at {names}. Agent pages answer the host names the dashboard does: "
            "to add one, put it in <code>HIVE_DASHBOARD_ALLOWED_HOSTS</code> (comma-separated "
            "host names, no port) and restart hive-core, then open the page from the "
            "dashboard's <strong>page ↗</strong> button.",
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
                host = hosts[0] if len(hosts) == 1 else ""
                for name, value in security_headers(str(scope.get("scheme", "http")), host).items():
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
    return _ctx(request).creds.valid_session(bearer(request.headers))


def _ticket(request: Request) -> bool:
    """An event stream's credential: a one-use ticket from `POST /api/ticket`."""
    return _ctx(request).tickets.take(request.query_params.get("ticket"))


def _unauthorized(request: Request) -> JSONResponse:
    name = _ctx(request).settings.agent_name
    return _error(401, f"open this page with `hive-core login-link {name}`", "forbidden")


async def _act(
    request: Request,
    run: Callable[[Any], Awaitable[str]],
    body: type[BaseModel] = EmptyBody,
    key: str = "detail",
) -> Response:
    """Check the request and run it; its answer goes under `key`."""
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
    return JSONResponse({"ok": True, key: detail})


@router.get("/login")
async def login(request: Request) -> HTMLResponse:
    """The login page: its script trades the link's code (`POST /api/session`), or says
    how to get one."""
    ctx = _ctx(request)
    name = html.escape(ctx.settings.agent_name)
    way_in = (
        f"open it from the dashboard's <strong>page ↗</strong> button, or run <code>hive-core "
        f"login-link {name}</code> on the host and open the link it prints (it works once, "
        "for 10 minutes)."
    )
    needed = [f"this page needs a one-time link: {way_in}"]
    expired = [f"this link was used or has expired. For a new one, {way_in}"]
    if link := _dashboard_link(ctx, request.headers["host"]):
        needed.append(link)
        expired.append(link)
    return HTMLResponse(pages.login_page(f"agent {ctx.settings.agent_name}", needed, expired))


def _dashboard_link(ctx: _Context, host: str) -> str:
    """A link to the dashboard on the host name this page was reached by."""
    if ctx.dashboard is None:
        return ""
    scheme, port = ctx.dashboard
    url = html.escape(f"{scheme}://{_host_name(host)}:{port}/")
    return f'<a href="{url}">open the dashboard</a>'


def _host_name(host: str) -> str:
    """The name part of a Host header value (`[::1]:80` → `[::1]`, `a.b:80` → `a.b`)."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: str


@router.post("/api/session")
async def new_session_token(request: Request) -> Response:
    """Trade a one-time login code for a session token (the login page keeps it)."""
    ctx = _ctx(request)
    if problem := csrf_problem(request.headers, ctx.hosts):
        return _error(403, problem, "forbidden")
    try:
        code = SessionBody.model_validate_json(await request.body()).code
    except ValidationError:
        return _error(400, 'body: {"code": "<login code>"}', "invalid_request")
    token = ctx.creds.redeem(code)
    if token is None:
        name = ctx.settings.agent_name
        message = f"login code unknown, used or expired; run `hive-core login-link {name}`"
        return _error(403, message, "forbidden")
    return JSONResponse({"ok": True, "token": token})


@router.get("/api/session")
async def check_session(request: Request) -> Response:
    """Whether the request's token is a live session (the login page asks)."""
    return JSONResponse({"ok": True}) if _session(request) else _unauthorized(request)


@router.post("/api/ticket")
async def ticket(request: Request) -> Response:
    """A one-use ticket that opens one event stream within 30 seconds."""
    return await _act(request, lambda _: _now(_ctx(request).tickets.issue()), key="ticket")


@router.get("/")
async def page() -> Response:
    """The page itself, which holds no data: its script goes to /login without a session."""
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
    if not _ticket(request):
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
        "send_token": ctx.send_token,
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
        port = self.ctx.settings.web_port
        if not port or self._stopped:  # stopped before it began: nothing to serve
            return
        host = self.ctx.settings.web_host
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
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
