"""What the dashboard does for an agent's own page: its one-time link, on the host name the
operator reached the dashboard by, and the one route another origin may call: that page's
message box sending the operator's message to its agent.

The send answers CORS only for that agent's page (its web port on a host name the dashboard
answers to), and takes that agent's send token (or a session), `same-site` requests only:
the harness that holds the token can do no more with it than the page's box does.
"""

from __future__ import annotations

import json
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from hive_core.dashboard.context import Body, act, context, elsewhere, error, unauthorized
from hive_front import CSRF_HEADER, csrf_problem, host_name
from hive_share.sessions import bearer

NOT_THE_PAGE = "only this agent's own page may send to it here"


class PageSendBody(Body):
    body: str


router = APIRouter()


@router.post("/api/agents/{name}/page-link")
async def page_link(request: Request, name: str) -> Response:
    """A one-time link to the agent's own page (the dashboard opens it), on the host name
    the operator reached the dashboard by (one it answers to: the Host check passed)."""
    response = await act(request, {"cmd": "login_link", "name": name})
    if response.status_code != 200 or elsewhere(context(request).s, name):
        return response  # another host's agent: a link on its host's address, made there
    link = json.loads(bytes(response.body))
    return JSONResponse({**link, "detail": on_host(link["detail"], request.headers["host"])})


def on_host(url: str, host: str) -> str:
    """`url` with its host name replaced by `host`'s (a Host header value), port kept."""
    parts = urlsplit(url)
    return parts._replace(netloc=f"{host_name(host)}:{parts.port}").geturl()


def page_origin(request: Request, name: str) -> str | None:
    """The request's `Origin` when it is `name`'s own page: that agent's web port on a host
    name the dashboard answers to."""
    origin = request.headers.get("origin", "")
    scheme, _, host = origin.partition("://")
    hostname, _, port = host.lower().rpartition(":")
    record = context(request).s.registry.find(name)
    if scheme not in ("http", "https") or record is None or port != str(record.web_port):
        return None
    if not any(h.rpartition(":")[0] == hostname for h in context(request).csrf.hosts()):
        return None
    return origin


def cors(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}


@router.options("/api/agents/{name}/send")
async def send_preflight(request: Request, name: str) -> Response:
    """CORS preflight of the agent page's send: only that agent's page is let through."""
    origin = page_origin(request, name)
    if origin is None:
        return error(403, NOT_THE_PAGE, "forbidden")
    allow = {"Access-Control-Allow-Methods": "POST", "Access-Control-Max-Age": "600"}
    allow["Access-Control-Allow-Headers"] = f"authorization, content-type, {CSRF_HEADER}"
    return Response(status_code=204, headers={**cors(origin), **allow})


@router.post("/api/agents/{name}/send")
async def send_from_page(request: Request, name: str) -> Response:
    """The operator's message to `name` from that agent's own page: the page's origin is the
    agent's port on a host name of ours, the credential the send token hive-core handed to
    that page (or a session)."""
    origin = page_origin(request, name)
    if origin is None:
        return error(403, NOT_THE_PAGE, "forbidden")
    if not context(request).creds.valid_send(bearer(request.headers), name):
        refused: Response = unauthorized()
        refused.headers.update(cors(origin))
        return refused
    page = frozenset({origin.partition("://")[2].lower()})
    response = await act(
        request,
        {"cmd": "send", "to": name},
        PageSendBody,
        csrf_problem(request.headers, page, site="same-site"),
        authorized=True,
    )
    response.headers.update(cors(origin))
    return response
