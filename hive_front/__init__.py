"""Browser assets shared by the dashboard and the agent pages (`assets/`), and the rules
both pages' servers apply to every response. Imports nothing."""

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
