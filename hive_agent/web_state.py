"""The agent page itself and its cold load (`/api/state`): the snapshot of the agent, its
harness's turn state, model, tokens and last turn, its inbox, the login session, and the
send token the page's message box posts to the dashboard with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, JSONResponse

from hive_agent import __version__
from hive_agent.web_context import PageContext, context, has_session, unauthorized

ASSETS = Path(__file__).parent / "web_assets"
MODEL_CHOICES = ["opus", "sonnet", "haiku"]
CONTEXT_WINDOW = 200_000
"""Tokens in the model's context window: what the context badge is a fraction of."""
INBOX_MESSAGES = 50
"""Received messages in the snapshot's inbox, newest last."""
INBOX_EVENTS = 50

router = APIRouter()


@router.get("/")
async def page() -> Response:
    """The page itself, which holds no data: its script goes to /login without a session."""
    return FileResponse(ASSETS / "index.html")


@router.get("/api/state")
async def state(request: Request) -> Response:
    if not has_session(request):
        return unauthorized(request)
    return JSONResponse(await snapshot(context(request)))


async def snapshot(ctx: PageContext) -> dict[str, Any]:
    harness, settings = ctx.harness, ctx.settings
    await harness.probe_login()  # the login panel needs to know before the first turn
    seq = await ctx.history.last_seq()
    usage = await ctx.history.latest("token_usage_changed")
    ended = await ctx.history.latest("turn_ended")
    started = await ctx.history.latest("turn_started")
    status = await anyio.to_thread.run_sync(harness.status_text)
    model = harness.current_model()
    return {
        "seq": seq,
        "agent": settings.agent_name,
        "role": settings.role,
        "model": model,
        "models": MODEL_CHOICES if model in MODEL_CHOICES else [*MODEL_CHOICES, model],
        "model_source": harness.model_source(),
        "status": status,
        "turn_state": harness.state,
        "stuck": harness.watch.shown(),
        "turns_run": harness.turns_run,
        "login": harness.login,
        "context_tokens": usage["context_tokens"] if usage else 0,
        "context_window": CONTEXT_WINDOW,
        "usage": usage["usage"] if usage else {},
        "last_turn": {
            "result": ended["result"], "detail": ended["detail"],
            "duration_ms": ended["duration_ms"],
            "model": started["model"] if started else model, "ended_at": None,
        } if ended else None,
        "inbox": [
            m for event in await ctx.history.latest_all("messages_received", INBOX_EVENTS)
            for m in event["messages"]
        ][-INBOX_MESSAGES:],
        "login_session": (await ctx.login.status(0, 0)).model_dump(
            mode="json", exclude={"ok", "result"}
        ),
        "dashboard_url": settings.dashboard_url,
        "send_token": ctx.send_token,
        "version": __version__,
    }  # fmt: skip
