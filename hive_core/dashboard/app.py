"""The dashboard's HTTP routes: the page, its assets, the snapshot, the event stream, the
actions, an agent's log and config.

Every read needs a session token (`Authorization: Bearer`, see hive_share/sessions.py: no
cookies, so no credential reaches another port of this host), an event stream a one-use
ticket; Host is checked on every request; every state change also needs the
`X-Hive-Request` header and a JSON body, so a form posted from another site can never act.
`build_app` wraps the routes in two ASGI layers, outside FastAPI's own error handling, so
that no response escapes them: the Host check (421) and the security headers.

Actions are host-socket requests: they go through the host socket's own dispatch, as the
operator, so the dashboard and the CLI run the same code with the same checks.
"""

from __future__ import annotations

import html
import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_core.bus import Subscription
from hive_core.dashboard import views
from hive_core.dashboard.auth import Credentials
from hive_core.errors import HiveError
from hive_core.services import Services
from hive_front import ASSETS as FRONT_ASSETS
from hive_front import CSRF_HEADER, allowed_hosts, csrf_problem, security_headers
from hive_share import pages
from hive_share.events import DASHBOARD_EVENT_KINDS, Frame, Resync
from hive_share.framing import INT64_MAX
from hive_share.models import WireModel, dump
from hive_share.names import InvalidName, validate_agent_name
from hive_share.responses import Error
from hive_share.sessions import Tickets, bearer

ASSETS = Path(__file__).parent / "assets"
NO_STORE = "no-store"
ASSET_CACHE = "no-cache"
"""Assets may be cached but are revalidated (ETag) on each load: an upgrade shows at once."""
STREAM_QUEUE = 256
"""Frames one event-stream subscriber may lag behind before it is cut off with `resync`."""
MAX_STREAMS = 128
"""Event streams open at once."""
MAX_LOG_STREAMS = 16
"""Log streams open at once, apart from the event streams: each one reads its log (on the
nixos backend, a `journalctl`) twice a second."""
SEND_TIMEOUT = 5.0
"""Seconds one frame may take to reach a stream's client before the stream is dropped."""
PING_SECONDS = 15
API_PATHS = ("/api/", "/dashboard/", "/events/")
"""Routes a script reads: their errors stay JSON, whatever the request accepts."""
PAGE_PATHS = frozenset({"/", "/login"})
LOGIN_NEEDED = [
    "this browser is not logged in here.",
    "run <code>hive-core login-link</code> on the host and open the link it prints "
    "(it works once, for 10 minutes).",
]
LOGIN_EXPIRED = [
    "this login link was used or has expired: each link works once, for 10 minutes.",
    "for a new one, run <code>hive-core login-link</code> on the host and open the link it prints.",
]
"""Routes a browser opens: their errors are pages."""

AGENT_ACTIONS: dict[str, dict[str, Any]] = {
    "start": {"cmd": "start"},
    "stop": {"cmd": "stop"},
    "restart": {"cmd": "restart"},
    "kill": {"cmd": "kill"},
    "rebuild": {"cmd": "rebuild"},
    "destroy": {"cmd": "destroy"},
    "purge": {"cmd": "destroy", "purge": True},
    "new-session": {"cmd": "relay", "request": {"cmd": "new_session"}},
    "cancel": {"cmd": "relay", "request": {"cmd": "cancel"}},
}
"""`POST /api/agents/{name}/{action}`: the host request each action is."""

HTTP_STATUS: dict[str, int] = {
    "malformed": 400,
    "too_long": 413,
    "unknown_verb": 400,
    "verb_not_allowed": 403,
    "identity_claim": 400,
    "invalid_request": 400,
    "invalid_name": 400,
    "unknown_agent": 404,
    "exists": 409,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "port_collision": 409,
    "backend": 502,
    "shutting_down": 503,
    "busy": 429,
    "storage": 507,
    "internal": 500,
}

__all__ = ["Operator", "allowed_hosts", "build_app"]

Operator = Callable[[dict[str, Any]], Awaitable[WireModel]]
"""Runs one host-socket request as the operator and returns its response."""


def browser_navigation(scope: Scope) -> bool:
    """A page route, or a GET of anything but an API route that prefers HTML: its error is
    a page that says what to do; an API route's stays JSON."""
    return pages.is_navigation(
        str(scope.get("method", "")), str(scope.get("path", "")), scope["headers"],
        PAGE_PATHS, API_PATHS,
    )  # fmt: skip


