"""The dashboard's page, its reads (the snapshot, the message flow's pages, an approval,
an agent's log and deployed config) and its actions.

Every action is a host-socket request run as the operator through the host socket's own
dispatch (`context.act`), so the dashboard and the CLI run the same code with the same
checks; every read needs a session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse
from pydantic import Field

from hive_core.dashboard import views
from hive_core.dashboard.context import (
    HTTP_STATUS,
    Body,
    act,
    agent_problem,
    context,
    elsewhere,
    error,
    has_session,
    read,
    reply,
    unauthorized,
)
from hive_core.errors import HiveError
from hive_share.framing import INT64_MAX

ASSETS = Path(__file__).parent / "assets"

AGENT_ACTIONS: dict[str, dict[str, Any]] = {
    "start": {"cmd": "start"},
    "stop": {"cmd": "stop"},
    "restart": {"cmd": "restart"},
    "kill": {"cmd": "kill"},
    "rebuild": {"cmd": "rebuild"},
    "destroy": {"cmd": "destroy"},
    "purge": {"cmd": "destroy", "purge": True},
    "new-session": {"cmd": "relay", "request": {"cmd": "new_session"}},
    "cancel": {"cmd": "relay", "request": {"cmd": "cancel"}},
}
"""`POST /api/agents/{name}/{action}`: the host request each action is."""


class DenyBody(Body):
    reason: str = Field(default="", max_length=2000)


class AnswerBody(Body):
    answer: str


class SendBody(Body):
    to: str
    body: str


class SpawnBody(Body):
    name: str


router = APIRouter()
"""Its `/api/agents/{name}/{action}` takes any action name: routes under an agent's path
that are not actions go in before it."""


@router.get("/healthz")
async def healthz() -> dict[str, bool]:
    return {"ok": True}


@router.get("/")
async def page() -> Response:
    """The page itself, which holds no data: its script goes to /login without a session."""
    return FileResponse(ASSETS / "index.html")


@router.get("/api/state")
async def state(request: Request) -> Response:
    """The snapshot, kept current by the bus (snapshot.py): a fetch does little work."""
    if not has_session(request):
        return unauthorized()
    try:
        body = await context(request).snapshot.body()
    except HiveError as exc:
        return error(HTTP_STATUS[exc.code], exc.message, exc.code)
    return Response(body, media_type="application/json")


@router.get("/dashboard/history")
async def history(
    request: Request, before: int | None = None, after: int | None = None, limit: int = 100
) -> Response:
    if before is not None and not 0 < before <= INT64_MAX:
        return error(400, f"before: a message id from 1 to {INT64_MAX}", "invalid_request")
    if after is not None and not 0 <= after <= INT64_MAX:
        return error(400, f"after: a message id from 0 to {INT64_MAX}", "invalid_request")
    if before is not None and after is not None:
        return error(400, "after: not with before", "invalid_request")
    if not 0 < limit <= views.FLOW_PAGE:
        return error(400, f"limit: 1 to {views.FLOW_PAGE}", "invalid_request")
    s = context(request).s
    return await read(request, lambda: views.history(s, before, after, limit))


def _item(cmd: str, item_id: int, host: str | None) -> dict[str, Any]:
    """The request deciding an approval or question; `?host=` names the host holding it
    when it is another host's (the snapshot's `host` field)."""
    return {"cmd": cmd, "id": item_id} | ({} if host is None else {"host": host})


@router.post("/api/approvals/{approval_id}/approve")
async def approve(request: Request, approval_id: int, host: str | None = None) -> Response:
    return await act(request, _item("approve", approval_id, host))


@router.post("/api/approvals/{approval_id}/deny")
async def deny(request: Request, approval_id: int, host: str | None = None) -> Response:
    return await act(request, _item("deny", approval_id, host), DenyBody)


@router.get("/api/approvals/{approval_id}")
async def show_approval(request: Request, approval_id: int, host: str | None = None) -> Response:
    if not has_session(request):
        return unauthorized()
    return reply(await context(request).operator(_item("show_approval", approval_id, host)))


@router.post("/api/questions/{question_id}/answer")
async def answer(request: Request, question_id: int, host: str | None = None) -> Response:
    return await act(request, _item("answer", question_id, host), AnswerBody)


@router.post("/api/questions/{question_id}/cancel")
async def cancel_question(request: Request, question_id: int, host: str | None = None) -> Response:
    return await act(request, _item("cancel_question", question_id, host))


@router.post("/api/send")
async def send(request: Request) -> Response:
    return await act(request, {"cmd": "send"}, SendBody)


@router.post("/api/spawn")
async def spawn(request: Request) -> Response:
    return await act(request, {"cmd": "spawn"}, SpawnBody)


@router.post("/api/update")
async def update(request: Request) -> Response:
    return await act(request, {"cmd": "update"})


@router.post("/api/agents/{name}/{action}")
async def agent_action(request: Request, name: str, action: str) -> Response:
    if action not in AGENT_ACTIONS:
        return error(404, f"no action {action[:40]!r}", "not_found")
    return await act(request, {**AGENT_ACTIONS[action], "name": name})


@router.get("/api/agents/{name}/log")
async def log(request: Request, name: str, lines: int = 200) -> Response:
    if problem := agent_problem(name, lines):
        return problem
    ctx = context(request)
    if has_session(request) and elsewhere(ctx.s, name):  # read on its host
        return reply(await ctx.operator({"cmd": "harness_log", "name": name, "lines": lines}))
    return await read(request, lambda: views.log_tail(ctx.s, name, lines))


@router.get("/api/agents/{name}/config")
async def config(request: Request, name: str) -> Response:
    if problem := agent_problem(name, 1):
        return problem
    ctx = context(request)
    if has_session(request) and elsewhere(ctx.s, name):  # read on its host
        return reply(await ctx.operator({"cmd": "deployed_config", "name": name}))
    return await read(request, lambda: views.deployed_config(ctx.s, name))
