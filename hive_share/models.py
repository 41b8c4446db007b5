"""Records that travel inside responses: messages, approvals, agents."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from hive_share.names import InvalidName, validate_agent_name, validate_principal


class WireModel(BaseModel):
    """Base of every wire model: unknown fields and non-finite floats are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


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
AgentState = Literal["running", "stopped", "tombstone"]
ApprovalKind = Literal["spawn"]
ApprovalStatus = Literal["pending", "approved", "denied", "failed"]
LoginStatus = Literal["unknown", "logged_in", "needs_login"]


class Message(WireModel):
    """One broker message. `sender` is stamped by hive-core from the socket."""

    id: int
    sender: str
    recipient: str
    body: str
    sent_at: float
    delivered_at: float | None = None


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


def dump(model: BaseModel) -> dict[str, Any]:
    """A model as a JSON-ready dict (the one serialisation path)."""
    return model.model_dump(mode="json")


NonEmptyText = Annotated[str, Field(min_length=1)]
