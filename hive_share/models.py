"""Records that travel inside responses: messages, approvals, agents."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from hive_share.base import (
    AgentName,
    AgentState,
    ApprovalKind,
    ApprovalStatus,
    AttentionKind,
    BudgetWindow,
    LoginReport,
    LoginStatus,
    ModelSource,
    Principal,
    QuestionStatus,
    ReminderStatus,
    Role,
    Severity,
    WireModel,
)
from hive_share.helper import HelperEvent
from hive_share.live import TurnState

__all__ = [
    "AgentInfo",
    "AgentName",
    "AgentState",
    "AgentUsage",
    "Approval",
    "ApprovalKind",
    "ApprovalStatus",
    "AttentionItem",
    "AttentionKind",
    "BudgetWindow",
    "LoginReport",
    "LoginStatus",
    "Message",
    "ModelSource",
    "NotifyOutcome",
    "NotifyTarget",
    "Principal",
    "Question",
    "QuestionStatus",
    "Reminder",
    "ReminderStatus",
    "Role",
    "Severity",
    "UsageHour",
    "WireModel",
    "dump",
]


class Message(WireModel):
    """One broker message. `sender` is stamped by hive-core from the socket."""

    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    delivered_at: float | None = None
    event: HelperEvent | None = None
    """Set on helper events (sender `hive`); `body` then holds a one-line summary."""


class InboxSummary(WireModel):
    """Another host's operator inbox as this host shows it: how many wait unread (and
    since when), and its newest messages (bodies cut; `hive-core inbox --host H` reads
    them whole, and marks them read)."""

    unread: int = Field(ge=0)
    oldest_unread: float | None = None
    recent: list[Message]
    """Newest first."""


class AttentionItem(WireModel):
    """One thing that waits on the operator or signals trouble (`hive-core attention`, the
    dashboard's first panel). It stays while its cause does: never removed by a timer."""

    key: str
    """Stable while the item lasts: `approval:7`, `needs_login:alice`, …"""
    kind: AttentionKind
    agent: str | None
    """The agent it concerns; None for the operator's own inbox."""
    summary: str
    since: float
    """Unix seconds: when its cause began (or hive-core first saw it)."""
    severity: Severity
    action: str
    """The command that resolves it."""
    ref: int | None = None
    """The approval's or question's id, for the item's buttons."""
    host: str | None = None
    """The host holding that approval or question, when it is another host's."""


class Approval(WireModel):
    """One entry of the approval queue."""

    id: int
    kind: ApprovalKind
    agent: str
    requester: str
    status: ApprovalStatus
    created_at: float
    resolved_at: float | None = None
    reason: str | None = None
    commit: str | None = None
    """`apply_commit`: the proposed commit, pinned as tag `proposal/<id>`."""
    host: str | None = None
    """The host that holds it, when it is another host's of the hive (its id is that
    host's); None: this host's."""
    diff: str | None = None
    """`apply_commit`: the unified diff from what was deployed to the proposal."""


class AgentInfo(WireModel):
    """One row of `list`: a live agent or a tombstone."""

    name: str
    role: Role
    state: AgentState
    pid: int | None = None
    uptime_seconds: float | None = None
    web_port: int | None = None
    alive: bool = False
    status: str = ""
    """The agent's own one-line status (`set_status`)."""
    login: LoginStatus = "unknown"
    login_since: float | None = None
    """When hive-core was told the current login state (unix seconds); None while unknown."""
    login_expires_at: float | None = None
    """When its login stops working by itself, if its credentials say so."""
    deployed_commit: str | None = None
    """The config commit it runs; None for a tombstone or before its first deploy."""
    model: str | None = None
    """The model its harness said its next turn runs."""
    model_source: ModelSource | None = None
    """Where that model comes from: `override` (set at run time, which wins), `agent.toml`
    (the approved config) or `default` (neither names one)."""
    turn_state: TurnState | None = None
    """Its harness's last reported turn state; None when it is not running."""
    needs_update: bool = False
    """Its harness runs other hyperhive code than hive-core's: `update` rebuilds it."""
    stuck: list[AttentionKind] = Field(default=[])
    """The stuck signals active for it now (`stuck_repetition`, `ping_pong`, …): its badges."""
    host: str | None = None
    """The host it runs on, when the hive spans hosts (None on a hive of one host). Another
    host's agent carries what the hive's directory holds: name, role, state, page port, and
    the config commit its host shared."""


class Question(WireModel):
    """A structured question: to the operator (`target` None) or to an agent."""

    id: int
    asker: str
    target: str | None = None
    question: str
    options: list[str] | None = None
    created_at: float
    expires_at: float | None = None
    status: QuestionStatus
    answer: str | None = None
    answerer: str | None = None
    resolved_at: float | None = None
    host: str | None = None
    """The host that holds it, when it is another host's of the hive (its id is that
    host's); None: this host's."""


class Reminder(WireModel):
    """A reminder an agent set for itself; `payload` is the file content read when it fired."""

    id: int
    agent: str
    message: str
    due_at: float
    file_path: str | None = None
    status: ReminderStatus
    created_at: float
    delivered_at: float | None = None
    payload: str | None = None
    payload_note: str | None = None


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as a JSON-ready dict (the one serialisation path)."""
    return model.model_dump(mode="json")


class AgentUsage(WireModel):
    """What one agent spent over one budget window, and its limits there.

    `tokens` is what budgets count: input + cache creation + output. Cache reads are shown
    but not counted (like the API's input-token rate limits, which leave them out)."""

    agent: str
    window: BudgetWindow
    turns: int
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    tokens: int
    cost_usd: float
    limit_tokens: int | None = None
    """The token limit over this window (granted raises included); None: no limit."""
    limit_usd: float | None = None
    """The dollar limit (7 days only); None: no limit."""
    state: Literal["ok", "warning", "over"] = "ok"
    """`warning` past the warn percentage of a limit, `over` at or past a limit."""


class UsageHour(WireModel):
    """One agent's spend in one hour (the dashboard's 24-hour chart)."""

    agent: str
    hour: float
    """Unix seconds at the start of the hour."""
    tokens: int
    cost_usd: float


class NotifyTarget(WireModel):
    """One notification URL as `notify status` shows it."""

    url: str
    """With its credentials masked."""
    severity: Severity
    """The lowest severity it is sent."""
    kinds: list[str] | None = None
    """The attention kinds it is sent; None: every kind."""
    sent: int = 0
    last_ok_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failing: bool = False
    """Its last delivery failed (and no later one went through)."""
    queued: int = 0
    dropped: int = 0
    """Messages it lost to a full queue."""


class NotifyOutcome(WireModel):
    """What one URL did with `notify test`."""

    url: str
    ok: bool
    error: str | None = None


LinkState = Literal["connecting", "up", "down"]


class HostInfo(WireModel):
    """One host of a hive that spans hosts, as `hosts` shows it."""

    host: str
    this: bool
    """The host that answered."""
    dashboard_url: str | None = None
    capacity: int
    """Agents it takes (`HIVE_HOST_CAPACITY`)."""
    agents: int
    last_seen_seconds: float
    """Seconds since its last heartbeat reached the answering host (0 for that host)."""
    version: str | None = None
    link: LinkState | None = None
    """The answering host's NATS link; None for the other hosts."""
    link_error: str | None = None
    pending_forwards: int | None = None
    """Messages the answering host committed for other hosts and has not handed on yet."""
    forwarded: int | None = None
    """Messages it handed to the hive's stream since it started."""
    received: int | None = None
    """Messages from other hosts it committed since it started."""
    refused: int | None = None
    """Messages from other hosts it refused since it started (its log says why)."""
