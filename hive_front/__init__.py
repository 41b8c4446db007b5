"""Browser assets shared by the dashboard and the agent pages (`assets/`), and the rules
both pages' servers apply to every response. Imports nothing."""

from collections.abc import Mapping
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
"""Served at `/assets/front/` by both pages."""


def csp(connect: str = "") -> str:
    """No inline script or style, no eval, no framing, and nothing from another origin but
    `connect` (space-separated origins the page may fetch from: an agent page's dashboard)."""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'{' ' + connect if connect else ''}; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    )


CSP = csp()
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}
"""On every response of both pages, errors included; no-referrer keeps a login code out of
Referer."""
CSRF_HEADER = "x-hive-request"
"""Every state change must carry it (with the value 1) and a JSON body."""


def csrf_problem(
    headers: Mapping[str, str], hosts: frozenset[str], site: str = "same-origin"
) -> str:
    """Why a state-changing request may not act ("" when it may): it needs CSRF_HEADER: 1, a
    JSON body, and, where the browser says, an `Origin` among `hosts` (`name:port`, lowercase)
    and `Sec-Fetch-Site: <site>` (`same-site` for the one route an agent page posts to on the
    dashboard). `headers` must look names up case-insensitively."""
    if headers.get(CSRF_HEADER) != "1":
        return f"a state change needs the header {CSRF_HEADER}: 1"
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return "a state change needs a JSON body (Content-Type: application/json)"
    origin = headers.get("origin")
    if origin is not None:
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or host.lower() not in hosts:
            return f"a request from {origin[:100]!r} may not change anything here"
    fetched = headers.get("sec-fetch-site")
    if fetched is not None and fetched != site:
        return f"a {fetched[:20]} request may not change anything here"
    return ""
