"""Live events of one agent's harness, tagged by `kind`: the per-agent page and history."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, TypeAdapter

from hive_share.base import WireModel

TurnState = Literal["idle", "waiting", "thinking", "tool", "compacting", "cancelling"]
"""`waiting`: items arrived and the turn waits for a place among the turns the hive runs at
once (turn admission)."""
ResultKind = Literal[
    "success",
    "cancelled",
    "max_turns",
    "prompt_too_long",
    "auth_error",
    "rate_limited",
    "overloaded",
    "unreachable",
    "api_error",
    "error",
    "crashed",
]


class TokenUsage(WireModel):
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class TurnStarted(WireModel):
    kind: Literal["turn_started"] = "turn_started"
    turn_id: str
    wake_from: list[str]
    new_session: bool
    model: str


class TurnEnded(WireModel):
    kind: Literal["turn_ended"] = "turn_ended"
    turn_id: str
    result: ResultKind
    detail: str = ""
    duration_ms: int


class Text(WireModel):
    """Assistant text."""

    kind: Literal["text"] = "text"
    text: str


class ToolUse(WireModel):
    kind: Literal["tool_use"] = "tool_use"
    id: str
    name: str
    input: dict[str, Any]


class ToolResult(WireModel):
    kind: Literal["tool_result"] = "tool_result"
    tool_use_id: str
    content: str
    is_error: bool = False


class Note(WireModel):
    """Something the harness wants the operator to see (a retry, a dropped line, ...)."""

    kind: Literal["note"] = "note"
    text: str


class Raw(WireModel):
    """A stream-json line of a type this harness does not know; kept, never dropped."""

    kind: Literal["raw"] = "raw"
    line_type: str
    data: dict[str, Any]


class StatusChanged(WireModel):
    kind: Literal["status_changed"] = "status_changed"
    status: str


class ModelChanged(WireModel):
    kind: Literal["model_changed"] = "model_changed"
    model: str


class TokenUsageChanged(WireModel):
    """Context size after the last API call, and the turn's running totals."""

    kind: Literal["token_usage_changed"] = "token_usage_changed"
    context_tokens: int
    usage: TokenUsage


class TurnStateChanged(WireModel):
    kind: Literal["turn_state_changed"] = "turn_state_changed"
    state: TurnState


class StuckChanged(WireModel):
    """The stuck signals active for this agent changed: the ones its harness sees in the
    running turn (gone when it ends) and the ones hive-core sees (`ping_pong`, `silent`);
    the page's stuck badge."""

    kind: Literal["stuck_changed"] = "stuck_changed"
    signals: list[Literal["no_progress", "repetition", "burn", "ping_pong", "silent"]]


class ReceivedMessage(WireModel):
    id: int
    sender: str
    body: str
    """At most PREVIEW characters of it (the turn's prompt holds it whole)."""
    sent_at: float


class MessagesReceived(WireModel):
    """The messages a turn was woken with: the agent's inbox, as it reads it."""

    kind: Literal["messages_received"] = "messages_received"
    messages: list[ReceivedMessage]


class LoginOutput(WireModel):
    """What `claude auth login` printed, as it came (the login panel's transcript)."""

    kind: Literal["login_output"] = "login_output"
    text: str


LoginSessionState = Literal["idle", "running", "logged_in", "failed", "cancelled"]


class LoginChanged(WireModel):
    """A login session started, took the code, or ended."""

    kind: Literal["login_changed"] = "login_changed"
    state: LoginSessionState
    url: str | None = None
    detail: str = ""


LiveEvent = Annotated[
    TurnStarted
    | TurnEnded
    | Text
    | ToolUse
    | ToolResult
    | Note
    | Raw
    | StatusChanged
    | ModelChanged
    | TokenUsageChanged
    | TurnStateChanged
    | StuckChanged
    | LoginOutput
    | LoginChanged
    | MessagesReceived,
    Field(discriminator="kind"),
]
LIVE_EVENT: TypeAdapter[LiveEvent] = TypeAdapter(LiveEvent)
