"""What stands around every response of the agent's own page: the Host check (the dashboard's
host names with the page's port; a 421 page naming them for a browser's navigation, JSON
otherwise) and the security headers, whose Content-Security-Policy lets the page fetch from
the dashboard on the host it was loaded from (its message box's send)."""

from __future__ import annotations

import html

from fastapi import Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hive_front import csp, security_headers
from hive_share import pages

API_PATHS = ("/api/", "/events/", "/login/")
"""Routes a script reads: their errors stay JSON, whatever the request accepts."""
PAGE_PATHS = frozenset({"/", "/login"})
"""Routes a browser opens: their errors are pages."""


def navigation(scope: Scope) -> bool:
    """A page route, or a GET of anything but an API route that prefers HTML."""
    return pages.is_navigation(
        str(scope.get("method", "")), str(scope.get("path", "")), scope["headers"],
        PAGE_PATHS, API_PATHS,
    )  # fmt: skip


def error_page(status: int, title: str, paragraphs: list[str], style: bool = True) -> HTMLResponse:
    return HTMLResponse(pages.error_page(title, paragraphs, style), status_code=status)


def wrong_host_page(got: list[str], hosts: frozenset[str]) -> HTMLResponse:
    """421 for a browser: the host it used, the names the page answers to, and the setting
    that adds one (agent pages answer the dashboard's host names)."""
    shown = html.escape(got[0][:200]) if len(got) == 1 else f"{len(got)} Host headers"
    names = ", ".join(f"<code>{html.escape(h)}</code>" for h in sorted(hosts))
    return error_page(
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


class Guard:
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
            if navigation(scope):
                response = wrong_host_page(hosts, self.hosts)
            await response(scope, receive, secured)
            return
        await self.app(scope, receive, secured)
