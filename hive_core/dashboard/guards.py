"""What stands around every dashboard response: the Host check (421, a page that says what to
do for a browser's navigation), the security headers, and the CSRF check of a state change.

The Host check and the headers are ASGI layers, so they wrap the whole application outside
FastAPI's own error handling and no response escapes them.
"""

from __future__ import annotations

import html
from collections.abc import Callable

from fastapi import Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_front import csrf_problem, host_name, security_headers
from hive_share import pages

NO_STORE = "no-store"
ASSET_CACHE = "no-cache"
"""Assets may be cached but are revalidated (ETag) on each load: an upgrade shows at once."""
API_PATHS = ("/api/", "/dashboard/", "/events/")
"""Routes a script reads: their errors stay JSON, whatever the request accepts."""
PAGE_PATHS = frozenset({"/", "/login"})
"""Routes a browser opens: their errors are pages."""


def browser_navigation(scope: Scope) -> bool:
    """A page route, or a GET of anything but an API route that prefers HTML: its error is
    a page that says what to do; an API route's stays JSON."""
    return pages.is_navigation(
        str(scope.get("method", "")), str(scope.get("path", "")), scope["headers"],
        PAGE_PATHS, API_PATHS,
    )  # fmt: skip


def error_page(status: int, title: str, paragraphs: list[str], style: bool = True) -> HTMLResponse:
    return HTMLResponse(pages.error_page(title, paragraphs, style), status_code=status)


def wrong_host_page(got: list[str], hosts: frozenset[str]) -> HTMLResponse:
    """421 for a browser: the host it used, and how to make the dashboard answer to it."""
    port = next(iter(hosts)).rpartition(":")[2] if hosts else ""
    if len(got) != 1:
        why = f"this request carried {len(got)} Host headers; a browser sends exactly one."
        return error_page(421, "wrong host", [html.escape(why)], style=False)
    shown = html.escape(got[0][:200])
    name = host_name(got[0])[:200]
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


class Csrf:
    """Whether a state-changing request came from the page itself."""

    def __init__(self, hosts: Callable[[], frozenset[str]]) -> None:
        self.hosts = hosts

    def problem(self, request: Request) -> str:
        return csrf_problem(request.headers, self.hosts())
