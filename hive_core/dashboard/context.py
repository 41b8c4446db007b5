"""What every dashboard route shares: the application's state (`Context`), the credential
checks (a session token, a stream's one-use ticket), the error body, and the two shapes of a
route: an action run as the operator through the host socket's own dispatch (`act`), and a
session-guarded read (`read`).

A host response becomes HTTP here (`reply`, `HTTP_STATUS`), so every route answers the
wire's error codes the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from hive_core.bus import Subscription
from hive_core.dashboard import views
from hive_core.dashboard.auth import Credentials
from hive_core.dashboard.guards import Csrf
from hive_core.dashboard.snapshot import Snapshot
from hive_core.dashboard.views import Operator
from hive_core.errors import HiveError
from hive_core.services import Services
from hive_share.models import WireModel, dump
from hive_share.names import InvalidName, validate_agent_name
from hive_share.responses import Error
from hive_share.sessions import Tickets, bearer

HTTP_STATUS: dict[str, int] = {
    "malformed": 400,
    "too_long": 413,
    "unknown_verb": 400,
    "verb_not_allowed": 403,
    "identity_claim": 400,
    "invalid_request": 400,
    "invalid_name": 400,
    "unknown_agent": 404,
    "exists": 409,
    "forbidden": 403,
    "not_found": 404,
    "conflict": 409,
    "port_collision": 409,
    "backend": 502,
    "shutting_down": 503,
    "busy": 429,
    "storage": 507,
    "unreachable": 503,
    "internal": 500,
}


class Body(BaseModel):
    """A route's JSON body: exactly these fields, no coercion."""

    model_config = ConfigDict(extra="forbid", strict=True)


class EmptyBody(Body):
    pass


@dataclass
class Context:
    """The dashboard's state, kept on the application (`app.state.hive`)."""

    s: Services
    creds: Credentials
    csrf: Csrf
    operator: Operator
    streams: set[Subscription]
    tickets: Tickets
    snapshot: Snapshot
    log_streams: int = 0


def context(request: Request) -> Context:
    ctx: Context = request.app.state.hive
    return ctx


def elsewhere(s: Services, name: str) -> bool:
    """Whether `name` is another host's agent (its log and config are read there)."""
    fed = s.federation
    return fed is not None and s.registry.find(name) is None and fed.host_of(name) is not None


def has_session(request: Request) -> bool:
    return context(request).creds.valid_session(bearer(request.headers))


def has_ticket(request: Request) -> bool:
    """An event stream's credential: a one-use ticket from `POST /api/ticket`."""
    return context(request).tickets.take(request.query_params.get("ticket"))


def error(status: int, message: str, code: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": message, "code": code}, status_code=status)


def unauthorized() -> JSONResponse:
    return error(401, "log in with the link `hive-core login-link` prints", "forbidden")


def reply(response: WireModel) -> JSONResponse:
    """A host response as HTTP: an error with its status, anything else `ok` with its
    fields and a `detail`."""
    if isinstance(response, Error):
        return error(HTTP_STATUS.get(response.code, 500), response.error, response.code)
    body = dump(response)
    detail = body.pop("detail", None)
    body.pop("result", None)
    return JSONResponse({**body, "ok": True, "detail": detail or "done"})


async def act(
    request: Request,
    raw: dict[str, Any],
    body: type[Body] = EmptyBody,
    csrf: str | None = None,
    authorized: bool = False,
) -> Response:
    """Check the request, merge its JSON body into `raw`, run it as the operator. `csrf` is
    the request's CSRF problem when the caller checked it another way, `authorized` that
    the caller checked its credential."""
    if not authorized and not has_session(request):
        return unauthorized()
    ctx = context(request)
    if problem := ctx.csrf.problem(request) if csrf is None else csrf:
        return error(403, problem, "forbidden")
    try:
        parsed = body.model_validate_json(await request.body())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        return error(400, f"{where}: {first['msg']}", "invalid_request")
    return reply(await ctx.operator({**raw, **parsed.model_dump()}))


async def read(request: Request, reader: Callable[[], Awaitable[Any]]) -> Response:
    """A session-guarded read whose HiveError becomes its error response."""
    if not has_session(request):
        return unauthorized()
    try:
        return JSONResponse(await reader())
    except HiveError as exc:
        return error(HTTP_STATUS[exc.code], exc.message, exc.code)


async def invalid_parameter(request: Request, exc: RequestValidationError) -> Response:
    """A malformed path or query parameter: 400 and the usual error body."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"][1:]) or "request"
    return error(400, f"{where}: {first['msg']}", "invalid_request")


def agent_problem(name: str, lines: int) -> JSONResponse | None:
    """Why an agent route's name or line count is refused, or None."""
    try:
        validate_agent_name(name)
    except InvalidName as exc:
        return error(400, str(exc), "invalid_name")
    if not 0 < lines <= views.LOG_LINES_MAX:
        return error(400, f"lines: 1 to {views.LOG_LINES_MAX}", "invalid_request")
    return None