def error_page(status: int, title: str, paragraphs: list[str], style: bool = True) -> HTMLResponse:
    return HTMLResponse(pages.error_page(title, paragraphs, style), status_code=status)


def _host_name(host: str) -> str:
    """The name part of a Host header value (`[::1]:80` → `[::1]`, `a.b:80` → `a.b`)."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


def wrong_host_page(got: list[str], hosts: frozenset[str]) -> HTMLResponse:
    """421 for a browser: the host it used, and how to make the dashboard answer to it."""
    port = next(iter(hosts)).rpartition(":")[2] if hosts else ""
    if len(got) != 1:
        why = f"this request carried {len(got)} Host headers; a browser sends exactly one."
        return error_page(421, "wrong host", [html.escape(why)], style=False)
    shown = html.escape(got[0][:200])
    name = _host_name(got[0])[:200]
    if any(h.rpartition(":")[0] == name for h in hosts):
        fix = f"this dashboard answers on port {html.escape(port)}: open it there."
    else:
        fix = (
            f"to open it under this name, add <code>{html.escape(name)}</code> to "
            "<code>HIVE_DASHBOARD_ALLOWED_HOSTS</code> (comma-separated host names, no port) "
            "and restart hive-core."
        )
    return error_page(
        421,
        "wrong host",
        [f"this dashboard does not answer to the host <code>{shown}</code>.", fix],
        style=False,  # the stylesheet would come from the same wrong host
    )


class HostCheck:
    """Answers 421 to a request whose Host header is not one of ours: a page for a
    browser's navigation, JSON otherwise."""

    def __init__(self, app: ASGIApp, hosts: Callable[[], frozenset[str]]) -> None:
        self.app = app
        self.hosts = hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            hosts = [v.decode("latin-1").lower() for k, v in scope["headers"] if k == b"host"]
            if len(hosts) != 1 or hosts[0] not in self.hosts():
                response: Response = JSONResponse(
                    {"error": "unexpected Host header"}, status_code=421
                )
                if scope["type"] == "http" and browser_navigation(scope):
                    response = wrong_host_page(hosts, self.hosts())
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


class SecurityHeaders:
    """Sets the security headers on every HTTP response that passes through, replacing any, and
    `Cache-Control: no-store` on all but the static assets."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        asset = str(scope.get("path", "")).startswith("/assets/")
        scheme = str(scope.get("scheme", "http"))
        host = next((v.decode("latin-1").lower() for k, v in scope["headers"] if k == b"host"), "")

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in security_headers(scheme, host).items():
                    headers[name] = value
                ok = 200 <= message["status"] < 400
                headers["Cache-Control"] = ASSET_CACHE if asset and ok else NO_STORE
            await send(message)

        await self.app(scope, receive, send_secured)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DenyBody(_Body):
    reason: str = Field(default="", max_length=2000)


class AnswerBody(_Body):
    answer: str


class SendBody(_Body):
    to: str
    body: str


class PageSendBody(_Body):
    body: str


class SpawnBody(_Body):
    name: str


class LoginBody(_Body):
    code: str = Field(max_length=200)


class EmptyBody(_Body):
    pass


def _error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, "code": code}, status_code=status)


def _answer(response: WireModel) -> JSONResponse:
    if isinstance(response, Error):
        return _error(HTTP_STATUS.get(response.code, 500), response.error, response.code)
    body = dump(response)
    detail = body.pop("detail", None)
    body.pop("result", None)
    return JSONResponse({**body, "ok": True, "detail": detail or "done"})


class Csrf:
    """Whether a state-changing request came from the page itself."""

    def __init__(self, hosts: Callable[[], frozenset[str]]) -> None:
        self.hosts = hosts

    def problem(self, request: Request) -> str:
        return csrf_problem(request.headers, self.hosts())


@dataclass
class _Context:
    s: Services
    creds: Credentials
    csrf: Csrf
    operator: Operator
    streams: set[Subscription]
    tickets: Tickets
    log_streams: int = 0


router = APIRouter()


def _ctx(request: Request) -> _Context:
    ctx: _Context = request.app.state.hive
    return ctx


def _session(request: Request) -> bool:
    return _ctx(request).creds.valid_session(bearer(request.headers))


def _ticket(request: Request) -> bool:
    """An event stream's credential: a one-use ticket from `POST /api/ticket`."""
    return _ctx(request).tickets.take(request.query_params.get("ticket"))


