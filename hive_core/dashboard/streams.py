"""The dashboard's Server-Sent Event streams: the event bus (`/dashboard/stream`) and an
agent's harness log (`/api/agents/{name}/log/stream`), each opened by a one-use ticket.

One slow reader never slows anyone: each event stream has its own bounded queue and is cut
off with `resync` when it falls behind, a frame that cannot reach its client in time ends
its stream, and both kinds of stream are capped (apart, so log streams never take an event
stream's place). An event frame's JSON is made once however many streams send it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator

from fastapi import APIRouter, Request, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from hive_core.bus import Subscription
from hive_core.dashboard import views
from hive_core.dashboard.context import (
    HTTP_STATUS,
    Context,
    agent_problem,
    context,
    elsewhere,
    error,
    has_ticket,
    reply,
    unauthorized,
)
from hive_core.errors import HiveError
from hive_share.events import DASHBOARD_EVENT_KINDS, Frame, Resync
from hive_share.responses import LogLines

STREAM_QUEUE = 256
"""Frames one event-stream subscriber may lag behind before it is cut off with `resync`."""
MAX_STREAMS = 128
"""Event streams open at once."""
MAX_LOG_STREAMS = 16
"""Log streams open at once, apart from the event streams: each one reads its log (on the
nixos backend, a `journalctl`) twice a second."""
SEND_TIMEOUT = 5.0
"""Seconds one frame may take to reach a stream's client before the stream is dropped."""
PING_SECONDS = 15
ENCODED_CACHE = 512
"""Event frames whose JSON is kept for the next stream that sends them."""

router = APIRouter()


@router.get("/dashboard/stream")
async def stream(request: Request, kinds: str = "") -> Response:
    if not has_ticket(request):
        return unauthorized()
    ctx = context(request)
    wanted = {k for k in kinds.split(",") if k}
    if unknown := wanted - DASHBOARD_EVENT_KINDS:
        return error(400, f"kinds: unknown {sorted(unknown)[:5]}", "invalid_request")
    if len(ctx.streams) >= MAX_STREAMS:
        return error(503, f"{MAX_STREAMS} event streams are open already", "busy")
    sub = ctx.s.bus.subscribe(STREAM_QUEUE, kinds=wanted or None)
    ctx.streams.add(sub)
    return EventSourceResponse(
        event_frames(sub, ctx.streams),
        ping=PING_SECONDS,
        send_timeout=SEND_TIMEOUT,
        headers={"X-Accel-Buffering": "no"},
    )


@router.get("/api/agents/{name}/log/stream")
async def log_stream(request: Request, name: str, lines: int = 200) -> Response:
    if not has_ticket(request):
        return unauthorized()
    if problem := agent_problem(name, lines):
        return problem
    ctx = context(request)
    if ctx.log_streams >= MAX_LOG_STREAMS:
        return error(503, f"{MAX_LOG_STREAMS} log streams are open already", "busy")
    ctx.log_streams += 1  # taken before the tail is read, so no two requests share a place
    if elsewhere(ctx.s, name):  # read on its host
        tail = await ctx.operator({"cmd": "harness_log", "name": name, "lines": lines})
        if not isinstance(tail, LogLines):
            ctx.log_streams -= 1
            return reply(tail)
        follow = views.remote_log_follow(ctx.operator, name, tail)
    else:
        follow = views.log_follow(ctx.s, name, lines)
    try:
        first = await anext(follow)
    except HiveError as exc:
        ctx.log_streams -= 1
        return error(HTTP_STATUS[exc.code], exc.message, exc.code)
    except BaseException:
        ctx.log_streams -= 1
        raise
    return EventSourceResponse(
        log_frames(ctx, first, follow), ping=PING_SECONDS, send_timeout=SEND_TIMEOUT
    )


async def event_frames(
    sub: Subscription, streams: set[Subscription]
) -> AsyncGenerator[ServerSentEvent, None]:
    """One subscriber's frames as SSE events, until it is cut off (`resync`) or leaves.

    An event's SSE `id` is its `seq`; a `resync` (a control frame, `seq` 0) has no `id`."""
    try:
        async for frame in sub:
            if isinstance(frame.event, Resync):
                yield ServerSentEvent(data=frame.model_dump_json())
            else:
                yield ServerSentEvent(data=encoded(frame), id=str(frame.seq))
    finally:
        sub.close()
        streams.discard(sub)


_ENCODED: dict[int, str] = {}


def encoded(frame: Frame) -> str:
    """An event frame's JSON, made once however many streams send it (frames are immutable
    and an event's `seq` unique in one process; a `resync`, `seq` 0, never comes here)."""
    text = _ENCODED.get(frame.seq)
    if text is None:
        text = frame.model_dump_json()
        if len(_ENCODED) >= ENCODED_CACHE:
            del _ENCODED[next(iter(_ENCODED))]  # the oldest: dicts keep insertion order
        _ENCODED[frame.seq] = text
    return text


async def log_frames(
    ctx: Context, first: list[str], rest: AsyncIterator[list[str]]
) -> AsyncIterator[str]:
    """One log stream's batches of lines; its place under MAX_LOG_STREAMS is freed at the end."""
    try:
        yield json.dumps({"lines": first})
        async for lines in rest:
            yield json.dumps({"lines": lines})
    finally:
        ctx.log_streams -= 1
