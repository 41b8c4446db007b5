"""Helper events: what hive-core tells an agent about itself or the hive, through its inbox.

They arrive like messages, from the sender `hive`, with the event attached.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from hive_share.base import ApprovalKind, ApprovalStatus, BudgetWindow, WireModel

HIVE_SENDER = "hive"
"""The sender of helper events; a reserved name no agent can take."""


class ContainerCrash(WireModel):
    """An agent's harness died without an operator asking for it."""

    kind: Literal["container_crash"] = "container_crash"
    agent: str
    detail: str
    restart_in_seconds: float | None = None
    """When hive-core will restart it; None when it gave up."""


class NeedsLogin(WireModel):
    kind: Literal["needs_login"] = "needs_login"
    agent: str
    detail: str = ""


class ClaudeMissing(WireModel):
    """An agent's harness cannot run the Claude Code CLI at all."""

    kind: Literal["claude_missing"] = "claude_missing"
    agent: str
    detail: str = ""


class LoggedIn(WireModel):
    kind: Literal["logged_in"] = "logged_in"
    agent: str


class NeedsUpdate(WireModel):
    """An agent's harness runs other code than hive-core: `rebuild` it."""

    kind: Literal["needs_update"] = "needs_update"
    agent: str
    detail: str


class ApprovalResolved(WireModel):
    """A request of yours was approved, denied, or failed when carried out."""

    kind: Literal["approval_resolved"] = "approval_resolved"
    id: int
    approval_kind: ApprovalKind
    agent: str
    status: ApprovalStatus
    reason: str | None = None
    host: str | None = None
    """The host that held the approval, when it is another host's than yours (its id is
    that host's)."""


class Stuck(WireModel):
    """An agent looks stuck: a signal its harness saw in a turn (`no_progress`,
    `repetition`, `burn`) or one hive-core saw (`ping_pong` with `peer`, `silent`). Told
    once per signal; the operator and the overseer can cancel the turn, start a new
    session, or stop the agent."""

    kind: Literal["stuck"] = "stuck"
    agent: str
    signal: Literal["no_progress", "repetition", "burn", "ping_pong", "silent"]
    detail: str
    peer: str | None = None


class BudgetReached(WireModel):
    """An agent passed its warn percentage of a budget (`hard` false), or reached the limit
    (`hard` true: its next turn waits on a `budget` approval, its messages stay queued)."""

    kind: Literal["budget_reached"] = "budget_reached"
    agent: str
    window: BudgetWindow
    used: float
    limit: float
    unit: Literal["tokens", "usd"]
    hard: bool


class QuestionAsked(WireModel):
    """Someone asks you a question; reply with the `answer` tool and its id."""

    kind: Literal["question_asked"] = "question_asked"
    id: int
    asker: str
    question: str
    options: list[str] | None = None
    expires_at: float | None = None
    host: str | None = None
    """The asker's host, when it is another host of the hive than yours: the question is
    held there (answer with this `host`)."""


class QuestionAnswered(WireModel):
    """How a question you asked ended: answered, cancelled by the operator, or expired."""

    kind: Literal["question_answered"] = "question_answered"
    id: int
    question: str
    outcome: Literal["answered", "cancelled", "expired"]
    answer: str | None = None
    answerer: str
    """`operator`, the peer's name, or `watchdog` (the TTL ran out)."""


class ReminderDue(WireModel):
    """A reminder you set is due; `list_reminders(id)` shows it with its file payload."""

    kind: Literal["reminder_due"] = "reminder_due"
    id: int
    message: str
    payload_bytes: int | None = None
    payload_note: str | None = None


HelperEvent = Annotated[
    ContainerCrash
    | NeedsLogin
    | ClaudeMissing
    | LoggedIn
    | NeedsUpdate
    | ApprovalResolved
    | Stuck
    | BudgetReached
    | QuestionAsked
    | QuestionAnswered
    | ReminderDue,
    Field(discriminator="kind"),
]
HELPER_EVENT: TypeAdapter[HelperEvent] = TypeAdapter(HelperEvent)


def summary(event: HelperEvent) -> str:
    """One line for the message body; the structured event travels alongside."""
    match event:
        case ContainerCrash(agent=agent, restart_in_seconds=delay):
            then = f"restarting in {delay:.0f}s" if delay is not None else "not restarting"
            return f"{agent} crashed; {then}"
        case NeedsLogin(agent=agent):
            return (
                f'{agent} needs a Claude Code login: `hive-core login {agent}`, or "log in" '
                f"on its page (`hive-core login-link {agent}`), or an API key: "
                "ANTHROPIC_API_KEY (or CLAUDE_CODE_OAUTH_TOKEN) in its agent.toml [env], or "
                "in hive-core's environment (then restart hive-core)"
            )
        case ClaudeMissing(agent=agent, detail=detail) if detail.endswith(
            "does not exist or is not executable"
        ):  # a path: HIVE_CLAUDE_BIN, which hive-core reads when it starts
            return (
                f"{agent} cannot run Claude Code ({detail}): install it at that path, then "
                f"`hive-core restart {agent}`; or, if HIVE_CLAUDE_BIN names the wrong path, "
                "fix it and restart hive-core"
            )
        case ClaudeMissing(agent=agent, detail=detail):  # a name: looked up at each start
            return (
                f"{agent} cannot run Claude Code ({detail}): install it on hive-core's PATH "
                f"(npm install -g @anthropic-ai/claude-code), then `hive-core restart {agent}`; "
                "or restart hive-core with `./dev serve` and no HIVE_CLAUDE_BIN, which installs "
                "the pinned version"
            )
        case LoggedIn(agent=agent):
            return f"{agent} is logged in again"
        case NeedsUpdate(agent=agent):
            return f"{agent} needs a rebuild to run the current hyperhive"
        case ApprovalResolved(id=approval_id, approval_kind=kind, agent=agent, status=status):
            return f"approval {approval_id} ({kind} {agent}) was {status}"
        case Stuck() | BudgetReached():
            return _trouble(event)
        case QuestionAsked(id=qid, asker=asker, host=host):
            where = "" if host is None else f" (on host {host})"
            return f"{asker}{where} asks you question {qid}"
        case QuestionAnswered(id=qid, outcome=outcome, answerer=answerer):
            return f"question {qid} was {outcome} by {answerer}"
        case ReminderDue(id=rid):
            return f"reminder {rid} is due"


def _trouble(event: Stuck | BudgetReached) -> str:
    match event:
        case Stuck(agent=agent, signal=signal, detail=detail):
            return f"{agent} looks stuck ({signal.replace('_', ' ')}): {detail}"
        case BudgetReached(agent=agent, window=window, used=used, limit=limit, unit=unit):
            spent = (
                f"${used:.2f} of ${limit:.2f}" if unit == "usd"
                else f"{used:,.0f} of {limit:,.0f} tokens"
            )  # fmt: skip
            then = "its next turn waits on a budget approval" if event.hard else "a warning"
            return f"{agent} spent {spent} in the last {window}: {then}"
