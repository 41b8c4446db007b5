"""Browser assets shared by the dashboard and the agent pages (`assets/`), and the rules
both pages' servers apply to every response. Imports nothing."""

from collections.abc import Mapping
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
"""Served at `/assets/front/` by both pages."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
"""No inline script or style, no eval, nothing from another origin, no framing."""
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


def csrf_problem(headers: Mapping[str, str], hosts: frozenset[str]) -> str:
    """Why a state-changing request may not act ("" when it may): it needs CSRF_HEADER: 1, a
    JSON body, and, where the browser says, an `Origin` among `hosts` (`name:port`, lowercase)
    and `Sec-Fetch-Site: same-origin`. `headers` must look names up case-insensitively."""
    if headers.get(CSRF_HEADER) != "1":
        return f"a state change needs the header {CSRF_HEADER}: 1"
    if headers.get("content-type", "").split(";")[0].strip() != "application/json":
        return "a state change needs a JSON body (Content-Type: application/json)"
    origin = headers.get("origin")
    if origin is not None:
        scheme, _, host = origin.partition("://")
        if scheme not in ("http", "https") or host.lower() not in hosts:
            return f"a request from {origin[:100]!r} may not change anything here"
    site = headers.get("sec-fetch-site")
    if site is not None and site != "same-origin":
        return f"a {site[:20]} request may not change anything here"
    return ""
