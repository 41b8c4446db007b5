"""Errors as a browser sees them: both web surfaces (the dashboard, an agent's page) answer
a browser's navigation with a small HTML page that says what to do, and a script's request
with JSON. Standard library only."""

from __future__ import annotations

import html
from collections.abc import Collection, Iterable


def prefers_html(accept: str) -> bool:
    """Whether an Accept header asks for HTML before JSON: a browser's navigation does
    (`text/html,…,*/*;q=0.8`), a script's fetch (`*/*`) or an EventSource does not."""
    quality: dict[str, float] = {}
    for part in accept.lower().split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[kind] = max(q, quality.get(kind, 0.0))
    html_q = quality.get("text/html", 0.0)
    return html_q > 0 and html_q >= quality.get("application/json", 0.0)


def is_navigation(
    method: str,
    path: str,
    headers: Iterable[tuple[bytes, bytes]],
    pages: Collection[str],
    api: tuple[str, ...],
) -> bool:
    """A GET of one of the `pages`, or of anything outside the `api` prefixes whose Accept
    header prefers HTML (the raw ASGI headers)."""
    if method not in ("GET", "HEAD") or path.startswith(api):
        return False
    if path in pages:
        return True
    accept = b", ".join(v for k, v in headers if k == b"accept")
    return prefers_html(accept.decode("latin-1"))


def error_page(title: str, paragraphs: list[str], style: bool = True) -> str:
    """A small error page; every paragraph is markup the caller built with `html.escape`d
    values. No inline script or style (the Content-Security-Policy forbids both); `style`
    links the shared stylesheet (not on a wrong host: it would be refused too)."""
    sheet = '<link rel="stylesheet" href="/assets/front/base.css">\n' if style else ""
    body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>hyperhive · {html.escape(title)}</title>\n{sheet}</head>\n<body>\n"
        f'<main class="login">\n<h1>{html.escape(title)}</h1>\n{body}</main>\n</body>\n</html>\n'
    )


def login_page(title: str, needed: list[str], expired: list[str]) -> str:
    """Both pages' login page: its script (`/assets/front/login.js`) trades the link's code
    for a session token and shows `needed` (no code, no session) or `expired` (a code that
    was used or has expired). Paragraphs are markup, as for `error_page`."""

    def block(id_: str, paragraphs: list[str]) -> str:
        body = "".join(f"<p>{p}</p>\n" for p in paragraphs)
        return f'<div id="{id_}" hidden>\n{body}</div>\n'

    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>hyperhive · {html.escape(title)} · log in</title>\n"
        '<link rel="stylesheet" href="/assets/front/base.css">\n'
        '<script type="module" src="/assets/front/login.js"></script>\n'
        f'</head>\n<body>\n<main class="login">\n<h1>{html.escape(title)}</h1>\n'
        + block("login-working", ["logging in…"])
        + block("login-needed", needed)
        + block("login-expired", expired)
        + block("login-failed", ["the server did not answer: reload this page to try again."])
        + "<noscript><p>this page needs JavaScript.</p></noscript>\n"
        "</main>\n</body>\n</html>\n"
    )
