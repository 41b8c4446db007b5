"""Socket responses, tagged by `result`; every one carries `ok`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from hive_share.live import LiveEvent, LoginSessionState, ResultKind, TurnState
from hive_share.models import (
    AgentInfo,
    AgentUsage,
    Approval,
    AttentionItem,
    HostInfo,
    LoginStatus,
    Message,
    NotifyOutcome,
    NotifyTarget,
    Question,
    Reminder,
    UsageHour,
    WireModel,
)

ErrorCode = Literal[
    "malformed",
    "too_long",
    "unknown_verb",
    "verb_not_allowed",
    "identity_claim",
    "invalid_request",
    "invalid_name",
    "unknown_agent",
    "exists",
    "forbidden",
    "not_found",
    "conflict",
    "port_collision",
    "backend",
    "shutting_down",
    "busy",
    "storage",
    "unreachable",
    "internal",
]


class Error(WireModel):
    """A refused or failed request. `code` is stable; `error` is for people."""

    ok: Literal[False] = False
    result: Literal["error"] = "error"
    code: ErrorCode
    error: str


class VersionResult(WireModel):
    ok: Literal[True] = True
    result: Literal["version"] = "version"
    protocol: int
    server: str


class Pong(WireModel):
    ok: Literal[True] = True
    result: Literal["pong"] = "pong"


class Sent(WireModel):
    """A message is committed. `duplicate` means the idempotency key was seen before."""

    ok: Literal[True] = True
    result: Literal["sent"] = "sent"
    id: int
    duplicate: bool = False


class Messages(WireModel):
    ok: Literal[True] = True
    result: Literal["messages"] = "messages"
    messages: list[Message]
    acked: int = 0
    """How many of a `recv`'s `ack` ids were newly marked delivered (0 otherwise)."""


class Acked(WireModel):
    ok: Literal[True] = True
    result: Literal["acked"] = "acked"
    count: int


class Agents(WireModel):
    ok: Literal[True] = True
    result: Literal["agents"] = "agents"
    agents: list[AgentInfo]


class HostsResult(WireModel):
    ok: Literal[True] = True
    result: Literal["hosts"] = "hosts"
    federated: bool
    """Whether this hive spans hosts (HIVE_NATS_URL set); when not, `hosts` is empty."""
    hosts: list[HostInfo]


class Approvals(WireModel):
    ok: Literal[True] = True
    result: Literal["approvals"] = "approvals"
    approvals: list[Approval]


class ApprovalResult(WireModel):
    ok: Literal[True] = True
    result: Literal["approval"] = "approval"
    approval: Approval


class Identity(WireModel):
    """`whoami`: the principal of the socket the request came in on."""

    ok: Literal[True] = True
    result: Literal["identity"] = "identity"
    name: str
    role: Literal["operator", "manager", "agent"]
    web_port: int | None = None
    config_root: str | None = None
    """The manager only: the directory holding `<agent>/proposed`, each agent's config
    working copy."""
    remote_config_root: str | None = None
    """The manager of a hive of several hosts only: the directory holding the working copies
    of other hosts' agents (`<agent>/proposed`, made by `request_init_config`)."""


class ConfigRepos(WireModel):
    """`request_init_config`: where an agent's config lives and what is deployed."""

    ok: Literal[True] = True
    result: Literal["config_repos"] = "config_repos"
    agent: str
    proposed: str
    """The manager's working copy: edit and commit here."""
    applied_commit: str
    """What `applied/main` holds: the config the agent runs (or will, once spawned)."""
    seeded: bool
    """False when both repos already had history; nothing was changed then."""


class HarnessState(WireModel):
    """`turn_status`: what the harness is doing and how its last turn ended."""

    ok: Literal[True] = True
    result: Literal["harness_state"] = "harness_state"
    turn_state: TurnState
    turns_run: int
    model: str
    login: LoginStatus
    last_result: ResultKind | None = None
    last_turn_id: str | None = None


class TurnEvent(WireModel):
    """One stored turn event of a harness."""

    seq: int
    ts: float
    turn_id: str | None = None
    event: LiveEvent


class TurnEvents(WireModel):
    """`events`: a harness's turn events, oldest first."""

    ok: Literal[True] = True
    result: Literal["events"] = "events"
    events: list[TurnEvent]


