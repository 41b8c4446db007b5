"""Browser assets shared by the dashboard and the agent pages (`assets/`), and the rules
both pages' servers apply to every response. Imports nothing."""

from collections.abc import Mapping
from pathlib import Path

ASSETS = Path(__file__).parent / "assets"
"""Served at `/assets/front/` by both pages."""


def host_name(host: str) -> str:
    """The name part of a Host header value (`[::1]:80` → `[::1]`, `a.b:80` → `a.b`)."""
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if ":" in host else host


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


def security_headers(scheme: str, host: str) -> dict[str, str]:
    """SECURITY_HEADERS for a request that reached us as `scheme`://`host` (its Host
    header). A browser ignores Cross-Origin-Opener-Policy from an origin that is not
    potentially trustworthy (plain http beyond loopback) and says so in its console, so it
    is sent only where it works."""
    name = host.rpartition(":")[0] if host.rpartition(":")[2].isdigit() else host
    if scheme == "https" or name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return SECURITY_HEADERS
    return {k: v for k, v in SECURITY_HEADERS.items() if k != "Cross-Origin-Opener-Policy"}


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def allowed_hosts(bind_host: str, names: tuple[str, ...], port: int) -> frozenset[str]:
    """Host header values a page answers to (the DNS-rebinding defence), lowercase:
    loopback names, the configured host names, and the bind address itself unless it is
    the any-address (0.0.0.0 or ::), which no browser sends."""
    accepted = {*LOOPBACK_NAMES, *names}
    if bind_host not in ("0.0.0.0", "::"):
        accepted.add(f"[{bind_host}]" if ":" in bind_host else bind_host)
    return frozenset(f"{name.lower()}:{port}" for name in accepted)


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
