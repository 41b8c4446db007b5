"""The agent page's turn log: the stored events below a `seq` (`/events/history`) and the
live ones as Server-Sent Events (`/events/stream`, opened by a one-use ticket, at most
`MAX_STREAMS` at once); a `resync` frame ends every stream when the harness stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from hive_agent.web_context import (
    PageContext,
    context,
    error,
    has_session,
    has_ticket,
    unauthorized,
)
from hive_share.framing import INT64_MAX

HISTORY_PAGE = 200
HISTORY_MAX = 1000
"""Events one `/events/history` page may hold."""
MAX_STREAMS = 8
STREAM_QUEUE = 1024
PING_SECONDS = 15
SEND_TIMEOUT = 5.0

router = APIRouter()


@router.get("/events/history")
async def history(
    request: Request, before: int | None = None, limit: int = HISTORY_PAGE
) -> Response:
    if not has_session(request):
        return unauthorized(request)
    if before is not None and not 0 < before <= INT64_MAX:
        return error(400, f"before: a seq from 1 to {INT64_MAX}", "invalid_request")
    if not 0 < limit <= HISTORY_MAX:
        return error(400, f"limit: 1 to {HISTORY_MAX}", "invalid_request")
    rows, more = await context(request).history.before(before, limit)
    return JSONResponse({"events": [row_json(r) for r in rows], "more": more})


@router.get("/events/stream")
async def stream(request: Request) -> Response:
    if not has_ticket(request):
        return unauthorized(request)
    ctx = context(request)
    if len(ctx.streams) >= MAX_STREAMS:
        return error(503, f"{MAX_STREAMS} event streams are open already", "busy")
    queue = ctx.history.subscribe(STREAM_QUEUE)
    ctx.streams.add(queue)
    return EventSourceResponse(frames(ctx, queue), ping=PING_SECONDS, send_timeout=SEND_TIMEOUT)


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A stored event row with its event as JSON."""
    return {**row, "event": row["event"].model_dump(mode="json")}


async def frames(ctx: PageContext, queue: asyncio.Queue[dict[str, Any]]) -> AsyncIterator[Any]:
    """One stream's events as SSE events (the `id` is the event's `seq`), until the harness
    stops (a `resync`, `seq` 0, no `id`) or the client leaves."""
    try:
        while True:
            row = await queue.get()
            if row.get("event") is None:  # the harness is stopping
                yield ServerSentEvent(data=json.dumps({"seq": 0, "event": {"kind": "resync"}}))
                return
            yield ServerSentEvent(data=json.dumps(row_json(row)), id=str(row["seq"]))
    finally:
        ctx.history.unsubscribe(queue)
        ctx.streams.discard(queue)


def end_streams(ctx: PageContext) -> None:
    """Tell every open stream the harness is stopping."""
    for queue in list(ctx.streams):
        with contextlib.suppress(asyncio.QueueFull):
            queue.put_nowait({"seq": 0, "event": None})