class LoginProgress(WireModel):
    """A harness's login session: its state, the URL the CLI printed, and its output past
    the `after` asked for; `offset` is where to continue."""

    ok: Literal[True] = True
    result: Literal["login"] = "login"
    state: LoginSessionState
    url: str | None = None
    output: str
    offset: int
    waiting_for_code: bool = False
    """The CLI asked for the code and none was given yet."""


class ConfigFiles(WireModel):
    """`deployed_config`: the commit an agent runs and its files (each cut at 64 KiB, at
    most 50)."""

    ok: Literal[True] = True
    result: Literal["deployed_config"] = "deployed_config"
    commit: str | None
    """None: nothing deployed yet."""
    files: dict[str, str]


class LogLines(WireModel):
    """`harness_log`: lines of a harness log, and the offset to continue from."""

    ok: Literal[True] = True
    result: Literal["log"] = "log"
    lines: list[str]
    truncated: bool = False
    offset: int


class QuestionResult(WireModel):
    ok: Literal[True] = True
    result: Literal["question"] = "question"
    question: Question


class QuestionsResult(WireModel):
    ok: Literal[True] = True
    result: Literal["questions"] = "questions"
    questions: list[Question]


class ReminderResult(WireModel):
    ok: Literal[True] = True
    result: Literal["reminder"] = "reminder"
    reminder: Reminder


class RemindersResult(WireModel):
    ok: Literal[True] = True
    result: Literal["reminders"] = "reminders"
    reminders: list[Reminder]


class AttentionList(WireModel):
    """The attention list, ranked: severity, then age."""

    ok: Literal[True] = True
    result: Literal["attention"] = "attention"
    items: list[AttentionItem]


class WatchLimits(WireModel):
    """The stuck thresholds a harness applies to its turns."""

    ok: Literal[True] = True
    result: Literal["watch_limits"] = "watch_limits"
    no_progress_seconds: float
    """A turn with no new tool call or text for this long is `no_progress`."""
    repeat: int
    """The same tool call (or the same error) this many times in a turn is `repetition`."""
    burn_tokens: int
    """A turn that spent this many tokens with nothing changed is `burn`."""


class UsageReport(WireModel):
    """Spend per agent and window (`usage`), hive-wide totals under the agent `*`."""

    ok: Literal[True] = True
    result: Literal["usage"] = "usage"
    now: float
    usage: list[AgentUsage]
    hourly: list[UsageHour] = Field(default=[])


class NotifyTargets(WireModel):
    ok: Literal[True] = True
    result: Literal["notify_targets"] = "notify_targets"
    targets: list[NotifyTarget]


class NotifyTested(WireModel):
    ok: Literal[True] = True
    result: Literal["notify_tested"] = "notify_tested"
    outcomes: list[NotifyOutcome]


class OpenThreads(WireModel):
    """Loose ends: pending approvals, unanswered questions, and pending reminders counted."""

    ok: Literal[True] = True
    result: Literal["open_threads"] = "open_threads"
    approvals: list[Approval]
    questions: list[Question]
    pending_reminders: int


class Done(WireModel):
    """A lifecycle action finished; `detail` says what happened."""

    ok: Literal[True] = True
    result: Literal["done"] = "done"
    detail: str


class TurnSlotState(WireModel):
    """The answer to `turn_slot`: whether this connection holds a place to run its turn, and
    how full the hive is."""

    ok: Literal[True] = True
    result: Literal["turn_slot"] = "turn_slot"
    granted: bool
    """For `take`: the place is this connection's (False: the wait ended first; ask again)."""
    ahead: int = 0
    """Turns that wait before this one (0 once granted)."""
    running: int
    slots: int


Response = Annotated[
    Error
    | VersionResult
    | Pong
    | Sent
    | Messages
    | Acked
    | Agents
    | HostsResult
    | Approvals
    | ApprovalResult
    | Identity
    | ConfigRepos
    | HarnessState
    | TurnEvents
    | LoginProgress
    | LogLines
    | ConfigFiles
    | QuestionResult
    | QuestionsResult
    | ReminderResult
    | RemindersResult
    | OpenThreads
    | AttentionList
    | WatchLimits
    | UsageReport
    | NotifyTargets
    | NotifyTested
    | TurnSlotState
    | Done,
    Field(discriminator="result"),
]
RESPONSE: TypeAdapter[Response] = TypeAdapter(Response)
