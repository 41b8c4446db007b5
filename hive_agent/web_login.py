"""The agent page's way in: the login page (or how to get a link, and the dashboard on the
host name the page was reached by), the trade of a one-time code from hive-core for a
session token signed with this process's key, the session check, and the one-use tickets
that open an event stream."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from hive_agent.web_context import (
    PageContext,
    act,
    context,
    error,
    has_session,
    now,
    unauthorized,
)
from hive_front import csrf_problem, host_name
from hive_share import pages

router = APIRouter()


class SessionBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    code: str


@router.get("/login")
async def login(request: Request) -> HTMLResponse:
    """The login page: its script trades the link's code (`POST /api/session`), or says
    how to get one."""
    ctx = context(request)
    name = html.escape(ctx.settings.agent_name)
    way_in = (
        f"open it from the dashboard's <strong>page ↗</strong> button, or run <code>hive-core "
        f"login-link {name}</code> on the host and open the link it prints (it works once, "
        "for 10 minutes)."
    )
    needed = [f"this page needs a one-time link: {way_in}"]
    expired = [f"this link was used or has expired. For a new one, {way_in}"]
    if link := dashboard_link(ctx, request.headers["host"]):
        needed.append(link)
        expired.append(link)
    return HTMLResponse(pages.login_page(f"agent {ctx.settings.agent_name}", needed, expired))


def dashboard_link(ctx: PageContext, host: str) -> str:
    """A link to the dashboard on the host name this page was reached by."""
    if ctx.dashboard is None:
        return ""
    scheme, port = ctx.dashboard
    url = html.escape(f"{scheme}://{host_name(host)}:{port}/")
    return f'<a href="{url}">open the dashboard</a>'


@router.post("/api/session")
async def new_session_token(request: Request) -> Response:
    """Trade a one-time login code for a session token (the login page keeps it)."""
    ctx = context(request)
    if problem := csrf_problem(request.headers, ctx.hosts):
        return error(403, problem, "forbidden")
    try:
        code = SessionBody.model_validate_json(await request.body()).code
    except ValidationError:
        return error(400, 'body: {"code": "<login code>"}', "invalid_request")
    token = ctx.creds.redeem(code)
    if token is None:
        name = ctx.settings.agent_name
        message = f"login code unknown, used or expired; run `hive-core login-link {name}`"
        return error(403, message, "forbidden")
    return JSONResponse({"ok": True, "token": token})


@router.get("/api/session")
async def check_session(request: Request) -> Response:
    """Whether the request's token is a live session (the login page asks)."""
    return JSONResponse({"ok": True}) if has_session(request) else unauthorized(request)


@router.post("/api/ticket")
async def ticket(request: Request) -> Response:
    """A one-use ticket that opens one event stream within 30 seconds."""
    return await act(request, lambda _: now(context(request).tickets.issue()), key="ticket")
