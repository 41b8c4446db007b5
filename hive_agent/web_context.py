"""What every route of the agent's own page shares: the page's state (`PageContext`: the
harness it shows, its credentials, the host names it answers, where the dashboard is), the
credential checks (a session token, a stream's one-use ticket), the error body, and the
shape of a state change (`act`: a session, the CSRF check, a strict JSON body)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from hive_front import allowed_hosts, csrf_problem
from hive_share.sessions import Credentials, Tickets, bearer

if TYPE_CHECKING:
    from hive_agent.history import EventHistory
    from hive_agent.login_session import LoginSession
    from hive_agent.settings import HarnessSettings
    from hive_agent.turn import Harness


class PageContext:
    """The page's state, kept on the application (`app.state.page`)."""

    def __init__(
        self,
        settings: HarnessSettings,
        harness: Harness,
        history: EventHistory,
        login: LoginSession,
    ) -> None:
        self.settings = settings
        self.harness = harness
        self.history = history
        self.login = login
        self.creds = Credentials(secrets.token_bytes(32))
        self.tickets = Tickets()
        self.send_token = ""
        """The latest send token hive-core handed over with a login code."""
        self.hosts = allowed_hosts(settings.web_host, settings.web_allowed_hosts, settings.web_port)
        self.dashboard = dashboard_at(settings.dashboard_url)
        self.streams: set[asyncio.Queue[dict[str, Any]]] = set()


def dashboard_at(url: str | None) -> tuple[str, int] | None:
    """The dashboard's scheme and port: the page sends the operator's messages there."""
    if not url:
        return None
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    return (parts.scheme, port) if parts.scheme in ("http", "https") else None


class EmptyBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def context(request: Request) -> PageContext:
    ctx: PageContext = request.app.state.page
    return ctx


def has_session(request: Request) -> bool:
    return context(request).creds.valid_session(bearer(request.headers))


def has_ticket(request: Request) -> bool:
    """An event stream's credential: a one-use ticket from `POST /api/ticket`."""
    return context(request).tickets.take(request.query_params.get("ticket"))


def error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, "code": code}, status_code=status)


def unauthorized(request: Request) -> JSONResponse:
    name = context(request).settings.agent_name
    return error(401, f"open this page with `hive-core login-link {name}`", "forbidden")


async def invalid_parameter(request: Request, exc: RequestValidationError) -> Response:
    """A malformed path or query parameter: 400 and the usual error body."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or "request"
    return error(400, f"{where}: {first['msg']}", "invalid_request")


async def act(
    request: Request,
    run: Callable[[Any], Awaitable[str]],
    body: type[BaseModel] = EmptyBody,
    key: str = "detail",
) -> Response:
    """Check the request and run it; its answer goes under `key`."""
    if not has_session(request):
        return unauthorized(request)
    if problem := csrf_problem(request.headers, context(request).hosts):
        return error(403, problem, "forbidden")
    try:
        parsed = body.model_validate_json(await request.body())
        detail = await run(parsed)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return error(400, f"{where}: {first['msg']}", "invalid_request")
    except ValueError as exc:  # a bad model, or a login that is not running
        return error(400, str(exc), "invalid_request")
    return JSONResponse({"ok": True, key: detail})


async def now(value: str) -> str:
    """`value` as an awaitable, for `act` around a control that answers at once."""
    return value
