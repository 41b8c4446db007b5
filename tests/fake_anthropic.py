"""A scripted fake of the Anthropic Messages API on 127.0.0.1, for the real `claude` CLI.

Streams SSE with `event:` lines (text, tool_use with input_json_delta, errors on
demand), answers non-streaming requests too, and records every request.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

_ids = itertools.count(1)
WAIT_BOUND = 60.0


@dataclass
class Reply:
    """One scripted answer: content blocks, or an HTTP error."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    stop_reason: str = "end_turn"
    input_tokens: int = 100
    status: int = 200
    error_type: str = ""
    error_message: str = ""
    hold: threading.Event | None = None
    """When set, the answer waits until the test sets this event."""
    delay: float = 0.0
    """Seconds the answer waits before it starts (after `hold`), as a model's thinking would."""


def text(t: str, input_tokens: int = 100) -> Reply:
    return Reply(blocks=[{"type": "text", "text": t}], input_tokens=input_tokens)


def tool_use(name: str, tool_input: dict[str, Any], say: str = "") -> Reply:
    blocks: list[dict[str, Any]] = [{"type": "text", "text": say}] if say else []
    blocks.append(
        {"type": "tool_use", "id": f"toolu_{next(_ids):04d}", "name": name, "input": tool_input}
    )
    return Reply(blocks=blocks, stop_reason="tool_use")


def error(status: int, error_type: str, message: str) -> Reply:
    return Reply(status=status, error_type=error_type, error_message=message)


@dataclass
class Seen:
    """One request the fake received."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def raw(self) -> str:
        return json.dumps(self.body)

    def agent(self) -> str | None:
        """The agent whose role prompt is in this request ("You are **name**")."""
        marker = "You are **"
        text = self.raw
        start = text.find(marker)
        if start < 0:
            return None
        start += len(marker)
        return text[start : text.find("**", start)]

    def last_user_text(self) -> str:
        for message in reversed(self.body.get("messages", [])):
            if message.get("role") != "user":
                continue
            content = message.get("content")
            if isinstance(content, str):
                return content
            texts = [str(b.get("text", "")) for b in content if b.get("type") == "text"]
            if texts:
                return texts[-1]
        return ""

    def last_tool_results(self) -> list[dict[str, Any]]:
        # The CLI may append role:"system" nudges after the results; look past them.
        messages = [m for m in self.body.get("messages", []) if m.get("role") != "system"]
        if not messages or messages[-1].get("role") != "user":
            return []
        content = messages[-1].get("content")
        if not isinstance(content, list):
            return []
        return [b for b in content if b.get("type") == "tool_result"]

    def is_compaction(self) -> bool:
        return self.last_user_text().startswith("CRITICAL: Respond with TEXT ONLY")

    def tool_names(self) -> list[str]:
        return [t.get("name", "") for t in self.body.get("tools", [])]


Script = Callable[[Seen], Reply]


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _usage(reply: Reply) -> dict[str, int]:
    return {
        "input_tokens": reply.input_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 1,
    }


def _delta(index: int, delta: dict[str, Any]) -> bytes:
    return _sse(
        "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    )


def _block_start(index: int, block: dict[str, Any]) -> bytes:
    event = {"type": "content_block_start", "index": index, "content_block": block}
    return _sse("content_block_start", event)


async def _stream(reply: Reply, model: str, msg_id: str) -> AsyncIterator[bytes]:
    start: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": _usage(reply),
    }
    yield _sse("message_start", {"type": "message_start", "message": start})
    for index, block in enumerate(reply.blocks):
        if block["type"] == "text":
            yield _block_start(index, {"type": "text", "text": ""})
            yield _delta(index, {"type": "text_delta", "text": block["text"]})
        else:
            yield _block_start(
                index, {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
            )
            payload = json.dumps(block["input"])
            half = len(payload) // 2
            for part in (payload[:half], payload[half:]):
                yield _delta(index, {"type": "input_json_delta", "partial_json": part})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    stop = {"stop_reason": reply.stop_reason, "stop_sequence": None}
    yield _sse(
        "message_delta", {"type": "message_delta", "delta": stop, "usage": {"output_tokens": 7}}
    )
    yield _sse("message_stop", {"type": "message_stop"})


class FakeAnthropic:
    """The fake API in a background thread; `url` is its base URL."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        """Set when the server stops (on its own loop, made with its first request)."""
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        app = Starlette(routes=[
            Route("/v1/messages", self._messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", self._count, methods=["POST"]),
        ])  # fmt: skip
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> FakeAnthropic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    async def _think(self, seconds: float) -> None:
        """A model's thinking time: `seconds`, cut short when the fake API stops (so its
        shutdown never waits out a scripted delay)."""
        if self._stopping is None:
            self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def wait_for(self, predicate: Callable[[list[Seen]], bool], what: str) -> None:
        """Block until `predicate(seen)` holds; fail after a bound."""
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self.seen), timeout=WAIT_BOUND):
                raise AssertionError(f"fake API: timed out waiting for {what}")

    def requests_of(self, agent: str) -> list[Seen]:
        with self._changed:
            return [s for s in self.seen if s.agent() == agent]

    async def _count(self, request: Request) -> Response:
        return JSONResponse({"input_tokens": 100})

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        seen = Seen(body=body, headers=dict(request.headers))
        reply = self.script(seen)
        with self._changed:
            self.seen.append(seen)
            self._changed.notify_all()
        if reply.hold is not None:
            await asyncio.to_thread(reply.hold.wait, WAIT_BOUND)
        if reply.delay > 0:
            await self._think(reply.delay)
        if reply.status != 200:
            return JSONResponse(
                {"type": "error",
                 "error": {"type": reply.error_type, "message": reply.error_message}},
                status_code=reply.status,
            )  # fmt: skip
        model = str(body.get("model", "claude-test"))
        msg_id = f"msg_{next(_ids):04d}"
        if body.get("stream"):
            return StreamingResponse(_stream(reply, model, msg_id), media_type="text/event-stream")
        return JSONResponse({
            "id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": reply.blocks, "stop_reason": reply.stop_reason,
            "stop_sequence": None, "usage": _usage(reply),
        })  # fmt: skip
