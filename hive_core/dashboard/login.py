"""The dashboard's way in: the login page, the trade of a one-time login code for a session
token, the session check, and the one-use tickets that open an event stream.

No cookies (hive_share/sessions.py): the login page's script keeps the token in this
origin's own storage and sends it as `Authorization: Bearer`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import Field, ValidationError

from hive_core.dashboard.context import Body, context, error, has_session, unauthorized
from hive_share import pages

LOGIN_NEEDED = [
    "this browser is not logged in here.",
    "run <code>hive-core login-link</code> on the host and open the link it prints "
    "(it works once, for 10 minutes).",
]
LOGIN_EXPIRED = [
    "this login link was used or has expired: each link works once, for 10 minutes.",
    "for a new one, run <code>hive-core login-link</code> on the host and open the link it prints.",
]


class LoginBody(Body):
    code: str = Field(max_length=200)


router = APIRouter()


@router.get("/login")
async def login() -> Response:
    """The login page: its script trades the link's code (`POST /api/session`)."""
    return HTMLResponse(pages.login_page("hyperhive", LOGIN_NEEDED, LOGIN_EXPIRED))


@router.post("/api/session")
async def new_session(request: Request) -> Response:
    """Trade a one-time login code for a session token (the login page keeps it)."""
    if problem := context(request).csrf.problem(request):
        return error(403, problem, "forbidden")
    try:
        code = LoginBody.model_validate_json(await request.body()).code
    except ValidationError:
        return error(400, 'body: {"code": "<login code>"}', "invalid_request")
    token = context(request).creds.redeem(code)
    if token is None:
        message = "login code unknown, used or expired; run `hive-core login-link`"
        return error(403, message, "forbidden")
    return JSONResponse({"ok": True, "token": token})


@router.get("/api/session")
async def check_session(request: Request) -> Response:
    """Whether the request's token is a live session (the login page asks)."""
    return JSONResponse({"ok": True}) if has_session(request) else unauthorized()


@router.post("/api/ticket")
async def ticket(request: Request) -> Response:
    """A one-use ticket that opens one event stream within 30 seconds."""
    if not has_session(request):
        return unauthorized()
    if problem := context(request).csrf.problem(request):
        return error(403, problem, "forbidden")
    return JSONResponse({"ok": True, "ticket": context(request).tickets.issue()})
