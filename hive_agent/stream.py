"""Turning claude's stream-json stdout into live events, and what a turn leaves behind.

Unknown line types become `Raw` events; malformed lines become notes. Neither
stops the pump.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hive_share import live
from hive_share.live import LiveEvent

logger = logging.getLogger(__name__)

KNOWN_QUIET = {"rate_limit_event", "stream_event", "control_response"}
"""Known line types that carry nothing for the operator."""
SPENT = ("input_tokens", "cache_creation_input_tokens", "output_tokens")
"""The usage fields a turn's spend counts (the budgets' and the burn signal's); cache reads
are left out: they cost a tenth and are re-read on every call."""


def _count(value: Any) -> int:
    """A token count from a usage field; anything but a non-negative integer counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(block.get("text", "")) for block in content if isinstance(block, dict))
    return json.dumps(content)


@dataclass
class TurnObserver:
    """Accumulates one claude process's output: events out, facts kept.

    `on_spent`, when set, hears each increase of `spent_tokens` as it is seen (the stuck
    watch's burn signal), long before the `result` line sums the run up."""

    session_id: str | None = None
    model: str | None = None
    result: dict[str, Any] | None = None
    compact_result: str | None = None
    compact_error: str | None = None
    tool_calls: dict[str, int] = field(default_factory=dict)
    context_tokens: int = 0
    mcp_servers: dict[str, str] = field(default_factory=dict)
    malformed_lines: int = 0
    spent_tokens: int = 0
    """Input + cache-creation + output tokens of the assistant messages seen so far."""
    on_spent: Callable[[int], None] | None = field(default=None, repr=False, compare=False)
    on_init: Callable[[], None] | None = field(default=None, repr=False, compare=False)
    """Hears claude's `system/init`: its MCP servers answered and it is about to call the
    model (turn admission frees the turn's start place)."""
    _message_spend: dict[str, int] = field(default_factory=dict, repr=False)
    """Spend per message id: claude prints one `assistant` line per content block, each
    with its message's usage, so a message counts once (its largest figure)."""

    def feed(self, line: bytes) -> list[LiveEvent]:
        """Parse one stdout line into zero or more live events."""
        if not line.strip():
            return []
        try:
            data = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            self.malformed_lines += 1
            logger.warning("malformed stream-json line (%d bytes): %s", len(line), exc)
            preview = line[:200].decode("utf-8", errors="replace")
            return [live.Note(text=f"claude printed a line that is not JSON: {preview}")]
        if not isinstance(data, dict):
            self.malformed_lines += 1
            return [live.Note(text=f"claude printed a JSON {type(data).__name__}, not an object")]
        return self._dispatch(data)

    def _dispatch(self, data: dict[str, Any]) -> list[LiveEvent]:
        kind = data.get("type")
        match kind:
            case "system":
                return self._system(data)
            case "assistant":
                return self._assistant(data)
            case "user":
                return self._user(data)
            case "result":
                self.result = data
                return []
            case "tool_progress":
                return []
            case str() if kind in KNOWN_QUIET:
                return []
            case _:
                logger.info("unknown stream-json line type %r kept as raw", kind)
                return [live.Raw(line_type=str(kind), data=data)]

    def _system(self, data: dict[str, Any]) -> list[LiveEvent]:
        subtype = data.get("subtype")
        if subtype == "init":
            if self.on_init is not None:
                self.on_init()
            self.session_id = data.get("session_id") or self.session_id
            self.model = data.get("model") or self.model
            for server in data.get("mcp_servers") or []:
                if isinstance(server, dict):
                    self.mcp_servers[str(server.get("name"))] = str(server.get("status"))
            failed = [n for n, st in self.mcp_servers.items() if st != "connected"]
            if failed:
                return [live.Note(text=f"MCP servers not connected: {', '.join(failed)}")]
            return []
        if subtype == "status":
            if data.get("status") == "compacting":
                return [live.TurnStateChanged(state="compacting")]
            if "compact_result" in data:
                self.compact_result = data.get("compact_result")
                self.compact_error = data.get("compact_error")
                return [live.TurnStateChanged(state="thinking")]
            return []
        if subtype == "api_retry":
            return [
                live.Note(
                    text=f"API retry {data.get('attempt')}/{data.get('max_retries')}: "
                    f"{data.get('error')} (status {data.get('error_status')})"
                )
            ]
        if subtype == "compact_boundary":
            return [live.Note(text="conversation compacted")]
        return [live.Raw(line_type=f"system/{subtype}", data=data)]

    def _assistant(self, data: dict[str, Any]) -> list[LiveEvent]:
        message = data.get("message") or {}
        events: list[LiveEvent] = []
        usage = message.get("usage") or {}
        if isinstance(usage, dict) and usage and message.get("model") != "<synthetic>":
            self.context_tokens = sum(
                int(usage.get(k) or 0)
                for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
            )
            self._spend(message.get("id"), sum(_count(usage.get(k)) for k in SPENT))
        for block in message.get("content") or []:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                events.append(live.Text(text=str(block.get("text", ""))))
            elif block.get("type") == "tool_use":
                name = str(block.get("name", "?"))
                self.tool_calls[name] = self.tool_calls.get(name, 0) + 1
                tool_input = block.get("input")
                events.append(
                    live.ToolUse(
                        id=str(block.get("id", "")),
                        name=name,
                        input=tool_input if isinstance(tool_input, dict) else {},
                    )
                )
                events.append(live.TurnStateChanged(state="tool"))
        return events

    def _spend(self, message_id: Any, spend: int) -> None:
        """Count a message's spend once, however many lines carry it."""
        if isinstance(message_id, str) and message_id:
            before = self._message_spend.get(message_id, 0)
            self._message_spend[message_id] = max(before, spend)
            spend -= before
        if spend > 0:
            self.spent_tokens += spend
            if self.on_spent is not None:
                self.on_spent(spend)

    def _user(self, data: dict[str, Any]) -> list[LiveEvent]:
        message = data.get("message") or {}
        content = message.get("content")
        events: list[LiveEvent] = []
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    events.append(
                        live.ToolResult(
                            tool_use_id=str(block.get("tool_use_id", "")),
                            content=_text_of(block.get("content")),
                            is_error=bool(block.get("is_error", False)),
                        )
                    )
        if events:
            events.append(live.TurnStateChanged(state="thinking"))
        return events

    def usage(self) -> live.TokenUsage:
        raw = (self.result or {}).get("usage") or {}
        return live.TokenUsage(
            input_tokens=int(raw.get("input_tokens") or 0),
            output_tokens=int(raw.get("output_tokens") or 0),
            cache_creation_input_tokens=int(raw.get("cache_creation_input_tokens") or 0),
            cache_read_input_tokens=int(raw.get("cache_read_input_tokens") or 0),
        )