def _unauthorized() -> JSONResponse:
    return _error(401, "log in with the link `hive-core login-link` prints", "forbidden")


async def _act(
    request: Request,
    raw: dict[str, Any],
    body: type[_Body] = EmptyBody,
    csrf: str | None = None,
    authorized: bool = False,
) -> Response:
    """Check the request, merge its JSON body into `raw`, run it as the operator. `csrf` is
    the request's CSRF problem when the caller checked it another way, `authorized` that
    the caller checked its credential."""
    if not authorized and not _session(request):
        return _unauthorized()
    ctx = _ctx(request)
    if problem := ctx.csrf.problem(request) if csrf is None else csrf:
        return _error(403, problem, "forbidden")
    try:
        parsed = body.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return _error(400, f"{where}: {first['msg']}", "invalid_request")
    return _answer(await ctx.operator({**raw, **parsed.model_dump()}))


async def _read(request: Request, read: Callable[[], Awaitable[Any]]) -> Response:
    """A session-guarded read whose HiveError becomes its error response."""
    if not _session(request):
        return _unauthorized()
    try:
        return JSONResponse(await read())
    except HiveError as exc:
        return _error(HTTP_STATUS[exc.code], exc.message, exc.code)


async def _invalid_parameter(request: Request, exc: RequestValidationError) -> Response:
    """A malformed path or query parameter: 400 and the usual error body."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or "request"
    return _error(400, f"{where}: {first['msg']}", "invalid_request")


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@router.get("/login")
async def login() -> Response:
    """The login page: its script trades the link's code (`POST /api/session`)."""
    return HTMLResponse(pages.login_page("hyperhive", LOGIN_NEEDED, LOGIN_EXPIRED))


@router.post("/api/session")
async def new_session(request: Request) -> Response:
    """Trade a one-time login code for a session token (the login page keeps it)."""
    if problem := _ctx(request).csrf.problem(request):
        return _error(403, problem, "forbidden")
    try:
        code = LoginBody.model_validate_json(await request.body()).code
    except ValidationError:
        return _error(400, 'body: {"code": "<login code>"}', "invalid_request")
    token = _ctx(request).creds.redeem(code)
    if token is None:
        message = "login code unknown, used or expired; run `hive-core login-link`"
        return _error(403, message, "forbidden")
    return JSONResponse({"ok": True, "token": token})


@router.get("/api/session")
async def check_session(request: Request) -> Response:
    """Whether the request's token is a live session (the login page asks)."""
    return JSONResponse({"ok": True}) if _session(request) else _unauthorized()


@router.post("/api/ticket")
async def ticket(request: Request) -> Response:
    """A one-use ticket that opens one event stream within 30 seconds."""
    if not _session(request):
        return _unauthorized()
    if problem := _ctx(request).csrf.problem(request):
        return _error(403, problem, "forbidden")
    return JSONResponse({"ok": True, "ticket": _ctx(request).tickets.issue()})


@router.get("/")
async def page() -> Response:
    """The page itself, which holds no data: its script goes to /login without a session."""
    return FileResponse(ASSETS / "index.html")


@router.get("/api/state")
async def state(request: Request) -> Response:
    return await _read(request, lambda: views.snapshot(_ctx(request).s))


@router.get("/dashboard/history")
async def history(request: Request, before: int | None = None, limit: int = 100) -> Response:
    if before is not None and not 0 < before <= INT64_MAX:
        return _error(400, f"before: a message id from 1 to {INT64_MAX}", "invalid_request")
    if not 0 < limit <= views.FLOW_PAGE:
        return _error(400, f"limit: 1 to {views.FLOW_PAGE}", "invalid_request")
    return await _read(request, lambda: views.history(_ctx(request).s, before, limit))


@router.get("/dashboard/stream")
async def stream(request: Request, kinds: str = "") -> Response:
    if not _ticket(request):
        return _unauthorized()
    ctx = _ctx(request)
    wanted = {k for k in kinds.split(",") if k}
    if unknown := wanted - DASHBOARD_EVENT_KINDS:
        return _error(400, f"kinds: unknown {sorted(unknown)[:5]}", "invalid_request")
    if len(ctx.streams) >= MAX_STREAMS:
        return _error(503, f"{MAX_STREAMS} event streams are open already", "busy")
    sub = ctx.s.bus.subscribe(STREAM_QUEUE)
    ctx.streams.add(sub)
    return EventSourceResponse(
        _frames(sub, wanted, ctx.streams),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT,
        headers={"X-Accel-Buffering": "no"},
    )


