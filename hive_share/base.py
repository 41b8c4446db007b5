"""The base of every wire model, validated name types, and the small shared literals."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

from hive_share.names import InvalidName, validate_agent_name, validate_principal


class WireModel(BaseModel):
    """Base of every wire model: unknown fields, non-finite floats and coercions are refused.

    Strict: `true` is not an integer and `"5"` is not a number.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


def _agent_name(value: str) -> str:
    try:
        return validate_agent_name(value)
    except InvalidName as exc:
        raise PydanticCustomError("invalid_name", str(exc)) from None


def _principal(value: str) -> str:
    try:
        return validate_principal(value)
    except InvalidName as exc:
        raise PydanticCustomError("invalid_name", str(exc)) from None


AgentName = Annotated[str, AfterValidator(_agent_name)]
"""An agent name, validated by `hive_share.names.validate_agent_name`."""

Principal = Annotated[str, AfterValidator(_principal)]
"""An agent name or `operator`: anyone with an inbox."""

Role = Literal["agent", "manager"]
AgentState = Literal["running", "stopped", "tombstone", "prepared"]
ApprovalKind = Literal["spawn", "apply_commit", "update", "budget"]
"""`budget`: an agent reached a hard token or dollar limit; approving raises it for that
window, denying leaves the agent paused until the window rolls."""
ApprovalStatus = Literal["pending", "in_progress", "approved", "denied", "failed"]
"""`in_progress`: approved and being carried out (a deploy, a spawn, an update); it ends
`approved` or `failed`."""
ModelSource = Literal["override", "agent.toml", "default"]
"""Where an agent's model comes from: set at run time (`set_model`: the dashboard, the
page, `hive-core model`), which wins; else the approved `agent.toml`'s `model`; else the
built-in default."""
LoginReport = Literal["logged_in", "needs_login", "claude_missing"]
"""What a harness reports about its Claude Code: logged in, needing a login, or not
installed (the binary cannot be run)."""
LoginStatus = Literal["unknown", LoginReport]
QuestionStatus = Literal["pending", "answered", "cancelled", "expired"]
AttentionKind = Literal[
    "approval",
    "question",
    "operator_message",
    "crashed",
    "given_up",
    "needs_login",
    "claude_missing",
    "login_expiring",
    "deploy_failed",
    "needs_update",
    "stuck_no_progress",
    "stuck_repetition",
    "stuck_burn",
    "ping_pong",
    "silent",
    "over_budget",
    "budget_warning",
]
"""What an attention item is about: something that waits on the operator, or trouble."""
Severity = Literal["info", "warn", "urgent"]
StuckSignal = Literal["no_progress", "repetition", "burn"]
"""What a harness sees in a turn that looks stuck: no new tool call or text for a while,
the same tool call (or the same error) again and again, or many tokens spent with nothing
changed. hive-core's own signals (`ping_pong`, `silent`) need no report."""
BudgetWindow = Literal["5h", "7d"]
"""The rolling windows usage is counted and limited over (how subscriptions meter)."""
ReminderStatus = Literal["pending", "delivered", "cancelled"]