@router.post("/api/approvals/{approval_id}/approve")
async def approve(request: Request, approval_id: int) -> Response:
    return await _act(request, {"cmd": "approve", "id": approval_id})


@router.post("/api/approvals/{approval_id}/deny")
async def deny(request: Request, approval_id: int) -> Response:
    return await _act(request, {"cmd": "deny", "id": approval_id}, DenyBody)


@router.get("/api/approvals/{approval_id}")
async def show_approval(request: Request, approval_id: int) -> Response:
    if not _session(request):
        return _unauthorized()
    return _answer(await _ctx(request).operator({"cmd": "show_approval", "id": approval_id}))


@router.post("/api/questions/{question_id}/answer")
async def answer(request: Request, question_id: int) -> Response:
    return await _act(request, {"cmd": "answer", "id": question_id}, AnswerBody)


@router.post("/api/questions/{question_id}/cancel")
async def cancel_question(request: Request, question_id: int) -> Response:
    return await _act(request, {"cmd": "cancel_question", "id": question_id})


@router.post("/api/send")
async def send(request: Request) -> Response:
    return await _act(request, {"cmd": "send"}, SendBody)


@router.post("/api/spawn")
async def spawn(request: Request) -> Response:
    return await _act(request, {"cmd": "spawn"}, SpawnBody)


@router.post("/api/update")
async def update(request: Request) -> Response:
    return await _act(request, {"cmd": "update"})


@router.post("/api/agents/{name}/page-link")
async def page_link(request: Request, name: str) -> Response:
    """A one-time link to the agent's own page (the dashboard opens it), on the host name
    the operator reached the dashboard by (one it answers to: the Host check passed)."""
    response = await _act(request, {"cmd": "login_link", "name": name})
    if response.status_code != 200:
        return response
    link = json.loads(bytes(response.body))
    return JSONResponse({**link, "detail": on_host(link["detail"], request.headers["host"])})


def on_host(url: str, host: str) -> str:
    """`url` with its host name replaced by `host`'s (a Host header value), port kept."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{_host_name(host)}:{parts.port}").geturl()


def _page_origin(request: Request, name: str) -> str | None:
    """The request's `Origin` when it is `name`'s own page: that agent's web port on a host
    name the dashboard answers to."""
    origin = request.headers.get("origin", "")
    scheme, _, host = origin.partition("://")
    hostname, _, port = host.lower().rpartition(":")
    record = _ctx(request).s.registry.find(name)
    if scheme not in ("http", "https") or record is None or port != str(record.web_port):
        return None
    if not any(h.rpartition(":")[0] == hostname for h in _ctx(request).csrf.hosts()):
        return None
    return origin


def _cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


NOT_THE_PAGE = "only this agent's own page may send to it here"


@router.options("/api/agents/{name}/send")
async def send_preflight(request: Request, name: str) -> Response:
    """CORS preflight of the agent page's send: only that agent's page is let through."""
    origin = _page_origin(request, name)
    if origin is None:
        return _error(403, NOT_THE_PAGE, "forbidden")
    allow = {"Access-Control-Allow-Methods": "POST", "Access-Control-Max-Age": "600"}
    allow["Access-Control-Allow-Headers"] = f"authorization, content-type, {CSRF_HEADER}"
    return Response(status_code=204, headers={**_cors(origin), **allow})


@router.post("/api/agents/{name}/send")
async def send_from_page(request: Request, name: str) -> Response:
    """The operator's message to `name` from that agent's own page: the page's origin is the
    agent's port on a host name of ours, the credential the send token hive-core handed to
    that page (or a session)."""
    origin = _page_origin(request, name)
    if origin is None:
        return _error(403, NOT_THE_PAGE, "forbidden")
    if not _ctx(request).creds.valid_send(bearer(request.headers), name):
        refused: Response = _unauthorized()
        refused.headers.update(_cors(origin))
        return refused
    page = frozenset({origin.partition("://")[2].lower()})
    response = await _act(
        request,
        {"cmd": "send", "to": name},
        PageSendBody,
        csrf_problem(request.headers, page, site="same-site"),
        authorized=True,
    )
    response.headers.update(_cors(origin))
    return response


@router.post("/api/agents/{name}/{action}")
async def agent_action(request: Request, name: str, action: str) -> Response:
    if action not in AGENT_ACTIONS:
        return _error(404, f"no action {action[:40]!r}", "not_found")
    return await _act(request, {**AGENT_ACTIONS[action], "name": name})


@router.get("/api/agents/{name}/log")
async def log(request: Request, name: str, lines: int = 200) -> Response:
    if problem := _agent_problem(name, lines):
        return problem
    return await _read(request, lambda: views.log_tail(_ctx(request).s, name, lines))


@router.get("/api/agents/{name}/log/stream")
async def log_stream(request: Request, name: str, lines: int = 200) -> Response:
    if not _ticket(request):
        return _unauthorized()
    if problem := _agent_problem(name, lines):
        return problem
    ctx = _ctx(request)
    if ctx.log_streams >= MAX_LOG_STREAMS:
        return _error(503, f"{MAX_LOG_STREAMS} log streams are open already", "busy")
    ctx.log_streams += 1  # taken before the tail is read, so no two requests share a place
    follow = views.log_follow(ctx.s, name, lines)
    try:
        first = await anext(follow)
    except HiveError as exc:
        ctx.log_streams -= 1
        return _error(HTTP_STATUS[exc.code], exc.message, exc.code)
    except BaseException:
        ctx.log_streams -= 1
        raise
    return EventSourceResponse(
        _log_frames(ctx, first, follow), ping=PING_SECONDS, send_timeout=SEND_TIMEOUT
    )


@router.get("/api/agents/{name}/config")
async def config(request: Request, name: str) -> Response:
    if problem := _agent_problem(name, 1):
        return problem
    return await _read(request, lambda: views.deployed_config(_ctx(request).s, name))


def build_app(
    s: Services,
    creds: Credentials,
    hosts: Callable[[], frozenset[str]],
    operator: Operator,
    streams: set[Subscription] | None = None,
) -> ASGIApp:
    """The dashboard application. `streams` collects the open event-stream subscriptions,
    so the server can end them when it stops."""
    app = FastAPI(
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        exception_handlers={RequestValidationError: _invalid_parameter},
    )
    app.state.hive = _Context(
        s, creds, Csrf(hosts), operator, streams if streams is not None else set(), Tickets()
    )
    app.include_router(router)
    app.mount("/assets/front", StaticFiles(directory=FRONT_ASSETS), name="front")
    app.mount("/assets", StaticFiles(directory=ASSETS), name="assets")
    return SecurityHeaders(HostCheck(app, hosts))


def _agent_problem(name: str, lines: int) -> JSONResponse | None:
    try:
        validate_agent_name(name)
    except InvalidName as exc:
        return _error(400, str(exc), "invalid_name")
    if not 0 < lines <= views.LOG_LINES_MAX:
        return _error(400, f"lines: 1 to {views.LOG_LINES_MAX}", "invalid_request")
    return None


async def _frames(
    sub: Subscription, kinds: set[str], streams: set[Subscription]
) -> AsyncGenerator[ServerSentEvent, None]:
    """One subscriber's frames as SSE events, until it is cut off (`resync`) or leaves.

    An event's SSE `id` is its `seq`; a `resync` (a control frame, `seq` 0) has no `id`."""
    try:
        async for frame in sub:
            if isinstance(frame.event, Resync):
                yield ServerSentEvent(data=frame.model_dump_json())
            elif not kinds or frame.event.kind in kinds:
                yield ServerSentEvent(data=_encoded(frame), id=str(frame.seq))
    finally:
        sub.close()
        streams.discard(sub)


_ENCODED: dict[int, str] = {}
ENCODED_CACHE = 512


def _encoded(frame: Frame) -> str:
    """An event frame's JSON, made once however many streams send it (frames are immutable
    and an event's `seq` unique in one process; a `resync`, `seq` 0, never comes here)."""
    text = _ENCODED.get(frame.seq)
    if text is None:
        text = frame.model_dump_json()
        if len(_ENCODED) >= ENCODED_CACHE:
            del _ENCODED[next(iter(_ENCODED))]  # the oldest: dicts keep insertion order
        _ENCODED[frame.seq] = text
    return text


async def _log_frames(
    ctx: _Context, first: list[str], rest: AsyncIterator[list[str]]
) -> AsyncIterator[str]:
    """One log stream's batches of lines; its place under MAX_LOG_STREAMS is freed at the end."""
    try:
        yield json.dumps({"lines": first})
        async for lines in rest:
            yield json.dumps({"lines": lines})
    finally:
        ctx.log_streams -= 1
